"""Paired significance tests over per-query metric values.

`compare` takes two `EvalResult.per_query` tables (system `a`, the baseline, and system `b`)
and reports, over the queries both have, the means, a two-sided paired t-test and a
two-sided paired randomisation (sign-flip) test, plus wins/ties/losses of `b` against `a`.
The t distribution is computed here (regularized incomplete beta), without scipy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from reasonrank.errors import ConfigError
from reasonrank.evaluation.metrics import parse_metric

if TYPE_CHECKING:
    import numpy as np

EXACT_MAX_N = 16
"""Up to this many pairs, `permutation_test` enumerates all 2**n sign patterns."""
STAT_TOLERANCE = 1e-12
"""A permuted |mean difference| within this of the observed one counts as at least as large."""
TIE_TOLERANCE = 1e-9
"""Per-query differences with |b - a| <= this are ties in `compare`."""
_CHUNK = 1 << 20  # sign entries drawn at a time by the Monte Carlo test


@dataclass
class Comparison:
    """System `b` against baseline `a` on one metric, over the `n` queries both have.

    `mean_diff` = mean_b - mean_a; `t_stat` has the sign of `mean_diff`; `wins`/`losses`
    count queries where `b` is better/worse than `a` by more than `TIE_TOLERANCE`.
    """

    metric: str
    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    t_stat: float
    p_ttest: float
    p_permutation: float
    wins: int
    ties: int
    losses: int

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (t_stat may be +-inf, see `paired_ttest`)."""
        return asdict(self)


def _diffs(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    import numpy as np

    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.size} vs {y.size}")
    return x - y


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-16:
            break
    return h


def _betainc(a: float, b: float, x: float, y: float) -> float:
    """Regularized incomplete beta I_x(a, b), with y = 1 - x given exactly."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log(y))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, y) / b


def t_two_sided_p(t: float, df: float) -> float:
    """Two-sided p-value of Student's t with `df` degrees of freedom: P(|T| >= |t|)."""
    if math.isnan(t) or df <= 0:
        return math.nan
    if math.isinf(t):
        return 0.0
    t2 = t * t
    return min(1.0, _betainc(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2)))


def paired_ttest(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided paired t-test of a - b: (t, p), as `scipy.stats.ttest_rel(a, b)`.

    Degenerate cases never raise: fewer than 2 pairs, or all differences zero, give
    (0.0, 1.0); identical non-zero differences (zero variance) give (+-inf, 0.0).
    """
    d = _diffs(a, b)
    n = d.size
    if n < 2:
        return 0.0, 1.0
    mean = float(d.mean())
    var = float(d.var(ddof=1))
    if var == 0.0:
        return (0.0, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    t = mean / math.sqrt(var / n)
    return t, t_two_sided_p(t, n - 1)


def permutation_test(
    a: Sequence[float], b: Sequence[float], n_permutations: int = 10000, seed: int = 0
) -> float:
    """Two-sided paired randomisation test of the mean difference of a - b.

    Each permutation flips the sign of every difference independently (swapping a and b
    within that pair). With D the mean difference, p = (number of sign patterns with
    |D_perm| >= |D_observed| - 1e-12) / (number of patterns). For n <= 16 pairs all 2**n
    patterns are enumerated (exact; equals `scipy.stats.permutation_test` with
    ``permutation_type="samples"``, ``n_resamples=np.inf`` and the mean-difference
    statistic); otherwise `n_permutations` random patterns are drawn with `seed` and p is
    count / n_permutations (the observed pattern is not added, so p may be 0).
    No pairs give 1.0.
    """
    import numpy as np

    d = _diffs(a, b)
    n = d.size
    if n == 0:
        return 1.0
    observed = abs(float(d.mean())) - STAT_TOLERANCE
    if n <= EXACT_MAX_N:
        bits = (np.arange(1 << n)[:, None] >> np.arange(n)) & 1
        signs = 1.0 - 2.0 * bits
        return float(np.count_nonzero(np.abs(signs @ d) / n >= observed)) / (1 << n)
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    rng = np.random.default_rng(seed)
    count, left = 0, n_permutations
    while left:
        m = min(left, max(1, _CHUNK // n))
        signs = 1.0 - 2.0 * rng.integers(0, 2, size=(m, n))
        count += int(np.count_nonzero(np.abs(signs @ d) / n >= observed))
        left -= m
    return count / n_permutations


def _values(per_query: Mapping[str, Any], metric: str, side: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for qid, row in per_query.items():
        if isinstance(row, Mapping):
            if metric not in row:
                shown = ", ".join(map(repr, row)) or "none"
                raise ConfigError(f"metric {metric!r} is missing from query {qid!r} of "
                                  f"system {side} (it has: {shown})")
            out[qid] = float(row[metric])
        else:
            out[qid] = float(row)
    return out


def compare(
    per_query_a: Mapping[str, Mapping[str, float]] | Mapping[str, float],
    per_query_b: Mapping[str, Mapping[str, float]] | Mapping[str, float],
    metric: str = "ndcg@10",
    *,
    n_permutations: int = 10000,
    seed: int = 0,
) -> Comparison:
    """Compare system `b` with baseline `a` on `metric` over the queries both have.

    The tables are qid -> metric -> value (`EvalResult.per_query`) or qid -> value. Metric
    names are canonicalised when they parse (``"NDCG@10"`` -> ``"ndcg@10"``). With no query
    in common, means and `mean_diff` are 0.0, t = 0 and both p-values 1.
    """
    try:
        key = parse_metric(metric).name
    except ConfigError:
        key = metric
    va = _values(per_query_a, key, "a")
    vb = _values(per_query_b, key, "b")
    common = [q for q in va if q in vb]
    xa = [va[q] for q in common]
    xb = [vb[q] for q in common]
    n = len(common)
    diffs = [y - x for x, y in zip(xa, xb, strict=True)]
    t, p = paired_ttest(xb, xa)
    mean_a = sum(xa) / n if n else 0.0
    mean_b = sum(xb) / n if n else 0.0
    return Comparison(
        metric=key,
        n=n,
        mean_a=mean_a,
        mean_b=mean_b,
        mean_diff=mean_b - mean_a,
        t_stat=t,
        p_ttest=p,
        p_permutation=permutation_test(xb, xa, n_permutations, seed),
        wins=sum(1 for x in diffs if x > TIE_TOLERANCE),
        ties=sum(1 for x in diffs if abs(x) <= TIE_TOLERANCE),
        losses=sum(1 for x in diffs if x < -TIE_TOLERANCE),
    )


__all__ = [
    "EXACT_MAX_N",
    "STAT_TOLERANCE",
    "TIE_TOLERANCE",
    "Comparison",
    "compare",
    "paired_ttest",
    "permutation_test",
    "t_two_sided_p",
]
