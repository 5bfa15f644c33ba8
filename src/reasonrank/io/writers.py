"""Writers of TREC runs and JSONL traces, and resumable run outputs (`RunFiles`).

Paths ending in `.gz` are written gzip-compressed, with mtime 0 so that equal content gives
equal bytes. Whole-file writes go through a temporary file renamed over the target.
"""

from __future__ import annotations

import gzip
import json
import math
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TextIO

from reasonrank.errors import ConfigError, InputFormatError, ReasonRankError
from reasonrank.io._files import StrPath, atomic_write, is_gz, read_text, sync
from reasonrank.io.readers import _parse_run_line, _RecordError
from reasonrank.types import RankedResult

DEFAULT_TAG = "reasonrank"


class OutputFormatError(ReasonRankError, ValueError):
    """A result cannot be written in the output format (e.g. a qid with whitespace)."""


# --- formatting -----------------------------------------------------------------------------


def _check_token(value: str, what: str) -> None:
    if not value or any(c.isspace() for c in value):
        raise OutputFormatError(f"{what} {value!r} must be non-empty and without whitespace")


def _check_docid(docid: str, qid: str) -> None:
    if not docid or "\n" in docid or "\r" in docid or docid != docid.strip(" \t"):
        raise OutputFormatError(
            f"query {qid!r}: doc id {docid!r} cannot be written to a TREC run (it is empty, "
            "holds a line break or starts/ends with whitespace)"
        )


def format_score(score: float) -> str:
    """The shortest text that reads back as exactly `score` (Python's float repr)."""
    value = float(score)
    if math.isnan(value):
        raise OutputFormatError("a NaN score cannot be ranked")
    return repr(value)


def _trec_block(result: RankedResult, tag: str) -> str:
    """The run lines of one query: `qid Q0 docid rank score tag`, rank = 1-based position."""
    qid = result.query.qid
    _check_token(qid, "query id")
    seen: set[str] = set()
    lines = []
    for rank, doc in enumerate(result.docs, 1):
        _check_docid(doc.docid, qid)
        if doc.docid in seen:
            raise OutputFormatError(f"query {qid!r}: doc id {doc.docid!r} appears twice")
        seen.add(doc.docid)
        lines.append(f"{qid} Q0 {doc.docid} {rank} {format_score(doc.score)} {tag}\n")
    return "".join(lines)


def _trace_line(result: RankedResult) -> bytes:
    """One JSONL line (UTF-8, non-ASCII kept; escaped only if a lone surrogate forbids it)."""
    record = result.trace_dict()
    try:
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(record) + "\n").encode("utf-8")


# --- whole-file writers ---------------------------------------------------------------------


def write_trec(
    results: Iterable[RankedResult], path_or_fp: StrPath | TextIO, tag: str = DEFAULT_TAG
) -> int:
    """Write a TREC run: `qid Q0 docid rank score tag` lines; returns the number of lines.

    Rank is the 1-based position in `result.docs`; the score is written losslessly (float
    repr). trec_eval ignores ranks and re-sorts by score (ties: docid descending), so scores
    should decrease down each list. Doc ids with inner spaces are written verbatim
    (`read_trec_run` reads them back); a qid or tag with whitespace, an empty doc id, one
    with a line break or edge whitespace, a repeated query or doc, or a NaN score raises
    `OutputFormatError`. A path is replaced atomically; a text stream is written to.
    """
    _check_token(tag, "run tag")
    count = 0
    seen: set[str] = set()

    def blocks() -> Iterable[str]:
        nonlocal count
        for result in results:
            if result.query.qid in seen:
                raise OutputFormatError(f"query {result.query.qid!r} appears twice")
            seen.add(result.query.qid)
            block = _trec_block(result, tag)
            count += len(result.docs)
            yield block

    if hasattr(path_or_fp, "write"):
        for block in blocks():
            path_or_fp.write(block)  # type: ignore[union-attr]
    else:
        with atomic_write(path_or_fp) as fh:  # type: ignore[arg-type]
            for block in blocks():
                fh.write(block.encode("utf-8"))
    return count


def write_traces(results: Iterable[RankedResult], path_or_fp: StrPath | TextIO) -> int:
    """Write JSONL traces, one `RankedResult.trace_dict()` a line; returns the line count.

    A path is replaced atomically; a text stream is written to.
    """
    count = 0
    if hasattr(path_or_fp, "write"):
        for result in results:
            path_or_fp.write(_trace_line(result).decode("utf-8"))  # type: ignore[union-attr]
            count += 1
        return count
    with atomic_write(path_or_fp) as fh:  # type: ignore[arg-type]
        for result in results:
            fh.write(_trace_line(result))
            count += 1
    return count


