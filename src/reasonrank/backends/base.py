"""Loading a backend from the settings, and the tokenizer loader the backends share. The
registry is `reasonrank.backends.registry`; the interface is `reasonrank.core.backend`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reasonrank.backends.registry import backend_names, load_class, register_backend
from reasonrank.core.backend import Backend

__all__ = ["LOADER_BUGS", "Backend", "backend_class", "backend_names", "load_backend",
           "load_tokenizer", "register_backend", "split_gguf_path"]

if TYPE_CHECKING:
    from reasonrank.config import RerankConfig


def backend_class(name: str) -> type[Backend]:
    """The class of backend `name` (`ConfigError` naming the registered ones if unknown)."""
    cls: type[Backend] = load_class(name)
    return cls


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
