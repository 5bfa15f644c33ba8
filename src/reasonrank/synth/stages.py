"""The work of each stage on one query: selection (stages 2-3), assembly (4), labelling (5).

Every teacher answer is checked; a malformed one is logged in `failures.jsonl` with its raw
text and asked again as a different request (seed + attempt), up to `malformed_retries`
times, then the window is dropped and counted. A request the server rejects as invalid
(HTTP 400/413/422, e.g. a prompt over the context length) is logged and dropped too; other
backend errors stop the run (it resumes where it stopped).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from reasonrank.core.prompts import PromptBuilder
from reasonrank.errors import BackendRequestError
from reasonrank.io.readers import Doc
from reasonrank.synth.answers import parse_selection, parse_teacher_ranking
from reasonrank.synth.assembly import assemble_list
from reasonrank.synth.inputs import doc_text
from reasonrank.synth.prompts import HARD_NEGATIVES, POSITIVES, SelectionTemplate, selection_prompt
from reasonrank.synth.report import cause_of
from reasonrank.synth.settings import SynthSettings
from reasonrank.synth.store import JsonlLog
from reasonrank.synth.teacher import TeacherAnswer, TeacherClient
from reasonrank.types import Candidate, Query, Request, SamplingParams

log = logging.getLogger(__name__)

T = TypeVar("T")
REJECTED_STATUSES = frozenset({400, 413, 422})
"""HTTP statuses that reject one request (not the whole run): the item is dropped."""


class FailureLog:
    """`failures.jsonl`: one line per malformed or rejected answer (each logged once)."""

    def __init__(self, path: Any) -> None:
        self._log = JsonlLog(path)
        self._seen = {r.get("id") for r in self._log.records()}

    def record(self, entry: dict[str, Any]) -> None:
        if entry["id"] not in self._seen:
            self._seen.add(entry["id"])
            self._log.append(entry)

    def close(self) -> None:
        self._log.close()


@dataclass
class Tally:
    """What happened to the teacher answers of one query."""

    malformed: int = 0
    retried: int = 0
    dropped: int = 0  # windows (or lists) given up after every attempt was malformed
    rejected: int = 0
    causes: dict[str, int] = field(default_factory=dict)  # cause_of(problem) -> answers

    def count(self, problem: str) -> None:
        cause = cause_of(problem)
        self.causes[cause] = self.causes.get(cause, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StageContext:
    """What the per-query work reads: settings, texts, prompts, the failure log."""

    settings: SynthSettings
    corpus: Mapping[str, Doc]
    builder: PromptBuilder
    candidates: Mapping[str, dict[str, Any]]
    failures: FailureLog

    def text(self, docid: str) -> str:
        return doc_text(self.corpus[docid])


async def gather_all(tasks: Sequence[Awaitable[T]]) -> list[T]:
    """`asyncio.gather` that lets every task finish (their answers get cached) before raising
    the first error."""
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


Check = Callable[[TeacherAnswer], tuple[T, str | None]]
"""A teacher answer -> (value, problem); problem None when the answer is usable."""


async def ask_valid(ctx: StageContext, teacher: TeacherClient, stage: str, qid: str,
                    window: int, prompt: Any, check: Check[T], tally: Tally) -> T | None:
    """The first answer that passes `check`, trying `malformed_retries` more times; None when
    every attempt was malformed (or the request was rejected)."""
    s = ctx.settings
    attempts = s.malformed_retries + 1
    for attempt in range(attempts):
        params = SamplingParams(max_new_tokens=s.max_new_tokens, temperature=s.temperature,
                                top_p=s.top_p, seed=s.seed + attempt)
        try:
            answer = await teacher.ask(prompt, params, stage)
        except BackendRequestError as exc:
            if exc.status_code not in REJECTED_STATUSES:
                raise
            tally.rejected += 1
            tally.count("rejected")
            ctx.failures.record({"id": f"{stage}/{qid}/{window}/{attempt}/rejected",
                                 "stage": stage, "qid": qid, "window": window,
                                 "attempt": attempt, "problem": f"rejected: HTTP "
                                 f"{exc.status_code}", "text": exc.detail})
            log.warning("%s %s window %d dropped: %s", stage, qid, window, exc)
            return None
        value, problem = check(answer)
        if problem is None:
            return value
        tally.malformed += 1
        tally.count(problem)
        ctx.failures.record({"id": answer.key, "stage": stage, "qid": qid, "window": window,
                             "attempt": attempt, "problem": problem,
                             "finish_reason": answer.finish_reason, "text": answer.text})
        log.debug("%s %s window %d attempt %d: malformed answer (%s)", stage, qid, window,
                  attempt, problem)
        if attempt + 1 < attempts:
            tally.retried += 1
    tally.dropped += 1
    return None


def chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


async def _select(ctx: StageContext, teacher: TeacherClient, stage: str,
                  template: SelectionTemplate, qid: str, index: int, window: list[str],
                  tally: Tally) -> tuple[int, ...] | None:
    record = ctx.candidates[qid]
    prompt = selection_prompt(ctx.builder, template, record["query"], record.get("answer"),
                              [ctx.text(d) for d in window])

    def check(answer: TeacherAnswer) -> tuple[tuple[int, ...], str | None]:
        selection = parse_selection(answer.text, len(window), answer.finish_reason)
        return selection.ids, selection.problem

    return await ask_valid(ctx, teacher, stage, qid, index, prompt, check, tally)


async def _select_all(ctx: StageContext, teacher: TeacherClient, stage: str,
                      template: SelectionTemplate, qid: str,
                      docids: list[str]) -> dict[str, Any]:
    """Ask about `docids` window by window: `selected`, `unjudged` (dropped windows), tally."""
    windows = chunks(docids, ctx.settings.selection_window)
    tally = Tally()
    found = await gather_all([_select(ctx, teacher, stage, template, qid, i, w, tally)
                              for i, w in enumerate(windows)])
    selected: list[str] = []
    unjudged: list[str] = []
    for window, ids in zip(windows, found, strict=True):
        if ids is None:
            unjudged.extend(window)
        else:
            selected.extend(window[i] for i in ids)
    return {"selected": selected, "unjudged": unjudged, "windows": len(windows),
            **tally.as_dict()}


async def positives_item(ctx: StageContext, teacher: TeacherClient,
                         record: dict[str, Any]) -> dict[str, Any]:
    """Stage 2 for one candidates record: the passages of its pool the teacher selects."""
    qid = record["qid"]
    pool = [d for d, _ in record["pool"]]
    if not pool:
        return {"qid": qid, "skipped": "empty pool", "positives": [], "unjudged": []}
    result = await _select_all(ctx, teacher, "positives", POSITIVES, qid, pool)
    return {"qid": qid, "positives": result.pop("selected"), **result}


async def negatives_item(ctx: StageContext, teacher: TeacherClient,
                         record: dict[str, Any]) -> dict[str, Any]:
    """Stage 3 for one positives record: the misleading passages among the non-positives."""
    qid = record["qid"]
    if not record["positives"]:
        return {"qid": qid, "skipped": "no positives", "hard_negatives": []}
    excluded = {*record["positives"], *record["unjudged"]}
    rest = [d for d, _ in ctx.candidates[qid]["pool"] if d not in excluded]
    if not rest:
        return {"qid": qid, "hard_negatives": [], "unjudged": [], "windows": 0,
                **Tally().as_dict()}
    result = await _select_all(ctx, teacher, "negatives", HARD_NEGATIVES, qid, rest)
    return {"qid": qid, "hard_negatives": result.pop("selected"), **result}


def assemble_item(ctx: StageContext, positives: dict[str, Any],
                  negatives: dict[str, Any]) -> dict[str, Any]:
    """Stage 4 for one query: its list, or a skip when it has no positive."""
    qid = positives["qid"]
    if not positives["positives"]:
        return {"qid": qid, "skipped": "no positives"}
    pool = [d for d, _ in ctx.candidates[qid]["pool"]]
    built = assemble_list(qid, pool, positives["positives"], negatives["hard_negatives"],
                          ctx.settings.list_spec(), ctx.settings.seed,
                          exclude=positives["unjudged"])
    return built.to_dict()


def label_request(ctx: StageContext, record: dict[str, Any]) -> Request:
    """The list as the engine's rerank request: the query and its passages, in list order."""
    qid = record["qid"]
    return Request(Query(ctx.candidates[qid]["query"], qid),
                   [Candidate(d, ctx.text(d)) for d in record["docids"]])


async def label_item(ctx: StageContext, teacher: TeacherClient,
                     record: dict[str, Any]) -> dict[str, Any]:
    """Stage 5 for one list: the teacher's ranking and reasoning, with the engine's prompt."""
    qid = record["qid"]
    docids = record["docids"]
    prompt = ctx.builder.render_request(label_request(ctx, record))
    tally = Tally()

    def check(answer: TeacherAnswer) -> tuple[Any, str | None]:
        ranking = parse_teacher_ranking(answer.text, len(docids), answer.finish_reason)
        return ranking, ranking.problem

    ranking = await ask_valid(ctx, teacher, "label", qid, 0, prompt, check, tally)
    if ranking is None:
        return {"qid": qid, "status": "dropped", **tally.as_dict()}
    return {"qid": qid, "status": "ok", "final_list": [docids[i] for i in ranking.order],
            "reasoning": ranking.reasoning, **tally.as_dict()}
