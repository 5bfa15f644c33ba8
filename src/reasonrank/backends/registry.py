"""The backend registry: a name -> its class, given as "module:Class" and imported on first use.

Each backend module declares its class and its options dataclass (the class's `Options`);
adding a backend is that module plus one `register_backend` line below. Nothing else names
backends: the CLI builds each backend's flag group from `options_class(name)`, and
`RerankConfig` routes option keywords to the selected backend's options.

This module imports nothing from the package but `errors`, so `reasonrank.config` can look
backends up without an import cycle.
"""

from __future__ import annotations

import importlib
from typing import Any

from reasonrank.errors import ConfigError

__all__ = ["backend_names", "load_class", "options_class", "register_backend"]

_REGISTRY: dict[str, str | type] = {}


def register_backend(name: str, target: str | type) -> None:
    """Register a backend class, given as "module:Class" (imported lazily) or the class."""
    _REGISTRY[name] = target


register_backend("hf", "reasonrank.backends.hf:HFBackend")
register_backend("openai", "reasonrank.backends.openai:OpenAIBackend")
register_backend("vllm", "reasonrank.backends.vllm:VLLMBackend")
register_backend("fake", "reasonrank.backends.fake:FakeBackend")


def backend_names() -> list[str]:
    return sorted(_REGISTRY)


def load_class(name: str) -> Any:
    """The class registered as `name` (its module imported now); `ConfigError` if unknown."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown backend {name!r}; choose one of: {', '.join(backend_names())}"
        ) from None
    if not isinstance(target, str):
        return target
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def options_class(name: str) -> Any:
    """The options dataclass of backend `name` (its class's `Options`)."""
    return load_class(name).Options
