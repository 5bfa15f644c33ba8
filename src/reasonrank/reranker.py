"""The Python API: `Reranker(model=..., backend=..., **options)`.

    from reasonrank import Reranker
    rr = Reranker("liuwenhan/reasonrank-7B", backend="vllm")
    result = rr.rerank("why do onions make you cry?", ["passage one", "passage two", ...])
    result.docs[0].docid, result.windows[0].output   # the ranking and the reasoning

Sync methods run on a private event loop in a background thread, so a backend's async
resources (HTTP clients, engines) live on one loop for the Reranker's whole life.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Coroutine, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from reasonrank.backends.base import Backend, load_backend
from reasonrank.config import RerankConfig
from reasonrank.core.prompts import PromptBuilder
from reasonrank.core.scheduler import Scheduler, WindowCallback
from reasonrank.errors import ConfigError
from reasonrank.types import Candidate, Query, RankedResult, Request

T = TypeVar("T")
DocLike = str | Candidate | Mapping[str, Any]


class Reranker:
    """A reasoning reranker (the configured method: listwise or rank1) bound to one model and
    backend."""

    def __init__(
        self,
        model: str | None = None,
        backend: str | Backend = "hf",
        *,
        config: RerankConfig | None = None,
        on_window: WindowCallback | None = None,
        **options: Any,
    ) -> None:
        if config is None:
            if model is not None:
                options["model"] = model
            if not isinstance(backend, str):  # a backend object brings its options class
                options.setdefault("backend_options", type(backend).Options())
            options["backend"] = backend if isinstance(backend, str) else backend.name
            config = RerankConfig.from_options(**options)
        elif model is not None or options:
            raise ConfigError("pass either config= or model/options, not both")
        self.config = config
        self.backend = (
            backend if isinstance(backend, Backend)
            else load_backend(config)
        )
        self.builder = PromptBuilder(
            self.backend.tokenizer, config.template, config.passage_tokens
        )
        self.scheduler = Scheduler(self.backend, self.builder, config, on_window)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def set_dataset(self, dataset: str | None) -> None:
        """Set the method up for `dataset` ("bright/pony", "scifact", ...): Rank1 takes its
        per-dataset instruction from it; the listwise method ignores it."""
        method = self.scheduler.method
        assert method is not None
        self.scheduler.method = method.for_dataset(dataset)

    # async API
    async def arerank(self, query: str | Query, docs: Sequence[DocLike]) -> RankedResult:
        return await self.scheduler.rerank(make_request(query, docs))

    async def arerank_batch(self, requests: Iterable[Request]) -> list[RankedResult]:
        return await self.scheduler.rerank_all(requests)

    # sync API
    def rerank(self, query: str | Query, docs: Sequence[DocLike]) -> RankedResult:
        """Rerank `docs` (first-stage order, best first) for `query`."""
        return self._run(self.arerank(query, docs))

    def rerank_batch(self, requests: Iterable[Request]) -> list[RankedResult]:
        """Rerank many requests concurrently; results in input order."""
        return self._run(self.arerank_batch(requests))

    def rerank_iter(self, requests: Iterable[Request]) -> Iterator[tuple[int, RankedResult]]:
        """Rerank concurrently, yielding `(input index, result)` as each query finishes."""
        out: queue.Queue[tuple[int, RankedResult] | BaseException | None] = queue.Queue()

        async def produce() -> None:
            try:
                async for item in self.scheduler.stream(requests):
                    out.put(item)
            except BaseException as exc:  # handed to the consuming thread
                out.put(exc)
                raise
            out.put(None)

        self._ensure_loop()
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(produce(), self._loop)
        try:
            while (item := out.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            future.cancel()

    def close(self) -> None:
        self.scheduler.close()
        if self._loop is not None:
            self._run(self.backend.aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            assert self._thread is not None
            self._thread.join()
            self._loop.close()
            self._loop = self._thread = None
        else:
            asyncio.run(self.backend.aclose())

    def __enter__(self) -> Reranker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        self._ensure_loop()
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _ensure_loop(self) -> None:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="reasonrank-loop", daemon=True
            )
            self._thread.start()


def make_request(query: str | Query, docs: Sequence[DocLike]) -> Request:
    """A `Request` from a query and documents given as strings, dicts or `Candidate`s.

    Strings get ids "0", "1", ... and first-stage scores that decrease with position.
    """
    q = query if isinstance(query, Query) else Query(text=query)
    n = len(docs)
    cands = []
    for i, doc in enumerate(docs):
        if isinstance(doc, Candidate):
            cands.append(doc)
        elif isinstance(doc, str):
            cands.append(Candidate(docid=str(i), text=doc, score=float(n - i)))
        elif isinstance(doc, Mapping):
            text = next((doc[k] for k in ("text", "content", "contents", "segment", "body",
                                          "passage") if k in doc), None)
            if text is None:
                raise ConfigError(f"document {i} has no text field (text, content, contents)")
            cands.append(Candidate(
                docid=str(doc.get("docid", doc.get("id", i))), text=str(text),
                score=float(doc.get("score", n - i)), title=doc.get("title") or None,
            ))
        else:
            raise ConfigError(f"document {i}: expected str, dict or Candidate, got {type(doc)}")
    return Request(q, cands)
