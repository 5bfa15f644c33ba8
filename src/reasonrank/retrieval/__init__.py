"""First-stage retrieval: BM25 (bm25s), dense (sentence-transformers) and run fusion.

Heavy dependencies load lazily: `pip install 'reasonrank[retrieval]'` for BM25,
`'reasonrank[dense]'` for dense retrieval; fusion is pure Python.
"""

from __future__ import annotations

from reasonrank.retrieval.bm25 import BM25Index, BM25Settings
from reasonrank.retrieval.common import index_kind, write_run
from reasonrank.retrieval.dense import DenseIndex, minilm_model_path
from reasonrank.retrieval.fusion import interpolate, reciprocal_rank_fusion
from reasonrank.retrieval.scifact import scifact_corpus, write_corpus_jsonl

__all__ = [
    "BM25Index",
    "BM25Settings",
    "DenseIndex",
    "index_kind",
    "interpolate",
    "minilm_model_path",
    "reciprocal_rank_fusion",
    "scifact_corpus",
    "write_corpus_jsonl",
    "write_run",
]
