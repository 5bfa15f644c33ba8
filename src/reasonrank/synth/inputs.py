"""Inputs of stage 1: gold answers of the queries, passage texts and first-stage pools.

Queries, corpora and runs are read with `reasonrank.io`; retrieval uses `reasonrank.retrieval`
(BM25 by default, dense or reciprocal rank fusion of both on request).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from reasonrank.errors import ConfigError, InputFormatError
from reasonrank.io._files import StrPath
from reasonrank.io.readers import QUERY_ID_FIELDS, Doc, _first, _is_json, _json_records
from reasonrank.text import passage_content

if TYPE_CHECKING:
    from reasonrank.io.readers import Run
    from reasonrank.synth.settings import SynthSettings

log = logging.getLogger(__name__)

ANSWER_FIELDS = ("answer", "gold_answer", "answers")


def read_answers(path: StrPath) -> dict[str, str]:
    """qid -> gold answer, from the `answer`, `gold_answer` or `answers` field of JSON query
    records (a list of answers is joined with "; "); TSV queries have none."""
    if not _is_json(path):
        return {}
    out: dict[str, str] = {}
    for line, prefix, record in _json_records(path):
        if not isinstance(record, dict):
            continue
        found = _first(record, QUERY_ID_FIELDS)
        answer = _first(record, ANSWER_FIELDS)
        if found is None or answer is None:
            continue
        value = answer[1]
        if isinstance(value, list):
            value = "; ".join(str(v) for v in value if str(v).strip())
        elif not isinstance(value, str | int | float) or isinstance(value, bool):
            raise InputFormatError(path, line, f"{prefix}field {answer[0]!r} must be a string "
                                   "or a list of strings")
        if str(value).strip():
            out[str(found[1])] = str(value).strip()
    return out


def doc_text(doc: Doc) -> str:
    """A passage as the training data stores it: title folded in as the engine does.

    Labelling prompts and exported `id_doc/` texts both use this text (with no separate title),
    so the SFT prompt built from the export equals the prompt the teacher labelled.
    """
    return passage_content(doc.text, doc.title)


def first_stage_run(settings: SynthSettings, corpus: Mapping[str, Doc],
                    queries: Mapping[str, str], progress: Any = None) -> Run:
    """The top `pool_depth` passages of each query, from `run`, or the chosen retriever."""
    depth = settings.pool_depth
    if settings.run:
        from reasonrank.io import read_run

        run = read_run(settings.run)
        unknown = sorted({d for q in queries for d, _ in run.get(q, [])[:depth]
                          if d not in corpus})
        if unknown:
            raise ConfigError(f"run {settings.run} names {len(unknown)} passage(s) missing from "
                              f"the corpus, e.g. {', '.join(unknown[:5])}")
        return {q: run.get(q, [])[:depth] for q in queries}
    if settings.retriever == "bm25":
        return _bm25(settings, corpus).search(queries, depth, progress=progress)
    if settings.retriever == "dense":
        return _dense(settings, corpus).search(queries, depth, progress=progress)
    from reasonrank.retrieval.fusion import reciprocal_rank_fusion

    runs = [_bm25(settings, corpus).search(queries, depth),
            _dense(settings, corpus).search(queries, depth)]
    fused = reciprocal_rank_fusion(runs)
    return {q: fused.get(q, [])[:depth] for q in queries}


def _bm25(settings: SynthSettings, corpus: Mapping[str, Doc]) -> Any:
    from reasonrank.retrieval.bm25 import BM25Index
    from reasonrank.retrieval.common import index_kind

    if settings.index and index_kind(settings.index) == "bm25":
        return BM25Index.load(settings.index)
    return BM25Index.build(corpus)


def _dense(settings: SynthSettings, corpus: Mapping[str, Doc]) -> Any:
    from reasonrank.retrieval.common import index_kind
    from reasonrank.retrieval.dense import DenseIndex

    if settings.index and index_kind(settings.index) == "dense":
        return DenseIndex.load(settings.index)  # its own query encoder
    return DenseIndex.build(corpus, settings.dense_model)
