"""Dataset layouts: BRIGHT (shared data and small synthetic folders), BEIR, TREC/RankGPT, R2MED."""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path

import pytest

from reasonrank.datasets import (
    BrightDataWarning,
    DatasetNotFoundError,
    bright,
    load_beir,
    load_rankgpt,
    load_trec,
    r2med,
    requests_to_run,
)
from reasonrank.errors import ConfigError, InputFormatError
from reasonrank.evaluation import reference
from reasonrank.io import MissingIdsError

PAPER_COUNTS = {
    "economics": 103, "earth_science": 116, "robotics": 101, "biology": 103, "psychology": 101,
    "stackoverflow": 117, "sustainable_living": 108, "leetcode": 142, "pony": 112, "aops": 111,
    "theoremqa_questions": 194, "theoremqa_theorems": 76,
}


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    return path


def _example(qid: str, gold: list[str], excluded: list[str] | None = None, **extra) -> dict:
    return {"id": qid, "query": f"query {qid}", "reasoning": "", "gold_ids": gold,
            "gold_ids_long": extra.pop("long", ["N/A"]), "excluded_ids": excluded or ["N/A"],
            "gold_answer": "N/A", **extra}


# --- BRIGHT on the shared data --------------------------------------------------------------


@pytest.fixture(scope="module")
def bright_tasks(shared_data: Path) -> dict[str, bright.BrightTask]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", BrightDataWarning)  # the real data is sound
        return bright.load_tasks(shared_data / "bright")


def test_bright_tasks_constant() -> None:
    assert tuple(PAPER_COUNTS) == bright.TASKS  # the paper's table order
    assert reference.BRIGHT_TASKS == bright.TASKS
    assert list(bright.SHORT_NAMES.values())[:3] == ["econ", "earth", "robot"]


def test_bright_local_loads_all_12_tasks(bright_tasks: dict[str, bright.BrightTask]) -> None:
    assert list(bright_tasks) == list(bright.TASKS)
    assert {t: len(task) for t, task in bright_tasks.items()} == PAPER_COUNTS
    assert sum(len(t) for t in bright_tasks.values()) == bright.NUM_QUERIES == 1384
    for task in bright_tasks.values():
        assert set(task.qrels) == set(task.queries) == set(task.excluded)
        assert all(rel == 1 for docs in task.qrels.values() for rel in docs.values())
        assert task.overlaps == {}
        assert task.corpus is None and task.reasoning_queries is None


def test_theoremqa_questions_repeated_gold_ids_collapse(
    shared_data: Path, bright_tasks: dict[str, bright.BrightTask]
) -> None:
    path = shared_data / "bright" / "examples" / "theoremqa_questions.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        raw = [json.loads(line) for line in fh]
    repeated = [r for r in raw if len(r["gold_ids"]) != len(set(r["gold_ids"]))]
    assert len(repeated) == 120
    qrels = bright_tasks["theoremqa_questions"].qrels
    for r in repeated:
        assert list(qrels[r["id"]]) == list(dict.fromkeys(r["gold_ids"]))
    # the qrels file of the release agrees with the collapsed sets
    total = sum(len(v) for v in qrels.values())
    qrels_file = shared_data / "bright/qrels/theoremqa_questions.txt"
    assert total == len(qrels_file.read_text().splitlines())


def test_bright_na_is_not_an_id(bright_tasks: dict[str, bright.BrightTask]) -> None:
    for task in bright_tasks.values():
        assert all("N/A" not in ids for ids in task.excluded.values())
        assert all("N/A" not in docs for docs in task.qrels.values())
    # StackExchange tasks only hold the placeholder; the coding/math tasks exclude real ids
    assert all(not ids for ids in bright_tasks["economics"].excluded.values())
    assert all(ids for ids in bright_tasks["aops"].excluded.values())
    assert sum(map(len, bright_tasks["leetcode"].excluded.values())) > 0


