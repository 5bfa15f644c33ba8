"""Guards around a command's outputs: never one of its inputs, one process per output.

`check_outputs` is the one check every command with outputs makes before doing any work;
`hold_lock` is the lock that `reasonrank synth` holds on its workdir and `reasonrank rerank`
on its run (`RUN.lock`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

from reasonrank.errors import ConfigError
from reasonrank.io._files import StrPath

PathArg = StrPath | Iterable[StrPath] | None


def _paths(value: PathArg) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, str | os.PathLike):
        return [Path(value)]
    return [Path(v) for v in value if v is not None]


def same_file(a: StrPath, b: StrPath) -> bool:
    """Whether `a` and `b` name one file: equal after resolving links, or (both existing)
    the same inode (a hard link)."""
    pa, pb = Path(a), Path(b)
    with contextlib.suppress(OSError):
        if pa.exists() and pb.exists() and os.path.samefile(pa, pb):
            return True
    return pa.resolve() == pb.resolve()


def check_outputs(outputs: Mapping[str, PathArg], inputs: Mapping[str, PathArg]) -> None:
    """Refuse, before any work, an output that is also an input or another output.

    `outputs` and `inputs` map a name the user knows (`--output`, `--run`) to a path, a list
    of paths or None. Paths are compared after resolving symbolic links (and hard links of
    existing files); `ConfigError` names both sides.
    """
    outs = [(name, p) for name, value in outputs.items() for p in _paths(value)]
    ins = [(name, p) for name, value in inputs.items() for p in _paths(value)]
    for i, (out_name, out) in enumerate(outs):
        for in_name, src in ins:
            if same_file(out, src):
                raise ConfigError(
                    f"{out_name} {out} is also the {in_name} input ({Path(src).resolve()}); "
                    "writing it would destroy the input: choose another output path")
        for other_name, other in outs[i + 1:]:
            if same_file(out, other):
                raise ConfigError(f"{out_name} and {other_name} are the same file ({out}); "
                                  "give each output its own path")


# --- locks ---------------------------------------------------------------------------------

_HELD: dict[Path, list[object]] = {}  # lock path -> [handle, holders]: locks of this process


class FileLock:
    """An exclusive lock on one path, held until `close()` or until the process dies.

    The lock file holds the holder's pid and is removed on release.
    """

    def __init__(self, path: Path, handle: object) -> None:
        self.path = path
        self._handle = handle
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        entry = _HELD.get(self.path)
        if entry is None:  # pragma: no cover - closed twice through different objects
            return
        entry[1] = int(entry[1]) - 1  # type: ignore[call-overload]
        if entry[1] > 0:  # type: ignore[operator]
            return
        del _HELD[self.path]
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still locked: a waiting process retries (see below)
        entry[0].close()  # type: ignore[attr-defined]

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def hold_lock(path: StrPath, busy: str, *, join: bool = False) -> FileLock:
    """Take the lock at `path` without waiting; `ConfigError` ("<busy> (pid N)") if another
    holder has it. With `join`, a lock this process already holds is shared, not refused
    (the CLI takes a run's lock before loading the model; the runner then joins it)."""
    lock_path = Path(path).resolve()
    held = _HELD.get(lock_path)
    if held is not None:
        if not join:
            raise ConfigError(f"{busy} (pid {os.getpid()}, this process)")
        held[1] = int(held[1]) + 1  # type: ignore[call-overload]
        return FileLock(lock_path, held[0])
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking
        fcntl = None  # type: ignore[assignment]
    while True:
        handle = open(lock_path, "a+b")  # noqa: SIM115 - closed by FileLock.close()
        if fcntl is None:  # pragma: no cover
            break
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            pid = handle.read(32).decode("ascii", "replace").strip() or "unknown"
            handle.close()
            raise ConfigError(f"{busy} (pid {pid})") from None
        try:  # the holder we waited on may have removed the file: lock the new one
            same = os.stat(lock_path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n".encode())
    handle.flush()
    _HELD[lock_path] = [handle, 1]
    return FileLock(lock_path, handle)
