"""The data model: queries, candidates, requests, ranked results and window traces."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True, slots=True)
class Query:
    """A search query. `qid` is optional for ad-hoc (API) use."""

    text: str
    qid: str = ""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One first-stage candidate: a document id, its first-stage score and its text."""

    docid: str
    text: str
    score: float = 0.0
    title: str | None = None


@dataclass(slots=True)
class Request:
    """A query with its first-stage candidates, in first-stage order (best first)."""

    query: Query
    candidates: list[Candidate]


class ParseStatus(StrEnum):
    """What the parser found in one window's answer."""

    OK = "ok"  # a complete <think>..</think><answer>..</answer>, a full valid permutation
    REPAIRED = "repaired"  # an answer block, but ids were missing, repeated or out of range
    MALFORMED = "answer_malformed"  # <answer>..</answer> without the <think>..</think> before it
    UNTERMINATED = "answer_unterminated"  # <answer> without </answer> (budget ran out)
    NO_ANSWER = "no_answer"  # no <answer> at all: reasoning only, or nothing
    INVALID_DIGITS = "invalid_digits"  # a "digit" int() rejects; the window keeps its order
    FORCED = "answer_forced"  # budget forcing: a complete answer after the forced answer tags
    # Pointwise methods (one prompt per document; see `reasonrank.core.methods`):
    SCORED = "scored"  # scored from the generation's last-token log-probabilities
    SCORE_REPAIRED = "score_repaired"  # scored after the method's repair step
    SCORE_FALLBACK = "score_fallback"  # no score even after repair: the method's fallback score


@dataclass(slots=True)
class WindowTrace:
    """What happened in one window: bounds, tokens, the raw output and how it was parsed."""

    start: int
    end: int
    status: ParseStatus
    output: str
    order: list[int]  # the 0-based permutation applied to the window
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    latency_s: float = 0.0
    pass_index: int = 0
    raw_finish_reason: str | None = None  # the engine's own reason where it was mapped
    # Budget forcing: the answer was forced after the budget ran out; `output_tokens` counts the
    # reasoning, `forced_tokens` the tokens generated after the forced answer tags.
    forced: bool = False
    forced_tokens: int | None = None
    # Pointwise methods: the document's relevance score (a window of one document).
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        extra = {"raw_finish_reason": self.raw_finish_reason} if self.raw_finish_reason else {}
        forced = {"forced": True, "forced_tokens": self.forced_tokens} if self.forced else {}
        scored = {"score": self.score} if self.score is not None else {}
        return {
            "start": self.start,
            "end": self.end,
            "pass": self.pass_index,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "finish_reason": self.finish_reason,
            "status": self.status.value,
            "order": self.order,
            "latency_s": round(self.latency_s, 6),
            **forced,
            **scored,
            "output": self.output,
            **extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowTrace:
        return cls(
            start=int(data["start"]),
            end=int(data["end"]),
            status=ParseStatus(data["status"]),
            output=data.get("output", ""),
            order=list(data.get("order", [])),
            prompt_tokens=data.get("prompt_tokens"),
            output_tokens=data.get("output_tokens"),
            finish_reason=data.get("finish_reason"),
            latency_s=float(data.get("latency_s", 0.0)),
            pass_index=int(data.get("pass", 0)),
            raw_finish_reason=data.get("raw_finish_reason"),
            forced=bool(data.get("forced", False)),
            forced_tokens=data.get("forced_tokens"),
            score=None if data.get("score") is None else float(data["score"]),
        )


@dataclass(frozen=True, slots=True)
class RankedDoc:
    """One document of a reranked list.

    `score` carries the reranked order: it strictly decreases with `rank` (by default
    `n + 1 - rank` for a list of n, so any evaluator that sorts by score sees exactly this
    order; with `output_scores="reference"` it is the first-stage score of the position, as
    the released code writes it). `first_stage_score` is the document's own first-stage
    score and `first_stage_rank` its 1-based first-stage rank.
    """

    docid: str
    rank: int  # 1-based
    score: float
    text: str
    title: str | None = None
    first_stage_rank: int = 0  # 1-based rank before reranking
    first_stage_score: float | None = None


def relevance_score(rank: int, n: int) -> float:
    """The score reported for 1-based `rank` of `n` documents (the server's `relevance_score`,
    the framework adapters' score): `1 - (rank - 1) / n`, 1.0 at the top, strictly decreasing,
    always > 0. It carries the order; the listwise model gives no calibrated scores."""
    return 1.0 - (rank - 1) / n


@dataclass(slots=True)
class RankedResult:
    """A reranked list for one query, with the trace of every window that produced it."""

    query: Query
    docs: list[RankedDoc]
    windows: list[WindowTrace] = field(default_factory=list)

    def __iter__(self) -> Iterator[RankedDoc]:
        return iter(self.docs)

    def __len__(self) -> int:
        return len(self.docs)

    def top_k(self, k: int) -> list[RankedDoc]:
        return self.docs[:k]

    @property
    def docids(self) -> list[str]:
        return [d.docid for d in self.docs]

    def score_of(self, docid: str) -> float:
        for doc in self.docs:
            if doc.docid == docid:
                return doc.score
        raise KeyError(docid)

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for w in self.windows:
            counts[w.status.value] = counts.get(w.status.value, 0) + 1
        return counts

    def trace_dict(self) -> dict[str, Any]:
        """The JSONL trace record of this query (see the `rerank` contract)."""
        return {"qid": self.query.qid, "query": self.query.text,
                "windows": [w.to_dict() for w in self.windows]}


# The backend interface's values: a rendered prompt, decoding settings, one completion.


@dataclass(frozen=True, slots=True)
class Prompt:
    """A window's prompt: the exact rendered string and the chat messages it came from."""

    text: str
    messages: tuple[dict[str, str], ...]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Decoding settings. The defaults are the reference's: greedy, 3072 + 100 new tokens.

    `stop`: strings that end the generation (the text stops before them; their tokens count).
    `logprobs`: return the log-probabilities of the top N tokens at each generated position
    (`Generation.logprobs`; 0 = none). `allowed_tokens`: the tokens (by text, each one token of
    the vocabulary) the generation may choose from; their log-probabilities are always returned.
    """

    max_new_tokens: int = 3172
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int = 0
    allowed_tokens: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Generation:
    """One completion. Token counts are None where a backend cannot know them."""

    text: str
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None  # "stop" (EOS) or "length" (budget ran out), or "error"
    raw_finish_reason: str | None = None  # the engine's own reason where it was mapped ("abort")
    # With `SamplingParams.logprobs`: per generated token, {token text: log-probability} of the
    # top tokens and the chosen one; None when none were asked for.
    logprobs: tuple[dict[str, float], ...] | None = None