def test_bright_long_setting(shared_data: Path) -> None:
    task = bright.load_task(shared_data / "bright", "biology", long=True)
    assert task.long and len(task.qrels) == 103
    short = bright.load_task(shared_data / "bright", "biology")
    assert task.qrels != short.qrels
    with pytest.raises(ConfigError, match="no long-document judgements"):
        bright.load_task(shared_data / "bright", "leetcode", long=True)


def test_bright_filter_run_and_read_excluded(shared_data: Path,
                                            bright_tasks: dict[str, bright.BrightTask]) -> None:
    task = bright_tasks["aops"]
    run = bright.load_run(shared_data / "bright" / bright.DEFAULT_RUNS, "aops")
    assert task.filter_run(run) == run  # the released runs hold no excluded id already
    # an excluded id put on top of every query is taken out again
    planted = {q: [(min(task.excluded[q]), 99.0), *docs] for q, docs in run.items()}
    assert task.filter_run(planted) == run
    plain = task.evaluate(run).mean["ndcg@10"]
    assert task.evaluate(planted).mean["ndcg@10"] == pytest.approx(plain, abs=1e-12)
    assert bright.read_excluded(bright.examples_path(shared_data / "bright", "aops")) \
        == task.excluded


def test_bright_stackoverflow_run_keeps_ids_with_spaces(shared_data: Path) -> None:
    run = bright.load_run(shared_data / "bright" / bright.DEFAULT_RUNS, "stackoverflow")
    assert sum(1 for docs in run.values() for d, _ in docs if " " in d) == 12
    assert all(len(docs) == 100 for docs in run.values())


def test_bright_requests_need_a_corpus(bright_tasks: dict[str, bright.BrightTask]) -> None:
    task = bright_tasks["pony"]
    with pytest.raises(ConfigError, match="passage texts"):
        task.requests({"0": [("d", 1.0)]})


# --- BRIGHT on small synthetic folders ------------------------------------------------------


def test_bright_overlap_of_gold_and_excluded_warns_and_reports(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "examples" / "leetcode.jsonl", [
        _example("q1", ["d1", "d2"], ["d1", "d9"]),
        _example("q2", ["d3"], ["N/A"]),
    ])
    with pytest.warns(BrightDataWarning, match=r"1 gold id\(s\) of 1 query.*q1: d1"):
        task = bright.load_task(tmp_path, "leetcode")
    assert task.overlaps == {"q1": {"d1"}}
    assert task.excluded == {"q1": {"d1", "d9"}, "q2": set()}
    assert bright.check_overlap(task.qrels, task.excluded) == {"q1": {"d1"}}
    with pytest.warns(BrightDataWarning):
        assert bright.read_examples(path).overlaps == {"q1": {"d1"}}


def test_bright_qrels_file_disagreeing_with_gold_ids_warns(tmp_path: Path) -> None:
    _write_jsonl(tmp_path / "examples" / "pony.jsonl.gz", [_example("q1", ["d1", "d1"])])
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "pony.txt").write_text("q1\t0\td1\t1\nq1\t0\td2\t1\n")
    with pytest.warns(BrightDataWarning, match="differs from the examples' gold_ids"):
        task = bright.load_task(tmp_path, "pony")
    assert task.qrels == {"q1": {"d1": 1}}  # gold_ids win, the repeat collapsed


