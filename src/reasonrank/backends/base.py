"""The backend registry: names -> lazily imported classes, loading a backend from the settings,
and the tokenizer loader the backends share. The interface itself is `reasonrank.core.backend`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from reasonrank.core.backend import Backend
from reasonrank.errors import ConfigError

__all__ = ["LOADER_BUGS", "Backend", "backend_class", "backend_names", "load_backend",
           "load_tokenizer", "register_backend", "split_gguf_path"]

if TYPE_CHECKING:
    from reasonrank.config import RerankConfig


# name -> "module:Class"; modules are imported only when a backend is asked for.
_REGISTRY: dict[str, str] = {
    "hf": "reasonrank.backends.hf:HFBackend",
    "openai": "reasonrank.backends.openai:OpenAIBackend",
    "vllm": "reasonrank.backends.vllm:VLLMBackend",
    "fake": "reasonrank.backends.fake:FakeBackend",
}


def register_backend(name: str, target: str) -> None:
    """Register a backend class given as "module:Class" (imported lazily)."""
    _REGISTRY[name] = target


def backend_names() -> list[str]:
    return sorted(_REGISTRY)


def backend_class(name: str) -> type[Backend]:
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown backend {name!r}; choose one of: {', '.join(backend_names())}"
        ) from None
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


LOADER_BUGS = (AttributeError, NameError, AssertionError, ImportError, NotImplementedError)
"""Exceptions that mean a bug, not a bad model file: they keep their traceback."""


def load_backend(config: RerankConfig) -> Backend:
    """The backend `config` names, loaded; a model that cannot load (a truncated or foreign
    file: whatever its parser raises) is a `ModelLoadError` naming it."""
    from reasonrank.errors import ModelLoadError, ReasonRankError

    cls = backend_class(config.backend)
    try:
        return cls.from_config(config)
    except (ReasonRankError, *LOADER_BUGS):
        raise
    except Exception as exc:
        raise ModelLoadError(config.model, exc) from exc


def load_tokenizer(name_or_path: str, purpose: str = "prompt rendering",
                   extra: str = "hf") -> Any:
    """`AutoTokenizer.from_pretrained`, with a GGUF file path understood as `gguf_file=`; a
    tokenizer that cannot load is a `ConfigError` naming it."""
    from reasonrank.errors import ConfigError, describe_exception, require

    transformers = require("transformers", extra, purpose)
    directory, gguf = split_gguf_path(name_or_path)
    kwargs = {"gguf_file": gguf} if gguf else {}
    try:
        return transformers.AutoTokenizer.from_pretrained(directory, **kwargs)
    except LOADER_BUGS:
        raise
    except Exception as exc:  # a truncated or foreign file: whatever its parser raises
        raise ConfigError(f"could not load the tokenizer of {name_or_path!r}: "
                          f"{describe_exception(exc)}") from exc


def split_gguf_path(name_or_path: str) -> tuple[str, str | None]:
    """`/dir/model.gguf` -> (`/dir`, `model.gguf`); anything else -> (name_or_path, None)."""
    from pathlib import Path

    path = Path(name_or_path)
    if path.suffix == ".gguf":
        return str(path.parent), path.name
    return name_or_path, None
