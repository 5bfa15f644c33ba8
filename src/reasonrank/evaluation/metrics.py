"""Ranking metrics with trec_eval semantics, computed by pytrec_eval.

A small measure registry in the spirit of `ir_measures`: metric names are strings such as
``"ndcg@10"`` (see `parse_metric`). Semantics are trec_eval's:

- each query's docs are ordered by score descending, ties broken by doc id descending;
  pytrec_eval (like trec_eval) holds scores as 32-bit floats, so scores that differ only
  beyond float32 precision tie and fall to the doc id rule;
- qrels are graded; relevance <= 0 is non-relevant (NDCG's gain is the relevance level);
- queries in the qrels but absent from the run are not evaluated; run queries without any
  judgement are reported as `unjudged` and left out of the means;
- means are plain averages over the evaluated queries.
"""

from __future__ import annotations

from array import array
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from reasonrank.core.options import MAX_CUTOFF
from reasonrank.errors import ConfigError, require

if TYPE_CHECKING:
    from reasonrank.types import RankedResult

RunLike: TypeAlias = Mapping[str, Sequence[tuple[str, float]]] | Mapping[str, Mapping[str, float]]
"""A run: qid -> [(docid, score)] (`reasonrank.io.Run`) or qid -> {docid: score}."""
QrelsLike: TypeAlias = Mapping[str, Mapping[str, int]]
"""Judgements: qid -> {docid: relevance}."""

DEFAULT_METRICS = (
    "ndcg@1", "ndcg@5", "ndcg@10", "ndcg@20", "ndcg@100",
    "recall@10", "recall@20", "recall@100", "mrr@10", "map",
)
EXCLUDE_PLACEHOLDER = "N/A"
"""BRIGHT's `excluded_ids` placeholder: never a doc id, ignored by `exclude_docs`."""

# family -> (pytrec_eval measure without a cutoff, or None: a cutoff is required;
#            pytrec_eval measure with a cutoff). mrr@k is recip_rank on the top k.
_FAMILIES: dict[str, tuple[str | None, str]] = {
    "ndcg": (None, "ndcg_cut"),
    "recall": (None, "recall"),
    "p": (None, "P"),
    "mrr": ("recip_rank", "recip_rank"),
    "map": ("map", "map_cut"),
}
_ALIASES = {"precision": "p", "rr": "mrr"}
VALID_METRICS = ("ndcg@k", "recall@k", "p@k", "mrr@k", "mrr", "map", "map@k")
"""The metric name patterns `parse_metric` accepts (k a positive integer)."""


@dataclass(frozen=True, slots=True)
class Measure:
    """One parsed metric: `family` (ndcg, recall, p, mrr, map) and cutoff `k` (None: none)."""

    family: str
    k: int | None = None

    @property
    def name(self) -> str:
        """The canonical name, e.g. ``"ndcg@10"``; the key of every result."""
        return self.family if self.k is None else f"{self.family}@{self.k}"

    @property
    def trec_key(self) -> str:
        """The key of this measure in pytrec_eval's output."""
        plain, cut = _FAMILIES[self.family]
        if self.family == "mrr" or self.k is None:
            return plain or cut
        return f"{cut}_{self.k}"


def parse_metric(name: str) -> Measure:
    """Parse ``"ndcg@10"``, ``"recall@100"``, ``"p@5"``, ``"mrr@10"``, ``"map"``, ``"map@100"``.

    Case-insensitive; ``precision@k`` and ``rr@k`` are aliases of ``p@k`` and ``mrr@k``.
    Raises `ConfigError` listing the valid names for anything else.
    """
    text = str(name).strip().lower()
    family, sep, cut = text.partition("@")
    family = _ALIASES.get(family.strip(), family.strip())
    cut = cut.strip()
    spec = _FAMILIES.get(family)
    valid = ", ".join(VALID_METRICS)
    if spec is None or (sep and not (cut.isascii() and cut.isdigit())):
        raise ConfigError(f"unknown metric {name!r}; valid metrics: {valid} "
                          "(k a positive integer, e.g. ndcg@10)")
    k = int(cut) if sep else None
    if k is None and spec[0] is None:
        raise ConfigError(f"metric {name!r} needs a cutoff, e.g. {family}@10; "
                          f"valid metrics: {valid}")
    if k is not None and not 1 <= k <= MAX_CUTOFF:
        raise ConfigError(f"metric {name!r}: the cutoff must be an integer from 1 to "
                          f"{MAX_CUTOFF:,}; valid metrics: {valid}")
    return Measure(family, k)


def parse_metrics(metrics: str | Iterable[str]) -> list[Measure]:
    """Parse a metric name or names; duplicates are dropped, the order is kept."""
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise ConfigError(f"no metric given; valid metrics: {', '.join(VALID_METRICS)}")
    out: dict[str, Measure] = {}
    for name in names:
        measure = parse_metric(name)
        out.setdefault(measure.name, measure)
    return list(out.values())


