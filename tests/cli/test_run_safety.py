"""Run files never lose or mix data: one test per case of issue 11 ("Data loss and silent
mixing"), each through the real command line.

1. an output that is also an input (rerank, retrieve, fuse, data filter; symlinks too);
2. a rerun without --resume that fails leaves the previous finished run untouched;
3. a second process on the same output exits 2 at once, naming the holder's pid;
4. --resume with other ranking settings exits 2 naming each difference;
5. --resume whose done queries are not all in the input exits 2 before any generation;
6. ids the writer cannot write are refused by the readers, with file and line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reasonrank.cli.main import main
from reasonrank.io import read_trec_run
from reasonrank.io.writers import settings_path, work_path


@pytest.fixture(autouse=True)
def _tokenizer_once(monkeypatch, qwen_tokenizer):
    """The CLI loads its tokenizer on every run; these tests load the same one many times."""
    from reasonrank.backends import base

    real = base.load_tokenizer
    monkeypatch.setattr(base, "load_tokenizer", lambda name, *a, **k: qwen_tokenizer
                        if Path(name).is_dir() else real(name, *a, **k))


QUERIES = {"q1": "why is the sky blue", "q2": "how do plants grow", "q3": "what is rust"}


def write_inputs(tmp_path: Path) -> dict[str, Path]:
    """A tiny first-stage run (tied scores), its corpus and queries."""
    run, corpus, queries = tmp_path / "first.trec", tmp_path / "corpus.jsonl", tmp_path / "q.tsv"
    run_lines, docs = [], []
    for qid in QUERIES:
        for j in range(6):
            run_lines.append(f"{qid} Q0 {qid}d{j} {j + 1} {1.0 if j < 3 else 0.5} bm25\n")
            docs.append(json.dumps({"_id": f"{qid}d{j}", "text": f"passage {j} about {qid}"}))
    run.write_text("".join(run_lines))
    corpus.write_text("\n".join(docs) + "\n")
    queries.write_text("".join(f"{q}\t{t}\n" for q, t in QUERIES.items()))
    return {"run": run, "corpus": corpus, "queries": queries}


def rerank_args(tokenizer_dir: Path, inputs: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["rerank", "--backend", "fake", "--model", str(tokenizer_dir),
            "--run", str(inputs["run"]), "--corpus", str(inputs["corpus"]),
            "--queries", str(inputs["queries"]), "--output", str(out),
            "--traces", f"{out}.jsonl", "--window-size", "4", "--step", "2", "--quiet", *extra]


def snapshot(*paths: Path) -> dict[str, bytes | None]:
    return {str(p): p.read_bytes() if p.exists() else None for p in paths}


# --- 1. an output that is also an input --------------------------------------------------------


@pytest.mark.parametrize("target", ["run", "corpus", "queries", "symlink to run"])
def test_rerank_refuses_an_output_that_is_an_input(qwen_tokenizer_dir, tmp_path, capsys,
                                                   target):
    inputs = write_inputs(tmp_path)
    before = snapshot(*inputs.values())
    if target == "symlink to run":
        out = tmp_path / "link.trec"
        out.symlink_to(inputs["run"])
        args = rerank_args(qwen_tokenizer_dir, inputs, out)
    elif target == "run":
        args = rerank_args(qwen_tokenizer_dir, inputs, inputs["run"])
    else:  # --traces onto the corpus or the queries
        args = [*rerank_args(qwen_tokenizer_dir, inputs, tmp_path / "out.trec"),
                "--traces", str(inputs[target])]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is also the" in err and "input" in err
    assert snapshot(*inputs.values()) == before


def test_fuse_retrieve_and_data_filter_refuse_an_output_that_is_an_input(tmp_path, capsys):
    inputs = write_inputs(tmp_path)
    other = tmp_path / "other.trec"
    other.write_text(inputs["run"].read_text().replace("bm25", "dense"))
    alias = tmp_path / "alias.trec"
    alias.symlink_to(other)
    before = snapshot(inputs["run"], other)
    assert main(["fuse", "--runs", str(inputs["run"]), str(other), "--output", str(alias),
                 "--quiet"]) == 2
    assert "--output" in capsys.readouterr().err
    assert snapshot(inputs["run"], other) == before

    pytest.importorskip("bm25s")
    index = tmp_path / "index"
    assert main(["index", "--corpus", str(inputs["corpus"]), "--index", str(index),
                 "--quiet"]) == 0
    queries = inputs["queries"].read_bytes()
    assert main(["retrieve", "--index", str(index), "--queries", str(inputs["queries"]),
                 "--output", str(inputs["queries"]), "--quiet"]) == 2
    assert "--queries" in capsys.readouterr().err
    assert inputs["queries"].read_bytes() == queries

    from training_fixture import write_fixture

    root = write_fixture(tmp_path / "data")
    records = root / "training_data_all.jsonl"
    kept = records.read_bytes()
    assert main(["data", "filter", str(root), "--output", str(records), "--quiet"]) == 2
    assert "SOURCE" in capsys.readouterr().err
    assert records.read_bytes() == kept


# --- 2. a failed rerun leaves the finished run untouched ---------------------------------------


def test_failed_rerun_without_resume_keeps_the_finished_run(qwen_tokenizer_dir, tmp_path,
                                                           capsys):
    inputs = write_inputs(tmp_path)
    out = tmp_path / "out.trec"
    assert main(rerank_args(qwen_tokenizer_dir, inputs, out)) == 0
    finished = snapshot(out, Path(f"{out}.jsonl"), settings_path(out))
    assert finished[str(out)] and finished[f"{out}.jsonl"]
    # the same run against a backend that is down (nothing listens on port 9)
    down = ["--backend", "openai", "--api-base", "http://127.0.0.1:9/v1",
            "--tokenizer", str(qwen_tokenizer_dir), "--max-retries", "0"]
    assert main([*rerank_args(qwen_tokenizer_dir, inputs, out), *down]) == 2
    assert capsys.readouterr().err.startswith("error:")
    assert snapshot(out, Path(f"{out}.jsonl"), settings_path(out)) == finished
    # the failed run's progress (none) waits in the .partial files for a --resume
    assert work_path(out).exists() and work_path(out).read_bytes() == b""
    assert main([*rerank_args(qwen_tokenizer_dir, inputs, out), "--resume"]) == 0
    assert out.read_bytes() == finished[str(out)]  # the fake backend is deterministic
    assert not work_path(out).exists()


# --- 3. one process per output -----------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys
    from reasonrank.io import RunFiles
    files = RunFiles(sys.argv[1], sys.argv[1] + ".jsonl")
    print("holding", flush=True)
    sys.stdin.read()
    files.close()
""")


