"""The ReasonRank 13k training data layout: records, id-to-text tables, checks and the
self-consistency filter (reference section 6). Pure: no heavy imports.

Layout of a data folder::

    training_data_all.jsonl   one record a line: dataset, qid, initial_list, final_list,
                              reasoning, relevant_docids
    id_query/                 query id -> text  (JSON `{id: text}` or JSONL `{"id", "text"}`)
    id_doc/                   passage id -> text (the same two forms)
    prompt_settings.json      optional: template, passage length and tokenizer the prompts
                              were rendered with (`reasonrank synth` writes it)

Ids may repeat across the files of `id_query/` or `id_doc/` only with the same text, unless
a file is named after a record's dataset (`id_doc/biology.jsonl`): such a file is looked up
first for that dataset's records, so datasets whose ids collide can live side by side.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonrank.errors import InputFormatError, ReasonRankError
from reasonrank.io._files import StrPath, atomic_write, base_name, iter_lines, load_json
from reasonrank.io.readers import read_id_texts
from reasonrank.training.prompt_format import PromptFormat, read_prompt_format
from reasonrank.training.rewards import ndcg_at_k

RECORDS_FILE = "training_data_all.jsonl"
QUERY_DIR = "id_query"
DOC_DIR = "id_doc"
FIELDS = ("dataset", "qid", "initial_list", "final_list", "reasoning", "relevant_docids")
DEFAULT_THRESHOLD = 0.4
DEFAULT_WINDOW = 20
_TABLE_SUFFIXES = (".json", ".jsonl", ".ndjson")


class TrainingDataError(ReasonRankError, ValueError):
    """Training data failed its checks; `problems` lists each one with its place."""

    def __init__(self, problems: Sequence[DataProblem], shown: int = 20) -> None:
        lines = [str(p) for p in problems[:shown]]
        more = len(problems) - shown
        if more > 0:
            lines.append(f"... and {more} more")
        kinds = Counter(p.kind for p in problems)
        summary = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        super().__init__(f"{len(problems)} problems in the training data ({summary}):\n"
                         + "\n".join(lines))
        self.problems = list(problems)


@dataclass(frozen=True)
class TrainingRecord:
    """One teacher-labelled list: at most `window` passages of one query."""

    dataset: str
    qid: str
    initial_list: tuple[str, ...]
    final_list: tuple[str, ...]
    reasoning: str
    relevant_docids: tuple[str, ...]
    line: int | None = field(default=None, compare=False)
    raw: str | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The record's six fields, as in `training_data_all.jsonl`."""
        return {"dataset": self.dataset, "qid": self.qid,
                "initial_list": list(self.initial_list), "final_list": list(self.final_list),
                "reasoning": self.reasoning, "relevant_docids": list(self.relevant_docids)}

    def to_line(self) -> str:
        """The record as one JSONL line (its original text when it was read from a file)."""
        return self.raw if self.raw is not None else json.dumps(self.to_dict(),
                                                                ensure_ascii=False)

    @property
    def consistency(self) -> float:
        """NDCG@10 of the teacher's list judged by its own relevant ids (section 6)."""
        return ndcg_at_k(self.final_list, set(self.relevant_docids), 10)


@dataclass(frozen=True)
class DataProblem:
    """One failed check: what, where."""

    kind: str
    message: str
    path: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}: " if self.path and self.line else (
            f"{self.path}: " if self.path else "")
        return f"{where}{self.kind}: {self.message}"


