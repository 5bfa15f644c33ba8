"""Batch reranking to files: a TREC run and JSONL traces, resumable, with a summary."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from reasonrank.errors import ConfigError
from reasonrank.io import RunFiles
from reasonrank.reranker import Reranker
from reasonrank.types import RankedResult, Request


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
    seen: set[str] = set()
    for r in requests:
        if not r.query.qid:
            raise ConfigError("every request needs a query id to be written to a run file")
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
        resume=resume, tag=tag, on_result=on_result,
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
) -> RunSummary:
    """Write the results `produce(todo)` yields, in any order, to resumable run files.

    The loop shared by the local and the distributed runners: `todo` is `requests` less the
    queries already done (with `resume`); the files are put in input order at the end.
    """
    check_unique_qids(requests)
    summary = RunSummary()
    began = time.perf_counter()
    with RunFiles(run_path, trace_path, resume=resume, tag=tag) as files:
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