class TraceWriter:
    """Streams JSONL traces, one line per query, flushed after each line.

    Given a path it truncates the file (gzip for `.gz`); given a text stream it writes to it
    and leaves it open on `close()`.
    """

    def __init__(self, path_or_fp: StrPath | TextIO) -> None:
        self._fp: TextIO | None = None
        self._raw: IO[bytes] | None = None
        self._gz: gzip.GzipFile | None = None
        if hasattr(path_or_fp, "write"):
            self._fp = path_or_fp  # type: ignore[assignment]
            return
        path = Path(path_or_fp)  # type: ignore[arg-type]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._raw = open(path, "wb")  # noqa: SIM115 - closed by close()
        if is_gz(path):
            self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0)

    def write(self, result: RankedResult) -> None:
        """Append the trace line of `result`."""
        line = _trace_line(result)
        if self._fp is not None:
            self._fp.write(line.decode("utf-8"))
            self._fp.flush()
            return
        out = self._gz if self._gz is not None else self._raw
        if out is None:
            raise ValueError("write to a closed TraceWriter")
        out.write(line)
        out.flush()

    def close(self) -> None:
        """Finish the file (a given stream stays open)."""
        if self._gz is not None:
            self._gz.close()
            self._gz = None
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- resumable outputs ----------------------------------------------------------------------


def _work_path(path: Path) -> Path:
    """Where appends go: the file itself, or `<name>.partial` (uncompressed) for `.gz`."""
    return path.with_name(path.name + ".partial") if is_gz(path) else path


def _complete_lines(path: Path) -> Iterable[tuple[int, bytes]]:
    """`(line number, line with its \\n)` of the complete lines; a partial last line is left out."""
    data = path.read_bytes() if path.exists() else b""
    end = data.rfind(b"\n") + 1
    for lineno, raw in enumerate(data[:end].split(b"\n")[:-1], 1):
        yield lineno, raw + b"\n"


