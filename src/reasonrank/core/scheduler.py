"""The window scheduler: many queries in flight, each walking its own window chain.

Windows of one query run in order (each depends on the last); windows of different queries are
independent. A global semaphore caps the generations in flight, and as soon as one window
finishes its query submits the next, so the backend stays full without lock-step batches.
With a deterministic backend the results equal running the queries one at a time.
With `prompt_thread` set (the server sets it) prompt preparation (cleaning, truncation, chat
template) runs in one worker thread, off the event loop, so a large request never stalls the
loop and a server's other requests; batch runs keep it on the loop, where a finished window's
successor is rendered and submitted in the same step.

Budget forcing (`force_answer_tokens` > 0, off by default): a window whose generation spent its
whole budget without closing an answer is continued through the same backend with the
continuation prompt `prompt + output + forced tags` (the template's `</think>` and `<answer>`)
and at most `force_answer_tokens` greedy tokens, so every backend that completes a raw prompt
supports it unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sized
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from reasonrank.config import RerankConfig
from reasonrank.core.backend import Backend
from reasonrank.core.parsing import extract_answer, parse_ranking
from reasonrank.core.prompts import PromptBuilder
from reasonrank.core.windows import pass_windows, permute_window
from reasonrank.types import (
    Generation,
    ParseStatus,
    Prompt,
    RankedDoc,
    RankedResult,
    Request,
    SamplingParams,
    WindowTrace,
)

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

    def __post_init__(self) -> None:
        c = self.config
        self.params = SamplingParams(
            max_new_tokens=c.max_new_tokens, temperature=c.temperature, seed=c.seed
        )
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

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            self._slots = asyncio.Semaphore(self.config.in_flight)
            self._slots_loop = loop
        return self._slots

    async def rerank(self, request: Request) -> RankedResult:
        """Rerank one request: its windows back to front, one after another."""
        c = self.config
        prepared = await self.offload(self.builder.prepare, request)
        slots = self._semaphore()
        # Items move; `_result` gives the scores (see `RerankConfig.output_scores`).
        items = list(range(len(request.candidates)))
        windows: list[WindowTrace] = []
        # pass p starts at rank_start + step * p, as `run_rank_llm.py` calls each pass
        spans = pass_windows(len(items), c.window_size, c.step, c.rank_start, c.top_k,
                             c.num_passes)
        if not spans and len(items) > max(1, c.rank_start):
            log.warning(
                "query %s: window %d / step %d from rank %d over %d candidates runs no window "
                "(the reference loop stops at once); the first-stage order is kept",
                request.query.qid, c.window_size, c.step, c.rank_start, len(items),
            )
        for pass_index, start, end in spans:
            passages = [prepared.passages[i] for i in items[start:end]]
            prompt = await self.offload(self.builder.render, prepared.query, passages)
            async with slots:
                began = time.perf_counter()
                gen = await self.backend.generate(prompt, self.params)
                forced = await self._force_answer(prompt, gen)
                latency = time.perf_counter() - began
            text = gen.text if forced is None else forced[0]
            parsed = parse_ranking(text, end - start, c.policy)
            status = parsed.status
            if forced is not None and status is ParseStatus.OK:
                status = ParseStatus.FORCED
            items = permute_window(items, start, end, parsed.order)
            trace = WindowTrace(
                start=start, end=end, status=status, output=text,
                order=parsed.order, prompt_tokens=gen.prompt_tokens,
                output_tokens=gen.output_tokens,
                finish_reason=gen.finish_reason if forced is None else forced[1].finish_reason,
                latency_s=latency, pass_index=pass_index, forced=forced is not None,
                forced_tokens=None if forced is None else forced[1].output_tokens,
                raw_finish_reason=(gen if forced is None else forced[1]).raw_finish_reason,
            )
            windows.append(trace)
            if self.on_window is not None:
                self.on_window(request, trace)
        return _result(request, items, windows, c.output_scores)

    async def _force_answer(self, prompt: Prompt, gen: Generation
                            ) -> tuple[str, Generation] | None:
        """Budget forcing: where `gen` ran out of budget without a closed answer, continue it
        after the template's answer tags; the whole output and the continuation, else None."""
        limit = self.config.force_answer_tokens
        if not limit or gen.finish_reason != "length":
            return None
        if extract_answer(gen.text)[1] not in (ParseStatus.NO_ANSWER, ParseStatus.UNTERMINATED):
            return None  # the answer is there (closed), whatever its quality
        suffix = self.builder.template.forced_answer_suffix(gen.text)
        if suffix is None:
            return None
        head = gen.text + suffix
        continuation = Prompt(
            text=prompt.text + head,
            messages=(*prompt.messages, {"role": "assistant", "content": head}),
        )
        params = dataclasses.replace(self.params, max_new_tokens=limit, temperature=0.0)
        more = await self.backend.generate(continuation, params)
        return head + more.text, more

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


def _result(request: Request, items: list[int], windows: list[WindowTrace],
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
