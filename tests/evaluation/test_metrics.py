"""Metrics with trec_eval semantics: hand-computed values, ties, exclusion, real runs."""

from __future__ import annotations

import gzip
import json
import math
import random
import time
from pathlib import Path

import pytest

from reasonrank.errors import ConfigError
from reasonrank.evaluation import (
    DEFAULT_METRICS,
    EvalResult,
    evaluate,
    exclude_docs,
    parse_metric,
    run_from_results,
    trec_order,
)
from reasonrank.io import read_qrels, read_requests, read_trec_run
from reasonrank.types import Query, RankedDoc, RankedResult


def log2(x: float) -> float:
    return math.log2(x)


# --- hand-computed values -------------------------------------------------------------------

QRELS = {
    "q1": {"d1": 3, "d2": 2, "d3": 0, "d4": 1, "d5": -1},
    "q2": {"a": 1, "b": 1, "c": 1},
}
RUN = {
    # trec order: d3 (0), d1 (3), d5 (-1: non-relevant), d4 (1), d2 (2)
    "q1": [("d3", 0.9), ("d1", 0.8), ("d5", 0.7), ("d4", 0.6), ("d2", 0.5)],
    # x (not judged), a (1); b and c are never retrieved
    "q2": [("x", 3.0), ("a", 2.0)],
}


def test_graded_ndcg_by_hand() -> None:
    res = evaluate(RUN, QRELS, ["ndcg@1", "ndcg@2", "ndcg@5", "ndcg@10"])
    q1 = res.per_query["q1"]
    idcg = 3 + 2 / log2(3) + 1 / log2(4)
    assert q1["ndcg@1"] == 0.0
    assert q1["ndcg@2"] == pytest.approx((3 / log2(3)) / (3 + 2 / log2(3)), abs=1e-12)
    dcg5 = 3 / log2(3) + 1 / log2(5) + 2 / log2(6)  # d5's -1 counts as 0, not as a penalty
    assert q1["ndcg@5"] == pytest.approx(dcg5 / idcg, abs=1e-12)
    assert q1["ndcg@10"] == pytest.approx(dcg5 / idcg, abs=1e-12)
    q2 = res.per_query["q2"]
    # the ideal ranking uses every relevant doc of the qrels, retrieved or not
    assert q2["ndcg@10"] == pytest.approx((1 / log2(3)) / (1 + 1 / log2(3) + 1 / log2(4)))
    assert res.mean["ndcg@5"] == pytest.approx((dcg5 / idcg + q2["ndcg@5"]) / 2, abs=1e-12)


def test_recall_precision_mrr_map_by_hand() -> None:
    metrics = ["recall@2", "recall@5", "p@1", "p@2", "p@5", "mrr@1", "mrr@10", "map", "map@2"]
    res = evaluate(RUN, QRELS, metrics)
    assert list(res.mean) == metrics
    q1, q2 = res.per_query["q1"], res.per_query["q2"]
    expected_q1 = {
        "recall@2": 1 / 3, "recall@5": 1.0, "p@1": 0.0, "p@2": 0.5, "p@5": 3 / 5,
        "mrr@1": 0.0, "mrr@10": 0.5,
        "map": (1 / 2 + 2 / 4 + 3 / 5) / 3, "map@2": (1 / 2) / 3,
    }
    expected_q2 = {
        "recall@2": 1 / 3, "recall@5": 1 / 3, "p@1": 0.0, "p@2": 0.5,
        "p@5": 1 / 5,  # P@k divides by k even when fewer docs are retrieved
        "mrr@1": 0.0, "mrr@10": 0.5, "map": (1 / 2) / 3, "map@2": (1 / 2) / 3,
    }
    assert q1 == pytest.approx(expected_q1, abs=1e-12)
    assert q2 == pytest.approx(expected_q2, abs=1e-12)
    assert res.mean == pytest.approx(
        {m: (expected_q1[m] + expected_q2[m]) / 2 for m in metrics}, abs=1e-12
    )


def test_mrr_cutoff_counts_only_the_top_k() -> None:
    qrels = {"q": {"r": 1}}
    run = {"q": {"a": 5.0, "b": 4.0, "c": 3.0, "r": 2.0}}
    res = evaluate(run, qrels, ["mrr@3", "mrr@4", "mrr"])
    assert res.per_query["q"] == {"mrr@3": 0.0, "mrr@4": 0.25, "mrr": 0.25}