def _decode_line(path: Path, lineno: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8").rstrip("\n").rstrip("\r")
    except UnicodeDecodeError as exc:
        raise InputFormatError(path, lineno, f"not valid UTF-8 ({exc.reason})") from exc


def _run_lines(path: Path) -> list[tuple[str, bytes]]:
    """The complete run lines of `path` as `(qid, line)`; blank lines are dropped."""
    out = []
    for lineno, raw in _complete_lines(path):
        text = _decode_line(path, lineno, raw)
        if not text.strip():
            continue
        try:
            qid = _parse_run_line(text)[0]
        except _RecordError as exc:
            raise InputFormatError(path, lineno, str(exc)) from None
        out.append((qid, raw))
    return out


def _trace_lines(path: Path) -> list[tuple[str, bytes]]:
    """The complete trace lines of `path` as `(qid, line)`; a repeated qid is an error."""
    out: list[tuple[str, bytes]] = []
    seen: dict[str, int] = {}
    for lineno, raw in _complete_lines(path):
        text = _decode_line(path, lineno, raw)
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            reason = f"invalid JSON in a complete line: {exc.msg}"
            raise InputFormatError(path, lineno, reason) from None
        qid = record.get("qid") if isinstance(record, dict) else None
        if not isinstance(qid, str):
            raise InputFormatError(path, lineno, "a trace line without a string 'qid'")
        if qid in seen:
            reason = f"query {qid!r} traced twice (also line {seen[qid]})"
            raise InputFormatError(path, lineno, reason)
        seen[qid] = lineno
        out.append((qid, raw))
    return out


class RunFiles:
    """A resumable TREC run plus its JSONL traces, appended one query at a time.

    `append` writes a query's run lines, flushes and fsyncs them, then its trace line,
    flushed and fsynced. A query is done when its trace line is complete (ends with a
    newline) and its run lines are present. With `resume=True` the files are repaired on
    opening: a partial last line, and the run lines of a query whose trace line is missing,
    are dropped, so a killed run loses at most the query in flight (a query with no docs has
    no run lines and is redone). Without `resume`, existing outputs are overwritten.
    `finalize(order)` rewrites both files atomically in `order`, so an interrupted-then-
    resumed run gives the same bytes as an uninterrupted one. For a `.gz` path, appends go
    to an uncompressed `<path>.partial` that `finalize` compresses and removes.
    """

    def __init__(
        self, run_path: StrPath, trace_path: StrPath, *, resume: bool = False,
        tag: str = DEFAULT_TAG,
    ) -> None:
        self.run_path = Path(run_path)
        self.trace_path = Path(trace_path)
        if self.run_path.absolute() == self.trace_path.absolute():
            raise ConfigError(f"the run and the traces need two files, both are {run_path}")
        _check_token(tag, "run tag")
        self.tag = tag
        self._run_work = _work_path(self.run_path)
        self._trace_work = _work_path(self.trace_path)
        for path in (self._run_work, self._trace_work):
            path.parent.mkdir(parents=True, exist_ok=True)
        self._done: list[str] = self._recover() if resume else self._reset()
        self._done_set = set(self._done)
        self._lock = threading.RLock()
        self._run_fp: IO[bytes] | None = open(self._run_work, "ab")  # noqa: SIM115
        self._trace_fp: IO[bytes] | None = open(self._trace_work, "ab")  # noqa: SIM115

    def _pairs(self) -> tuple[tuple[Path, Path], tuple[Path, Path]]:
        return (self.run_path, self._run_work), (self.trace_path, self._trace_work)

    def _reset(self) -> list[str]:
        for final, work in self._pairs():
            work.write_bytes(b"")
            if work != final:
                final.unlink(missing_ok=True)
        return []

    def _recover(self) -> list[str]:
        for final, work in self._pairs():
            if work != final and not work.exists() and final.exists():
                data = read_text(final).encode("utf-8")  # a finalized, complete file
                with atomic_write(work, compress=False) as fh:
                    fh.write(data)
        run = _run_lines(self._run_work)
        traces = _trace_lines(self._trace_work)
        in_run = {qid for qid, _ in run}
        done = [qid for qid, _ in traces if qid in in_run]
        keep = set(done)
        for work, lines in ((self._run_work, run), (self._trace_work, traces)):
            data = b"".join(line for qid, line in lines if qid in keep)
            if not work.exists() or work.read_bytes() != data:
                with atomic_write(work, compress=False) as fh:
                    fh.write(data)
        return done

    def done_qids(self) -> set[str]:
        """The queries already complete in both files."""
        with self._lock:
            return set(self._done)

    def append(self, result: RankedResult) -> None:
        """Append one query: its run lines (flushed, fsynced), then its trace line (same).

        Thread-safe; the result is validated before anything is written.
        """
        run = _trec_block(result, self.tag).encode("utf-8")
        trace = _trace_line(result)
        qid = result.query.qid
        with self._lock:
            if self._run_fp is None or self._trace_fp is None:
                raise ValueError("append to closed RunFiles")
            if qid in self._done_set:
                raise ReasonRankError(f"query {qid!r} is already in {self.run_path}")
            self._run_fp.write(run)
            sync(self._run_fp)
            self._trace_fp.write(trace)
            sync(self._trace_fp)
            self._done.append(qid)
            self._done_set.add(qid)

    def finalize(self, order: Sequence[str]) -> None:
        """Rewrite both files atomically with the queries in `order`, then close.

        `order` must list every done query exactly once, and nothing else.
        """
        with self._lock:
            self._finalize(list(order))

    def _finalize(self, order: list[str]) -> None:
        if self._run_fp is None:
            raise ValueError("finalize closed RunFiles")
        wanted = set(order)
        counts = Counter(order)
        repeated = [q for q, n in counts.items() if n > 1]
        missing = [q for q in order if q not in self._done_set]
        extra = [q for q in self._done if q not in wanted]
        if repeated or missing or extra:
            problems = [
                f"{what}: {', '.join(map(repr, ids[:5]))}{', ...' if len(ids) > 5 else ''}"
                for what, ids in (("repeated in the order", repeated),
                                  ("not done", missing), ("done but not in the order", extra))
                if ids
            ]
            raise ReasonRankError(f"cannot finalize {self.run_path}: " + "; ".join(problems))
        self.close()
        for (final, _work), lines in zip(
            self._pairs(), (_run_lines(self._run_work), _trace_lines(self._trace_work)),
            strict=True,
        ):
            by_qid: dict[str, list[bytes]] = {}
            for qid, line in lines:
                by_qid.setdefault(qid, []).append(line)
            with atomic_write(final) as fh:
                for qid in order:
                    fh.write(b"".join(by_qid.get(qid, ())))
        for final, work in self._pairs():
            if work != final:
                work.unlink(missing_ok=True)

    def close(self) -> None:
        """Close the files without reordering them (a later `resume` picks them up)."""
        with self._lock:
            for fp in (self._run_fp, self._trace_fp):
                if fp is not None:
                    fp.close()
            self._run_fp = self._trace_fp = None

    def __enter__(self) -> RunFiles:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
