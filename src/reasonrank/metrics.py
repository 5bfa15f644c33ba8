"""Ranking metrics with trec_eval semantics (pure Python, no dependencies).

Documents are ordered by score, descending, ties broken by doc id descending, as trec_eval
does; NDCG uses the graded relevance as gain and log2(rank + 1) as discount (`ndcg_cut`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def trec_order(scores: Mapping[str, float]) -> list[str]:
    """Doc ids in trec_eval's order: score descending, then doc id descending."""
    return [d for d, _ in sorted(scores.items(), key=lambda x: (x[1], x[0]), reverse=True)]


def ndcg_at_k(scores: Mapping[str, float], qrels: Mapping[str, int], k: int = 10) -> float:
    """`ndcg_cut.k` of one query, as trec_eval computes it."""
    ranked = trec_order(scores)[:k]
    dcg = sum(
        qrels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked) if qrels.get(d, 0) > 0
    )
    ideal_gains = sorted((r for r in qrels.values() if r > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal_gains))
    return dcg / idcg if idcg > 0 else 0.0


def mean_ndcg_at_k(
    run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]], k: int = 10
) -> float:
    """Mean `ndcg_cut.k` over the queries of `run` that have judgements (trec_eval's default)."""
    values = [ndcg_at_k(docs, qrels[q], k) for q, docs in run.items() if q in qrels]
    return sum(values) / len(values) if values else 0.0
