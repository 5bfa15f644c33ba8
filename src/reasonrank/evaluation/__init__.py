"""Evaluation: trec_eval-compatible metrics (pytrec_eval) and paired significance tests."""

from __future__ import annotations

from reasonrank.evaluation.metrics import (
    DEFAULT_METRICS,
    EXCLUDE_PLACEHOLDER,
    VALID_METRICS,
    EvalResult,
    Measure,
    QrelsLike,
    RunLike,
    evaluate,
    exclude_docs,
    parse_metric,
    parse_metrics,
    run_from_results,
    trec_order,
)
from reasonrank.evaluation.significance import (
    Comparison,
    compare,
    paired_ttest,
    permutation_test,
    t_two_sided_p,
)

__all__ = [
    "DEFAULT_METRICS",
    "EXCLUDE_PLACEHOLDER",
    "VALID_METRICS",
    "Comparison",
    "EvalResult",
    "Measure",
    "QrelsLike",
    "RunLike",
    "compare",
    "evaluate",
    "exclude_docs",
    "paired_ttest",
    "parse_metric",
    "parse_metrics",
    "permutation_test",
    "run_from_results",
    "t_two_sided_p",
    "trec_order",
]
