"""Run I/O: readers, writers and resumable outputs."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import os
import random
import re
from pathlib import Path

import pytest

from reasonrank.errors import ConfigError, InputFormatError, ReasonRankError
from reasonrank.io import (
    Doc,
    MissingIdsError,
    OutputFormatError,
    RunFiles,
    build_requests,
    load_requests,
    read_corpus,
    read_qrels,
    read_queries,
    read_requests,
    read_run,
    read_score_json,
    read_trec_run,
    trec_eval_order,
    write_traces,
    write_trec,
)
from reasonrank.io.writers import work_path
from reasonrank.types import (
    ParseStatus,
    Query,
    RankedDoc,
    RankedResult,
    WindowTrace,
)

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("REASONRANK_SHARED_DATA", REPO / ".." / "shared" / "data"))


def shared(relative: str) -> Path:
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


def write(path: Path, text: str) -> Path:
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def result(qid: str, docids: list[str], scores: list[float] | None = None) -> RankedResult:
    scores = scores if scores is not None else [float(len(docids) - i) for i in range(len(docids))]
    pairs = enumerate(zip(docids, scores, strict=True))
    docs = [RankedDoc(d, i + 1, s, f"text of {d}") for i, (d, s) in pairs]
    window = WindowTrace(
        0, len(docids), ParseStatus.OK, f"<think>é {qid}</think><answer>[1] > [2]</answer>",
        list(range(len(docids))), 120, 33, "stop", 0.25,
    )
    return RankedResult(Query(f"query {qid} ✓", qid), docs, [window])


# --- TREC runs ------------------------------------------------------------------------------


def test_trec_run_order_ties_and_qid_order(tmp_path: Path) -> None:
    path = write(tmp_path / "run.txt", (
        "q2 Q0 a 1 1.0 t\n"
        "\n"
        "q1 Q0 b 1 0.5 t\n"
        "q1 Q0 a 2 0.5 t\n"
        "q1\tQ0\tc\t3\t0.9\tt\r\n"
        "q1 0 d 4 -1e-3 t\n"  # the second field is not checked
    ))
    run = read_trec_run(path)
    assert list(run) == ["q2", "q1"]
    # the file's line order, as the reference reads first-stage runs; never re-sorted
    assert run["q1"] == [("b", 0.5), ("a", 0.5), ("c", 0.9), ("d", -0.001)]
    # trec_eval's order is for scoring: score descending, ties by docid descending
    assert trec_eval_order(run)["q1"] == [("c", 0.9), ("b", 0.5), ("a", 0.5), ("d", -0.001)]


def test_trec_run_rank_column_contradicting_line_order_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "run.txt", "q Q0 a 2 1.0 t\nq Q0 b 1 2.0 t\nq Q0 c 0 3.0 t\n"
                 "r Q0 a 1 1.0 t\nr Q0 b 2 1.0 t\n")
    with caplog.at_level("WARNING", logger="reasonrank.io.readers"):
        run = read_trec_run(path)
    assert [d for d, _ in run["q"]] == ["a", "b", "c"]
    warnings = [r for r in caplog.records if "contradicts the line order" in r.getMessage()]
    assert len(warnings) == 1 and str(path) in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level("WARNING", logger="reasonrank.io.readers"):
        read_trec_run(write(tmp_path / "ok.txt", "q Q0 a 1 1.0 t\nq Q0 b 1 1.0 t\n"))
    assert not caplog.records


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("q\xa0x Q0 d 1 1.0 t\n", "query id 'q\\xa0x' holds whitespace"),
        ("q Q0 a\tb 1 1.0 t\n", "holds a tab or a line break"),
        ("q Q0 a\x1cb 1 1.0 t\n", "holds a tab or a line break"),
        ("q Q0 a\u3000 1 1.0 t\n", "starts or ends with whitespace"),
    ],
)
def test_trec_run_ids_the_writer_rejects_are_read_errors(
    tmp_path: Path, text: str, reason: str
) -> None:
    path = write(tmp_path / "run.txt", "q Q0 ok 1 2.0 t\n" + text)
    with pytest.raises(InputFormatError, match=re.escape(reason)) as info:
        read_trec_run(path)
    assert info.value.line == 2


def test_trec_run_doc_ids_with_spaces_round_trip(tmp_path: Path) -> None:
    docids = ["dir/Memory Management_2_0.txt", "a  b c", "plain", "x 1 2.5 tag"]
    scores = [3.5, 2.25, 1.0, 0.5]
    path = tmp_path / "run.trec"
    assert write_trec([result("7", docids, scores)], path, tag="mine") == 4
    assert path.read_text().splitlines()[0] == "7 Q0 dir/Memory Management_2_0.txt 1 3.5 mine"
    assert read_trec_run(path) == {"7": list(zip(docids, scores, strict=True))}


def test_bright_stackoverflow_run_with_spaces() -> None:
    path = shared("bright/runs_reasonir_gpt4cot_top100/stackoverflow.txt.gz")
    run = read_trec_run(path)
    raw = gzip.decompress(path.read_bytes()).decode().splitlines()
    assert len(run) == 117 and sum(len(v) for v in run.values()) == len(raw) == 11700
    assert all(len(docs) == 100 for docs in run.values())
    spaced = [(qid, d) for qid, docs in run.items() for d, _ in docs if " " in d]
    assert len(spaced) == 12
    assert sum(len(line.split()) != 6 for line in raw) == 12
    assert {qid for qid, _ in spaced} == {"4", "87", "96"}
    ids4 = {d for d, _ in run["4"]}
    for n in range(1, 6):
        assert f"pytorch_torch_tensor_functions/Memory Management_{n}_0.txt" in ids4
    # every line is read with the right score, in the file's line order
    in_file: dict[str, list[tuple[str, float]]] = {}
    for line in raw:
        qid, _, rest = line.split(" ", 2)
        docid, _rank, score, _tag = rest.rsplit(" ", 3)
        in_file.setdefault(qid, []).append((docid, float(score)))
    assert run == in_file
    for docs in run.values():
        assert all(a[1] >= b[1] for a, b in itertools.pairwise(docs))


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("q Q0 d 1 0.5 t\nq Q0 e 2\n", 2, "expected 6 fields"),
        ("q Q0 d 1 0.5 t\n\nq Q0 e 2 high t\n", 3, "score 'high' is not a number"),
        ("q Q0 d one 0.5 t\n", 1, "rank 'one' is not an integer"),
        ("q Q0 d 1 nan t\n", 1, "NaN"),
        ("q Q0 d 1 0.5 t\nq Q0 e 2 0.4 t\nq Q0 d 3 0.3 t\n", 3, "duplicate doc 'd'"),
    ],
)
def test_trec_run_malformed_lines_name_file_and_line(
    tmp_path: Path, text: str, line: int, reason: str
) -> None:
    path = write(tmp_path / "bad.txt.gz", text)
    with pytest.raises(InputFormatError) as info:
        read_trec_run(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert reason in str(info.value)


def test_bad_utf8_and_corrupt_gzip_are_input_errors(tmp_path: Path) -> None:
    path = tmp_path / "run.txt"
    path.write_bytes(b"q Q0 d 1 0.5 t\nq Q0 \xff 2 0.4 t\n")
    with pytest.raises(InputFormatError, match=r"run.txt:2: not valid UTF-8"):
        read_trec_run(path)
    gz = tmp_path / "run.txt.gz"
    gz.write_bytes(gzip.compress(b"".join(b"q Q0 d%d 1 0.5 t\n" % i for i in range(1000)))[:-30])
    with pytest.raises(InputFormatError, match="corrupt gzip"):
        read_trec_run(gz)


def test_scores_round_trip_exactly(tmp_path: Path) -> None:
    rng = random.Random(0)
    scores = sorted(
        [rng.uniform(-1, 1) for _ in range(50)] + [1e-300, 5e-324, 123456789.0, -0.0, 1 / 3],
        reverse=True,
    )
    docids = [f"d{i}" for i in range(len(scores))]
    path = tmp_path / "run.txt.gz"
    write_trec([result("q", docids, scores)], path)
    back = read_trec_run(path)["q"]
    assert [s for _, s in back] == scores  # bit-exact floats
    assert [d for d, _ in back] == docids


def test_write_trec_to_stream_and_validation(tmp_path: Path) -> None:
    buffer = io.StringIO()
    write_trec([result("1", ["a", "b"], [0.5, 0.25]), result("2", ["c"], [2.0])], buffer, tag="x")
    assert buffer.getvalue() == "1 Q0 a 1 0.5 x\n1 Q0 b 2 0.25 x\n2 Q0 c 1 2.0 x\n"
    bad = [
        ([result("a b", ["d"])], "query id"),
        ([result("q", ["line\nbreak"])], "line break"),
        ([result("q", [" edge"])], "whitespace"),
        ([result("q", ["d", "d"])], "twice"),
        ([result("q", ["d"]), result("q", ["e"])], "twice"),
        ([result("q", ["d"], [float("nan")])], "NaN"),
    ]
    for results, message in bad:
        with pytest.raises(OutputFormatError, match=message):
            write_trec(results, io.StringIO())
    with pytest.raises(OutputFormatError, match="tag"):
        write_trec([], io.StringIO(), tag="two words")
    # a failed write to a path leaves the old file alone
    path = tmp_path / "run.txt"
    path.write_text("old\n")
    with pytest.raises(OutputFormatError):
        write_trec([result("1", ["a"]), result("a b", ["d"])], path)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.txt"]


def test_gzip_output_is_deterministic(tmp_path: Path) -> None:
    results = [result("1", ["a", "b"])]
    write_trec(results, tmp_path / "a.txt.gz")
    write_trec(results, tmp_path / "b.txt.gz")
    assert (tmp_path / "a.txt.gz").read_bytes() == (tmp_path / "b.txt.gz").read_bytes()
    assert gzip.decompress((tmp_path / "a.txt.gz").read_bytes()).startswith(b"1 Q0 a 1 2.0")


# --- score JSON, queries, corpus, qrels -----------------------------------------------------


def test_score_json(tmp_path: Path) -> None:
    data = {"q1": {"a": 0.5, "b": 0.5, "c": 2}, "q0": {"x": -1.5}}
    for name in ("run.json", "run.json.gz"):
        path = write(tmp_path / name, json.dumps(data))
        # score descending; equal scores keep the file's key order
        expected = {"q1": [("c", 2.0), ("a", 0.5), ("b", 0.5)], "q0": [("x", -1.5)]}
        assert read_score_json(path) == expected
        assert read_run(path) == expected
    with pytest.raises(InputFormatError, match="must be a number"):
        read_score_json(write(tmp_path / "s.json", '{"q": {"d": "high"}}'))
    with pytest.raises(InputFormatError, match="duplicate key 'd'"):
        read_score_json(write(tmp_path / "s.json", '{"q": {"d": 1, "d": 2}}'))
    with pytest.raises(InputFormatError, match=r"s.json:2: invalid JSON"):
        read_score_json(write(tmp_path / "s.json", '{"q":\n {"d": }}'))
    with pytest.raises(InputFormatError, match="expected a JSON object"):
        read_score_json(write(tmp_path / "s.json", "[1]"))


def test_queries_tsv_jsonl_and_json(tmp_path: Path) -> None:
    tsv = write(tmp_path / "topics.tsv.gz", "1\tfirst query\n\n2\twith\ttab \n")
    assert read_queries(tsv) == {"1": "first query", "2": "with\ttab "}
    jsonl = write(tmp_path / "q.jsonl", (
        '{"_id": "1", "text": "a", "metadata": {}}\n'
        '{"id": 2, "query": "b"}\n'
        '{"qid": "3", "text": "c\\u2028d"}\n'
    ))
    assert read_queries(jsonl) == {"1": "a", "2": "b", "3": "c\u2028d"}
    listed = write(tmp_path / "q.json", json.dumps([{"qid": "9", "query": "z"}]))
    assert read_queries(listed) == {"9": "z"}
    sniffed = write(tmp_path / "queries.dat", '{"id": "5", "query": "sniffed"}\n')
    assert read_queries(sniffed) == {"5": "sniffed"}
    with pytest.raises(InputFormatError, match=r"topics.txt:2: expected 'qid<TAB>query text'"):
        read_queries(write(tmp_path / "topics.txt", "1\tok\n2 no tab\n"))
    with pytest.raises(InputFormatError, match=r"q.jsonl:2: duplicate query id '1'"):
        read_queries(write(tmp_path / "q.jsonl", '{"id": "1", "text": "a"}\n{"id": 1, "text": ""}'))
    with pytest.raises(InputFormatError, match=r"q.jsonl:1: query '1' has no text"):
        read_queries(write(tmp_path / "q.jsonl", '{"id": "1", "title": "a"}\n'))


def test_real_queries() -> None:
    dl19 = read_queries(shared("trec_dl/topics.dl19-passage.txt"))
    assert len(dl19) == 43 and dl19["156493"] == "do goldfish grow"
    assert len(read_queries(shared("scifact/topics.test.tsv.gz"))) == 300
    bright = read_queries(shared("bright/examples/biology.jsonl.gz"))
    assert len(bright) == 103 and all(bright.values())


def test_corpus_field_variants(tmp_path: Path) -> None:
    path = write(tmp_path / "corpus.jsonl.gz", "\n".join(json.dumps(r) for r in [
        {"_id": "a", "title": "T", "text": "ta"},
        {"id": 2, "contents": "tb", "title": ""},
        {"docid": "c", "segment": "tc", "contents": "not this"},
        {"docid": "d", "body": "td"},
        {"docid": "e", "passage": "te", "title": None},
        {"docid": "f", "text": ""},
    ]) + "\n")
    assert read_corpus(path) == {
        "a": Doc("ta", "T"), "2": Doc("tb"), "c": Doc("tc"), "d": Doc("td"), "e": Doc("te"),
        "f": Doc(""),
    }
    assert read_corpus(path)["a"] == ("ta", "T")  # a (text, title) tuple
    tsv = write(tmp_path / "corpus.tsv", "a\ttext a\nb\ttitle b\ttext b\n")
    assert read_corpus(tsv) == {"a": Doc("text a"), "b": Doc("text b", "title b")}
    bad = [
        ('{"_id": "a"}\n', 1, "has no text"),
        ('{"_id": "a", "text": "x"}\n{"text": "y"}\n', 2, "no document id"),
        ('{"_id": "a", "text": 3}\n', 1, "must be a string"),
        ('{"_id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', 2, "duplicate document id"),
        ('{"_id": "a", "text": "x"}\n{"_id": "b", "text": "y"\n', 2, "invalid JSON"),
    ]
    for text, line, reason in bad:
        path = write(tmp_path / "bad.jsonl", text)
        with pytest.raises(InputFormatError, match=reason) as info:
            read_corpus(path)
        assert info.value.line == line
    with pytest.raises(InputFormatError, match=r"c.tsv:1: expected 'docid<TAB>text'"):
        read_corpus(write(tmp_path / "c.tsv", "only-an-id\n"))


def test_qrels(tmp_path: Path) -> None:
    text = "1 0 a 1\n1\t0\tdir/Memory Management_1_0.txt\t2\n\n2 Q0 b 0\n"
    path = write(tmp_path / "qrels.txt", text)
    assert read_qrels(path) == {"1": {"a": 1, "dir/Memory Management_1_0.txt": 2}, "2": {"b": 0}}
    beir = write(tmp_path / "test.tsv", "query-id\tcorpus-id\tscore\n1\ta b\t1\n")
    assert read_qrels(beir) == {"1": {"a b": 1}}
    with pytest.raises(InputFormatError, match=r"q.txt:2: relevance 'x' is not an integer"):
        read_qrels(write(tmp_path / "q.txt", "1 0 a 1\n1 0 b x\n"))
    with pytest.raises(InputFormatError, match=r"q.txt:2: duplicate judgment"):
        read_qrels(write(tmp_path / "q.txt", "1 0 a 1\n1 0 a 1\n"))
    with pytest.raises(InputFormatError, match=r"q.txt:1: expected 'qid iter docid rel'"):
        read_qrels(write(tmp_path / "q.txt", "1 0 a\n"))
    dl19 = read_qrels(shared("trec_dl/qrels.dl19-passage.txt"))
    assert len(dl19) == 43 and sum(len(v) for v in dl19.values()) == 9260


# --- request files ---------------------------------------------------------------------------


def test_dl19_request_file() -> None:
    requests = read_requests(shared("trec_dl/bm25_top100_dl19.json.gz"))
    assert len(requests) == 43
    assert all(len(r.candidates) == 100 for r in requests)
    assert all(c.text.strip() for r in requests for c in r.candidates)
    first = requests[0]
    assert first.query == Query("how long is life cycle of flea", "264014")
    assert first.candidates[0].docid == "5611210"
    assert first.candidates[0].score == 15.780599594116211
    for r in requests:
        assert all(a.score >= b.score for a, b in itertools.pairwise(r.candidates))
    topics = read_queries(shared("trec_dl/topics.dl19-passage.txt"))
    assert {r.query.qid: r.query.text for r in requests} == topics


def test_request_formats(tmp_path: Path) -> None:
    rankgpt = {"query": "q text", "hits": [
        {"qid": 5, "docid": "b", "rank": 2, "score": 1.0, "content": "tb"},
        {"qid": 5, "docid": "a", "rank": 1, "score": 2.0, "content": "ta", "title": "A"},
    ]}
    rank_llm = {"query": {"text": "other", "qid": "6"}, "candidates": [
        {"docid": "x", "score": 3, "doc": {"title": "X", "segment": "tx"}},
        {"docid": 7, "score": 2.5, "doc": {"contents": "t7"}},
    ]}
    for path in (
        write(tmp_path / "r.json", json.dumps([rankgpt, rank_llm])),
        write(tmp_path / "r.jsonl.gz", json.dumps(rankgpt) + "\n\n" + json.dumps(rank_llm) + "\n"),
    ):
        first, second = read_requests(path)
        assert first.query == Query("q text", "5")
        # list order, as the reference takes it (the ranks contradicting it only warn)
        assert [(c.docid, c.text, c.score, c.title) for c in first.candidates] == [
            ("b", "tb", 1.0, None), ("a", "ta", 2.0, "A")]
        assert second.query == Query("other", "6")
        assert [(c.docid, c.text, c.score, c.title) for c in second.candidates] == [
            ("x", "tx", 3.0, "X"), ("7", "t7", 2.5, None)]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"query": "q", "hits": [{"docid": "a", "content": "t"}]}, "no qid"),
        ({"query": "q", "hits": [{"qid": 1, "docid": "a"}]}, "has no text"),
        ({"query": {"text": "q", "qid": "1"}, "hits": [{"qid": 2, "docid": "a", "content": "t"}]},
         "differs"),
        ({"query": "q", "hits": [{"qid": "1 2", "docid": "a", "content": "t"}]},
         "holds whitespace"),
        ({"query": {"text": "q", "qid": "1"}, "hits": [{"docid": "a\nb", "content": "t"}]},
         "holds a tab or a line break"),
        ({"query": "q", "hits": [{"qid": 1, "docid": "a", "content": "t"},
                                 {"qid": 1, "docid": "a", "content": "t"}]}, "duplicate docid"),
        ({"query": 3, "hits": []}, "'query' must be"),
        ({"query": "q"}, "list of 'hits'"),
    ],
)
def test_request_errors(tmp_path: Path, record: dict, reason: str) -> None:
    ok = {"query": {"text": "ok", "qid": "0"}, "hits": []}
    path = write(tmp_path / "r.jsonl", json.dumps(ok) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(InputFormatError, match=reason) as info:
        read_requests(path)
    assert info.value.line == 2
    listed = write(tmp_path / "r.json", json.dumps([ok, record]))
    with pytest.raises(InputFormatError, match=f"item 1: .*{reason}"):
        read_requests(listed)


def test_duplicate_requests_are_errors(tmp_path: Path) -> None:
    record = json.dumps({"query": {"text": "q", "qid": "1"}, "hits": []})
    with pytest.raises(InputFormatError, match=r"r.jsonl:2: duplicate request for query '1'"):
        read_requests(write(tmp_path / "r.jsonl", record + "\n" + record + "\n"))


# --- joining --------------------------------------------------------------------------------


def test_build_requests() -> None:
    run = {"q1": [("a", 2.0), ("b", 1.0), ("zz", 0.5)], "q0": [("b", 3.0)]}
    corpus = {"a": Doc("ta", "A"), "b": ("tb", None)}
    requests = build_requests(run, corpus, {"q0": "zero", "q1": "one", "unused": "x"}, top_k=2)
    assert [r.query for r in requests] == [Query("one", "q1"), Query("zero", "q0")]
    assert [(c.docid, c.text, c.score, c.title) for c in requests[0].candidates] == [
        ("a", "ta", 2.0, "A"), ("b", "tb", 1.0, None)]
    with pytest.raises(MissingIdsError) as info:
        build_requests(run, corpus, {"q1": "one"})
    message = str(info.value)
    assert "1 query id(s)" in message and "'q0'" in message
    assert "1 doc id(s)" in message and "'zz' (query 'q1')" in message
    assert info.value.missing_qids == ["q0"] and info.value.missing_docs == [("q1", "zz")]
    assert isinstance(info.value, ReasonRankError)
    many = {"q": [(f"d{i}", float(-i)) for i in range(20)]}
    with pytest.raises(MissingIdsError, match=r"20 doc id\(s\).*'d4' \(query 'q'\), \.\.\.$"):
        build_requests(many, {}, {"q": "x"})
    with pytest.raises(ConfigError):
        build_requests(run, corpus, {}, top_k=0)


def test_load_requests_dispatch(tmp_path: Path) -> None:
    corpus = write(tmp_path / "c.jsonl", '{"_id": "a", "text": "ta"}\n{"id": "b", "text": "b"}')
    queries = write(tmp_path / "topics.tsv", "1\tone\n")
    trec = write(tmp_path / "run.txt", "1 Q0 b 1 0.75 t\n1 Q0 a 2 0.5 t\n")
    scores = write(tmp_path / "run.json.gz", json.dumps({"1": {"a": 0.5, "b": 0.75}}))
    for run in (trec, scores):
        (request,) = load_requests(run=run, corpus=corpus, queries=queries)
        assert [c.docid for c in request.candidates] == ["b", "a"]
        assert request.query == Query("one", "1")
    (request,) = load_requests(run=trec, corpus=corpus, queries=queries, top_k=1)
    assert [c.docid for c in request.candidates] == ["b"]
    missing = write(tmp_path / "run2.txt", "1 Q0 c 1 1.0 t\n")
    with pytest.raises(MissingIdsError, match=r"run .*run2.txt are not in corpus .*c.jsonl"):
        load_requests(run=missing, corpus=corpus, queries=queries)
    requests_file = write(tmp_path / "r.jsonl", json.dumps(
        {"query": {"text": "q", "qid": "1"}, "hits": [{"docid": d, "content": d} for d in "abc"]}))
    (request,) = load_requests(requests=requests_file, top_k=2)
    assert [c.docid for c in request.candidates] == ["a", "b"]
    with pytest.raises(ConfigError, match="not both"):
        load_requests(requests=requests_file, run=trec)
    with pytest.raises(ConfigError, match="missing: corpus, queries"):
        load_requests(run=trec)


# --- traces ---------------------------------------------------------------------------------


def test_traces(tmp_path: Path) -> None:
    results = [result("1", ["a", "b"]), result("2", ["c"])]
    for name in ("t.jsonl", "t.jsonl.gz"):
        path = tmp_path / name
        assert write_traces(results, path) == 2
        data = path.read_bytes()
        text = (gzip.decompress(data) if name.endswith(".gz") else data).decode()
        assert [json.loads(line) for line in text.splitlines()] == [r.trace_dict() for r in results]
        assert "é" in text and "✓" in text  # UTF-8, not escaped
    buffer = io.StringIO()
    write_traces(results, buffer)
    assert buffer.getvalue() == read_back(tmp_path / "t.jsonl")
    lone = result("3", ["a"])
    lone.windows[0].output = "bad \udc80 surrogate"
    write_traces([lone], tmp_path / "lone.jsonl")  # escaped rather than crashing
    back = json.loads((tmp_path / "lone.jsonl").read_text())
    assert back["windows"][0]["output"] == lone.windows[0].output


def read_back(path: Path) -> str:
    data = path.read_bytes()
    return (gzip.decompress(data) if path.name.endswith(".gz") else data).decode()


# --- resumable outputs -----------------------------------------------------------------------


RESULTS = [result(f"q{i}", [f"d{i} {j}" for j in range(3)]) for i in range(6)]
ORDER = [r.query.qid for r in RESULTS]


def uninterrupted(tmp_path: Path, suffix: str = "") -> tuple[bytes, bytes]:
    out = tmp_path / "clean"
    files = RunFiles(out / f"run.txt{suffix}", out / f"traces.jsonl{suffix}")
    for r in RESULTS:
        files.append(r)
    files.finalize(ORDER)
    return (out / f"run.txt{suffix}").read_bytes(), (out / f"traces.jsonl{suffix}").read_bytes()


@pytest.mark.parametrize(
    "crash",
    ["partial run line", "run lines, no trace", "partial trace line", "clean stop"],
)
def test_resume_repairs_and_matches_uninterrupted_bytes(tmp_path: Path, crash: str) -> None:
    run, traces = tmp_path / "run.txt", tmp_path / "traces.jsonl"
    files = RunFiles(run, traces)
    for r in RESULTS[:3]:
        files.append(r)
    files.close()
    # what a kill in the middle of appending RESULTS[3] leaves behind
    assert not run.exists() and not traces.exists()  # appends go to the .partial files
    block = "".join(f"q3 Q0 d3 {j} {j + 1} {3.0 - j!r} reasonrank\n" for j in range(3))
    trace = json.dumps(RESULTS[3].trace_dict(), ensure_ascii=False) + "\n"
    with open(work_path(run), "a") as fh:
        fh.write({"partial run line": block[:40], "clean stop": ""}.get(crash, block))
    if crash == "partial trace line":
        with open(work_path(traces), "a") as fh:
            fh.write(trace[:-1])  # everything but the newline: still incomplete

    files = RunFiles(run, traces, resume=True)
    assert files.done_qids() == {"q0", "q1", "q2"}
    assert read_trec_run(work_path(run)).keys() == {"q0", "q1", "q2"}  # repaired on opening
    written = work_path(traces).read_text()
    assert written.count("\n") == 3 and written.endswith("}\n")
    for r in [RESULTS[5], RESULTS[3], RESULTS[4]]:  # resumed work may finish in any order
        files.append(r)
    assert files.done_qids() == set(ORDER)
    files.finalize(ORDER)
    assert (run.read_bytes(), traces.read_bytes()) == uninterrupted(tmp_path)


def test_resume_with_gzip_outputs(tmp_path: Path) -> None:
    run, traces = tmp_path / "run.txt.gz", tmp_path / "traces.jsonl.gz"
    files = RunFiles(run, traces)
    files.append(RESULTS[1])
    files.append(RESULTS[0])
    files.close()
    assert not run.exists() and (tmp_path / "run.txt.gz.partial").exists()
    with open(tmp_path / "run.txt.gz.partial", "a") as fh:
        fh.write("q2 Q0 d2 0 1.0 rea")
    files = RunFiles(run, traces, resume=True)
    assert files.done_qids() == {"q0", "q1"}
    for r in RESULTS[2:4]:
        files.append(r)
    files.finalize(ORDER[:4])
    assert not (tmp_path / "run.txt.gz.partial").exists()
    # a finalized compressed output can be resumed again
    files = RunFiles(run, traces, resume=True)
    assert files.done_qids() == set(ORDER[:4])
    for r in RESULTS[4:]:
        files.append(r)
    files.finalize(ORDER)
    assert (run.read_bytes(), traces.read_bytes()) == uninterrupted(tmp_path, ".gz")
    assert len(read_trec_run(run)) == 6


def test_run_files_overwrite_errors_and_empty_results(tmp_path: Path) -> None:
    run, traces = tmp_path / "out" / "run.txt", tmp_path / "out" / "traces.jsonl"
    with RunFiles(run, traces) as files:
        files.append(RESULTS[0])
        with pytest.raises(ReasonRankError, match="already"):
            files.append(RESULTS[0])
    with RunFiles(run, traces) as files:  # no resume: the run in progress is discarded
        assert files.done_qids() == set()
    assert not run.exists() and not traces.exists()
    assert work_path(run).read_bytes() == b"" and work_path(traces).read_bytes() == b""
    files = RunFiles(run, traces, resume=True)
    files.append(RESULTS[0])
    files.append(result("empty", []))  # no run lines: redone after a resume
    with pytest.raises(ReasonRankError, match=r"not done: 'q9'.*not in the order: 'empty'"):
        files.finalize(["q0", "q9"])
    with pytest.raises(ReasonRankError, match="repeated"):
        files.finalize(["q0", "q0", "empty"])
    files.finalize(["empty", "q0"])
    assert json.loads(traces.read_text().splitlines()[0])["qid"] == "empty"
    files = RunFiles(run, traces, resume=True)
    assert files.done_qids() == {"q0"}
    files.close()
    with pytest.raises(ConfigError):
        RunFiles(run, run)


def test_resume_rejects_corruption_in_complete_lines(tmp_path: Path) -> None:
    run, traces = tmp_path / "run.txt", tmp_path / "traces.jsonl"
    with RunFiles(run, traces) as files:
        files.append(RESULTS[0])
        files.append(RESULTS[1])
    partial = work_path(traces)
    lines = partial.read_text().splitlines(keepends=True)
    partial.write_text(lines[0] + "{not json\n" + lines[1])
    with pytest.raises(InputFormatError, match=r"traces.jsonl.partial:2: invalid JSON"):
        RunFiles(run, traces, resume=True)
    partial.write_text(lines[0] + lines[0])
    with pytest.raises(InputFormatError, match="traced twice"):
        RunFiles(run, traces, resume=True)


def test_pretty_printed_single_request_and_broken_first_line(tmp_path: Path) -> None:
    record = {"query": {"text": "q", "qid": "1"}, "hits": [{"docid": "a", "content": "t"}]}
    (request,) = read_requests(write(tmp_path / "r.json", json.dumps(record, indent=2)))
    assert request.query.qid == "1" and request.candidates[0].text == "t"
    broken = write(tmp_path / "c.jsonl", '{"_id": "a", "text": "x"\n{"_id": "b", "text": "y"}\n')
    with pytest.raises(InputFormatError, match=r"c.jsonl:1: invalid JSON"):
        read_corpus(broken)


KILLED_CHILD = """
import sys
from reasonrank.io import RunFiles
from reasonrank.types import ParseStatus, Query, RankedDoc, RankedResult, WindowTrace

