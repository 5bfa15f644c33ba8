"""`reasonrank evaluate` and `reasonrank bright`, with the acceptance test: the twelve ReasonIR
first-stage runs, scored against their qrels with the excluded ids removed, reproduce the
published per-task NDCG@10 and the 30.59 average."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from reasonrank.cli.main import main
from reasonrank.datasets import bright
from reasonrank.evaluation import EvalResult, reference

TOLERANCE = 0.01  # x100 units: |ours * 100 - published| <= 0.01
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bright_dir(shared_data: Path) -> Path:
    return shared_data / "bright"


@pytest.fixture(scope="module")
def first_stage(bright_dir: Path) -> dict[str, EvalResult]:
    """Each task's ReasonIR run scored by the library (NDCG@10, excluded ids removed)."""
    out = {}
    for name in bright.TASKS:
        task = bright.load_task(bright_dir, name)
        out[name] = task.evaluate(bright.load_run(bright_dir / bright.DEFAULT_RUNS, name))
    return out


def _paths(bright_dir: Path, task: str) -> tuple[Path, Path, Path]:
    return (bright_dir / bright.DEFAULT_RUNS / f"{task}.txt.gz",
            bright_dir / "qrels" / f"{task}.txt",
            bright_dir / "examples" / f"{task}.jsonl.gz")


# --- the acceptance test --------------------------------------------------------------------


@pytest.mark.parametrize("task", bright.TASKS)
def test_reasonir_first_stage_matches_published_ndcg10(
    task: str, first_stage: dict[str, EvalResult]
) -> None:
    result = first_stage[task]
    published = reference.FIRST_STAGE[task]
    assert result.queries == len(result.per_query) > 0
    assert result.unjudged == []
    assert abs(100 * result.mean["ndcg@10"] - published) <= TOLERANCE, (task, result.mean)


def test_reasonir_first_stage_average_is_30_59(first_stage: dict[str, EvalResult]) -> None:
    assert sum(r.queries for r in first_stage.values()) == 1384
    avg = 100 * sum(r.mean["ndcg@10"] for r in first_stage.values()) / len(first_stage)
    assert abs(avg - 30.59) <= TOLERANCE
    assert abs(avg - reference.FIRST_STAGE.avg) <= TOLERANCE