def test_ties_are_broken_by_doc_id_descending() -> None:
    qrels = {"q": {"a": 1}}
    # a and b tie: trec_eval puts b (the larger id) first, whatever the input order
    res = evaluate({"q": [("a", 1.0), ("b", 1.0), ("c", 0.5)]}, qrels,
                   ["ndcg@1", "ndcg@2", "p@1", "mrr@1", "mrr@2"])
    assert res.per_query["q"] == pytest.approx(
        {"ndcg@1": 0.0, "ndcg@2": 1 / log2(3), "p@1": 0.0, "mrr@1": 0.0, "mrr@2": 0.5}
    )
    res = evaluate({"q": [("a", 1.0), ("b", 1.0)]}, {"q": {"b": 1}}, ["ndcg@1", "mrr@1"])
    assert res.per_query["q"] == {"ndcg@1": 1.0, "mrr@1": 1.0}
    # ids compare as strings: "9" > "10"
    res = evaluate({"q": {"10": 2.0, "9": 2.0}}, {"q": {"10": 1}}, ["ndcg@1", "mrr@1"])
    assert res.per_query["q"] == {"ndcg@1": 0.0, "mrr@1": 0.0}
    assert trec_order({"a": 1.0, "b": 1.0, "c": 2.0, "10": 1.0, "9": 1.0}) == [
        "c", "b", "a", "9", "10"
    ]


def test_scores_are_compared_as_32_bit_floats_consistently() -> None:
    # 1 + 1e-9 == 1 in float32: pytrec_eval sees a tie, broken by doc id (b first);
    # mrr@k truncates the run in that same order.
    run = {"q": {"a": 1.0 + 1e-9, "b": 1.0}}
    res = evaluate(run, {"q": {"b": 1}}, ["ndcg@1", "mrr@1", "p@1"])
    assert res.per_query["q"] == {"ndcg@1": 1.0, "mrr@1": 1.0, "p@1": 1.0}


def test_exclusion_removes_docs_and_ignores_the_placeholder() -> None:
    qrels = {"q": {"a": 1}, "r": {"z": 1}}
    run = {"q": [("ex", 9.0), ("N/A", 8.0), ("a", 1.0)], "r": [("z", 1.0)]}
    plain = evaluate(run, qrels, ["ndcg@1", "mrr@10"])
    assert plain.per_query["q"] == {"ndcg@1": 0.0, "mrr@10": pytest.approx(1 / 3)}
    exclude = {"q": ["ex", "N/A"], "r": ["N/A"], "absent": ["y"]}
    res = evaluate(run, qrels, ["ndcg@1", "mrr@10"], exclude=exclude)
    # "ex" is gone; a doc literally named "N/A" stays (the placeholder is never an id)
    assert res.per_query["q"] == {"ndcg@1": 0.0, "mrr@10": 0.5}
    assert res.per_query["r"] == {"ndcg@1": 1.0, "mrr@10": 1.0}
    assert exclude_docs(run, exclude) == {"q": {"N/A": 8.0, "a": 1.0}, "r": {"z": 1.0}}
    assert run["q"][0] == ("ex", 9.0)  # the input is not modified
    res = evaluate({"q": [("ex", 9.0), ("a", 1.0)]}, qrels, ["ndcg@1"], exclude={"q": {"ex"}})
    assert res.per_query["q"]["ndcg@1"] == 1.0


def test_unjudged_and_unretrieved_queries() -> None:
    qrels = {"q": {"a": 1}, "only_in_qrels": {"x": 1}, "no_rel": {"a": 0}, "empty": {}}
    run = {"new": {"a": 1.0}, "q": {"a": 1.0}, "no_rel": {"a": 1.0}, "empty": {"a": 1.0},
           "nodocs": {}}
    qrels["nodocs"] = {"a": 2}
    res = evaluate(run, qrels, ["ndcg@10", "mrr@10", "recall@10"])
    assert res.unjudged == ["new", "empty"]  # run order; an empty judgement set is none
    assert list(res.per_query) == ["q", "no_rel", "nodocs"]
    assert res.queries == 3
    # a query whose qrels have no relevant doc scores 0 and is averaged (trec_eval)
    assert res.per_query["no_rel"] == {"ndcg@10": 0.0, "mrr@10": 0.0, "recall@10": 0.0}
    # a judged query with an empty ranking scores 0 on every metric
    assert res.per_query["nodocs"] == {"ndcg@10": 0.0, "mrr@10": 0.0, "recall@10": 0.0}
    assert res.mean == pytest.approx({"ndcg@10": 1 / 3, "mrr@10": 1 / 3, "recall@10": 1 / 3})


