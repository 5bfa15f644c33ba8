"""Paired significance tests, checked against scipy.stats and exact null distributions."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

from reasonrank.errors import ConfigError
from reasonrank.evaluation import (
    Comparison,
    compare,
    evaluate,
    paired_ttest,
    permutation_test,
    t_two_sided_p,
)

stats = pytest.importorskip("scipy.stats")


def _vectors(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.random(n)
    return a, np.clip(a + rng.normal(0.05, 0.15, n), 0, 1)


def _scipy_exact(a: np.ndarray, b: np.ndarray) -> float:
    res = stats.permutation_test(
        (a, b), lambda x, y, axis: np.mean(x - y, axis=axis), vectorized=True,
        permutation_type="samples", alternative="two-sided", n_resamples=np.inf,
    )
    return float(res.pvalue)


def _exact_integer_p(k: list[int]) -> float:
    """Exact sign-flip p of integer differences: the null distribution by convolution."""
    dist = Counter({0: 1})
    for v in k:
        nxt: Counter[int] = Counter()
        for s, c in dist.items():
            nxt[s + v] += c
            nxt[s - v] += c
        dist = nxt
    observed = abs(sum(k))
    return sum(c for s, c in dist.items() if abs(s) >= observed) / 2 ** len(k)


# --- t-test ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "n"), [(0, 2), (1, 3), (2, 5), (3, 12), (4, 30), (5, 200)])
def test_paired_ttest_matches_scipy(seed: int, n: int) -> None:
    a, b = _vectors(seed, n)
    t, p = paired_ttest(a, b)
    ref = stats.ttest_rel(a, b)
    assert t == pytest.approx(float(ref.statistic), abs=1e-9)
    assert p == pytest.approx(float(ref.pvalue), abs=1e-9)
    t2, p2 = paired_ttest(b.tolist(), a.tolist())  # plain lists; the sign flips
    assert (t2, p2) == pytest.approx((-t, p), abs=1e-12)


def test_paired_ttest_on_metric_like_values() -> None:
    a = [0.0, 0.5, 1.0, 1 / 3, 0.25, 0.0, 1.0, 0.75]
    b = [0.5, 0.5, 1.0, 1.0, 0.0, 0.25, 1.0, 1.0]
    t, p = paired_ttest(a, b)
    ref = stats.ttest_rel(a, b)
    assert (t, p) == pytest.approx((float(ref.statistic), float(ref.pvalue)), abs=1e-9)


@pytest.mark.parametrize("df", [1, 2, 3, 7, 29, 100, 1383])
def test_t_distribution_p_values(df: int) -> None:
    for t in (0.0, 1e-6, 0.1, 0.7, 1.0, 2.0, 2.5, 4.0, 10.0, 40.0):
        expected = 2 * float(stats.t.sf(t, df))
        assert t_two_sided_p(t, df) == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert t_two_sided_p(-t, df) == t_two_sided_p(t, df)
    assert t_two_sided_p(math.inf, df) == 0.0
    assert math.isnan(t_two_sided_p(math.nan, df))
    assert math.isnan(t_two_sided_p(1.0, 0))


def test_paired_ttest_degenerate_cases() -> None:
    assert paired_ttest([], []) == (0.0, 1.0)
    assert paired_ttest([0.3], [0.1]) == (0.0, 1.0)  # one pair: no variance estimate
    assert paired_ttest([0.2, 0.5, 0.9], [0.2, 0.5, 0.9]) == (0.0, 1.0)  # identical systems
    assert paired_ttest([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]) == (math.inf, 0.0)  # constant diff
    assert paired_ttest([0.0, 1.0], [1.0, 2.0]) == (-math.inf, 0.0)
    with pytest.raises(ValueError, match="differ in length"):
        paired_ttest([1.0, 2.0], [1.0])


# --- permutation test -----------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5, 8, 12])  # scipy needs n >= 2
def test_exact_permutation_matches_scipy(n: int) -> None:
    for seed in range(3):
        a, b = _vectors(100 * n + seed, n)
        assert permutation_test(a, b) == pytest.approx(_scipy_exact(a, b), abs=1e-12)


def test_exact_permutation_with_tied_null_values() -> None:
    # metric-like values: many sign patterns reach exactly the observed |mean difference|
    a = np.array([0.0, 0.5, 1.0, 1 / 3, 0.25, 0.0, 1.0, 0.75, 0.1, 0.2, 0.3, 0.6])
    b = np.array([0.5, 0.5, 1.0, 1.0, 0.0, 0.25, 1.0, 1.0, 0.2, 0.1, 0.6, 0.3])
    p = permutation_test(a, b)
    assert p == pytest.approx(_scipy_exact(a, b), abs=1e-12)
    # a zero observed difference gives 1, as scipy's min(1, 2 * one-sided)
    c = np.array([0.1, 0.4, 0.7, 0.9])
    d = np.array([0.4, 0.1, 0.9, 0.7])
    assert permutation_test(c, d) == 1.0 == pytest.approx(_scipy_exact(c, d))


def test_exact_permutation_counts_by_hand() -> None:
    # sign patterns of (1, 2, 3) sum to 6, 4, 2, 0, 0, -2, -4, -6
    assert permutation_test([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]) == 2 / 8  # observed 6
    assert permutation_test([0.0, 2.0, 3.0], [1.0, 0.0, 0.0]) == 4 / 8  # observed 4
    assert permutation_test([1.0, 2.0, 0.0], [0.0, 0.0, 3.0]) == 1.0  # observed 0
    assert permutation_test([0.5, 0.5, 0.5], [0.0, 0.0, 0.0]) == 2 / 8
    k = [3, -1, 4, 1, -5, 9, 2, 6, -5, 3, 5, 8, 9, 7, 9, 3]  # n = 16: still exact
    assert permutation_test([v / 10 for v in k], [0.0] * 16) == _exact_integer_p(k)


def test_monte_carlo_permutation_is_close_to_exact() -> None:
    rng = np.random.default_rng(7)
    k = rng.integers(-3, 6, 30).tolist()
    exact = _exact_integer_p(k)
    assert 0.005 < exact < 0.5  # an informative case
    a = np.array(k) / 20
    p = permutation_test(a, np.zeros(30), n_permutations=10000, seed=0)
    assert abs(p - exact) < 0.02
    assert permutation_test(a, np.zeros(30), n_permutations=10000, seed=0) == p  # seeded
    assert abs(permutation_test(a, np.zeros(30), seed=1) - exact) < 0.02
    k17 = k[:17]  # n = 17 is the first Monte Carlo size
    p17 = permutation_test(np.array(k17) / 20, np.zeros(17), n_permutations=20000, seed=3)
    assert abs(p17 - _exact_integer_p(k17)) < 0.02


def test_permutation_degenerate_cases() -> None:
    assert permutation_test([], []) == 1.0
    assert permutation_test([0.7], [0.2]) == 1.0
    assert permutation_test([0.2] * 20, [0.2] * 20) == 1.0
    big = [0.1 * i for i in range(40)]
    assert permutation_test([v + 1.0 for v in big], big, n_permutations=2000) == 0.0
    with pytest.raises(ValueError, match="n_permutations"):
        permutation_test(big, [0.0] * 40, n_permutations=0)
    with pytest.raises(ValueError, match="differ in length"):
        permutation_test([1.0], [1.0, 2.0])


# --- compare --------------------------------------------------------------------------------


def test_compare_counts_and_direction() -> None:
    a = {"q1": {"ndcg@10": 0.5}, "q2": {"ndcg@10": 0.3}, "q3": {"ndcg@10": 0.7},
         "q4": {"ndcg@10": 0.2}, "only_a": {"ndcg@10": 0.0}}
    b = {"q1": {"ndcg@10": 0.6}, "q2": {"ndcg@10": 0.3}, "q3": {"ndcg@10": 0.5},
         "q4": {"ndcg@10": 0.2 + 1e-10}, "only_b": {"ndcg@10": 1.0}, "q5": {"ndcg@10": 1.0}}
    c = compare(a, b)
    assert isinstance(c, Comparison)
    assert (c.metric, c.n, c.wins, c.ties, c.losses) == ("ndcg@10", 4, 1, 2, 1)
    assert c.mean_a == pytest.approx(1.7 / 4)
    assert c.mean_b == pytest.approx((1.6 + 1e-10) / 4)
    assert c.mean_diff == pytest.approx(c.mean_b - c.mean_a)
    xa, xb = [0.5, 0.3, 0.7, 0.2], [0.6, 0.3, 0.5, 0.2 + 1e-10]
    ref = stats.ttest_rel(xb, xa)
    assert (c.t_stat, c.p_ttest) == pytest.approx((float(ref.statistic), float(ref.pvalue)))
    assert c.t_stat < 0  # b is worse on average: same sign as mean_diff
    assert c.p_permutation == pytest.approx(_scipy_exact(np.array(xb), np.array(xa)))
    swapped = compare(b, a, "NDCG@10")  # canonical metric name
    assert (swapped.metric, swapped.wins, swapped.losses) == ("ndcg@10", 1, 1)
    assert swapped.mean_diff == pytest.approx(-c.mean_diff)
    assert swapped.t_stat == pytest.approx(-c.t_stat)
    data = json.loads(json.dumps(c.to_dict()))
    assert set(data) == {"metric", "n", "mean_a", "mean_b", "mean_diff", "t_stat", "p_ttest",
                         "p_permutation", "wins", "ties", "losses"}


def test_compare_flat_tables_and_errors() -> None:
    c = compare({"q1": 0.1, "q2": 0.2}, {"q1": 0.3, "q2": 0.6}, metric="anything")
    assert (c.n, c.wins, c.metric) == (2, 2, "anything")
    assert c.mean_diff == pytest.approx(0.3)
    with pytest.raises(ConfigError, match=r"'ndcg@10' is missing from query 'q1' of system a"):
        compare({"q1": {"map": 0.1}}, {"q1": {"map": 0.2}})


def test_compare_degenerate_cases() -> None:
    none = compare({"x": {"ndcg@10": 1.0}}, {"y": {"ndcg@10": 0.0}})
    assert (none.n, none.mean_a, none.mean_b, none.mean_diff) == (0, 0.0, 0.0, 0.0)
    assert (none.t_stat, none.p_ttest, none.p_permutation) == (0.0, 1.0, 1.0)
    assert (none.wins, none.ties, none.losses) == (0, 0, 0)
    same = {f"q{i}": {"ndcg@10": i / 10} for i in range(30)}
    c = compare(same, same)
    assert (c.n, c.ties, c.t_stat, c.p_ttest, c.p_permutation) == (30, 30, 0.0, 1.0, 1.0)
    one = compare({"q": {"ndcg@10": 0.2}}, {"q": {"ndcg@10": 0.9}})
    assert (one.n, one.wins, one.t_stat, one.p_ttest, one.p_permutation) == (1, 1, 0.0, 1.0, 1.0)


def test_compare_evaluated_runs() -> None:
    rng = np.random.default_rng(11)
    qrels = {f"q{i}": {f"d{j}": int(rng.integers(0, 3)) for j in range(20)} for i in range(25)}
    run_a = {q: {f"d{j}": float(rng.random()) for j in range(20)} for q in qrels}
    run_b = {q: {d: s + 0.5 * rels[d] for d, s in run_a[q].items()}  # b boosts relevant docs
             for q, rels in qrels.items()}
    ea, eb = evaluate(run_a, qrels), evaluate(run_b, qrels)
    c = compare(ea.per_query, eb.per_query, "ndcg@10")
    assert c.n == 25
    assert c.mean_a == pytest.approx(ea.mean["ndcg@10"])
    assert c.mean_b == pytest.approx(eb.mean["ndcg@10"])
    assert c.mean_diff > 0 and c.t_stat > 0 and c.wins > c.losses
    assert c.p_ttest < 0.01 and c.p_permutation < 0.01
