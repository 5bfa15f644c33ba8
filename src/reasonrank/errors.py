"""Typed exceptions. Every error a user can meet says what to do about it."""

from __future__ import annotations

MAX_REASON_CHARS = 600


class ReasonRankError(Exception):
    """Base class of every error raised by reasonrank. Its text never shows a credential:
    URL userinfo and bearer tokens are masked (`reasonrank.core.redact`)."""

    def __str__(self) -> str:
        from reasonrank.core.redact import redact

        return redact(super().__str__())


class ConfigError(ReasonRankError, ValueError):
    """An option or a combination of options is invalid."""


class MissingDependencyError(ReasonRankError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str, install: str | None = None) -> None:
        command = install or f"pip install 'reasonrank[{extra}]'"
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed. "
            f"Install it with: {command}"
        )
        self.package = package
        self.extra = extra


class InputFormatError(ReasonRankError, ValueError):
    """A malformed input file; names the file and the line."""

    def __init__(self, path: object, line: int | None, reason: str) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        if len(reason) > MAX_REASON_CHARS:  # never a whole 20 MB line in a message
            reason = reason[:MAX_REASON_CHARS] + "..."
        super().__init__(f"{where}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


class EmptyInputError(InputFormatError):
    """An input file that holds nothing to work on ("no queries in FILE")."""

    def __init__(self, path: object, what: str) -> None:
        super().__init__(path, None, f"no {what} in the file; nothing to do")


class InputPathError(ReasonRankError, OSError):
    """An input path that is missing, a directory or unreadable; found before any work."""


class OutputPathError(ReasonRankError, OSError):
    """An output path that cannot be written; found before any work starts."""


class ModelLoadError(ReasonRankError, RuntimeError):
    """A model (or its file) that cannot be loaded: truncated, not a model, wrong format."""

    def __init__(self, model: object, cause: BaseException | str) -> None:
        detail = cause if isinstance(cause, str) else describe_exception(cause)
        super().__init__(f"could not load model {model}: {detail} (is the file complete, and "
                         "a model this backend reads?)")
        self.model = str(model)


class BackendError(ReasonRankError, RuntimeError):
    """The generation backend failed in a way retrying will not fix."""


class LogprobsUnavailableError(BackendError):
    """A method needs log-probabilities (or tokens) this backend or endpoint cannot give."""


class BackendRequestError(BackendError):
    """The server rejected a request (4xx other than 429); retrying will not help."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"the server rejected the request with HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


_HINTS = {
    "ENOENT": "check the path",
    "EISDIR": "give a file, not a directory",
    "ENOTDIR": "a part of the path is a file, not a directory",
    "EACCES": "check the permissions, or choose another path",
    "EPERM": "check the permissions, or choose another path",
    "EROFS": "the file system is read-only; choose another path",
    "ENOSPC": "the disk is full; free some space or choose another path",
    "EDQUOT": "the disk quota is exceeded; free some space",
    "EEXIST": "something already exists at that path",
    "ENAMETOOLONG": "use a shorter path",
    "EFBIG": "the file is larger than the file system or a limit allows",
}


def describe_os_error(exc: OSError) -> str:
    """One line for an `OSError`: the path(s), what went wrong and what to do."""
    import errno

    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(str(p) for p in paths)
    hint = _HINTS.get(errno.errorcode.get(exc.errno or 0, ""), "")
    text = f"{where}: {reason}" if where else reason
    return f"{text}; {hint}" if hint else text


def describe_exception(exc: BaseException) -> str:
    """`Type: message` of an exception, for a one-line error."""
    if isinstance(exc, OSError):
        return describe_os_error(exc)
    name = type(exc).__name__
    if name == "error":  # struct.error, zlib.error, ...
        name = f"{type(exc).__module__}.error"
    message = str(exc).strip()
    return f"{name}: {message}" if message else name


def require(module: str, extra: str, purpose: str, install: str | None = None):
    """Import an optional dependency or raise `MissingDependencyError` naming the extra
    (or the `install` command, for a package no extra provides)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(module.split(".")[0], extra, purpose, install) from exc