def result(i):
    docs = [RankedDoc(f"doc {i} {j}", j + 1, 100.0 - j / 7, "") for j in range(50)]
    window = WindowTrace(0, 50, ParseStatus.OK, "reasoning " * 2000, list(range(50)))
    return RankedResult(Query(f"query {i}", f"q{i}"), docs, [window])

files = RunFiles(sys.argv[1], sys.argv[2], resume=sys.argv[3] == "resume")
done = files.done_qids()
for i in range(int(sys.argv[4])):
    if f"q{i}" not in done:
        files.append(result(i))
files.finalize([f"q{i}" for i in range(int(sys.argv[4]))])
"""


def test_resume_after_a_real_kill(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "child.py"
    script.write_text(KILLED_CHILD)
    n = "300"
    clean = [tmp_path / "clean.txt", tmp_path / "clean.jsonl"]
    subprocess.run([sys.executable, script, *map(str, clean), "fresh", n], check=True)
    run, traces = tmp_path / "run.txt", tmp_path / "traces.jsonl"
    child = subprocess.Popen([sys.executable, script, run, traces, "fresh", n])
    deadline = time.monotonic() + 30
    partial = work_path(traces)
    while time.monotonic() < deadline and (not partial.exists()
                                           or partial.stat().st_size < 100_000):
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait()
    if child.returncode == 0:  # pragma: no cover - the child won the race
        pytest.skip("the child finished before it could be killed")
    partial = RunFiles(run, traces, resume=True)
    assert 0 < len(partial.done_qids()) < int(n)
    partial.close()
    subprocess.run([sys.executable, script, run, traces, "resume", n], check=True)
    assert run.read_bytes() == clean[0].read_bytes()
    assert traces.read_bytes() == clean[1].read_bytes()
