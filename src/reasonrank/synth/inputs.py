"""Inputs of stage 1: passage texts and first-stage pools (gold answers: `reasonrank.io`).

Queries, corpora and runs are read with `reasonrank.io`; retrieval uses `reasonrank.retrieval`
(BM25 by default, dense or reciprocal rank fusion of both on request).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from reasonrank.core.text import passage_content
from reasonrank.errors import ConfigError
from reasonrank.io.readers import Doc

if TYPE_CHECKING:
    from reasonrank.io.readers import Run
    from reasonrank.synth.settings import SynthSettings

log = logging.getLogger(__name__)

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
