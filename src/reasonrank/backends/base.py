"""The backend interface: rendered prompts in; texts, token counts and finish reasons out."""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from reasonrank.errors import ConfigError

if TYPE_CHECKING:
    from reasonrank.config import RerankConfig


@dataclass(frozen=True, slots=True)
class Prompt:
    """A window's prompt: the exact rendered string and the chat messages it came from."""

    text: str
    messages: tuple[dict[str, str], ...]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Decoding settings. The defaults are the reference's: greedy, 3072 + 100 new tokens."""

    max_new_tokens: int = 3172
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Generation:
    """One completion. Token counts are None where a backend cannot know them."""

    text: str
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None  # "stop" (EOS) or "length" (budget ran out), or "error"
    raw_finish_reason: str | None = None  # the engine's own reason where it was mapped ("abort")


class Backend(abc.ABC):
    """A text generator that many windows call concurrently.

    `generate` takes one prompt; a backend that batches (hf) or schedules (vLLM) gathers the
    concurrent calls itself, so the scheduler never waits for a lock-step batch.
    """

    name: ClassVar[str]

    @property
    @abc.abstractmethod
    def tokenizer(self) -> Any:
        """The model's tokenizer (prompt rendering and passage truncation use it)."""

    @abc.abstractmethod
    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        """Complete one prompt."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release engines, threads and connections."""

    @classmethod
    def replica_gpus(cls, config: RerankConfig) -> float:
        """GPUs one replica of this backend holds (a data-parallel run reserves them per
        replica); none unless a backend says otherwise."""
        return 0

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: RerankConfig) -> Backend:
        """Build the backend from the shared configuration."""


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
