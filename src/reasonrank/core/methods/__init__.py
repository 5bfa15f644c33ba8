"""Reranking methods, registered by name like the backends: "listwise" (ReasonRank's sliding
windows, the default) and "rank1" (Rank1's pointwise reasoning). A method turns one request into
a ranked result through the scheduler's backend and concurrency cap (`base.Engine`); a new
method is one module with a `Method` subclass and a `register_method` line."""

from __future__ import annotations

from typing import Any

from reasonrank.core.registry import Registry

__all__ = ["method_class", "method_names", "register_method"]

_METHODS = Registry("method")
register_method = _METHODS.register
method_names = _METHODS.names

register_method("listwise", "reasonrank.core.methods.listwise:ListwiseMethod")
register_method("rank1", "reasonrank.core.methods.rank1:Rank1Method")


def method_class(name: str) -> type[Any]:
    """The `base.Method` subclass registered as `name` (typed loosely: the registry imports no
    method module, so that `reasonrank.config` may import it without a cycle)."""
    cls: type[Any] = _METHODS.load(name)
    return cls