def test_second_process_on_the_same_output_exits_at_once(qwen_tokenizer_dir, tmp_path, capsys):
    inputs = write_inputs(tmp_path)
    out = tmp_path / "out.trec"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        assert main(rerank_args(qwen_tokenizer_dir, inputs, out)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"pid {holder.pid}" in err
        assert work_path(out).read_bytes() == b""  # the holder's run got nothing from us
    finally:
        holder.communicate("", timeout=30)
    assert main(rerank_args(qwen_tokenizer_dir, inputs, out)) == 0  # released on exit
    assert len(read_trec_run(out)) == 3
    assert not Path(f"{out}.lock").exists()


# --- 4. resume with other settings ---------------------------------------------------------


CHANGES = [("--window-size", "3", "window_size"), ("--step", "1", "step"),
           ("--template", "rankgpt", "template"), ("--model", "other-model", "model"),
           ("--output-scores", "reference", "output_scores"), ("--tag", "mine", "tag")]


def test_resume_with_other_settings_names_each_difference(qwen_tokenizer_dir, tmp_path, capsys):
    inputs = write_inputs(tmp_path)
    out = tmp_path / "out.trec"
    assert main(rerank_args(qwen_tokenizer_dir, inputs, out)) == 0
    finished = snapshot(out, Path(f"{out}.jsonl"), settings_path(out))
    for flag, value, name in CHANGES:
        extra = [flag, value, *(["--tokenizer", str(qwen_tokenizer_dir)]
                                if name == "model" else [])]
        assert main([*rerank_args(qwen_tokenizer_dir, inputs, out), "--resume", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{name} (" in err, (flag, err)
        assert snapshot(out, Path(f"{out}.jsonl"), settings_path(out)) == finished
    two = ["--window-size", "3", "--step", "1"]
    assert main([*rerank_args(qwen_tokenizer_dir, inputs, out), "--resume", *two]) == 2
    err = capsys.readouterr().err
    assert "window_size (4 -> 3)" in err and "step (2 -> 1)" in err


def test_interrupted_run_resumes_only_with_its_settings(qwen_tokenizer_dir, tmp_path, capsys):
    inputs = write_inputs(tmp_path)
    out = tmp_path / "out.trec"
    assert main(rerank_args(qwen_tokenizer_dir, inputs, out)) == 0
    clean = snapshot(out)
    # an interrupted second run, made with step 1: its progress is in the .partial files
    traces = Path(f"{out}.jsonl")
    assert main([*rerank_args(qwen_tokenizer_dir, inputs, out), "--step", "1"]) == 0
    lines = out.read_text().splitlines(keepends=True)
    work_path(out).write_text("".join(lines[:6]))
    work_path(traces).write_text(traces.read_text().splitlines(keepends=True)[0])
    work_path(settings_path(out)).write_bytes(settings_path(out).read_bytes())
    out.write_bytes(clean[str(out)] or b"")
    assert main([*rerank_args(qwen_tokenizer_dir, inputs, out), "--resume"]) == 2
    assert "step (1 -> 2)" in capsys.readouterr().err
    assert main([*rerank_args(qwen_tokenizer_dir, inputs, out), "--resume", "--step", "1"]) == 0
    assert out.read_text().splitlines(keepends=True)[:6] == lines[:6]
    assert not work_path(out).exists()


# --- 5. resume over an input that lacks done queries -----------------------------------------


def test_resume_with_an_input_missing_done_queries_exits_at_once(qwen_tokenizer_dir, tmp_path,
                                                                 capsys):
    inputs = write_inputs(tmp_path)
    out = tmp_path / "out.trec"
    assert main(rerank_args(qwen_tokenizer_dir, inputs, out)) == 0
    finished = snapshot(out, Path(f"{out}.jsonl"))
    smaller = dict(inputs, run=tmp_path / "smaller.trec")
    smaller["run"].write_text("".join(line for line in inputs["run"].read_text().splitlines(True)
                                      if not line.startswith("q2 ")))
    assert main([*rerank_args(qwen_tokenizer_dir, smaller, out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'q2'" in err and "not in the input" in err
    assert snapshot(out, Path(f"{out}.jsonl")) == finished
    assert not work_path(out).exists()  # nothing was generated or written
    assert main([*rerank_args(qwen_tokenizer_dir, inputs, out), "--resume"]) == 0


# --- 6. ids the writer rejects are rejected when read -----------------------------------------


@pytest.mark.parametrize("qid", ["q 4", "q\u00a04"])
def test_unwritable_query_ids_are_read_errors(qwen_tokenizer_dir, tmp_path, capsys, qid):
    inputs = write_inputs(tmp_path)
    with inputs["queries"].open("a") as fh:
        fh.write(f"{qid}\tanother query\n")
    out = tmp_path / "out.trec"
    assert main(rerank_args(qwen_tokenizer_dir, inputs, out)) == 2
    err = capsys.readouterr().err
    assert f"{inputs['queries']}:4:" in err and "holds whitespace" in err
    assert not out.exists() and not work_path(out).exists()

    requests = tmp_path / "requests.jsonl"
    ok = {"query": {"text": "t", "qid": "a"}, "hits": [{"docid": "d", "content": "x"}]}
    bad = {"query": {"text": "t", "qid": qid}, "hits": [{"docid": "d", "content": "x"}]}
    requests.write_text(json.dumps(ok) + "\n" + json.dumps(bad) + "\n")
    assert main(["rerank", "--backend", "fake", "--model", str(qwen_tokenizer_dir),
                 "--requests", str(requests), "--output", str(out), "--quiet"]) == 2
    assert f"{requests}:2:" in capsys.readouterr().err
    assert not out.exists() and not work_path(out).exists()


def test_doc_ids_with_tabs_are_refused_for_trec_output(qwen_tokenizer_dir, tmp_path, capsys):
    inputs = write_inputs(tmp_path)
    with inputs["corpus"].open("a") as fh:
        fh.write(json.dumps({"_id": "tab\tbed", "text": "x"}) + "\n")
    out = tmp_path / "out.trec"
    assert main(rerank_args(qwen_tokenizer_dir, inputs, out)) == 2
    err = capsys.readouterr().err
    assert f"{inputs['corpus']}:19:" in err and "holds a tab" in err
