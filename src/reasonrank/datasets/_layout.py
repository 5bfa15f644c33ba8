"""Finding a dataset's files on disk: one place that knows the accepted names and suffixes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from reasonrank.errors import ReasonRankError
from reasonrank.io._files import StrPath, iter_lines, load_json

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")
RUN_SUFFIXES = (".txt", ".txt.gz", ".trec", ".trec.gz", ".run", ".run.gz", ".tsv", ".tsv.gz",
                ".json", ".json.gz", "")
QRELS_SUFFIXES = (".tsv", ".tsv.gz", ".txt", ".txt.gz", ".trec", ".trec.gz", "")


class DatasetNotFoundError(ReasonRankError, FileNotFoundError):
    """A dataset folder or one of its files is missing; the message lists what was looked for."""


def find_file(folder: StrPath, stems: str | Iterable[str], suffixes: Iterable[str]) -> Path | None:
    """The first existing `folder/<stem><suffix>`, trying stems in order, then suffixes."""
    base = Path(folder)
    for stem in [stems] if isinstance(stems, str) else stems:
        for suffix in suffixes:
            path = base / f"{stem}{suffix}"
            if path.is_file():
                return path
    return None


def require_file(
    folder: StrPath, stems: str | Iterable[str], suffixes: Iterable[str], what: str
) -> Path:
    """`find_file`, or `DatasetNotFoundError` naming the folder and the names tried."""
    stems = [stems] if isinstance(stems, str) else list(stems)
    suffixes = list(suffixes)
    found = find_file(folder, stems, suffixes)
    if found is None:
        tried = ", ".join(f"{s}{x}" for s in stems for x in suffixes if x)
        raise DatasetNotFoundError(f"no {what} in {folder} (looked for {tried})")
    return found


def require_dir(path: StrPath, what: str) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise DatasetNotFoundError(f"{what} {folder} is not a folder")
    return folder


def iter_json_lines(path: StrPath) -> Iterator[tuple[int, Any]]:
    """`(line, object)` of a JSONL file (`.gz` too); a bad line raises `InputFormatError`."""

    from reasonrank.errors import InputFormatError

    for lineno, line in iter_lines(path):
        text = line.strip()
        if not text:
            continue
        record = load_json(text, path, lineno)
        if not isinstance(record, dict):
            raise InputFormatError(path, lineno, "expected a JSON object")
        yield lineno, record
