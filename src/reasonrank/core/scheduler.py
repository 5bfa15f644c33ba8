"""The scheduler: many queries in flight, each run by the reranking method (`core.methods`).

Listwise windows of one query run in order (each depends on the last); queries are independent.
A global semaphore caps the generations in flight (every method holds one slot per generation),
and as soon as one generation finishes its query submits the next, so the backend stays full
without lock-step batches. With a deterministic backend the results equal running the queries
one at a time. With `prompt_thread` set (the server sets it) prompt preparation (cleaning,
truncation, chat template) runs in one worker thread, off the event loop, so a large request
never stalls the loop and a server's other requests; batch runs keep it on the loop, where a
finished window's successor is rendered and submitted in the same step.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sized
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from reasonrank.config import RerankConfig
from reasonrank.core.backend import Backend
from reasonrank.core.methods import method_class
from reasonrank.core.methods.base import Method
from reasonrank.core.prompts import PromptBuilder
from reasonrank.types import RankedResult, Request, WindowTrace

log = logging.getLogger(__name__)

WindowCallback = Callable[[Request, WindowTrace], None]
T = TypeVar("T")


@dataclass
class Scheduler:
    """Runs the sliding-window reranking of requests against one backend."""

    backend: Backend
    builder: PromptBuilder
    config: RerankConfig
    on_window: WindowCallback | None = None
    prompt_thread: bool = False

    method: Method | None = None  # default: the method `config.method` names

    def __post_init__(self) -> None:
        if self.method is None:
            method = method_class(self.config.method).from_config(self.config, self.builder)
            self.method = method.for_dataset(self.config.dataset)
        self._slots: asyncio.Semaphore | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None
        self._prompt_thread: ThreadPoolExecutor | None = None

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)`: with `prompt_thread`, in the prompt thread (off the event loop, one
        call at a time: the tokenizer is not shared between threads); else here."""
        if not self.prompt_thread:
            return fn(*args)
        if self._prompt_thread is None:
            self._prompt_thread = ThreadPoolExecutor(1, thread_name_prefix="reasonrank-prompts")
        return await asyncio.get_running_loop().run_in_executor(self._prompt_thread, fn, *args)

    def close(self) -> None:
        """Release the prompt thread, if one was started (a later `offload` starts another)."""
        if self._prompt_thread is not None:
            self._prompt_thread.shutdown(wait=True)
            self._prompt_thread = None

    def slots(self) -> asyncio.Semaphore:
        """The global cap on generations in flight (one per event loop)."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            self._slots = asyncio.Semaphore(self.config.in_flight)
            self._slots_loop = loop
        return self._slots

    def emit(self, request: Request, trace: WindowTrace) -> None:
        if self.on_window is not None:
            self.on_window(request, trace)

    async def rerank(self, request: Request) -> RankedResult:
        """Rerank one request with the method."""
        assert self.method is not None
        return await self.method.rerank(self, request)

    async def stream(
        self, requests: Iterable[Request]
    ) -> AsyncIterator[tuple[int, RankedResult]]:
        """Rerank many requests concurrently; yields `(index, result)` as queries finish.

        `concurrency` workers each take the next request the moment their query finishes, so
        the backend never waits on the consumer. If one query fails, the others are cancelled
        and the error propagates; results already yielded are complete.
        """
        pending = iter(enumerate(requests))
        out: asyncio.Queue[tuple[int, RankedResult] | BaseException | None] = asyncio.Queue()

        async def worker() -> None:
            try:
                for index, request in pending:
                    out.put_nowait((index, await self.rerank(request)))
            except Exception as exc:  # handed to the consumer, which re-raises it
                out.put_nowait(exc)
                return
            out.put_nowait(None)

        count = self.config.in_flight  # one worker per query at most: memory stays flat
        if isinstance(requests, Sized):
            count = max(1, min(count, len(requests)))
        workers = [asyncio.ensure_future(worker()) for _ in range(count)]
        running = len(workers)
        try:
            while running:
                item = await out.get()
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def rerank_all(self, requests: Iterable[Request]) -> list[RankedResult]:
        """All results, in input order."""
        results: dict[int, RankedResult] = {}
        async for index, result in self.stream(requests):
            results[index] = result
        return [results[i] for i in range(len(results))]
