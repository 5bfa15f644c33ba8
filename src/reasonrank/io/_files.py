"""File helpers: transparent gzip, exact line splitting and atomic, durable writes."""

from __future__ import annotations

import gzip
import json
import os
import secrets
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO

from reasonrank.errors import InputFormatError

StrPath = str | os.PathLike[str]

_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)
MAX_LINE_BYTES = 32 * 1024 * 1024
"""The longest line a reader accepts: a line beyond it is refused, not held in memory."""
EXCERPT_CHARS = 200
"""How much of an offending line or value an error message shows."""


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """`repr(value)`, cut to about `limit` characters (the shown part ends with `...`)."""
    if isinstance(value, str | bytes) and len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def load_json(text: str, path: StrPath, line: int | None = None, **kwargs: Any) -> Any:
    """`json.loads(text)`; invalid JSON, nesting deeper than Python can follow and numbers too
    long to convert raise `InputFormatError` naming `path` and `line`."""
    try:
        return json.loads(text, **kwargs)
    except json.JSONDecodeError as exc:
        where = exc.lineno if line is None else line
        raise InputFormatError(path, where, f"invalid JSON: {exc.msg} (column {exc.colno})"
                               ) from None
    except RecursionError:
        raise InputFormatError(path, line, "JSON nested too deeply (arrays or objects more "
                               "than about 1000 levels deep)") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise InputFormatError(path, line, f"invalid JSON: {exc}") from None


def is_gz(path: StrPath) -> bool:
    """Whether `path` names a gzip file (by its `.gz` suffix, any case)."""
    return os.fspath(path).lower().endswith(".gz")


def base_name(path: StrPath) -> str:
    """The lower-cased file name without a trailing `.gz`: what format detection looks at."""
    name = Path(path).name.lower()
    return name[:-3] if name.endswith(".gz") else name


def _open_read(path: StrPath) -> BinaryIO:
    """Open for binary reading; gzip data (found by its magic bytes) is decompressed."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == _GZIP_MAGIC:
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _decode(path: StrPath, lineno: int, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFormatError(path, lineno, f"not valid UTF-8 ({exc.reason})") from exc
    return text.lstrip("\ufeff") if lineno == 1 else text


def iter_lines(path: StrPath) -> Iterator[tuple[int, str]]:
    """Yield `(line number, line)` with the `\\n`/`\\r\\n` terminator removed.

    Lines are split on `\\n` only (never on `\\r`, `\\x1c` or `\\u2028` inside a text), a
    UTF-8 byte-order mark is dropped, and a corrupt gzip stream names the file.
    """
    lineno = 0
    with _open_read(path) as fh:
        try:
            for lineno, raw in enumerate(iter(lambda: fh.readline(MAX_LINE_BYTES + 1), b""), 1):
                if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    shown = excerpt(raw[:EXCERPT_CHARS].decode("utf-8", "replace"))
                    raise InputFormatError(path, lineno, f"line longer than {MAX_LINE_BYTES:,} "
                                           f"bytes, refused (it starts {shown})")
                line = raw[:-1] if raw.endswith(b"\n") else raw
                if line.endswith(b"\r"):
                    line = line[:-1]
                yield lineno, _decode(path, lineno, line)
        except _GZIP_ERRORS as exc:
            raise InputFormatError(path, lineno + 1, f"corrupt gzip data ({exc})") from exc


def read_text(path: StrPath) -> str:
    """The whole text of `path` (gunzipped when compressed); bad UTF-8 names its line."""
    with _open_read(path) as fh:
        try:
            data = fh.read()
        except _GZIP_ERRORS as exc:
            raise InputFormatError(path, None, f"corrupt gzip data ({exc})") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputFormatError(path, line, f"not valid UTF-8 ({exc.reason})") from exc


def sync(fh: IO[bytes]) -> None:
    """Flush `fh` and ask the OS to put it on disk."""
    fh.flush()
    os.fsync(fh.fileno())


def _sync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _remove_stale_temps(path: Path) -> None:
    """Remove temporary siblings of `path` left by a writer that was killed (its pid is in the
    name and no longer runs)."""
    prefix, suffix = f".{path.name}.", ".tmp"
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(suffix)):
            continue
        pid, dash, _ = name[len(prefix):-len(suffix)].partition("-")
        if dash and pid.isdigit() and not _alive(int(pid)):
            Path(entry.path).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _create_temp(path: Path) -> tuple[Path, int]:
    _remove_stale_temps(path)
    while True:  # O_EXCL with mode 0o666 keeps the umask's permissions, unlike mkstemp
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # pragma: no cover - a 32-bit collision
            continue


@contextmanager
def atomic_write(path: StrPath, *, compress: bool | None = None) -> Iterator[IO[bytes]]:
    """Write `path` through a temporary sibling that replaces it only on success.

    `compress` defaults to `is_gz(path)`; gzip output has mtime 0 and no stored name, so
    equal content gives equal bytes. The data is fsynced before the rename.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = _create_temp(target)
    try:
        with os.fdopen(fd, "wb") as raw:
            if compress if compress is not None else is_gz(target):
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                    yield gz  # type: ignore[misc]
            else:
                yield raw
            sync(raw)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is None:  # a failed write (disk full) names the file it was for
            raise OSError(exc.errno, exc.strerror, str(target)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_dir(target.parent)
