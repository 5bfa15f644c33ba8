"""Writers of TREC runs and JSONL traces, and resumable run outputs (`RunFiles`).

Paths ending in `.gz` are written gzip-compressed, with mtime 0 so that equal content gives
equal bytes. Whole-file writes go through a temporary file renamed over the target.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TextIO

from reasonrank.errors import ConfigError, InputFormatError, ReasonRankError
from reasonrank.io._files import StrPath, atomic_write, is_gz, read_text, sync
from reasonrank.io.outputs import FileLock, hold_lock
from reasonrank.io.trec import RecordError, docid_problem, parse_run_line, qid_problem
from reasonrank.types import RankedResult

DEFAULT_TAG = "reasonrank"


class OutputFormatError(ReasonRankError, ValueError):
    """A result cannot be written in the output format (e.g. a qid with whitespace)."""


# --- formatting -----------------------------------------------------------------------------


SCORE_FORMATS = ("exact", "reference")
"""How scores are printed: "exact" (float repr, reads back as the same double) or
"reference" (`{score:.6f}`, as the released `run_rank_llm.py` writes them)."""


def _check_token(value: str, what: str) -> None:
    problem = qid_problem(value)
    if problem is not None:
        raise OutputFormatError(f"{what} {value!r} {problem}: a TREC run cannot carry it")


def _check_docid(docid: str, qid: str) -> None:
    problem = docid_problem(docid)
    if problem is not None:
        raise OutputFormatError(
            f"query {qid!r}: doc id {docid!r} {problem}: a TREC run cannot carry it")


def format_score(score: float, score_format: str = "exact") -> str:
    """`score` as run-file text: the shortest text that reads back as exactly `score`
    (Python's float repr), or with 6 decimals for `score_format="reference"`."""
    value = float(score)
    if math.isnan(value):
        raise OutputFormatError("a NaN score cannot be ranked")
    if score_format == "reference":
        return f"{value:.6f}"
    if score_format != "exact":
        raise ConfigError(f"score_format must be one of {', '.join(SCORE_FORMATS)}, got "
                          f"{score_format!r}")
    return repr(value)


def _trec_block(result: RankedResult, tag: str, score_format: str = "exact",
                decreasing: bool = False) -> str:
    """The run lines of one query: `qid Q0 docid rank score tag`, rank = 1-based position.

    With `decreasing`, scores that do not strictly decrease as written (an evaluator would
    re-sort them) raise `OutputFormatError`.
    """
    qid = result.query.qid
    _check_token(qid, "query id")
    seen: set[str] = set()
    lines = []
    previous: float | None = None
    for rank, doc in enumerate(result.docs, 1):
        _check_docid(doc.docid, qid)
        if doc.docid in seen:
            raise OutputFormatError(f"query {qid!r}: doc id {doc.docid!r} appears twice")
        seen.add(doc.docid)
        text = format_score(doc.score, score_format)
        if decreasing:
            value = float(text)
            if previous is not None and not value < previous:
                raise OutputFormatError(
                    f"query {qid!r}: the score of rank {rank} ({text}) does not decrease; an "
                    "evaluator would not see this order")
            previous = value
        lines.append(f"{qid} Q0 {doc.docid} {rank} {text} {tag}\n")
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
    results: Iterable[RankedResult], path_or_fp: StrPath | TextIO, tag: str = DEFAULT_TAG,
    score_format: str = "exact",
) -> int:
    """Write a TREC run: `qid Q0 docid rank score tag` lines; returns the number of lines.

    Rank is the 1-based position in `result.docs`; the score is written losslessly (float
    repr), or as `{score:.6f}` with `score_format="reference"`. trec_eval ignores ranks and
    re-sorts by score (ties: docid descending), so scores should decrease down each list
    (reranked results' scores do, see `RankedDoc`). Doc ids with inner spaces are written
    verbatim (`read_trec_run` reads them back); a qid or tag with whitespace, an empty doc
    id, one with a tab, a line break or edge whitespace, a repeated query or doc, or a NaN
    score raises `OutputFormatError`. A path is replaced atomically; a text stream is
    written to.
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
            block = _trec_block(result, tag, score_format)
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


# --- resumable outputs ----------------------------------------------------------------------


def work_path(path: StrPath) -> Path:
    """Where a run in progress appends: `<name>.partial` (uncompressed), beside `path`,
    which is replaced only when the run has succeeded."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def completed_qids(run_path: StrPath, trace_path: StrPath) -> list[str]:
    """The queries complete in a run's files (read only), in the order written: those of
    the run in progress (`.partial` files) if there is one, else of the finished files."""
    run, traces = Path(run_path), Path(trace_path)
    if work_path(run).exists() or work_path(traces).exists():
        run, traces = work_path(run), work_path(traces)
    elif is_gz(run) or is_gz(traces):
        return _completed(_lines_of(run, _run_lines), _lines_of(traces, _trace_lines))
    return _completed(_run_lines(run), _trace_lines(traces))


