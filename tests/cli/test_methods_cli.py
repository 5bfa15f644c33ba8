"""`reasonrank rerank --method listwise|rank1` end to end on DL19 (BM25 top 20 of two queries)
with the tiny model: the written runs, read back and sorted by score as an evaluator does,
reproduce each method's order rebuilt from its traces; `evaluate` scores both."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from reasonrank.cli.main import main
from reasonrank.core.windows import permute_window
from reasonrank.io import read_run

N_QUERIES, DEPTH = 2, 20


@pytest.fixture(scope="module")
def dl19(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    with gzip.open(shared_data / "trec_dl" / "bm25_top100_dl19.json.gz", "rt") as f:
        data = [{"query": q["query"], "hits": q["hits"][:DEPTH]}
                for q in json.load(f)[:N_QUERIES]]
    path = tmp_path_factory.mktemp("dl19") / "requests.json"
    path.write_text(json.dumps(data))
    return path, data


def _rerank(tmp_path: Path, requests: Path, model: Path, method: str) -> tuple[Path, Path]:
    out, traces = tmp_path / f"{method}.txt", tmp_path / f"{method}.traces.jsonl"
    code = main(["rerank", "--requests", str(requests), "--model", str(model), "--backend", "hf",
                 "--device", "cpu", "--dtype", "float32", "--method", method,
                 "--max-new-tokens", "6", "--max-passage-tokens", "48", "--batch-size", "8",
                 "--output", str(out), "--traces", str(traces), "--quiet"])
    assert code == 0
    return out, traces


def _evaluated_order(run_path: Path) -> dict[str, list[str]]:
    """Each query's docids sorted by written score, highest first (ties: doc id descending,
    trec_eval's rule, which strictly decreasing scores never need)."""
    run = read_run(run_path)
    return {qid: [d for d, _ in sorted(docs, key=lambda kv: (-kv[1], kv[0]))]
            for qid, docs in run.items()}


def _traces(path: Path) -> dict[str, dict[str, Any]]:
    return {r["qid"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_both_methods_end_to_end(tmp_path: Path, dl19: tuple[Path, list[Any]],
                                 tiny_qwen_dir: Path, shared_data: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    requests, data = dl19
    first_stage = {str(q["hits"][0]["qid"]): [str(h["docid"]) for h in q["hits"]] for q in data}

    run, traces = _rerank(tmp_path, requests, tiny_qwen_dir, "rank1")
    order, trace = _evaluated_order(run), _traces(traces)
    assert set(order) == set(first_stage)
    for qid, docids in first_stage.items():
        windows = trace[qid]["windows"]
        assert [w["start"] for w in windows] == list(range(DEPTH))
        assert {w["status"] for w in windows} <= {"scored", "score_repaired", "score_fallback"}
        scores = [w["score"] for w in windows]
        assert all(0.0 <= s <= 1.0 for s in scores)
        expected = sorted(range(DEPTH), key=lambda i: (-scores[i], i))
        assert order[qid] == [docids[i] for i in expected]

    run_lw, traces_lw = _rerank(tmp_path, requests, tiny_qwen_dir, "listwise")
    order_lw, trace_lw = _evaluated_order(run_lw), _traces(traces_lw)
    for qid, docids in first_stage.items():
        items = list(docids)
        for w in trace_lw[qid]["windows"]:
            assert "score" not in w
            items = permute_window(items, w["start"], w["end"], w["order"])
        assert order_lw[qid] == items

    qrels = shared_data / "trec_dl" / "qrels.dl19-passage.txt"
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--qrels", str(qrels), "--compare",
                 str(run_lw), "--metrics", "ndcg@10", "--json", "--permutations", "100"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["queries"] == N_QUERIES and report["compare"]["queries"] == N_QUERIES
    assert 0.0 <= report["mean"]["ndcg@10"] <= 1.0
