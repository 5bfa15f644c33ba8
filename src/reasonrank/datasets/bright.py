"""BRIGHT (Su et al., 2024): twelve reasoning-intensive retrieval tasks, 1,384 queries.

A task's judgements are its examples' `gold_ids` (relevance 1; a set, so the ids that
theoremqa_questions repeats collapse), or `gold_ids_long` for the long-document setting. Each
query's `excluded_ids` must be removed from every run before scoring; `"N/A"` is a placeholder,
never an id. Passage texts live on the Hugging Face hub only (`xlangai/BRIGHT`).

Local layouts (`.gz` works for every file):

1. The release layout (as in `../shared/data/bright`)::

       ROOT/examples/<task>.jsonl          BRIGHT `examples` records: id, query, reasoning,
                                           gold_ids, gold_ids_long, excluded_ids, gold_answer
       ROOT/qrels/<task>.txt               optional TREC qrels; checked against gold_ids
       ROOT/runs_reasonir_gpt4cot_top100/<task>.txt   first-stage TREC runs (the default runs)
       ROOT/documents/<task>.jsonl         optional passages; also long_documents/<task>.jsonl
       ROOT/<llm>_reason/<task>.jsonl      optional LLM reasoning queries (id, query)

2. One folder per task::

       ROOT/<task>/examples.jsonl
       ROOT/<task>/documents.jsonl, long_documents.jsonl, <llm>_reason.jsonl   (optional)

Documents are `read_corpus` files (`id` with `text`/`contents`/...), or BRIGHT's own rows
(`id`, `content`), as `save_corpus` writes them and the hub's `documents` config holds them.
"""

from __future__ import annotations

import gzip
import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reasonrank.datasets._layout import (
    JSONL_SUFFIXES,
    QRELS_SUFFIXES,
    RUN_SUFFIXES,
    DatasetNotFoundError,
    find_file,
    iter_json_lines,
    require_dir,
    require_file,
)
from reasonrank.errors import ConfigError, InputFormatError, require
from reasonrank.io import Doc, Qrels, Run, build_requests, read_corpus, read_qrels, read_run
from reasonrank.io._files import StrPath, iter_lines
from reasonrank.io.readers import TEXT_FIELDS
from reasonrank.types import Request

if TYPE_CHECKING:
    from reasonrank.evaluation import EvalResult

TASKS: tuple[str, ...] = (
    "economics", "earth_science", "robotics", "biology", "psychology", "stackoverflow",
    "sustainable_living", "leetcode", "pony", "aops", "theoremqa_questions", "theoremqa_theorems",
)
"""The twelve tasks, in the order of the ReasonRank paper's table."""
SHORT_NAMES: dict[str, str] = dict(zip(TASKS, (
    "econ", "earth", "robot", "bio", "psych", "stack", "sus", "leet", "pony", "aops", "theoQ",
    "theoT",
), strict=True))
"""Column headers of the paper's table."""
LONG_TASKS: tuple[str, ...] = (*TASKS[:7], "pony")
"""Tasks with long-document judgements (`gold_ids_long`)."""
NUM_QUERIES = 1384
HUB_ID = "xlangai/BRIGHT"
REASONING_SOURCES: tuple[str, ...] = ("gpt4", "claude-3-opus", "Gemini-1.0", "grit", "llama3-70b")
"""LLMs whose reasoning queries BRIGHT ships as the `<llm>_reason` configs."""
DEFAULT_RUNS = "runs_reasonir_gpt4cot_top100"
"""The first-stage runs ReasonRank reranks: ReasonIR-8B, GPT-4 reasoning queries, top 100."""
NA = "N/A"


class BrightDataWarning(UserWarning):
    """BRIGHT data that is suspicious but usable: gold ids also excluded, qrels disagreeing."""