@pytest.mark.parametrize("task", ["stackoverflow", "theoremqa_questions"])
def test_evaluate_cli_json_matches_published(
    task: str, bright_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, qrels, examples = _paths(bright_dir, task)
    code = main(["evaluate", "--run", str(run), "--qrels", str(qrels), "--exclude",
                 str(examples), "--metrics", "ndcg@10", "recall@100", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    assert len(lines) == 1  # exactly one JSON object, nothing else
    data = json.loads(lines[0])
    assert set(data) >= {"mean", "per_query", "queries"}
    assert set(data["mean"]) == {"ndcg@10", "recall@100"}
    assert data["queries"] == len(data["per_query"]) == {"stackoverflow": 117,
                                                          "theoremqa_questions": 194}[task]
    assert data["unjudged"] == []
    for row in data["per_query"].values():
        assert set(row) == {"ndcg@10", "recall@100"}
        assert all(0.0 <= v <= 1.0 for v in row.values())
    assert 0.0 <= data["mean"]["recall@100"] <= 1.0
    assert abs(100 * data["mean"]["ndcg@10"] - reference.FIRST_STAGE[task]) <= TOLERANCE


def test_evaluate_cli_subprocess_stdout_is_one_json_object(bright_dir: Path) -> None:
    run, qrels, examples = _paths(bright_dir, "economics")
    proc = subprocess.run(
        [sys.executable, "-m", "reasonrank.cli.main", "evaluate", "--run", str(run), "--qrels",
         str(qrels), "--exclude", str(examples), "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # the whole of stdout parses
    assert data["queries"] == 103
    assert "ndcg@10" in data["mean"] and "map" in data["mean"]  # the default metrics
    assert abs(100 * data["mean"]["ndcg@10"] - 32.65) <= TOLERANCE


def test_evaluate_cli_exclude_removes_planted_ids(
    bright_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, qrels, examples = _paths(bright_dir, "leetcode")
    task = bright.load_task(bright_dir, "leetcode")
    planted = tmp_path / "planted.txt.gz"
    with gzip.open(run, "rt") as src, gzip.open(planted, "wt") as dst:
        for qid, ids in task.excluded.items():
            if ids:
                dst.write(f"{qid} Q0 {min(ids)} 0 999.0 planted\n")
        dst.write(src.read())
    args = ["evaluate", "--run", str(planted), "--qrels", str(qrels), "--metrics", "ndcg@10",
            "--json"]
    assert main(args) == 0
    without = json.loads(capsys.readouterr().out)["mean"]["ndcg@10"]
    assert main([*args, "--exclude", str(examples)]) == 0
    with_exclusions = json.loads(capsys.readouterr().out)["mean"]["ndcg@10"]
    assert abs(100 * with_exclusions - 31.69) <= TOLERANCE
    assert without < with_exclusions


def test_evaluate_cli_table(bright_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, qrels, examples = _paths(bright_dir, "pony")
    assert main(["evaluate", "--run", str(run), "--qrels", str(qrels), "--exclude",
                 str(examples), "--metrics", "ndcg@10", "mrr@10"]) == 0
    out = capsys.readouterr().out
    assert "112 queries scored" in out
    assert "ndcg@10" in out and "19.55" in out and "mrr@10" in out


# --- bad input ------------------------------------------------------------------------------


def test_malformed_run_exits_2_naming_file_and_line(
    tmp_path: Path, bright_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.run"
    bad.write_text("0 Q0 d1 1 0.9 tag\n0 Q0 d2 2 0.8 tag\n0 Q0 d3 three 0.7 tag\n")
    code = main(["evaluate", "--run", str(bad), "--qrels", str(bright_dir / "qrels/pony.txt")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and f"{bad}:3" in err and "rank 'three'" in err


def test_malformed_run_gz_and_qrels_exit_2(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run.txt.gz"
    with gzip.open(run, "wt") as fh:
        fh.write("q1 Q0 d1 1 1.0 t\nq1 Q0 d2\n")
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q1 0 d1 1\n")
    assert main(["evaluate", "--run", str(run), "--qrels", str(qrels)]) == 2
    assert f"{run}:2: expected 6 fields" in capsys.readouterr().err
    good = tmp_path / "good.txt"
    good.write_text("q1 Q0 d1 1 1.0 t\n")
    qrels.write_text("q1 0 d1 1\nq1 0 d2 yes\n")
    assert main(["evaluate", "--run", str(good), "--qrels", str(qrels)]) == 2
    assert f"{qrels}:2: relevance 'yes'" in capsys.readouterr().err


def test_bad_metric_missing_file_and_no_judged_query_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run.txt"
    run.write_text("q1 Q0 d1 1 1.0 t\n")
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q9 0 d1 1\n")
    assert main(["evaluate", "--run", str(run), "--qrels", str(qrels),
                 "--metrics", "ndcg"]) == 2
    assert "needs a cutoff" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(run), "--qrels", str(qrels), "--json"]) == 2
    captured = capsys.readouterr()
    assert "no query of" in captured.err and captured.out == ""
    assert main(["evaluate", "--run", str(run), "--qrels", str(qrels), "--compare",
                 str(tmp_path / "nope.txt")]) == 2
    assert f"--compare {tmp_path / 'nope.txt'}: no such file" in capsys.readouterr().err


def test_unjudged_queries_reported_not_averaged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run.json"  # score JSON, doc ids with spaces
    run.write_text(json.dumps({
        "q1": {"doc one": 2.0, "doc two": 1.0},
        "q2": {"doc one": 1.0},
        "x1": {"doc one": 1.0}, "x2": {"doc one": 1.0},
    }))
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q1 0 doc two 1\nq2 0 doc one 1\n")
    assert main(["evaluate", "--run", str(run), "--qrels", str(qrels), "--metrics", "mrr@10",
                 "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["queries"] == 2 and set(data["per_query"]) == {"q1", "q2"}
    assert data["unjudged"] == ["x1", "x2"]
    assert data["mean"]["mrr@10"] == pytest.approx(0.75)
    assert "2 query(ies)" in captured.err and "x1, x2" in captured.err


def test_evaluate_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("".join(f"q{i} 0 good 1\n" for i in range(6)))
    a = tmp_path / "a.txt"
    b = tmp_path / "b.txt"
    a.write_text("".join(f"q{i} Q0 bad 1 2.0 a\nq{i} Q0 good 2 1.0 a\n" for i in range(6)))
    b.write_text("".join(f"q{i} Q0 good 1 2.0 b\nq{i} Q0 bad 2 1.0 b\n" for i in range(5))
                 + "q5 Q0 bad 1 2.0 b\nq5 Q0 good 2 1.0 b\n")
    assert main(["evaluate", "--run", str(a), "--qrels", str(qrels), "--metrics", "ndcg@10",
                 "mrr@10", "--compare", str(b), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    tests = data["compare"]["tests"]
    assert set(tests) == {"ndcg@10", "mrr@10"}
    mrr = tests["mrr@10"]
    assert (mrr["wins"], mrr["ties"], mrr["losses"]) == (5, 1, 0)
    assert mrr["mean_diff"] == pytest.approx(5 * 0.5 / 6)
    assert mrr["n"] == 6 and 0 < mrr["p_permutation"] <= 1 and 0 < mrr["p_ttest"] < 0.05
    assert data["compare"]["mean"]["mrr@10"] == pytest.approx(11 / 12)
    assert main(["evaluate", "--run", str(a), "--qrels", str(qrels), "--metrics", "mrr@10",
                 "--compare", str(b)]) == 0
    out = capsys.readouterr().out
    assert "5/1/0" in out and "p (permutation)" in out


# --- reasonrank bright ----------------------------------------------------------------------


def test_bright_cli_prints_the_paper_table_and_writes_json_and_pngs(
    bright_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(["bright", "--data", str(bright_dir), "--runs",
                 str(bright_dir / bright.DEFAULT_RUNS), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    table = captured.out
    for row in reference.BRIGHT_NDCG10:  # the published rows, as published
        assert row.system in table and f"{row.avg:.2f}" in table
    assert "35.74" in table and "38.03" in table and "ours: first stage" in table
    ours = next(line for line in table.splitlines() if "ours: first stage" in line)
    assert "30.59" in ours and "43.49" in ours and "7.37" in ours
    for short in ("econ", "earth", "robot", "bio", "psych", "stack", "sus", "leet", "pony",
                  "aops", "theoQ", "theoT", "avg"):
        assert short in table

    report = json.loads((out / "bright.json").read_text())
    assert list(report["tasks"]) == list(bright.TASKS)
    for name, entry in report["tasks"].items():
        result = entry["first_stage"]
        assert abs(100 * result["mean"]["ndcg@10"] - reference.FIRST_STAGE[name]) <= TOLERANCE
        assert len(result["per_query"]) == result["queries"]
        assert "reranked" not in entry
    assert sum(e["first_stage"]["queries"] for e in report["tasks"].values()) == 1384
    assert abs(100 * report["average"]["first_stage"]["ndcg@10"] - 30.59) <= TOLERANCE
    assert [r["system"] for r in report["reference"]][2] == "ReasonRank-7B"

    pngs = sorted(out.glob("*.png"))
    assert [p.stem for p in pngs] == sorted(bright.TASKS)
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_MAGIC


def test_bright_cli_subset_and_no_plots(bright_dir: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    assert main(["bright", "--data", str(bright_dir), "--tasks", "pony", "aops", "--out",
                 str(out), "--no-plots", "--metrics", "recall@100"]) == 0
    captured = capsys.readouterr()
    assert "avg*" in captured.out
    report = json.loads((out / "bright.json").read_text())
    assert list(report["tasks"]) == ["pony", "aops"]  # table order
    assert set(report["tasks"]["aops"]["first_stage"]["mean"]) == {"ndcg@10", "recall@100"}
    assert not list(out.glob("*.png"))


def test_bright_cli_rerank_needs_corpora(bright_dir: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bright", "--data", str(bright_dir), "--out", str(tmp_path / "o"), "--rerank",
            "--tasks", "pony", "leetcode"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--corpus-dir" in err and "not in the local data" in err
    (tmp_path / "corpora").mkdir()
    (tmp_path / "corpora" / "pony.jsonl").write_text('{"id": "a", "text": "x"}\n')
    assert main([*args, "--corpus-dir", str(tmp_path / "corpora")]) == 2
    assert "no corpus for 1 task(s)" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main(["bright", "--data", str(bright_dir), "--runs", str(tmp_path), "--out",
                 str(tmp_path / "o")]) == 2
    assert "no run for BRIGHT economics" in capsys.readouterr().err


def test_bright_cli_reranks_with_the_fake_backend(
    bright_dir: Path, tmp_path: Path, qwen_tokenizer_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    corpora = tmp_path / "corpora"
    run = bright.load_run(bright_dir / bright.DEFAULT_RUNS, "pony")
    docs = sorted({d for ranked in run.values() for d, _ in ranked})
    bright.save_corpus({d: f"pony documentation page {d}" for d in docs},
                       corpora / "pony.jsonl.gz")
    out = tmp_path / "out"
    code = main(["bright", "--data", str(bright_dir), "--tasks", "pony", "--out", str(out),
                 "--rerank", "--corpus-dir", str(corpora), "--backend", "fake", "--model",
                 str(qwen_tokenizer_dir), "--top-k", "20", "--no-plots", "-q"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out == ""  # --quiet
    report = json.loads((out / "bright.json").read_text())
    entry = report["tasks"]["pony"]
    assert entry["reranked"]["queries"] == 112
    assert entry["rerank"]["queries"] == 112 and entry["rerank"]["windows"] == 112
    assert report["config"]["backend"] == "fake" and report["config"]["top_k"] == 20
    assert "reranked" in report["average"]
    lines = (out / "runs" / "pony.txt").read_text().splitlines()
    assert len(lines) == 112 * 20
    assert len((out / "traces" / "pony.jsonl").read_text().splitlines()) == 112
