"""What a reranking method is, and what the scheduler gives it to run on (`Engine`)."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from reasonrank.types import RankedDoc, RankedResult, Request, WindowTrace

if TYPE_CHECKING:
    from reasonrank.config import RerankConfig
    from reasonrank.core.backend import Backend
    from reasonrank.core.prompts import PromptBuilder

__all__ = ["Engine", "Method", "ranked_result"]

T = TypeVar("T")


class Engine(Protocol):
    """The scheduler as a method sees it: one backend, one concurrency cap for everything."""

    backend: Backend
    config: RerankConfig

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` off the event loop where the scheduler is set up for it."""
        ...

    def slots(self) -> asyncio.Semaphore:
        """The global cap on generations in flight: hold one slot per generation."""
        ...

    def emit(self, request: Request, trace: WindowTrace) -> None:
        """Report a finished generation (a window, or one document of a pointwise method)."""
        ...


class Method(abc.ABC):
    """A reranking method: one request in, its ranked result (with traces) out."""

    name: ClassVar[str]

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: RerankConfig, builder: PromptBuilder) -> Method:
        """Build the method from the shared settings and the backend's prompt builder."""

    @classmethod
    def check_settings(cls, config: RerankConfig) -> None:
        """Raise `ConfigError` when the backend settings cannot run this method."""
        return None

    def for_dataset(self, dataset: str | None) -> Method:
        """This method set up for `dataset` (for example per-dataset instructions)."""
        return self

    @abc.abstractmethod
    async def rerank(self, engine: Engine, request: Request) -> RankedResult:
        """Rerank one request."""


def ranked_result(request: Request, items: Sequence[int], windows: list[WindowTrace],
                  output_scores: str = "rank") -> RankedResult:
    """The reranked list: `items[r]` is the candidate at rank r + 1.

    Scores: "rank" gives `n + 1 - rank` (strictly decreasing, exact in any format);
    "reference" gives each rank the first-stage score of its position (the released code).
    """
    cands = request.candidates
    n = len(items)
    docs = [
        RankedDoc(
            docid=cands[i].docid, rank=pos + 1,
            score=cands[pos].score if output_scores == "reference" else float(n - pos),
            text=cands[i].text, title=cands[i].title, first_stage_rank=i + 1,
            first_stage_score=cands[i].score,
        )
        for pos, i in enumerate(items)
    ]
    return RankedResult(query=request.query, docs=docs, windows=windows)