@dataclass
class BrightTask:
    """One BRIGHT task: queries, judgements and per-query exclusions.

    `qrels` holds the queries with at least one gold id (`{qid: {docid: 1}}`); `excluded` has
    every query, `"N/A"` dropped. `overlaps` lists gold ids that are also excluded (a data error
    BRIGHT does not have; loading warns with `BrightDataWarning`).
    """

    name: str
    queries: dict[str, str]
    qrels: Qrels
    excluded: dict[str, set[str]]
    reasoning_queries: dict[str, str] | None = None
    corpus: dict[str, Doc] | None = None
    long: bool = False
    overlaps: dict[str, set[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.queries)

    def filter_run(self, run: Mapping[str, Sequence[tuple[str, float]]]) -> Run:
        """`run` without each query's excluded documents (order kept)."""
        out: Run = {}
        for qid, docs in run.items():
            drop = self.excluded.get(qid, ())
            out[qid] = [(d, float(s)) for d, s in docs if d not in drop]
        return out

    def requests(
        self,
        run: Mapping[str, Sequence[tuple[str, float]]],
        *,
        top_k: int | None = None,
        reasoning: bool = False,
        corpus: Mapping[str, Doc | str] | None = None,
    ) -> list[Request]:
        """Reranking requests: the run joined with the task's queries and a corpus.

        The original queries are used unless `reasoning` (then `reasoning_queries`). Excluded
        documents stay in the candidate lists (the reference removes them only when scoring).
        """
        docs = corpus if corpus is not None else self.corpus
        if docs is None:
            raise ConfigError(
                f"BRIGHT {self.name}: reranking needs the passage texts, which are not in the "
                "local data; load a corpus (documents/<task>.jsonl, load_hub(corpus=True)) or "
                "pass corpus="
            )
        queries = self.queries
        if reasoning:
            if self.reasoning_queries is None:
                raise ConfigError(f"BRIGHT {self.name}: no reasoning queries were loaded")
            queries = self.reasoning_queries
        return build_requests(run, docs, queries, top_k)

    def evaluate(
        self, run: Mapping[str, Any], metrics: Sequence[str] = ("ndcg@10",)
    ) -> EvalResult:
        """Score `run` against the task's qrels with its excluded ids removed."""
        from reasonrank.evaluation import evaluate

        return evaluate(run, self.qrels, tuple(metrics), exclude=self.excluded)


# --- checks ---------------------------------------------------------------------------------


def check_overlap(qrels: Mapping[str, Mapping[str, int]],
                  excluded: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """Gold ids that are also excluded, by query (empty when the data is sound)."""
    out: dict[str, set[str]] = {}
    for qid, judged in qrels.items():
        both = {d for d in excluded.get(qid, ()) if judged.get(d, 0) > 0}
        if both:
            out[qid] = both
    return out


def _describe(pairs: Mapping[str, Iterable[str]], shown: int = 5) -> str:
    items = sorted(pairs.items())
    text = "; ".join(f"{q}: {', '.join(sorted(ids))}" for q, ids in items[:shown])
    return text + ("; ..." if len(items) > shown else "")


def _warn_overlap(task: str, overlaps: Mapping[str, set[str]]) -> None:
    if overlaps:
        n = sum(len(v) for v in overlaps.values())
        warnings.warn(
            BrightDataWarning(
                f"BRIGHT {task}: {n} gold id(s) of {len(overlaps)} query(ies) are also excluded "
                f"(they will be removed from runs but still count as relevant): "
                f"{_describe(overlaps)}"
            ),
            stacklevel=3,
        )


# --- parsing examples -----------------------------------------------------------------------


def _ids(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise ValueError(f"'{name}' must be a list of ids")
    return [str(v) for v in value if str(v) != NA]


def _parse_examples(
    records: Iterable[tuple[int | None, Mapping[str, Any]]], source: StrPath, task: str,
    long: bool,
) -> BrightTask:
    queries: dict[str, str] = {}
    qrels: Qrels = {}
    excluded: dict[str, set[str]] = {}
    gold_field = "gold_ids_long" if long else "gold_ids"
    for line, record in records:
        try:
            qid = record.get("id")
            if isinstance(qid, bool) or not isinstance(qid, str | int) or str(qid) == "":
                raise ValueError(f"'id' must be a non-empty string or integer, got {qid!r}")
            qid = str(qid)
            text = record.get("query")
            if not isinstance(text, str):
                raise ValueError(f"query {qid!r}: 'query' must be a string")
            if gold_field not in record:
                raise ValueError(f"query {qid!r} has no '{gold_field}'")
            gold = _ids(record[gold_field], gold_field)
            drop = set(_ids(record.get("excluded_ids"), "excluded_ids"))
        except ValueError as exc:
            raise InputFormatError(source, line, str(exc)) from None
        if qid in queries:
            raise InputFormatError(source, line, f"duplicate query id {qid!r}")
        queries[qid] = text
        excluded[qid] = drop
        if gold:
            qrels[qid] = dict.fromkeys(gold, 1)
    if long and not qrels:
        raise ConfigError(
            f"BRIGHT {task} has no long-document judgements (gold_ids_long); the long setting "
            f"covers {', '.join(LONG_TASKS)}"
        )
    overlaps = check_overlap(qrels, excluded)
    _warn_overlap(task, overlaps)
    return BrightTask(task, queries, qrels, excluded, long=long, overlaps=overlaps)


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ConfigError(f"unknown BRIGHT task {task!r}; choose from: {', '.join(TASKS)}")


def _reason_config(source: str) -> str:
    name = source.removesuffix("_reason")
    return f"{name}_reason"


# --- local files ----------------------------------------------------------------------------


def _release_layout(root: Path) -> bool:
    return (root / "examples").is_dir()


def examples_path(root: StrPath, task: str) -> Path:
    """The examples file of `task` under `root` (either layout)."""
    _check_task(task)
    base = require_dir(root, "BRIGHT data folder")
    if _release_layout(base):
        return require_file(base / "examples", task, JSONL_SUFFIXES, f"BRIGHT {task} examples")
    if (base / task).is_dir():
        return require_file(base / task, "examples", JSONL_SUFFIXES, f"BRIGHT {task} examples")
    raise DatasetNotFoundError(
        f"{base} is not a BRIGHT folder: expected {base / 'examples'}/<task>.jsonl[.gz] or "
        f"{base}/<task>/examples.jsonl[.gz]"
    )


def _optional(root: Path, task: str, kind: str) -> Path | None:
    """`ROOT/<kind>/<task>.jsonl` (release layout) or `ROOT/<task>/<kind>.jsonl`."""
    if _release_layout(root):
        return find_file(root / kind, task, JSONL_SUFFIXES)
    return find_file(root / task, kind, JSONL_SUFFIXES)


def read_examples(path: StrPath, task: str = "", *, long: bool = False) -> BrightTask:
    """A `BrightTask` from one BRIGHT examples file (JSONL, `.gz` too)."""
    name = task or Path(path).name.split(".")[0]
    return _parse_examples(iter_json_lines(path), path, name, long)


def read_excluded(path: StrPath) -> dict[str, set[str]]:
    """`{qid: excluded doc ids}` of a BRIGHT examples file, `"N/A"` dropped."""
    out: dict[str, set[str]] = {}
    for line, record in iter_json_lines(path):
        qid = record.get("id")
        if isinstance(qid, bool) or not isinstance(qid, str | int):
            raise InputFormatError(path, line, f"'id' must be a string or integer, got {qid!r}")
        try:
            out[str(qid)] = set(_ids(record.get("excluded_ids"), "excluded_ids"))
        except ValueError as exc:
            raise InputFormatError(path, line, str(exc)) from None
    return out


def read_documents(path: StrPath) -> dict[str, Doc]:
    """Passages: a `read_corpus` file, or BRIGHT rows `{"id", "content"}` (JSONL)."""
    first = _first_record(path)
    if first is None or "content" not in first or any(f in first for f in TEXT_FIELDS):
        return read_corpus(path)
    corpus: dict[str, Doc] = {}
    for line, record in iter_json_lines(path):
        docid, text = record.get("id"), record.get("content")
        if isinstance(docid, bool) or not isinstance(docid, str | int) or not isinstance(text, str):
            raise InputFormatError(path, line, "expected {'id': str, 'content': str}")
        if str(docid) in corpus:
            raise InputFormatError(path, line, f"duplicate document id {str(docid)!r}")
        corpus[str(docid)] = Doc(text)
    return corpus


def _first_record(path: StrPath) -> Mapping[str, Any] | None:
    """The first record of a JSONL file; None for other formats."""
    with closing(iter_lines(path)) as lines:
        jsonl = next((line.lstrip().startswith("{") for _, line in lines if line.strip()), False)
    if not jsonl:
        return None
    with closing(iter_json_lines(path)) as records:
        first = next(records, None)
    return None if first is None else first[1]


def read_reasoning_queries(path: StrPath) -> dict[str, str]:
    """`{qid: reasoning query}` from a BRIGHT `<llm>_reason` file (id, query)."""
    out: dict[str, str] = {}
    for line, record in iter_json_lines(path):
        qid, text = record.get("id"), record.get("query")
        if isinstance(qid, bool) or not isinstance(qid, str | int) or not isinstance(text, str):
            raise InputFormatError(path, line, "expected {'id': str, 'query': str}")
        out[str(qid)] = text
    return out


def _check_qrels_file(root: Path, task: BrightTask) -> None:
    """Compare `ROOT/qrels/<task>.txt`, when there, with the examples' gold ids."""
    path = find_file(root / "qrels", task.name, QRELS_SUFFIXES)
    if path is None or task.long:
        return
    listed = {(q, d) for q, docs in read_qrels(path).items() for d, r in docs.items() if r > 0}
    gold = {(q, d) for q, docs in task.qrels.items() for d in docs}
    if listed != gold:
        diff: dict[str, set[str]] = {}
        for q, d in sorted(listed ^ gold):
            diff.setdefault(q, set()).add(d)
        warnings.warn(
            BrightDataWarning(
                f"BRIGHT {task.name}: {path} differs from the examples' gold_ids in "
                f"{len(listed ^ gold)} pair(s) (the gold_ids are used): {_describe(diff)}"
            ),
            stacklevel=3,
        )


def load_task(
    root: StrPath,
    task: str,
    *,
    long: bool = False,
    reasoning: str | None = None,
    corpus: bool = False,
) -> BrightTask:
    """Load one BRIGHT task from a local folder (either layout, see the module docstring).

    `reasoning` names an LLM of `REASONING_SOURCES` whose reasoning queries to load;
    `corpus=True` loads `documents` (or `long_documents` with `long`), which must be there.
    """
    path = examples_path(root, task)
    base = Path(root)
    loaded = _parse_examples(iter_json_lines(path), path, task, long)
    if _release_layout(base):
        _check_qrels_file(base, loaded)
    if reasoning is not None:
        kind = _reason_config(reasoning)
        found = _optional(base, task, kind)
        if found is None:
            raise DatasetNotFoundError(f"no {kind} queries for BRIGHT {task} under {base}")
        loaded.reasoning_queries = read_reasoning_queries(found)
    if corpus:
        kind = "long_documents" if long else "documents"
        found = _optional(base, task, kind)
        if found is None:
            raise DatasetNotFoundError(
                f"no {kind} for BRIGHT {task} under {base} (BRIGHT's passages are on the hub "
                f"only: load_hub(..., corpus=True), then save_corpus)"
            )
        loaded.corpus = read_documents(found)
    return loaded


def load_tasks(
    root: StrPath, tasks: Iterable[str] | None = None, **options: Any
) -> dict[str, BrightTask]:
    """`load_task` for each of `tasks` (all twelve by default), in the given order."""
    return {t: load_task(root, t, **options) for t in (TASKS if tasks is None else tasks)}


def run_path(runs_dir: StrPath, task: str) -> Path:
    """The first-stage run of `task` in `runs_dir`: `<task>.txt[.gz]`, `.trec`, `.json`, ..."""
    _check_task(task)
    folder = require_dir(runs_dir, "runs folder")
    return require_file(folder, task, RUN_SUFFIXES, f"run for BRIGHT {task}")


def load_run(runs_dir: StrPath, task: str) -> Run:
    """The first-stage run of `task` from `runs_dir` (TREC or score JSON, `.gz` too)."""
    return read_run(run_path(runs_dir, task))


def default_runs_dir(root: StrPath) -> Path:
    return Path(root) / DEFAULT_RUNS


# --- the Hugging Face hub -------------------------------------------------------------------


def _hub(config: str, task: str, cache_dir: str | None, revision: str | None) -> Any:
    datasets = require("datasets", "hub", "loading BRIGHT from the Hugging Face hub")
    return datasets.load_dataset(HUB_ID, config, split=task, cache_dir=cache_dir,
                                 revision=revision)


def load_hub(
    task: str,
    *,
    long: bool = False,
    reasoning: str | None = None,
    corpus: bool = False,
    cache_dir: str | None = None,
    revision: str | None = None,
) -> BrightTask:
    """Load one task from the hub (`xlangai/BRIGHT`; needs `reasonrank[hub]` and a network).

    Reads the `examples` config, with `reasoning` the `<llm>_reason` config, with `corpus` the
    `documents` (or `long_documents`) config; the hub's split is the task name.
    """
    _check_task(task)
    source = f"{HUB_ID} examples/{task}"
    rows = _hub("examples", task, cache_dir, revision)
    loaded = _parse_examples(((i + 1, row) for i, row in enumerate(rows)), source, task, long)
    if reasoning is not None:
        reason_rows = _hub(_reason_config(reasoning), task, cache_dir, revision)
        loaded.reasoning_queries = {str(r["id"]): r["query"] for r in reason_rows}
    if corpus:
        doc_rows = _hub("long_documents" if long else "documents", task, cache_dir, revision)
        loaded.corpus = {str(r["id"]): Doc(r["content"]) for r in doc_rows}
    return loaded


def save_corpus(corpus: Mapping[str, Doc | str], path: StrPath) -> Path:
    """Write passages as JSONL `{"id", "text"[, "title"]}` (gzip for `.gz`), for `--corpus-dir`.

    E.g. `save_corpus(load_hub("biology", corpus=True).corpus, "corpora/biology.jsonl.gz")`.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    opener = gzip.open if target.name.endswith(".gz") else open
    with opener(tmp, "wt", encoding="utf-8") as fh:
        for docid, doc in corpus.items():
            d = Doc(doc) if isinstance(doc, str) else Doc(*doc)
            record = {"id": docid, "text": d.text}
            if d.title:
                record["title"] = d.title
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, target)
    return target
