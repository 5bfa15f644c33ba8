"""The interface the scheduler drives: rendered prompts in; texts, token counts and finish
reasons out. Backends (`reasonrank.backends`) implement it and register themselves there."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar

from reasonrank.config import BackendOptions
from reasonrank.types import Generation, Prompt, SamplingParams

if TYPE_CHECKING:
    from reasonrank.config import RerankConfig

__all__ = ["Backend"]


class Backend(abc.ABC):
    """A text generator that many windows call concurrently.

    `generate` takes one prompt; a backend that batches (hf) or schedules (vLLM) gathers the
    concurrent calls itself, so the scheduler never waits for a lock-step batch.
    """

    name: ClassVar[str]
    Options: ClassVar[type[BackendOptions]] = BackendOptions
    """The backend's options dataclass (declared in its module): its CLI flag group, and what
    `RerankConfig.backend_options` holds when this backend is selected."""

    @property
    @abc.abstractmethod
    def tokenizer(self) -> Any:
        """The model's tokenizer (prompt rendering and passage truncation use it)."""

    @abc.abstractmethod
    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        """Complete one prompt. With `params.stop`, `logprobs` or `allowed_tokens` (pointwise
        methods), honour them or raise `LogprobsUnavailableError` naming what is missing;
        `Generation.logprobs` stays None when no log-probabilities were asked for."""

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
