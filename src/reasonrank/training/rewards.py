"""The GRPO multi-view ranking reward of ReasonRank (reference section 8).

For one window (at most 20 passages) and the teacher's labels, a response earns:

- -1 when ``<think>...</think>`` followed (whitespace only between) by ``<answer>...</answer>``
  is not found; the tags are matched as written (case kept, unlike `reasonrank.core.parsing`);
- 0 when the answer's numbers do not name as many passages as the teacher's `final_list`, and
  as many distinct ones; a number outside ``1..len(initial_list)`` or one that ``int()``
  rejects (a superscript digit) names no passage, so such an answer earns 0;
- else ``NDCG@10 + 0.2 * Recall@10 + 0.1 * RBO``: NDCG and Recall judge the predicted order
  against `relevant_docids` as binary qrels, RBO compares it with `final_list`. Range [-1, 1.3].

Differences from the released verl code: it drops an out-of-range number after the count check
(and reads ``[0]`` as the last passage) instead of scoring 0, and it compares window positions
rather than doc ids (the same thing when `initial_list` has no repeated id).

Pure standard library: importable and testable without torch or numpy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from reasonrank.core.parsing import digit_runs
from reasonrank.errors import ConfigError

__all__ = [
    "FORMAT_PATTERN",
    "RewardBreakdown",
    "RewardWeights",
    "answer_ids",
    "ndcg_at_k",
    "ranking_reward",
    "rbo",
    "recall_at_k",
    "score_response",
]

FORMAT_PATTERN: re.Pattern[str] = re.compile(
    r"<think>.*?</think>\s*<answer>(.*?)</answer>", re.DOTALL
)


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the three views, the NDCG/Recall cutoff `k` and the RBO persistence `rbo_p`."""

    ndcg: float = 1.0
    recall: float = 0.2
    rbo: float = 0.1
    k: int = 10
    rbo_p: float = 1.0  # 1.0 = plain average overlap, as released

    def __post_init__(self) -> None:
        for name in ("ndcg", "recall", "rbo"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"reward weight {name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ConfigError(f"reward weight {name} must be finite, got {value!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(
                f"reward cutoff k must be an integer >= 1 (10 as released), got {self.k!r}"
            )
        p = self.rbo_p
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p <= 1:
            raise ConfigError(
                f"rbo_p (RBO persistence) must be in (0, 1] (1.0 = average "
                f"overlap, as released), got {p!r}"
            )


@dataclass(frozen=True)
class RewardBreakdown:
    """A response's reward and its parts; the views are 0.0 where they were not computed."""

    reward: float
    format_ok: bool
    ids_ok: bool
    ndcg: float
    recall: float
    rbo: float
    ranking: tuple[str, ...]  # the predicted doc ids; empty when the format or a number failed


def ndcg_at_k(ranking: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    """Binary-gain NDCG@k as trec_eval's ``ndcg_cut``: discount ``1/log2(rank + 1)``, ideal DCG
    over ``min(|relevant|, k)`` hits; 0.0 when `relevant` is empty. A repeated id gains only at
    its first rank."""
    rel = set(relevant)
    if not rel:
        return 0.0
    dcg = 0.0
    seen: set[str] = set()
    for rank, docid in enumerate(ranking[:k], start=1):
        if docid in rel and docid not in seen:
            dcg += 1.0 / math.log2(rank + 1)
        seen.add(docid)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(rel), k) + 1))
    return dcg / ideal


def recall_at_k(ranking: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    """``|set(ranking[:k]) & relevant| / |relevant|``; 0.0 when `relevant` is empty."""
    rel = set(relevant)
    if not rel:
        return 0.0
    return len(set(ranking[:k]) & rel) / len(rel)


def rbo(ranking: Sequence[str], reference: Sequence[str], p: float = 1.0) -> float:
    """Normalised truncated rank-biased overlap of two rankings.

    With depth ``D = max(len(ranking), len(reference))`` and the agreement
    ``A_d = |set(ranking[:d]) & set(reference[:d])| / d``, returns
    ``sum_{d<=D} p**(d-1) * A_d / sum_{d<=D} p**(d-1)``: the weights are normalised over the
    evaluated depths (no extrapolation), so p = 1 is the plain average overlap that the released
    reward uses, two identical lists without repeats score 1.0 for every p, and the value is
    continuous in p. 0.0 when both lists are empty.
    """
    depth = max(len(ranking), len(reference))
    if depth == 0:
        return 0.0
    seen_a: set[str] = set()
    seen_b: set[str] = set()
    overlap = 0
    weight = 1.0
    num = 0.0
    den = 0.0
    for d in range(1, depth + 1):
        if d <= len(ranking) and (x := ranking[d - 1]) not in seen_a:
            seen_a.add(x)
            overlap += x in seen_b
        if d <= len(reference) and (y := reference[d - 1]) not in seen_b:
            seen_b.add(y)
            overlap += y in seen_a
        num += weight * overlap / d
        den += weight
        weight *= p
    return num / den


def answer_ids(answer: str, initial_list: Sequence[str]) -> list[str] | None:
    """The doc ids the answer's numbers name, in answer order (repeats kept): number n is the
    window's passage ``[n]``, i.e. ``initial_list[n - 1]``. None when a number is outside
    ``1..len(initial_list)`` or is not readable by ``int()`` (a superscript digit)."""
    ids: list[str] = []
    for run in digit_runs(answer):
        try:
            n = int(run)
        except ValueError:
            return None
        if not 1 <= n <= len(initial_list):
            return None
        ids.append(initial_list[n - 1])
    return ids


def score_response(
    response: str,
    initial_list: Sequence[str],
    final_list: Sequence[str],
    relevant_docids: Collection[str],
    weights: RewardWeights = RewardWeights(),
) -> RewardBreakdown:
    """Score one rollout of a window: format check, id-count check, then the weighted views."""
    match = FORMAT_PATTERN.search(response)
    if match is None:
        return RewardBreakdown(-1.0, False, False, 0.0, 0.0, 0.0, ())
    ids = answer_ids(match.group(1), initial_list)
    if ids is None:
        return RewardBreakdown(0.0, True, False, 0.0, 0.0, 0.0, ())
    if len(ids) != len(final_list) or len(set(ids)) != len(set(final_list)):
        return RewardBreakdown(0.0, True, False, 0.0, 0.0, 0.0, tuple(ids))
    ndcg = ndcg_at_k(ids, relevant_docids, weights.k)
    recall = recall_at_k(ids, relevant_docids, weights.k)
    overlap = rbo(ids, final_list, weights.rbo_p)
    reward = weights.ndcg * ndcg + weights.recall * recall + weights.rbo * overlap
    return RewardBreakdown(reward, True, True, ndcg, recall, overlap, tuple(ids))


def ranking_reward(
    response: str,
    initial_list: Sequence[str],
    final_list: Sequence[str],
    relevant_docids: Collection[str],
    *,
    ndcg: float = 1.0,
    recall: float = 0.2,
    rbo: float = 0.1,
    k: int = 10,
    rbo_p: float = 1.0,
) -> float:
    """The scalar reward of `score_response` (defaults: the released weights)."""
    weights = RewardWeights(ndcg=ndcg, recall=recall, rbo=rbo, k=k, rbo_p=rbo_p)
    return score_response(response, initial_list, final_list, relevant_docids, weights).reward
