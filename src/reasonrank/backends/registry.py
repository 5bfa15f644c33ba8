"""The backend registry: a name -> its class, given as "module:Class" and imported on first use.

Each backend module declares its class and its options dataclass (the class's `Options`);
adding a backend is that module plus one `register_backend` line below. Nothing else names
backends: the CLI builds each backend's flag group from `options_class(name)`, and
`RerankConfig` routes option keywords to the selected backend's options.

This module imports nothing from the package but `core.registry`, so `reasonrank.config` can look
backends up without an import cycle.
"""

from __future__ import annotations

from typing import Any

from reasonrank.core.registry import Registry

__all__ = ["backend_names", "load_class", "options_class", "register_backend"]

_BACKENDS = Registry("backend")
register_backend = _BACKENDS.register
backend_names = _BACKENDS.names
load_class = _BACKENDS.load
"""`load_class(name)`: the backend class registered as `name`; `ConfigError` if unknown."""

register_backend("hf", "reasonrank.backends.hf:HFBackend")
register_backend("openai", "reasonrank.backends.openai:OpenAIBackend")
register_backend("vllm", "reasonrank.backends.vllm:VLLMBackend")
register_backend("fake", "reasonrank.backends.fake:FakeBackend")


def options_class(name: str) -> Any:
    """The options dataclass of backend `name` (its class's `Options`)."""
    return load_class(name).Options
