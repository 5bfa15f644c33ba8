"""Run I/O: read first-stage runs, corpora, queries, request files and qrels; write TREC runs
and JSONL traces, resumably. `.gz` paths are (de)compressed transparently."""

from __future__ import annotations

from reasonrank.io.readers import (
    Doc,
    MissingIdsError,
    Qrels,
    Run,
    build_requests,
    load_requests,
    read_corpus,
    read_id_texts,
    read_qrels,
    read_queries,
    read_query_answers,
    read_requests,
    read_run,
    read_score_json,
    read_trec_run,
    trec_eval_order,
)
from reasonrank.io.writers import (
    OutputFormatError,
    RunFiles,
    format_score,
    write_traces,
    write_trec,
)

__all__ = [
    "Doc",
    "MissingIdsError",
    "OutputFormatError",
    "Qrels",
    "Run",
    "RunFiles",
    "build_requests",
    "format_score",
    "load_requests",
    "read_corpus",
    "read_id_texts",
    "read_qrels",
    "read_queries",
    "read_query_answers",
    "read_requests",
    "read_run",
    "read_score_json",
    "read_trec_run",
    "trec_eval_order",
    "write_traces",
    "write_trec",
]