def test_no_evaluated_query() -> None:
    res = evaluate({"x": {"a": 1.0}}, {"q": {"a": 1}}, ["ndcg@10", "map"])
    assert res == EvalResult(mean={"ndcg@10": 0.0, "map": 0.0}, per_query={}, queries=0,
                             unjudged=["x"])
    assert evaluate({}, {}, "ndcg@10").queries == 0


def test_to_dict_is_json_ready() -> None:
    res = evaluate(RUN, QRELS)
    assert list(res.mean) == list(DEFAULT_METRICS)
    data = json.loads(json.dumps(res.to_dict()))
    assert set(data) == {"mean", "per_query", "queries", "unjudged"}
    assert data["queries"] == 2
    assert data["per_query"]["q1"]["mrr@10"] == 0.5
    assert data["mean"] == pytest.approx(res.mean)


def test_metric_names() -> None:
    assert parse_metric("NDCG@10").name == "ndcg@10"
    assert parse_metric(" P@5 ").name == "p@5"
    assert parse_metric("precision@5").name == "p@5"
    assert parse_metric("map").name == "map"
    assert parse_metric("map@100").name == "map@100"
    assert parse_metric("mrr@10").k == 10
    res = evaluate(RUN, QRELS, ["NDCG@2", "ndcg@2", "P@2"])  # canonical keys, deduplicated
    assert list(res.mean) == ["ndcg@2", "p@2"]
    assert evaluate(RUN, QRELS, "ndcg@2").mean == {"ndcg@2": res.mean["ndcg@2"]}
    for bad in ("bleu", "ndcg@x", "ndcg@0", "ndcg@-1", "recall@", "", "mrr@1.5"):
        with pytest.raises(ConfigError, match=r"ndcg@k.*recall@k.*p@k.*mrr@k.*map"):
            parse_metric(bad)
    with pytest.raises(ConfigError, match="needs a cutoff"):
        parse_metric("ndcg")
    with pytest.raises(ConfigError, match=r"unknown metric 'bleu@4'; valid metrics: ndcg@k"):
        evaluate(RUN, QRELS, ["ndcg@10", "bleu@4"])
    with pytest.raises(ConfigError, match="no metric"):
        evaluate(RUN, QRELS, [])


def test_run_from_results() -> None:
    def result(qid: str, docs: list[tuple[str, float]]) -> RankedResult:
        return RankedResult(
            Query("text", qid),
            [RankedDoc(d, i + 1, s, "t", first_stage_rank=i + 1) for i, (d, s) in enumerate(docs)],
        )

    results = [result("q1", [("d1", 3.0), ("d2", 2.0), ("d4", 1.0)]), result("q2", [])]
    run = run_from_results(results)
    assert run == {"q1": {"d1": 3.0, "d2": 2.0, "d4": 1.0}, "q2": {}}
    res = evaluate(run, QRELS, ["ndcg@3", "recall@3"])
    assert res.per_query["q1"] == pytest.approx({"ndcg@3": 1.0, "recall@3": 1.0})
    assert res.per_query["q2"] == {"ndcg@3": 0.0, "recall@3": 0.0}


# --- against an independent implementation --------------------------------------------------


def _ref_order(scores: dict[str, float]) -> list[str]:
    # trec_eval: score descending, then doc id descending (all scores here are exact in float32)
    return sorted(scores, key=lambda d: (scores[d], d), reverse=True)


def _ref_metrics(scores: dict[str, float], rels: dict[str, int], k: int) -> dict[str, float]:
    ranked = _ref_order(scores)[:k]
    gains = [max(rels.get(d, 0), 0) for d in ranked]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    n_rel = sum(1 for r in rels.values() if r > 0)
    hits = [i for i, g in enumerate(gains) if g > 0]
    return {
        f"ndcg@{k}": dcg / idcg if idcg else 0.0,
        f"recall@{k}": len(hits) / n_rel if n_rel else 0.0,
        f"p@{k}": len(hits) / k,
        f"mrr@{k}": 1 / (hits[0] + 1) if hits else 0.0,
    }


