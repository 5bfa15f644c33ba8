"""R2MED (Li et al., 2025): eight reasoning-driven medical retrieval tasks.

On the hub each task is its own dataset, `R2MED/<task>`, with the configs `corpus`, `query`
and `qrels`. Locally, one folder per task, as the hub's files are named or BEIR-like::

    ROOT/<task>/corpus.jsonl             {"id" | "_id", "text"[, "title"]}   (read_corpus)
    ROOT/<task>/query.jsonl              {"id" | "_id", "text"}   (or queries.jsonl)
    ROOT/<task>/qrels.jsonl              {"q_id", "p_id", "score"}  (the hub's qrels), or
    ROOT/<task>/qrels/test.tsv           BEIR qrels (header), or qrels.tsv / qrels.txt (TREC)

`.gz` works for every file. ReasonRank reranks the E5-Mistral top 100 of each task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reasonrank.datasets._layout import (
    JSONL_SUFFIXES,
    QRELS_SUFFIXES,
    DatasetNotFoundError,
    find_file,
    iter_json_lines,
    require_dir,
    require_file,
)
from reasonrank.datasets.base import IRDataset
from reasonrank.errors import ConfigError, InputFormatError, require
from reasonrank.io import Doc, Qrels, read_corpus, read_qrels, read_queries
from reasonrank.io._files import StrPath

TASKS: tuple[str, ...] = (
    "Biology", "Bioinformatics", "Medical-Sciences", "MedXpertQA-Exam", "MedQA-Diag",
    "PMC-Treatment", "PMC-Clinical", "IIYi-Clinical",
)
HUB_ORG = "R2MED"


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ConfigError(f"unknown R2MED task {task!r}; choose from: {', '.join(TASKS)}")


def read_qrels_jsonl(path: StrPath) -> Qrels:
    """R2MED's `qrels.jsonl`: `{"q_id", "p_id", "score"}` a line."""
    qrels: Qrels = {}
    for line, record in iter_json_lines(path):
        qid, pid, score = record.get("q_id"), record.get("p_id"), record.get("score")
        if not isinstance(qid, str | int) or not isinstance(pid, str | int) \
                or isinstance(score, bool) or not isinstance(score, int | float):
            raise InputFormatError(path, line, "expected {'q_id', 'p_id', 'score': integer}")
        if str(pid) in qrels.get(str(qid), {}):
            raise InputFormatError(path, line, f"duplicate judgment of {pid!r} for query {qid!r}")
        qrels.setdefault(str(qid), {})[str(pid)] = int(score)
    return qrels


def _qrels(folder: Path) -> Qrels:
    found = find_file(folder, "qrels", (".jsonl", ".jsonl.gz"))
    if found is not None:
        return read_qrels_jsonl(found)
    found = find_file(folder / "qrels", "test", QRELS_SUFFIXES) or \
        find_file(folder, "qrels", QRELS_SUFFIXES[:-1])
    if found is None:
        raise DatasetNotFoundError(
            f"no R2MED qrels in {folder} (looked for qrels.jsonl, qrels/test.tsv, qrels.tsv, "
            "qrels.txt)"
        )
    return read_qrels(found)


def load_task(root: StrPath, task: str, *, corpus: bool = True) -> IRDataset:
    """Load one R2MED task from `ROOT/<task>/` (see the module docstring)."""
    _check_task(task)
    folder = require_dir(Path(root) / task, f"R2MED {task} folder")
    qrels = _qrels(folder)
    queries = read_queries(
        require_file(folder, ("query", "queries"), JSONL_SUFFIXES, f"R2MED {task} queries")
    )
    docs = read_corpus(require_file(folder, "corpus", JSONL_SUFFIXES, f"R2MED {task} corpus")) \
        if corpus else None
    return IRDataset(task, queries, qrels, docs)


def load_hub(
    task: str, *, corpus: bool = True, cache_dir: str | None = None, revision: str | None = None
) -> IRDataset:
    """Load one task from the hub (`R2MED/<task>`; needs `reasonrank[hub]` and a network)."""
    _check_task(task)
    datasets = require("datasets", "hub", "loading R2MED from the Hugging Face hub")

    def rows(config: str) -> Any:  # a datasets.Dataset
        return datasets.load_dataset(f"{HUB_ORG}/{task}", config, split=config,
                                     cache_dir=cache_dir, revision=revision)

    qrels: Qrels = {}
    for r in rows("qrels"):
        qrels.setdefault(str(r["q_id"]), {})[str(r["p_id"])] = int(r["score"])
    queries = {str(r["id"]): r["text"] for r in rows("query")}
    docs = {str(r["id"]): Doc(r["text"]) for r in rows("corpus")} if corpus else None
    return IRDataset(task, queries, qrels, docs)