class TextTable:
    """id -> text read from every JSON/JSONL file of a folder, with per-dataset files first."""

    def __init__(self, folder: StrPath | None = None,
                 tables: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.tables: dict[str, dict[str, str]] = {k: dict(v) for k, v in (tables or {}).items()}
        if self.folder is not None:
            if not self.folder.is_dir():
                raise InputFormatError(self.folder, None, "missing folder (expected the "
                                       "id-to-text tables of the 13k layout)")
            for path in sorted(self.folder.iterdir()):
                name = base_name(path)
                if path.is_file() and name.endswith(_TABLE_SUFFIXES):
                    self.tables[name.rsplit(".", 1)[0]] = read_id_texts(path)
        self._merged: dict[str, str] = {}
        self.conflicts: dict[str, list[str]] = {}
        for stem, table in self.tables.items():
            for key, text in table.items():
                seen = self._merged.setdefault(key, text)
                if seen != text:
                    self.conflicts.setdefault(key, []).append(stem)

    def __len__(self) -> int:
        return len(self._merged)

    def get(self, key: str, dataset: str | None = None) -> str | None:
        """The text of `key`, preferring the table named after `dataset`; None if unknown."""
        own = self.tables.get(dataset) if dataset is not None else None
        if own is not None and key in own:
            return own[key]
        return self._merged.get(key)

    def ambiguous(self, key: str, dataset: str | None = None) -> bool:
        """Whether `key` has different texts in several tables and no table for `dataset`."""
        own = self.tables.get(dataset) if dataset is not None else None
        return key in self.conflicts and not (own is not None and key in own)


@dataclass
class TrainingSet:
    """Records with their query and passage texts."""

    records: list[TrainingRecord]
    queries: TextTable
    docs: TextTable
    root: Path | None = None
    prompt_format: PromptFormat | None = None  # how the records' prompts were rendered

    def query_text(self, record: TrainingRecord) -> str:
        text = self.queries.get(record.qid, record.dataset)
        if text is None:
            raise TrainingDataError([_problem_at(record, "missing query",
                                                 f"query {record.qid!r} is not in {QUERY_DIR}/",
                                                 self.root)])
        return text

    def doc_texts(self, record: TrainingRecord) -> list[str]:
        """The passages of `record.initial_list`, in order."""
        out = []
        for docid in record.initial_list:
            text = self.docs.get(docid, record.dataset)
            if text is None:
                raise TrainingDataError([_problem_at(record, "missing passage",
                                                     f"passage {docid!r} is not in {DOC_DIR}/",
                                                     self.root)])
            out.append(text)
        return out


# --- reading and writing --------------------------------------------------------------------


def _id_list(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list of ids, got {type(value).__name__}")
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise ValueError(f"{name} holds {item!r}, not a string or integer id")
        out.append(str(item))
    return tuple(out)


def record_from_dict(data: Mapping[str, Any], line: int | None = None,
                     raw: str | None = None) -> TrainingRecord:
    """A record from its JSON object; ValueError names the bad field."""
    missing = [f for f in FIELDS if f not in data]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    for name in ("dataset", "qid", "reasoning"):
        value = data[name]
        if name == "qid" and isinstance(value, int) and not isinstance(value, bool):
            continue
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    return TrainingRecord(
        dataset=data["dataset"], qid=str(data["qid"]),
        initial_list=_id_list(data["initial_list"], "initial_list"),
        final_list=_id_list(data["final_list"], "final_list"),
        reasoning=data["reasoning"],
        relevant_docids=_id_list(data["relevant_docids"], "relevant_docids"),
        line=line, raw=raw)


def read_records(path: StrPath) -> list[TrainingRecord]:
    """Read `training_data_all.jsonl` (or any JSONL of such records); errors name the line."""
    out = []
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        data = load_json(line, path, lineno)
        if not isinstance(data, dict):
            raise InputFormatError(path, lineno, "expected a JSON object")
        try:
            out.append(record_from_dict(data, lineno, line))
        except ValueError as exc:
            raise InputFormatError(path, lineno, str(exc)) from None
    return out


def records_path(root: StrPath) -> Path:
    """The records file of a data folder (or `root` itself when it is a file)."""
    root = Path(root)
    if root.is_file():
        return root
    path = root / RECORDS_FILE
    if not path.is_file():
        raise InputFormatError(root, None, f"no {RECORDS_FILE} here: expected the 13k layout "
                               f"({RECORDS_FILE}, {QUERY_DIR}/, {DOC_DIR}/)")
    return path


def read_training_set(root: StrPath) -> TrainingSet:
    """Read a folder in the 13k layout: records plus the `id_query/` and `id_doc/` tables."""
    path = records_path(root)
    folder = path.parent
    return TrainingSet(read_records(path), TextTable(folder / QUERY_DIR),
                       TextTable(folder / DOC_DIR), folder, read_prompt_format(folder))


def write_records(records: Iterable[TrainingRecord], path: StrPath) -> int:
    """Write records as JSONL, atomically; records read from a file keep their exact text."""
    n = 0
    with atomic_write(path) as fh:
        for record in records:
            fh.write(record.to_line().encode("utf-8") + b"\n")
            n += 1
    return n


def _write_table(path: Path, table: Mapping[str, str]) -> None:
    with atomic_write(path) as fh:
        for key, text in table.items():
            fh.write(json.dumps({"id": key, "text": text}, ensure_ascii=False).encode() + b"\n")


def write_training_set(root: StrPath, records: Sequence[TrainingRecord],
                       queries: Mapping[str, str], docs: Mapping[str, str]) -> Path:
    """Write the 13k layout under `root`, with only the texts the records use."""
    root = Path(root)
    (root / QUERY_DIR).mkdir(parents=True, exist_ok=True)
    (root / DOC_DIR).mkdir(parents=True, exist_ok=True)
    qids = dict.fromkeys(r.qid for r in records)
    docids = dict.fromkeys(d for r in records for d in (*r.initial_list, *r.final_list))
    unknown = [q for q in qids if q not in queries] + [d for d in docids if d not in docs]
    if unknown:
        raise ReasonRankError(f"no text for {len(unknown)} id(s): {', '.join(unknown[:5])}")
    _write_table(root / QUERY_DIR / "queries.jsonl", {q: queries[q] for q in qids})
    _write_table(root / DOC_DIR / "docs.jsonl", {d: docs[d] for d in docids})
    write_records(records, root / RECORDS_FILE)
    return root


# --- checks ---------------------------------------------------------------------------------


def _problem_at(record: TrainingRecord, kind: str, message: str,
                root: Path | None) -> DataProblem:
    path = str(root / RECORDS_FILE) if root is not None and record.line else None
    return DataProblem(kind, f"{record.dataset}/{record.qid}: {message}", path, record.line)


def _duplicates(ids: Sequence[str]) -> list[str]:
    return [d for d, n in Counter(ids).items() if n > 1]


def record_problems(record: TrainingRecord, window: int = DEFAULT_WINDOW) -> Iterator[
        tuple[str, str]]:
    """`(kind, message)` for each structural problem of one record (no texts needed)."""
    if not record.initial_list:
        yield "empty list", "initial_list is empty"
    if len(record.initial_list) > window:
        yield "list too long", (f"initial_list holds {len(record.initial_list)} passages, "
                                f"more than the window of {window}")
    for name in ("initial_list", "final_list", "relevant_docids"):
        dups = _duplicates(getattr(record, name))
        if dups:
            yield "duplicate ids", f"{name} repeats {', '.join(dups[:5])}"
    shown, ranked = set(record.initial_list), set(record.final_list)
    if ranked != shown:
        extra = [d for d in record.final_list if d not in shown]
        lost = [d for d in record.initial_list if d not in ranked]
        detail = "; ".join(part for part in (
            f"not in initial_list: {', '.join(extra[:5])}" if extra else "",
            f"missing from final_list: {', '.join(lost[:5])}" if lost else "") if part)
        yield "list mismatch", f"final_list is not a permutation of initial_list ({detail})"
    stray = [d for d in record.relevant_docids if d not in shown]
    if stray:
        yield "unknown relevant id", f"relevant_docids not in initial_list: {', '.join(stray[:5])}"
    if not record.reasoning.strip():
        yield "empty reasoning", "reasoning is empty"


def check_training_set(data: TrainingSet, window: int = DEFAULT_WINDOW) -> list[DataProblem]:
    """Every problem of the records and their texts: structure, duplicate records, ids
    missing from `id_query/` or `id_doc/`, ambiguous ids, empty texts."""
    problems: list[DataProblem] = []
    seen: dict[tuple[str, str, tuple[str, ...]], int | None] = {}
    for record in data.records:
        def add(kind: str, message: str, record: TrainingRecord = record) -> None:
            problems.append(_problem_at(record, kind, message, data.root))

        for kind, message in record_problems(record, window):
            add(kind, message)
        key = (record.dataset, record.qid, record.initial_list)
        if key in seen:
            add("duplicate record", f"same dataset, qid and list as line {seen[key]}")
        seen.setdefault(key, record.line)
        for table, ids, what, folder in (
                (data.queries, (record.qid,), "query", QUERY_DIR),
                (data.docs, record.initial_list, "passage", DOC_DIR)):
            for key_id in ids:
                text = table.get(key_id, record.dataset)
                if text is None:
                    add(f"missing {what}", f"{what} {key_id!r} is not in {folder}/")
                elif table.ambiguous(key_id, record.dataset):
                    add(f"ambiguous {what}", f"{what} {key_id!r} has different texts in "
                        f"{folder}/ files {', '.join(table.conflicts[key_id][:3])} and others")
                elif not text.strip():
                    add(f"empty {what}", f"{what} {key_id!r} has an empty text")
    return problems


def ensure_valid(data: TrainingSet, window: int = DEFAULT_WINDOW) -> TrainingSet:
    """Raise `TrainingDataError` listing every problem, else return `data`."""
    problems = check_training_set(data, window)
    if problems:
        raise TrainingDataError(problems)
    return data


# --- self-consistency filter ----------------------------------------------------------------


@dataclass
class DomainCount:
    kept: int = 0
    dropped: int = 0

    @property
    def total(self) -> int:
        return self.kept + self.dropped


@dataclass
class FilterResult:
    """What the self-consistency filter kept and dropped, overall and per domain."""

    threshold: float
    kept: list[TrainingRecord] = field(default_factory=list)
    dropped: list[TrainingRecord] = field(default_factory=list)
    domains: dict[str, DomainCount] = field(default_factory=dict)

    def report(self) -> list[dict[str, Any]]:
        """One row per domain (sorted) and a final `all` row."""
        rows = [{"dataset": name, "total": c.total, "kept": c.kept, "dropped": c.dropped,
                 "kept_fraction": c.kept / c.total if c.total else 0.0}
                for name, c in sorted(self.domains.items())]
        total = len(self.kept) + len(self.dropped)
        rows.append({"dataset": "all", "total": total, "kept": len(self.kept),
                     "dropped": len(self.dropped),
                     "kept_fraction": len(self.kept) / total if total else 0.0})
        return rows


def consistency_floor(list_size: int, positives: int, k: int = 10) -> float:
    """The lowest NDCG@k any ranking of a list of `list_size` passages with `positives`
    relevant ones can score (every positive ranked last): a filter threshold at or below it
    keeps every such list."""
    positives = max(0, min(positives, list_size))
    if positives == 0:
        return 0.0
    ranking = [f"n{i}" for i in range(list_size - positives)] + [
        f"p{i}" for i in range(positives)]
    return ndcg_at_k(ranking, {f"p{i}" for i in range(positives)}, k)


def filter_is_vacuous(threshold: float, list_sizes: Iterable[tuple[int, int]],
                      k: int = 10) -> float | None:
    """The lowest consistency floor of the `(list_size, positives)` shapes when every one is
    >= `threshold` (the filter can drop nothing), else None."""
    floors = [consistency_floor(n, p, k) for n, p in list_sizes if p > 0]
    if floors and min(floors) >= threshold:
        return min(floors)
    return None


def self_consistency_filter(records: Iterable[TrainingRecord],
                            threshold: float = DEFAULT_THRESHOLD) -> FilterResult:
    """Keep a record iff NDCG@10 of its `final_list`, judged by its `relevant_docids` as
    binary qrels, is >= `threshold` (reference section 6; the released threshold is 0.4)."""
    result = FilterResult(threshold)
    for record in records:
        counts = result.domains.setdefault(record.dataset, DomainCount())
        if record.consistency >= threshold:
            result.kept.append(record)
            counts.kept += 1
        else:
            result.dropped.append(record)
            counts.dropped += 1
    return result


def split_records(records: Sequence[TrainingRecord], fraction: float = 0.5,
                  seed: int = 42) -> tuple[list[TrainingRecord], list[TrainingRecord]]:
    """Split records in two (e.g. SFT and RL, as the releases halve the 13k set), `fraction`
    of each domain in the first part, chosen at random with `seed`; both parts keep the input
    order. Deterministic for the same records, fraction and seed."""
    import random

    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    by_domain: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        by_domain.setdefault(record.dataset, []).append(i)
    first: set[int] = set()
    for name in sorted(by_domain):
        indices = by_domain[name]
        rng = random.Random(f"{seed}:{name}")
        first.update(rng.sample(indices, round(fraction * len(indices))))
    return ([r for i, r in enumerate(records) if i in first],
            [r for i, r in enumerate(records) if i not in first])