def _lines_of(path: Path, parse: Callable[[Path], list[tuple[str, bytes]]]
              ) -> list[tuple[str, bytes]]:
    if not is_gz(path) or not path.exists():
        return parse(path)
    with tempfile.TemporaryDirectory() as tmp:  # a finished .gz output: read it unpacked
        plain = Path(tmp) / "plain"
        plain.write_bytes(read_text(path).encode("utf-8"))
        return parse(plain)


def _completed(run: list[tuple[str, bytes]], traces: list[tuple[str, bytes]]) -> list[str]:
    in_run = {qid for qid, _ in run}
    return [qid for qid, _ in traces if qid in in_run]


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
            qid = parse_run_line(text)[0]
        except RecordError as exc:
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


def settings_path(run_path: StrPath) -> Path:
    """Where a finished run records the settings it was made with: `<run>.settings.json`."""
    path = Path(run_path)
    return path.with_name(path.name + ".settings.json")


def lock_path(run_path: StrPath) -> Path:
    """The lock a process holds while it writes a run: `<run>.lock`."""
    path = Path(run_path)
    return path.with_name(path.name + ".lock")


def recorded_settings(run_path: StrPath, trace_path: StrPath) -> dict[str, Any] | None:
    """The settings recorded for the run a `resume` would continue (the run in progress if
    there is one, else the finished run); None where none were recorded."""
    final = settings_path(run_path)
    in_progress = any(work_path(p).exists() for p in (run_path, trace_path, final))
    path = work_path(final) if in_progress else final
    if not path.exists():
        return None
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise InputFormatError(path, exc.lineno, f"invalid JSON: {exc.msg}") from None
    settings = data.get("settings") if isinstance(data, dict) else None
    if not isinstance(settings, dict):
        raise InputFormatError(path, None, "expected {\"settings\": {...}}")
    return settings


def settings_differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """`name (recorded -> current)` for each setting that differs."""
    names = list(recorded) + [k for k in current if k not in recorded]
    missing = "(not recorded)"
    return [f"{name} ({recorded.get(name, missing)!r} -> {current.get(name, missing)!r})"
            for name in names if recorded.get(name, missing) != current.get(name, missing)]


def check_resume(run_path: StrPath, trace_path: StrPath, settings: Mapping[str, Any] | None,
                 qids: Iterable[str] | None = None) -> None:
    """Refuse (`ConfigError`) to resume a run made with other `settings` (each difference
    named) or one holding queries that are not among the input's `qids`."""
    if settings is not None:
        recorded = recorded_settings(run_path, trace_path)
        if recorded is not None:
            diff = settings_differences(recorded, dict(settings))
            if diff:
                raise ConfigError(
                    f"cannot --resume {run_path}: it was made with other settings: "
                    f"{', '.join(diff)}. Rerun with the recorded settings, or without --resume "
                    "to start over (the finished run is replaced only when the new one "
                    "succeeds)")
    if qids is not None:
        wanted = set(qids)
        extra = [q for q in completed_qids(run_path, trace_path) if q not in wanted]
        if extra:
            shown = ", ".join(map(repr, extra[:5])) + (", ..." if len(extra) > 5 else "")
            raise ConfigError(
                f"cannot --resume {run_path}: {len(extra)} query(ies) already done are not in "
                f"the input: {shown}. Resume with the same input, or write a new output")


def _write_settings(path: Path, settings: Mapping[str, Any]) -> None:
    with atomic_write(path, compress=False) as fh:
        fh.write((json.dumps({"settings": dict(settings)}, indent=1, sort_keys=True)
                  + "\n").encode("utf-8"))


