"""Durable append-only JSONL files: every record is one line, flushed and fsynced.

A kill can leave at most a torn last line (no newline, or invalid JSON); opening the file cuts
it off, so appending never glues a new record onto half of an old one. A bad line anywhere
else is corruption and raises `InputFormatError` naming the line.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from reasonrank.errors import InputFormatError
from reasonrank.io._files import StrPath, atomic_write, sync

log = logging.getLogger(__name__)

_BLOCK = 1 << 16


def _last_newline(fh: IO[bytes], size: int) -> int:
    """The offset just past the last `\\n` of the file (0 when there is none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - _BLOCK)
        fh.seek(start)
        chunk = fh.read(pos - start)
        found = chunk.rfind(b"\n")
        if found >= 0:
            return start + found + 1
        pos = start
    return 0


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return False
    return True


def repair_tail(path: StrPath) -> int:
    """Cut a torn last line off `path` (a kill mid-append); returns the bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    with open(path, "r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        end = _last_newline(fh, size)
        if end > 0:  # the last complete line must parse too (a torn write can end in \n)
            start = _last_newline(fh, end - 1)
            fh.seek(start)
            line = fh.read(end - start).strip()
            if line and not _is_json(line):
                end = start
        if end < size:
            fh.truncate(end)
            sync(fh)
    removed = size - end
    if removed:
        log.warning("%s: dropped a torn last line (%d bytes) left by an interrupted run",
                    path, removed)
    return removed


class JsonlLog:
    """An append-only JSONL file of dict records, safe against kills."""

    def __init__(self, path: StrPath) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)
        self._writer: IO[bytes] | None = None
        self._reader: IO[bytes] | None = None

    def scan(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """`(offset, record)` of every line, in file order."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            offset = 0
            for lineno, raw in enumerate(fh, 1):
                line = raw.strip()
                if line:
                    try:
                        record = json.loads(line)
                    except ValueError as exc:
                        raise InputFormatError(self.path, lineno, f"corrupt record ({exc})") \
                            from None
                    if not isinstance(record, dict):
                        raise InputFormatError(self.path, lineno, "expected a JSON object")
                    yield offset, record
                offset += len(raw)

    def records(self) -> list[dict[str, Any]]:
        return [record for _, record in self.scan()]

    def append(self, record: dict[str, Any]) -> int:
        """Write one record durably; returns its offset."""
        if self._writer is None:
            self._writer = open(self.path, "ab")  # noqa: SIM115 - closed by close()
        offset = os.fstat(self._writer.fileno()).st_size
        self._writer.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
        sync(self._writer)
        return offset

    def read_at(self, offset: int) -> dict[str, Any]:
        """The record whose line starts at `offset`."""
        if self._reader is None:
            self._reader = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        self._reader.seek(offset)
        return json.loads(self._reader.readline())

    def close(self) -> None:
        for fh in (self._writer, self._reader):
            if fh is not None:
                fh.close()
        self._writer = self._reader = None


def read_json(path: StrPath) -> Any:
    """A JSON file's content, or None when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputFormatError(path, None, f"not valid JSON ({exc})") from None


def write_json(path: StrPath, data: Any) -> None:
    """Replace `path` atomically with `data` as indented JSON."""
    with atomic_write(path, compress=False) as fh:
        fh.write((json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
