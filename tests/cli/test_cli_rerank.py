"""`reasonrank rerank`: inputs, outputs, resume, the DL19 request file, and the demo."""

from __future__ import annotations

import json

import pytest

from helpers import FailingBackend, make_requests, without_timings
from reasonrank import Reranker
from reasonrank.backends.fake import FakeBackend
from reasonrank.cli.main import main
from reasonrank.core.windows import sliding_windows
from reasonrank.errors import BackendError
from reasonrank.io import read_trec_run
from reasonrank.io.writers import work_path
from reasonrank.runner import rerank_to_files


def _reranker(backend) -> Reranker:
    return Reranker(backend=backend, model="fake", concurrency=3, max_passage_tokens=32)


def test_resume_after_failure_matches_uninterrupted_run(qwen_tokenizer, tmp_path):
    requests = make_requests(8, 45, seed=5)
    per_query = len(sliding_windows(45))
    with _reranker(FakeBackend(qwen_tokenizer)) as rr:
        rerank_to_files(rr, requests, tmp_path / "full.trec", tmp_path / "full.jsonl")

    run, traces = tmp_path / "part.trec", tmp_path / "part.jsonl"
    failing = FailingBackend(qwen_tokenizer, fail_after=3 * per_query + 2)
    with _reranker(failing) as rr, pytest.raises(BackendError):
        rerank_to_files(rr, requests, run, traces)
    assert not run.exists() and not traces.exists()  # nothing finished: nothing replaced
    done_before = [json.loads(line)["qid"]
                   for line in work_path(traces).read_text().splitlines()]
    assert 0 < len(done_before) < len(requests)

    backend = FakeBackend(qwen_tokenizer)
    with _reranker(backend) as rr:
        summary = rerank_to_files(rr, requests, run, traces, resume=True)
    assert summary.skipped == len(done_before)
    assert summary.queries == len(requests) - len(done_before)
    assert backend.calls == summary.queries * per_query  # done queries were not redone
    assert run.read_bytes() == (tmp_path / "full.trec").read_bytes()
    # traces hold wall-clock latencies; everything else is identical
    assert without_timings(traces.read_bytes()) == without_timings(
        (tmp_path / "full.jsonl").read_bytes())
    qids = [json.loads(line)["qid"] for line in traces.read_text().splitlines()]
    assert qids == [r.query.qid for r in requests]  # each query once, in input order


def _write_inputs(tmp_path, requests):
    run = tmp_path / "first.trec"
    corpus = tmp_path / "corpus.jsonl"
    queries = tmp_path / "queries.tsv"
    with run.open("w") as r, corpus.open("w") as c, queries.open("w") as q:
        for req in requests:
            q.write(f"{req.query.qid}\t{req.query.text}\n")
            for rank, cand in enumerate(req.candidates, 1):
                r.write(f"{req.query.qid} Q0 {cand.docid} {rank} {cand.score} bm25\n")
                c.write(json.dumps({"_id": cand.docid, "title": "", "text": cand.text}) + "\n")
    return run, corpus, queries


def test_cli_run_corpus_queries_and_resume(qwen_tokenizer_dir, tmp_path, capsys):
    requests = make_requests(5, 30, seed=9)
    run, corpus, queries = _write_inputs(tmp_path, requests)
    out, traces = tmp_path / "out.trec", tmp_path / "out.jsonl"
    args = ["rerank", "--backend", "fake", "--model", str(qwen_tokenizer_dir), "--run", str(run),
            "--corpus", str(corpus), "--queries", str(queries), "--output", str(out),
            "--traces", str(traces), "--window-size", "10", "--step", "5", "--top-k", "25"]
    assert main(args) == 0
    summary = capsys.readouterr().err
    assert "queries reranked" in summary and "windows" in summary and "ok=" in summary
    full_run, full_traces = out.read_bytes(), traces.read_bytes()
    ranked = read_trec_run(out)
    assert list(ranked) == [r.query.qid for r in requests]
    assert all(len(docs) == 30 for docs in ranked.values())
    record = json.loads(full_traces.splitlines()[0])
    assert [(w["start"], w["end"]) for w in record["windows"]] == sliding_windows(30, 10, 5, 0, 25)
    assert {"prompt_tokens", "output_tokens", "status", "output"} <= set(record["windows"][0])

    # a kill after two queries, mid-way through writing the third
    lines = full_traces.splitlines(keepends=True)
    traces.write_bytes(b"".join(lines[:2]) + lines[2][:15])
    run_lines = full_run.splitlines(keepends=True)
    out.write_bytes(b"".join(run_lines[:75]))
    assert main([*args, "--resume", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert out.read_bytes() == full_run
    assert without_timings(traces.read_bytes()) == without_timings(full_traces)


def test_cli_reports_malformed_input_with_file_and_line(qwen_tokenizer_dir, tmp_path, capsys):
    bad = tmp_path / "bad.trec"
    bad.write_text("1 Q0 d1 1 3.5 x\n1 Q0 d2 two\n")
    code = main(["rerank", "--backend", "fake", "--model", str(qwen_tokenizer_dir),
                 "--run", str(bad), "--corpus", str(bad), "--queries", str(bad),
                 "--output", str(tmp_path / "o.trec"), "--quiet"])
    assert code == 2
    assert f"{bad}:2" in capsys.readouterr().err


@pytest.mark.slow
def test_dl19_request_file_with_tiny_model(tiny_qwen_dir, shared_data, tmp_path):
    out, traces = tmp_path / "dl19.trec", tmp_path / "dl19.jsonl"
    code = main(["rerank", "--requests", str(shared_data / "trec_dl/bm25_top100_dl19.json.gz"),
                 "--model", str(tiny_qwen_dir), "--backend", "hf", "--preset", "trec",
                 "--max-new-tokens", "2", "--batch-size", "16", "--concurrency", "16",
                 "--output", str(out), "--traces", str(traces), "--quiet"])
    assert code == 0
    run = read_trec_run(out)
    assert len(run) == 43 and all(len(docs) == 100 for docs in run.values())
    records = [json.loads(line) for line in traces.read_text().splitlines()]
    assert sorted(r["qid"] for r in records) == sorted(run)
    assert all(len(r["windows"]) == 9 for r in records)
    for line in out.read_text().splitlines():
        _qid, q0, _docid, rank, score, tag = line.split(" ")
        assert q0 == "Q0" and tag == "reasonrank" and 1 <= int(rank) <= 100
        float(score)


@pytest.mark.slow
def test_demo_runs_offline_with_smollm2(tmp_path, capsys):
    out = tmp_path / "demo.trec"
    assert main(["demo", "--max-new-tokens", "24", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "NDCG@10" in printed and "parse statuses" in printed and "mean" in printed
    run = read_trec_run(out)
    assert len(run) == 5 and all(len(docs) == 20 for docs in run.values())
