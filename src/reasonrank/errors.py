"""Typed exceptions. Every error a user can meet says what to do about it."""

from __future__ import annotations


class ReasonRankError(Exception):
    """Base class of every error raised by reasonrank. Its text never shows a credential:
    URL userinfo and bearer tokens are masked (`reasonrank.redact`)."""

    def __str__(self) -> str:
        from reasonrank.redact import redact

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
        super().__init__(f"{where}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


class BackendError(ReasonRankError, RuntimeError):
    """The generation backend failed in a way retrying will not fix."""


class BackendRequestError(BackendError):
    """The server rejected a request (4xx other than 429); retrying will not help."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"the server rejected the request with HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


def require(module: str, extra: str, purpose: str, install: str | None = None):
    """Import an optional dependency or raise `MissingDependencyError` naming the extra
    (or the `install` command, for a package no extra provides)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(module.split(".")[0], extra, purpose, install) from exc
