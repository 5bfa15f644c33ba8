"""Batch reranking to files: a TREC run and JSONL traces, resumable, with a summary."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reasonrank.config import RerankConfig
from reasonrank.errors import ConfigError
from reasonrank.io import RunFiles
from reasonrank.io.outputs import FileLock, hold_lock
from reasonrank.io.trec import qid_problem
from reasonrank.io.writers import check_resume, lock_path
from reasonrank.reranker import Reranker
from reasonrank.types import RankedResult, Request

RUN_SETTINGS = ("model", "tokenizer", "template", "window_size", "step", "top_k", "rank_start",
                "num_passes", "passage_tokens", "policy", "max_new_tokens", "temperature",
                "seed", "output_scores")
"""The options that decide a run's ranking: recorded beside the run, checked on resume."""


def run_settings(config: RerankConfig, tag: str = "reasonrank") -> dict[str, Any]:
    """The settings recorded for a run made with `config` (see `RUN_SETTINGS`) and `tag`."""
    values: dict[str, Any] = {name: getattr(config, name) for name in RUN_SETTINGS
                              if name not in ("tokenizer", "passage_tokens")}
    values["tokenizer"] = config.tokenizer_name
    values["passage_tokens"] = config.passage_tokens
    values["tag"] = tag
    return {name: values[name] for name in (*RUN_SETTINGS, "tag")}


def score_format(config: RerankConfig | None) -> str:
    """How a run made with `config` prints its scores (see `RerankConfig.output_scores`)."""
    return "reference" if config is not None and config.output_scores == "reference" else "exact"


def prepare_run(run_path: str, trace_path: str, requests: Sequence[Request], *,
                resume: bool, settings: dict[str, Any] | None) -> FileLock:
    """What a run checks before any model is loaded: the query ids can be written, the
    output is not in use (its lock is taken and returned: hold it for the whole run), and a
    `resume` continues a run made with the same settings over the same input."""
    check_unique_qids(requests)
    lock = hold_lock(lock_path(run_path), f"another process is writing {run_path}", join=True)
    try:
        if resume:
            check_resume(run_path, trace_path, settings, [r.query.qid for r in requests])
    except BaseException:
        lock.close()
        raise
    return lock


@dataclass
class RunSummary:
    """What a run did: the closing summary of `reasonrank rerank`."""

    queries: int = 0
    skipped: int = 0  # already done (resume)
    windows: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0

    def add(self, result: RankedResult) -> None:
        self.queries += 1
        for w in result.windows:
            self.windows += 1
            self.prompt_tokens += w.prompt_tokens or 0
            self.output_tokens += (w.output_tokens or 0) + (w.forced_tokens or 0)
            self.statuses[w.status.value] += 1

    @property
    def seconds_per_query(self) -> float:
        return self.wall_s / self.queries if self.queries else 0.0


def check_unique_qids(requests: Sequence[Request]) -> None:
    """Every request has a query id a TREC run can carry, and no id occurs twice."""
    seen: set[str] = set()
    for r in requests:
        if not r.query.qid:
            raise ConfigError("every request needs a query id to be written to a run file")
        problem = qid_problem(r.query.qid)
        if problem is not None:
            raise ConfigError(f"query id {r.query.qid!r} {problem}: a TREC run cannot carry it")
        if r.query.qid in seen:
            raise ConfigError(f"query id {r.query.qid!r} occurs twice in the input")
        seen.add(r.query.qid)


def rerank_to_files(
    reranker: Reranker,
    requests: Sequence[Request],
    run_path: str,
    trace_path: str,
    *,
    resume: bool = False,
    tag: str = "reasonrank",
    on_result: Callable[[RankedResult], None] | None = None,
) -> RunSummary:
    """Rerank `requests` into a TREC run and traces, one query at a time, durably.

    With `resume`, queries already complete in the outputs are skipped; a killed run loses at
    most the queries in flight. The files are put in input order once every query is done, so
    a resumed run ends byte-identical to an uninterrupted one.
    """
    return stream_to_files(
        requests, run_path, trace_path,
        lambda todo: (result for _, result in reranker.rerank_iter(todo)),
        resume=resume, tag=tag, on_result=on_result, config=reranker.config,
    )


def stream_to_files(
    requests: Sequence[Request],
    run_path: str,
    trace_path: str,
    produce: Callable[[list[Request]], Iterable[RankedResult]],
    *,
    resume: bool = False,
    tag: str = "reasonrank",
    on_result: Callable[[RankedResult], None] | None = None,
    config: RerankConfig | None = None,
) -> RunSummary:
    """Write the results `produce(todo)` yields, in any order, to resumable run files.

    The loop shared by the local and the distributed runners: `todo` is `requests` less the
    queries already done (with `resume`); the files are put in input order at the end, and
    replace a previous run only then. With `config`, its ranking settings are recorded
    beside the run (a `resume` with others is refused) and its `output_scores` decides how
    scores are written. Everything is checked before the first query is produced.
    """
    settings = run_settings(config, tag) if config is not None else None
    summary = RunSummary()
    began = time.perf_counter()
    with prepare_run(run_path, trace_path, requests, resume=resume, settings=settings), \
            RunFiles(run_path, trace_path, resume=resume, tag=tag, settings=settings,
                     score_format=score_format(config),
                     decreasing=config is not None and config.output_scores == "rank") as files:
        done = files.done_qids()
        todo = [r for r in requests if r.query.qid not in done]
        summary.skipped = len(requests) - len(todo)
        for result in produce(todo):
            files.append(result)
            summary.add(result)
            if on_result is not None:
                on_result(result)
        files.finalize([r.query.qid for r in requests])
    summary.wall_s = time.perf_counter() - began
    return summary