def test_bright_per_task_layout_with_corpus_and_reasoning(tmp_path: Path) -> None:
    root = tmp_path / "bright"
    _write_jsonl(root / "biology" / "examples.jsonl", [
        _example("0", ["a", "b"], long=["A"]), _example("1", ["c"], long=["C"]),
    ])
    _write_jsonl(root / "biology" / "documents.jsonl.gz",  # BRIGHT's own field names
                 [{"id": d, "content": f"text of {d}"} for d in "abcx"])
    _write_jsonl(root / "biology" / "gpt4_reason.jsonl",
                 [{"id": "0", "query": "reasoned 0"}, {"id": "1", "query": "reasoned 1"}])
    task = bright.load_task(root, "biology", corpus=True, reasoning="gpt4")
    assert task.qrels == {"0": {"a": 1, "b": 1}, "1": {"c": 1}}
    assert task.corpus is not None and task.corpus["x"].text == "text of x"
    run = {"0": [("x", 2.0), ("a", 1.0)], "1": [("c", 1.0)]}
    requests = task.requests(run, top_k=1)
    assert [r.query.text for r in requests] == ["query 0", "query 1"]  # the original queries
    assert [[c.docid for c in r.candidates] for r in requests] == [["x"], ["c"]]
    assert [r.query.text for r in task.requests(run, reasoning=True)] == ["reasoned 0",
                                                                           "reasoned 1"]
    with pytest.raises(MissingIdsError):
        task.requests({"0": [("nope", 1.0)]})
    with pytest.raises(DatasetNotFoundError, match="long_documents"):
        bright.load_task(root, "biology", long=True, corpus=True)
    with pytest.raises(DatasetNotFoundError, match="claude-3-opus_reason"):
        bright.load_task(root, "biology", reasoning="claude-3-opus")


def test_bright_save_corpus_round_trip(tmp_path: Path) -> None:
    from reasonrank.io import Doc

    corpus = {"d 1": Doc("first text", "T"), "d2": Doc("second\ntext")}
    path = bright.save_corpus(corpus, tmp_path / "corpora" / "biology.jsonl.gz")
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert bright.read_documents(path) == corpus