@dataclass
class EvalResult:
    """Per-query and mean metric values of one run.

    `mean` holds 0.0 for every metric when no query is evaluated (`queries == 0`).
    """

    mean: dict[str, float]
    per_query: dict[str, dict[str, float]]
    queries: int
    unjudged: list[str]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with keys ``mean``, ``per_query``, ``queries``, ``unjudged``."""
        return {
            "mean": dict(self.mean),
            "per_query": {q: dict(v) for q, v in self.per_query.items()},
            "queries": self.queries,
            "unjudged": list(self.unjudged),
        }


def trec_order(scores: Mapping[str, float]) -> list[str]:
    """Doc ids in trec_eval's order: score descending, then doc id descending.

    Scores are compared as given (doubles), like `reasonrank.io.read_trec_run`.
    """
    return [d for d, _ in sorted(scores.items(), key=lambda x: (x[1], x[0]), reverse=True)]


def _score_dict(docs: Sequence[tuple[str, float]] | Mapping[str, float]) -> dict[str, float]:
    pairs = docs.items() if isinstance(docs, Mapping) else docs
    return {str(d): float(s) for d, s in pairs}


def exclude_docs(
    run: RunLike, exclude: Mapping[str, Collection[str]]
) -> dict[str, dict[str, float]]:
    """`run` as ``{qid: {docid: score}}`` without each query's excluded doc ids.

    `exclude` maps qid -> doc ids to drop (BRIGHT's `excluded_ids`); the placeholder
    ``"N/A"`` is ignored. Queries of `exclude` absent from the run are ignored.
    """
    out: dict[str, dict[str, float]] = {}
    for qid, docs in run.items():
        scores = _score_dict(docs)
        drop = exclude.get(qid)
        if drop:
            # walk the (short) ranking, not the (possibly huge) exclusion list
            drop = drop if isinstance(drop, set | frozenset) else set(drop)
            if EXCLUDE_PLACEHOLDER in drop:
                drop = drop - {EXCLUDE_PLACEHOLDER}
            scores = {d: s for d, s in scores.items() if d not in drop}
        out[qid] = scores
    return out


def run_from_results(results: Iterable[RankedResult]) -> dict[str, dict[str, float]]:
    """``{qid: {docid: score}}`` of reranked results, with the scores they hold.

    This is what `reasonrank.io.write_trec` writes, so evaluating it equals evaluating the
    written run file.
    """
    return {res.query.qid: {d.docid: float(d.score) for d in res.docs} for res in results}


def _top_k(run: dict[str, dict[str, float]], k: int) -> dict[str, dict[str, float]]:
    """Each query's top k docs in pytrec_eval's order (float32 scores, then doc id)."""
    out: dict[str, dict[str, float]] = {}
    for qid, scores in run.items():
        if len(scores) <= k:
            out[qid] = scores
            continue
        items = list(scores.items())
        single = array("f", [s for _, s in items]).tolist()  # as 32-bit floats
        order = sorted(range(len(items)), key=lambda i: (single[i], items[i][0]), reverse=True)
        out[qid] = dict(items[i] for i in order[:k])
    return out


def evaluate(
    run: RunLike,
    qrels: QrelsLike,
    metrics: str | Iterable[str] = DEFAULT_METRICS,
    *,
    exclude: Mapping[str, Collection[str]] | None = None,
) -> EvalResult:
    """Score `run` against `qrels` with trec_eval semantics (see the module docstring).

    `metrics` are names such as ``"ndcg@10"`` (`parse_metric`); results are keyed by the
    canonical names. `exclude` maps qid -> doc ids removed from that query's run first
    (``"N/A"`` ignored). A query evaluated with no docs left scores 0 on every metric.
    """
    pytrec_eval = require("pytrec_eval", "eval", "evaluation",
                          install="pip install pytrec-eval-terrier (a core dependency)")
    measures = parse_metrics(metrics)
    scored = exclude_docs(run, exclude) if exclude else {q: _score_dict(d) for q, d in run.items()}
    judged = {q: {d: int(r) for d, r in qrels[q].items()} for q in scored if qrels.get(q)}
    unjudged = [q for q in scored if q not in judged]
    scored = {q: docs for q, docs in scored.items() if q in judged}

    cuts: dict[str, set[int]] = {}
    plain: set[str] = set()
    rr_cuts: set[int | None] = set()
    for m in measures:
        if m.family == "mrr":
            rr_cuts.add(m.k)
        elif m.k is None:
            plain.add(m.trec_key)
        else:
            cuts.setdefault(_FAMILIES[m.family][1], set()).add(m.k)
    requested = plain | {f"{name}.{','.join(map(str, sorted(ks)))}" for name, ks in cuts.items()}

    raw: dict[str, dict[str, float]] = {q: {} for q in scored}
    if requested and scored:
        evaluator = pytrec_eval.RelevanceEvaluator(judged, requested)
        for qid, values in evaluator.evaluate(scored).items():
            raw[qid].update(values)
    per_query: dict[str, dict[str, float]] = {q: {} for q in scored}
    if rr_cuts and scored:
        rr = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"})
        for k in rr_cuts:
            name = Measure("mrr", k).name
            values = rr.evaluate(scored if k is None else _top_k(scored, k))
            for qid in scored:
                per_query[qid][name] = float(values.get(qid, {}).get("recip_rank", 0.0))
    for qid, values in raw.items():
        row = per_query[qid]
        for m in measures:
            if m.family != "mrr":
                row[m.name] = float(values.get(m.trec_key, 0.0))
    ordered = {q: {m.name: per_query[q][m.name] for m in measures} for q in scored}
    n = len(ordered)
    mean = {m.name: (sum(v[m.name] for v in ordered.values()) / n if n else 0.0)
            for m in measures}
    return EvalResult(mean=mean, per_query=ordered, queries=n, unjudged=unjudged)


__all__ = [
    "DEFAULT_METRICS",
    "EXCLUDE_PLACEHOLDER",
    "VALID_METRICS",
    "EvalResult",
    "Measure",
    "QrelsLike",
    "RunLike",
    "evaluate",
    "exclude_docs",
    "parse_metric",
    "parse_metrics",
    "run_from_results",
    "trec_order",
]
