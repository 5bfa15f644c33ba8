"""Name -> class registries (backends, methods): each class given as "module:Class", imported on
first use so that listing names or building flags imports no heavy library, or as the class."""

from __future__ import annotations

import importlib
from typing import Any

from reasonrank.errors import ConfigError

__all__ = ["Registry"]


class Registry:
    """The registered classes of one kind ("backend", "method")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._targets: dict[str, str | type] = {}

    def register(self, name: str, target: str | type) -> None:
        """Register a class, given as "module:Class" (imported lazily) or the class itself."""
        self._targets[name] = target

    def names(self) -> list[str]:
        return sorted(self._targets)

    def load(self, name: str) -> Any:
        """The class registered as `name` (its module imported now); `ConfigError` if unknown."""
        try:
            target = self._targets[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None
        if not isinstance(target, str):
            return target
        module_name, _, attr = target.partition(":")
        return getattr(importlib.import_module(module_name), attr)