def test_bright_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown BRIGHT task 'physics'"):
        bright.load_task(tmp_path, "physics")
    with pytest.raises(DatasetNotFoundError, match="not a BRIGHT folder"):
        bright.load_task(tmp_path, "pony")
    path = tmp_path / "examples" / "pony.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps(_example("q1", ["d"])) + "\n{not json\n")
    with pytest.raises(InputFormatError, match=rf"{path}:2: invalid JSON"):
        bright.load_task(tmp_path, "pony")
    path.write_text(json.dumps(_example("q1", ["d"])) + "\n" + json.dumps(_example("q1", ["e"])))
    with pytest.raises(InputFormatError, match=rf"{path}:2: duplicate query id 'q1'"):
        bright.load_task(tmp_path, "pony")
    path.write_text(json.dumps({"id": "q1", "query": "x", "gold_ids": "d"}) + "\n")
    with pytest.raises(InputFormatError, match="'gold_ids' must be a list"):
        bright.load_task(tmp_path, "pony")
    with pytest.raises(DatasetNotFoundError, match="run for BRIGHT pony"):
        bright.load_run(tmp_path, "pony")


# --- BEIR -----------------------------------------------------------------------------------


def _beir(root: Path) -> Path:
    _write_jsonl(root / "corpus.jsonl", [
        {"_id": "d1", "title": "Salt", "text": "salt water"},
        {"_id": "d2", "title": "", "text": "fresh water"},
    ])
    _write_jsonl(root / "queries.jsonl", [
        {"_id": "q1", "text": "salty"}, {"_id": "q2", "text": "fresh"},
        {"_id": "q3", "text": "train only"},
    ])
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq2\td2\t1\n")
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq3\td1\t1\n")
    return root


def test_beir_layout(tmp_path: Path) -> None:
    ds = load_beir(_beir(tmp_path / "scifact"))
    assert ds.name == "scifact" and len(ds) == 2
    assert ds.qrels == {"q1": {"d1": 2}, "q2": {"d2": 1}}
    assert ds.corpus is not None and ds.corpus["d1"].title == "Salt"
    assert ds.corpus["d2"].title is None
    requests = ds.requests({"q1": [("d2", 1.0), ("d1", 0.5)]})
    assert [c.text for c in requests[0].candidates] == ["fresh water", "salt water"]
    assert set(load_beir(tmp_path / "scifact", "train", corpus=False).queries) == {"q3"}
    assert len(load_beir(tmp_path / "scifact", all_queries=True).queries) == 3
    result = ds.evaluate({"q1": [("d1", 1.0)], "q2": [("d1", 1.0)]}, ["ndcg@10"])
    assert result.mean["ndcg@10"] == pytest.approx(0.5)
    with pytest.raises(DatasetNotFoundError, match="no BEIR dev qrels"):
        load_beir(tmp_path / "scifact", "dev")
    with pytest.raises(DatasetNotFoundError, match="not a folder"):
        load_beir(tmp_path / "missing")


def test_beir_malformed_qrels_names_file_and_line(tmp_path: Path) -> None:
    root = _beir(tmp_path / "b")
    bad = root / "qrels" / "test.tsv"
    bad.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\thigh\n")
    with pytest.raises(InputFormatError, match=rf"{bad}:3: relevance 'high'"):
        load_beir(root)


# --- TREC topics/qrels and RankGPT request files --------------------------------------------


def test_trec_topics_and_qrels(tmp_path: Path) -> None:
    (tmp_path / "topics.txt").write_text("1\tfirst query\n2\tsecond\tquery\n3\tunjudged\n")
    (tmp_path / "qrels.txt").write_text("1 0 a 2\n1 0 b 0\n2 Q0 c 1\n")
    ds = load_trec(tmp_path / "topics.txt", tmp_path / "qrels.txt")
    assert ds.queries == {"1": "first query", "2": "second\tquery"}
    assert ds.qrels == {"1": {"a": 2, "b": 0}, "2": {"c": 1}}
    everything = load_trec(tmp_path / "topics.txt", tmp_path / "qrels.txt", judged_only=False)
    assert len(everything) == 3


def test_rankgpt_request_file(tmp_path: Path) -> None:
    path = tmp_path / "bm25.json"
    path.write_text(json.dumps([{"query": "q text", "hits": [
        {"qid": "7", "docid": "b", "rank": 2, "score": 5.0, "content": "B"},
        {"qid": "7", "docid": "a", "rank": 1, "score": 5.0, "content": "A"},
    ]}]))
    (tmp_path / "qrels.txt").write_text("7 0 b 1\n")
    requests, run, qrels = load_rankgpt(path, tmp_path / "qrels.txt")
    # list order, as the reference's request files are read (the ranks only warn)
    assert [c.docid for c in requests[0].candidates] == ["b", "a"]
    assert run == {"7": [("b", 5.0), ("a", 5.0)]}
    assert requests_to_run(requests, use_scores=False) == {"7": [("b", 2.0), ("a", 1.0)]}
    assert qrels == {"7": {"b": 1}}
    assert load_rankgpt(path)[2] is None


def test_trec_dl19_bm25_known_figure(shared_data: Path) -> None:
    from reasonrank.evaluation import evaluate

    d = shared_data / "trec_dl"
    requests, run, qrels = load_rankgpt(d / "bm25_top100_dl19.json.gz",
                                        d / "qrels.dl19-passage.txt")
    assert len(requests) == 43
    ds = load_trec(d / "topics.dl19-passage.txt", d / "qrels.dl19-passage.txt")
    assert set(ds.queries) == set(run)
    ndcg = 100 * evaluate(run, qrels, ["ndcg@10"]).mean["ndcg@10"]
    assert abs(ndcg - reference.KNOWN_FIRST_STAGE["trec_dl19_bm25"]) <= 0.01


# --- R2MED ----------------------------------------------------------------------------------


def test_r2med_hub_named_files(tmp_path: Path) -> None:
    task = tmp_path / "Biology"
    _write_jsonl(task / "corpus.jsonl", [{"id": "p1", "text": "cells"}, {"id": "p2",
                                                                         "text": "genes"}])
    _write_jsonl(task / "query.jsonl", [{"id": "q1", "text": "what is a cell"}])
    _write_jsonl(task / "qrels.jsonl", [{"q_id": "q1", "p_id": "p1", "score": 1}])
    ds = r2med.load_task(tmp_path, "Biology")
    assert ds.queries == {"q1": "what is a cell"}
    assert ds.qrels == {"q1": {"p1": 1}}
    assert ds.corpus is not None and set(ds.corpus) == {"p1", "p2"}
    _write_jsonl(task / "qrels.jsonl", [{"q_id": "q1", "p_id": "p1"}])
    with pytest.raises(InputFormatError, match=r"qrels.jsonl:1: expected"):
        r2med.load_task(tmp_path, "Biology")


def test_r2med_beir_like_folder(tmp_path: Path) -> None:
    _beir(tmp_path / "MedQA-Diag")
    ds = r2med.load_task(tmp_path, "MedQA-Diag", corpus=False)
    assert ds.corpus is None and ds.qrels == {"q1": {"d1": 2}, "q2": {"d2": 1}}
    assert len(ds.queries) == 3  # R2MED keeps every query of its file
    with pytest.raises(ConfigError, match="unknown R2MED task"):
        r2med.load_task(tmp_path, "Physics")
    with pytest.raises(DatasetNotFoundError, match="R2MED PMC-Clinical folder"):
        r2med.load_task(tmp_path, "PMC-Clinical")
    assert len(r2med.TASKS) == 8


# --- reference numbers ----------------------------------------------------------------------


def test_reference_rows_are_consistent() -> None:
    rows = reference.BRIGHT_NDCG10
    assert [r.system for r in rows] == ["ReasonIR first stage", "Rank1-7B (pointwise)",
                                        "ReasonRank-7B", "ReasonRank-32B"]
    for row in rows:
        assert len(row.values()) == 12
        assert abs(sum(row.values()) / 12 - row.avg) <= 0.005  # the paper rounds the mean
    assert reference.bright_row("reasonrank-7b")["biology"] == 56.70
    assert reference.FIRST_STAGE.avg == 30.59
    assert reference.OTHER_AVERAGES["r2med"]["ReasonRank-32B"] == 42.85
    with pytest.raises(KeyError, match="no published BRIGHT row"):
        reference.bright_row("BM25")


# --- hub loaders, against a stand-in `datasets` module (no network in tests) ----------------


class _FakeHub:
    """`datasets.load_dataset` answering from a dict keyed by (path, config, split)."""

    def __init__(self, tables: dict[tuple[str, str, str], list[dict]]) -> None:
        self.tables = tables
        self.calls: list[tuple[str, str, str]] = []

    def load_dataset(self, path: str, name: str, split: str, **_: object) -> list[dict]:
        self.calls.append((path, name, split))
        return self.tables[(path, name, split)]


def test_bright_load_hub_reads_the_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    hub = _FakeHub({
        ("xlangai/BRIGHT", "examples", "robotics"): [_example("0", ["a", "a"]),
                                                     _example("1", ["b"], ["a", "N/A"])],
        ("xlangai/BRIGHT", "gpt4_reason", "robotics"): [{"id": "0", "query": "r0"},
                                                        {"id": "1", "query": "r1"}],
        ("xlangai/BRIGHT", "documents", "robotics"): [{"id": "a", "content": "A"},
                                                      {"id": "b", "content": "B"}],
    })
    module = types.ModuleType("datasets")
    module.load_dataset = hub.load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", module)
    task = bright.load_hub("robotics", reasoning="gpt4_reason", corpus=True)
    assert task.qrels == {"0": {"a": 1}, "1": {"b": 1}}
    assert task.excluded == {"0": set(), "1": {"a"}}
    assert task.reasoning_queries == {"0": "r0", "1": "r1"}
    assert task.corpus is not None and task.corpus["b"].text == "B"
    assert [c[1] for c in hub.calls] == ["examples", "gpt4_reason", "documents"]


def test_r2med_load_hub_reads_the_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    hub = _FakeHub({
        ("R2MED/Biology", "qrels", "qrels"): [{"q_id": "q1", "p_id": "p1", "score": 1}],
        ("R2MED/Biology", "query", "query"): [{"id": "q1", "text": "Q"}],
        ("R2MED/Biology", "corpus", "corpus"): [{"id": "p1", "text": "P"}],
    })
    module = types.ModuleType("datasets")
    module.load_dataset = hub.load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", module)
    ds = r2med.load_hub("Biology")
    assert (ds.queries, ds.qrels) == ({"q1": "Q"}, {"q1": {"p1": 1}})
    assert ds.corpus is not None and ds.corpus["p1"].text == "P"
