"""Run fusion: reciprocal rank fusion and normalised score interpolation (pure Python).

Inputs and outputs are `Run`s (qid -> [(docid, score)], best first). A fused run holds the
union of the queries (in order of first appearance) and, per query, the union of the docs,
sorted by fused score descending with ties broken by doc id descending (trec_eval's order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from reasonrank.errors import ConfigError
from reasonrank.io.readers import Run

NORMALIZATIONS = ("minmax", "zscore")


def _weights(runs: Sequence[Run], weights: Sequence[float] | None) -> list[float]:
    if not runs:
        raise ConfigError("fusion needs at least one run")
    if weights is None:
        return [1.0] * len(runs)
    if len(weights) != len(runs):
        raise ConfigError(f"{len(weights)} weights for {len(runs)} runs")
    out = [float(w) for w in weights]
    if any(not math.isfinite(w) for w in out):
        raise ConfigError(f"weights must be finite numbers, got {list(weights)}")
    return out


def _qids(runs: Sequence[Run]) -> list[str]:
    return list(dict.fromkeys(q for run in runs for q in run))


def _sorted(scores: dict[str, float]) -> list[tuple[str, float]]:
    docs = sorted(scores.items(), key=lambda d: d[0], reverse=True)
    docs.sort(key=lambda d: d[1], reverse=True)  # stable: ties stay by docid descending
    return docs


def reciprocal_rank_fusion(
    runs: Sequence[Run],
    k: float = 60,
    weights: Sequence[float] | None = None,
    depth: int | None = None,
) -> Run:
    """Reciprocal rank fusion (Cormack et al., 2009): score(d) = sum_i w_i / (k + rank_i(d)).

    `rank_i(d)` is the 1-based position of `d` in run i's list for the query (the list is
    taken in its given order, best first); a run that misses `d` adds nothing. Only the top
    `depth` docs of each run count (None: all). Weights default to 1.
    """
    w = _weights(runs, weights)
    if k < 0:
        raise ConfigError(f"the RRF constant k must be >= 0, got {k}")
    if depth is not None and depth < 1:
        raise ConfigError(f"depth must be a positive integer, got {depth}")
    fused: Run = {}
    for qid in _qids(runs):
        scores: dict[str, float] = {}
        for run, weight in zip(runs, w, strict=True):
            for rank, (docid, _) in enumerate(run.get(qid, [])[:depth], 1):
                scores[docid] = scores.get(docid, 0.0) + weight / (k + rank)
        fused[qid] = _sorted(scores)
    return fused


def _normalize(docs: list[tuple[str, float]], how: str) -> tuple[dict[str, float], float]:
    """`({docid: normalised score}, value for a doc the list misses)`."""
    values = [s for _, s in docs]
    if how == "minmax":
        lo, hi = min(values), max(values)
        if hi == lo:  # one doc, or all tied: each is the best there is
            return {d: 1.0 for d, _ in docs}, 0.0
        return {d: (s - lo) / (hi - lo) for d, s in docs}, 0.0
    mean = sum(values) / len(values)
    std = math.sqrt(sum((s - mean) ** 2 for s in values) / len(values))  # population std
    if std == 0:
        return {d: 0.0 for d, _ in docs}, 0.0
    normed = {d: (s - mean) / std for d, s in docs}
    return normed, min(normed.values())


def interpolate(
    runs: Sequence[Run],
    weights: Sequence[float] | None = None,
    normalization: str = "minmax",
    depth: int | None = None,
) -> Run:
    """Weighted sum of per-query normalised scores: score(d) = sum_i w_i * norm_i(d).

    Each run's scores for a query are normalised over its (top `depth`) list:
    - "minmax": (s - min) / (max - min), in [0, 1]; a list whose scores are all equal gets
      1.0 for each doc;
    - "zscore": (s - mean) / std (population std); all-equal scores get 0.0.
    A doc missing from a run's list gets that run's normalised minimum: 0.0 for minmax, the
    list's lowest z-score for zscore. A run without the query contributes 0 to every doc.
    Weights default to 1 each.
    """
    w = _weights(runs, weights)
    if normalization not in NORMALIZATIONS:
        raise ConfigError(
            f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}"
        )
    if depth is not None and depth < 1:
        raise ConfigError(f"depth must be a positive integer, got {depth}")
    fused: Run = {}
    for qid in _qids(runs):
        parts = []
        for run, weight in zip(runs, w, strict=True):
            docs = run.get(qid, [])[:depth]
            if docs:
                parts.append((weight, *_normalize(docs, normalization)))
        docids = dict.fromkeys(d for _, normed, _ in parts for d in normed)
        fused[qid] = _sorted({
            d: sum(weight * normed.get(d, missing) for weight, normed, missing in parts)
            for d in docids
        })
    return fused
