"""Reranking methods, registered by name like the backends: "listwise" (ReasonRank's sliding
windows, the default) and "rank1" (Rank1's pointwise reasoning). A method turns one request into
a ranked result through the scheduler's backend and concurrency cap (`base.Engine`); a new
method is one module with a `Method` subclass and a `register_method` line."""

from __future__ import annotations

import importlib
from typing import Any

from reasonrank.errors import ConfigError

__all__ = ["method_class", "method_names", "register_method"]

# name -> "module:Class"; modules are imported only when a method is asked for.
_REGISTRY: dict[str, str] = {
    "listwise": "reasonrank.core.methods.listwise:ListwiseMethod",
    "rank1": "reasonrank.core.methods.rank1:Rank1Method",
}


def register_method(name: str, target: str) -> None:
    """Register a method class given as "module:Class" (imported lazily)."""
    _REGISTRY[name] = target


def method_names() -> list[str]:
    return sorted(_REGISTRY)


def method_class(name: str) -> type[Any]:
    """The `base.Method` subclass registered as `name` (typed loosely: the registry imports no
    method module, so that `reasonrank.config` may import it without a cycle)."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown method {name!r}; choose one of: {', '.join(method_names())}"
        ) from None
    module_name, _, attr = target.partition(":")
    cls: type[Any] = getattr(importlib.import_module(module_name), attr)
    return cls
