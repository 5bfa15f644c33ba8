"""BEIR's layout: one folder per dataset.

::

    ROOT/corpus.jsonl        {"_id", "title", "text"}       (read_corpus)
    ROOT/queries.jsonl       {"_id", "text"}                (read_queries)
    ROOT/qrels/<split>.tsv   header `query-id corpus-id score`, then one judgement a line

`.gz` works for every file. Only the queries judged in the split are kept (BEIR's
`queries.jsonl` holds those of every split) unless `all_queries=True`.
"""

from __future__ import annotations

from pathlib import Path

from reasonrank.datasets._layout import (
    JSONL_SUFFIXES,
    QRELS_SUFFIXES,
    require_dir,
    require_file,
)
from reasonrank.datasets.base import IRDataset
from reasonrank.io import read_corpus, read_qrels, read_queries
from reasonrank.io._files import StrPath

# The seven BEIR sets of the ReasonRank paper's BEIR average (BM25 top 100, 100-token passages).
REASONRANK_BEIR_SETS: tuple[str, ...] = (
    "trec-covid", "nfcorpus", "dbpedia-entity", "scifact", "signal1m", "trec-news", "robust04",
)


def qrels_path(root: StrPath, split: str = "test") -> Path:
    folder = require_dir(root, "BEIR dataset folder")
    return require_file(folder / "qrels", split, QRELS_SUFFIXES, f"BEIR {split} qrels")


def load_beir(
    root: StrPath,
    split: str = "test",
    *,
    corpus: bool = True,
    all_queries: bool = False,
    name: str | None = None,
) -> IRDataset:
    """Load a BEIR dataset folder; `corpus=False` skips the (possibly large) corpus."""
    folder = require_dir(root, "BEIR dataset folder")
    qrels = read_qrels(qrels_path(folder, split))
    queries = read_queries(require_file(folder, "queries", JSONL_SUFFIXES, "BEIR queries"))
    if not all_queries:
        queries = {q: t for q, t in queries.items() if q in qrels}
    docs = read_corpus(require_file(folder, "corpus", JSONL_SUFFIXES, "BEIR corpus")) \
        if corpus else None
    return IRDataset(name or folder.name, queries, qrels, docs)
