"""Output paths checked before any work starts: a file path that is not a directory, in a
folder that exists (or can be created) and can be written."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from reasonrank.errors import InputPathError, OutputPathError
from reasonrank.io._files import StrPath


def _existing_ancestor(path: Path) -> Path:
    """`path` itself or its nearest ancestor that exists."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")  # pragma: no cover - a relative path whose parents do not exist


def _check_folder(path: Path, flag: str, given: StrPath) -> None:
    """`path` is, or can become, a folder we may create files in."""
    existing = _existing_ancestor(path.absolute())
    if not existing.is_dir():
        raise OutputPathError(f"{flag} {given}: {existing} is a file, not a directory; "
                              "choose another path")
    if not os.access(existing, os.W_OK | os.X_OK) or not _can_create_in(existing):
        what = "write in" if existing == path.absolute() else "create folders in"
        raise OutputPathError(f"{flag} {given}: cannot {what} {existing} (permission denied or "
                              "read-only); choose a writable path")


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created in `folder` (tried, then removed: `os.access` says yes to
    root on read-only or virtual file systems)."""
    probe = folder / f".reasonrank-probe-{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        return False
    probe.unlink(missing_ok=True)
    return True


def check_input_file(path: StrPath, flag: str) -> None:
    """Raise `InputPathError` unless `path` is a file we may read."""
    target = Path(path)
    if target.is_dir():
        raise InputPathError(f"{flag} {path} is a directory; give a file")
    if not target.exists():
        raise InputPathError(f"{flag} {path}: no such file; check the path")
    if not os.access(target, os.R_OK):
        raise InputPathError(f"{flag} {path}: permission denied; check its permissions")


def check_output_file(path: StrPath, flag: str = "--output") -> None:
    """Raise `OutputPathError` unless `path` can be written as a file (it may exist)."""
    target = Path(path)
    if target.is_dir():
        raise OutputPathError(f"{flag} {path} is a directory; give a file path")
    if target.exists() and not target.is_file():
        raise OutputPathError(f"{flag} {path} is not a regular file (a device or a pipe); "
                              "give a file path")
    if not target.name or target.name in (".", ".."):
        raise OutputPathError(f"{flag} {path!r} is not a file name; give a file path")
    _check_folder(target.absolute().parent, flag, path)


def check_output_dir(path: StrPath, flag: str = "--output") -> None:
    """Raise `OutputPathError` unless `path` is, or can be created as, a writable folder."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise OutputPathError(f"{flag} {path} is a file; give a directory")
    _check_folder(target, flag, path)


def check_outputs(files: Iterable[tuple[str, StrPath | None]] = (),
                  dirs: Iterable[tuple[str, StrPath | None]] = ()) -> None:
    """Check `(flag, path)` output files and folders; a None path is skipped."""
    for flag, path in files:
        if path is not None:
            check_output_file(path, flag)
    for flag, path in dirs:
        if path is not None:
            check_output_dir(path, flag)