def test_matches_an_independent_implementation_on_random_runs() -> None:
    rng = random.Random(20240601)
    run: dict[str, dict[str, float]] = {}
    qrels: dict[str, dict[str, int]] = {}
    for q in range(300):
        pool = [f"{rng.choice('ab')}{rng.randint(0, 40)}" for _ in range(60)]
        docs = list(dict.fromkeys(pool))[: rng.randint(0, 40)]
        run[f"q{q}"] = {d: float(rng.randint(0, 8)) / 4 for d in docs}  # many ties
        judged = rng.sample(list(dict.fromkeys(pool)), rng.randint(1, 15))
        qrels[f"q{q}"] = {d: rng.choice([-1, 0, 0, 1, 1, 2, 3]) for d in judged}
    metrics = [f"{m}@{k}" for k in (1, 3, 10, 25) for m in ("ndcg", "recall", "p", "mrr")]
    res = evaluate(run, qrels, metrics)
    assert res.queries == 300
    for qid, scores in run.items():
        expected: dict[str, float] = {}
        for k in (1, 3, 10, 25):
            expected.update(_ref_metrics(scores, qrels[qid], k))
        assert res.per_query[qid] == pytest.approx(expected, abs=1e-9), qid
    # trec_order agrees with the reference order too
    for scores in list(run.values())[:50]:
        assert trec_order(scores) == _ref_order(scores)


def test_fast_on_a_bright_sized_run() -> None:
    rng = random.Random(0)
    run = {f"q{q}": [(f"d{q}_{i}", rng.random()) for i in range(100)] for q in range(1384)}
    qrels = {f"q{q}": {f"d{q}_{i}": rng.randint(0, 2) for i in range(0, 200, 7)}
             for q in range(1384)}
    start = time.perf_counter()
    res = evaluate(run, qrels)
    elapsed = time.perf_counter() - start
    assert res.queries == 1384
    assert elapsed < 3.0, elapsed  # about 0.2 s on a laptop-class CPU


# --- real runs ------------------------------------------------------------------------------


def test_dl19_bm25_ndcg10(shared_data: Path) -> None:
    requests = read_requests(shared_data / "trec_dl/bm25_top100_dl19.json.gz")
    run = {r.query.qid: [(c.docid, c.score) for c in r.candidates] for r in requests}
    qrels = read_qrels(shared_data / "trec_dl/qrels.dl19-passage.txt")
    res = evaluate(run, qrels)
    assert res.queries == 43
    assert res.unjudged == []
    assert res.mean["ndcg@10"] == pytest.approx(0.5058, abs=0.00005)


def _excluded(path: Path) -> dict[str, list[str]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {str(r["id"]): r["excluded_ids"] for r in rows}


def test_bright_biology_first_stage_ndcg10(shared_data: Path) -> None:
    bright = shared_data / "bright"
    run = read_trec_run(bright / "runs_reasonir_gpt4cot_top100/biology.txt.gz")
    qrels = read_qrels(bright / "qrels/biology.txt")
    excluded = _excluded(bright / "examples/biology.jsonl.gz")
    assert any(ids == ["N/A"] for ids in excluded.values())
    res = evaluate(run, qrels, ["ndcg@10"], exclude=excluded)
    assert res.queries == 103
    assert res.mean["ndcg@10"] == pytest.approx(0.4349, abs=0.0001)


def test_bright_excluded_ids_are_removed(shared_data: Path) -> None:
    bright = shared_data / "bright"
    run = read_trec_run(bright / "runs_reasonir_gpt4cot_top100/leetcode.txt.gz")
    qrels = read_qrels(bright / "qrels/leetcode.txt")
    excluded = _excluded(bright / "examples/leetcode.jsonl.gz")
    res = evaluate(run, qrels, ["ndcg@10", "mrr@10"], exclude=excluded)
    assert res.mean["ndcg@10"] == pytest.approx(0.3169, abs=0.0001)
    # excluded docs pushed to the top of every query are removed again before scoring
    polluted = {
        q: [*((d, 1e6 - i) for i, d in enumerate(excluded[q]) if d != "N/A"), *docs]
        for q, docs in run.items()
    }
    assert sum(len(v) for v in polluted.values()) > sum(len(v) for v in run.values())
    again = evaluate(polluted, qrels, ["ndcg@10", "mrr@10"], exclude=excluded)
    assert again.per_query == res.per_query
    assert evaluate(polluted, qrels, ["ndcg@10"]).mean["ndcg@10"] < res.mean["ndcg@10"]