class RunFiles:
    """A resumable TREC run plus its JSONL traces, appended one query at a time.

    Appends go to `<run>.partial` and `<traces>.partial` (uncompressed); the run and traces
    themselves are replaced only by `finalize`, so a run that fails or is killed leaves a
    previous finished run untouched. `append` writes a query's run lines, flushes and
    fsyncs them, then its trace line, flushed and fsynced. A query is done when its trace
    line is complete (ends with a newline) and its run lines are present. With
    `resume=True` the run in progress (else the finished run) is picked up and repaired: a
    partial last line, and the run lines of a query whose trace line is missing, are
    dropped, so a killed run loses at most the query in flight (a query with no docs has no
    run lines and is redone). Without `resume`, a run in progress is discarded.
    `finalize(order)` writes both files atomically in `order` (gzip for `.gz`), so an
    interrupted-then-resumed run gives the same bytes as an uninterrupted one, then removes
    the `.partial` files. `score_format` is `write_trec`'s; with `decreasing`, a result whose
    written scores do not strictly decrease is refused before anything is written.

    While open it holds `<run>.lock` (a second process on the same output fails at once,
    naming the holder's pid). `settings` (the options that decide the ranking) are recorded
    in `<run>.settings.json`; `resume` with other settings raises `ConfigError`.
    """

    def __init__(
        self, run_path: StrPath, trace_path: StrPath, *, resume: bool = False,
        tag: str = DEFAULT_TAG, score_format: str = "exact", decreasing: bool = False,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.run_path = Path(run_path)
        self.trace_path = Path(trace_path)
        if self.run_path.absolute() == self.trace_path.absolute():
            raise ConfigError(f"the run and the traces need two files, both are {run_path}")
        _check_token(tag, "run tag")
        format_score(0.0, score_format)  # a bad format fails here, not after a query
        self.tag = tag
        self.score_format = score_format
        self.decreasing = decreasing
        self._run_work = work_path(self.run_path)
        self._trace_work = work_path(self.trace_path)
        self._settings = settings_path(self.run_path)
        for path in (self._run_work, self._trace_work):
            path.parent.mkdir(parents=True, exist_ok=True)
        self._lock: FileLock | None = hold_lock(
            lock_path(self.run_path), f"another process is writing {self.run_path}", join=True)
        try:
            self._done: list[str] = self._open(resume, settings)
        except BaseException:
            self._lock.close()
            raise
        self._done_set = set(self._done)
        self._mutex = threading.RLock()
        self._run_fp: IO[bytes] | None = open(self._run_work, "ab")  # noqa: SIM115
        self._trace_fp: IO[bytes] | None = open(self._trace_work, "ab")  # noqa: SIM115

    def _pairs(self) -> tuple[tuple[Path, Path], tuple[Path, Path]]:
        return (self.run_path, self._run_work), (self.trace_path, self._trace_work)

    def _open(self, resume: bool, settings: Mapping[str, Any] | None) -> list[str]:
        work = work_path(self._settings)
        if not resume:
            work.unlink(missing_ok=True)
            if settings is not None:
                _write_settings(work, settings)
            return self._reset()
        check_resume(self.run_path, self.trace_path, settings)
        in_progress = self._run_work.exists() or self._trace_work.exists()
        if not in_progress and self._settings.exists() and not work.exists():
            with atomic_write(work, compress=False) as fh:  # carry the finished run's record
                fh.write(self._settings.read_bytes())
        if settings is not None and not work.exists():
            _write_settings(work, settings)
        return self._recover()

    def _reset(self) -> list[str]:
        for _final, work in self._pairs():
            work.write_bytes(b"")
        return []

    def _recover(self) -> list[str]:
        if not self._run_work.exists() and not self._trace_work.exists():
            for final, work in self._pairs():  # resume a finished run: start from its files
                if final.exists():
                    data = read_text(final).encode("utf-8")  # a finalized, complete file
                    with atomic_write(work, compress=False) as fh:
                        fh.write(data)
        run = _run_lines(self._run_work)
        traces = _trace_lines(self._trace_work)
        done = _completed(run, traces)
        keep = set(done)
        for work, lines in ((self._run_work, run), (self._trace_work, traces)):
            data = b"".join(line for qid, line in lines if qid in keep)
            if not work.exists() or work.read_bytes() != data:
                with atomic_write(work, compress=False) as fh:
                    fh.write(data)
        return done

    def done_qids(self) -> set[str]:
        """The queries already complete in both files."""
        with self._mutex:
            return set(self._done)

    def append(self, result: RankedResult) -> None:
        """Append one query: its run lines (flushed, fsynced), then its trace line (same).

        Thread-safe; the result is validated before anything is written.
        """
        run = _trec_block(result, self.tag, self.score_format, self.decreasing).encode("utf-8")
        trace = _trace_line(result)
        qid = result.query.qid
        with self._mutex:
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
        with self._mutex:
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
        self._close_files()
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
        work = work_path(self._settings)
        if work.exists():
            os.replace(work, self._settings)
        else:
            self._settings.unlink(missing_ok=True)  # it described an older run
        for _final, work in self._pairs():
            work.unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        """Close the files without reordering them (a later `resume` picks them up) and
        release the output's lock."""
        with self._mutex:
            self._close_files()
            if self._lock is not None:
                self._lock.close()
                self._lock = None

    def _close_files(self) -> None:
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
