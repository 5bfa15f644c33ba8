"""The teacher client: the generation backend behind an answer cache, accounting and a budget.

`ask` answers from the cache when it can (free: a rerun sends nothing twice). Otherwise, with
at most `concurrency` requests in flight, it checks the budget, sends the request through the
backend (the OpenAI-compatible one, with its own retries on 429/5xx/timeouts), caches the
answer durably and counts its tokens. Once the budget is reached no request is sent: `ask`
raises `BudgetExceeded`, while requests already in flight finish and are cached. `stop()`
(on SIGINT/SIGTERM) does the same with `TeacherStopped`, so an interrupted run loses no answer
the server sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reasonrank.backends.base import Backend
from reasonrank.errors import ReasonRankError
from reasonrank.synth.accounting import Budget, Ledger
from reasonrank.synth.cache import AnswerCache, CachedAnswer, request_key
from reasonrank.types import Prompt, SamplingParams


class TeacherStopped(ReasonRankError):  # noqa: N818 - a stop, not an error
    """The run was asked to stop: no new request is sent."""


@dataclass(frozen=True)
class TeacherAnswer:
    """The text of one answer and where it came from."""

    text: str
    finish_reason: str | None
    key: str
    cached: bool


class TeacherClient:
    """Cached, accounted and budgeted teacher calls over a `Backend`."""

    def __init__(self, backend: Backend, cache: AnswerCache, ledger: Ledger, budget: Budget, *,
                 model: str, endpoint: str, concurrency: int = 8,
                 count_tokens: Callable[[str], int] | None = None,
                 budget_hint: str = "", extra_body: dict[str, Any] | None = None) -> None:
        """`count_tokens` estimates token counts when the server reports no `usage`;
        `extra_body`, the server options the backend adds to each request, is part of the
        cache key."""
        self.backend = backend
        self.cache = cache
        self.ledger = ledger
        self.budget = budget
        self.model = model
        self.endpoint = endpoint
        self.concurrency = concurrency
        self.count_tokens = count_tokens
        self.budget_hint = budget_hint
        self.extra_body = dict(extra_body or {})
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[str, asyncio.Future[CachedAnswer]] = {}
        self.stopped = False

    def stop(self) -> None:
        """Send no new request; those in flight still finish and are cached."""
        self.stopped = True

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._loop is not loop:
            self._slots, self._loop = asyncio.Semaphore(self.concurrency), loop
            self._pending = {}
        return self._slots

    async def ask(self, prompt: Prompt, params: SamplingParams, stage: str) -> TeacherAnswer:
        """The teacher's answer to one request, from the cache or from the backend."""
        key = request_key(self.model, self.endpoint, prompt, params, self.extra_body)
        hit = self.cache.get(key)
        if hit is None and key in self._pending:  # the same request is in flight: share it
            hit = await asyncio.shield(self._pending[key])
        if hit is not None:
            self.ledger.add_cached(stage)
            return TeacherAnswer(hit.text, hit.finish_reason, key, cached=True)
        slots = self._semaphore()
        future: asyncio.Future[CachedAnswer] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            async with slots:
                if self.stopped:
                    raise TeacherStopped("stopped on request; rerun the same command to continue")
                if self.budget.reached(self.ledger):
                    raise self.budget.exceeded(self.ledger, self.budget_hint)
                generation = await self.backend.generate(prompt, params)
                estimated = generation.prompt_tokens is None or generation.output_tokens is None
                answer = CachedAnswer(
                    key=key, stage=stage, text=generation.text,
                    finish_reason=generation.finish_reason,
                    prompt_tokens=self._tokens(generation.prompt_tokens, prompt.text),
                    output_tokens=self._tokens(generation.output_tokens, generation.text),
                    estimated=estimated)
                self.cache.put(answer)
                self.ledger.add_sent(stage, answer.prompt_tokens, answer.output_tokens,
                                     estimated=estimated)
            future.set_result(answer)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                with contextlib.suppress(BaseException):
                    future.exception()  # retrieved: no "never retrieved" warning
            raise
        finally:
            self._pending.pop(key, None)
        return TeacherAnswer(answer.text, answer.finish_reason, key, cached=False)

    def _tokens(self, reported: int | None, text: str) -> int:
        if reported is not None:
            return reported
        return self.count_tokens(text) if self.count_tokens is not None else 0
