"""Test helpers: synthetic requests and instrumented backends."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from reasonrank.backends.fake import FakeBackend
from reasonrank.errors import BackendError
from reasonrank.types import Candidate, Generation, Prompt, Query, Request, SamplingParams

WORDS = (
    "salt", "ocean", "river", "rock", "rain", "plant", "light", "shade", "stem", "cell", "heat",
    "price", "rent", "supply", "demand", "string", "window", "index", "prime", "theorem",
    "proof", "integer",
)


def make_requests(n_queries: int, n_cands: int, seed: int = 0) -> list[Request]:
    """Deterministic requests whose passages share words with their queries to varying degrees."""
    rng = random.Random(seed)
    out = []
    for q in range(n_queries):
        query = " ".join(rng.sample(WORDS, 4))
        cands = [
            Candidate(f"q{q}-d{i}", " ".join(rng.choices(WORDS, k=rng.randint(5, 30))),
                      score=float(n_cands - i) + 0.5)
            for i in range(n_cands)
        ]
        out.append(Request(Query(query, f"q{q}"), cands))
    return out


class JitterBackend(FakeBackend):
    """The deterministic fake, with random latencies so windows finish in a shuffled order."""

    def __init__(self, tokenizer: Any, seed: int = 0, max_latency: float = 0.003) -> None:
        super().__init__(tokenizer, "overlap")
        self.rng = random.Random(seed)
        self.max_latency = max_latency

    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        await asyncio.sleep(self.rng.random() * self.max_latency)
        return await super().generate(prompt, params)


class CountingBackend(FakeBackend):
    """Records how many generations are in flight whenever one starts."""

    def __init__(self, tokenizer: Any, latency: float = 0.002) -> None:
        super().__init__(tokenizer, "reverse", latency=latency)
        self.in_flight = 0
        self.samples: list[int] = []

    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        self.in_flight += 1
        self.samples.append(self.in_flight)
        try:
            return await super().generate(prompt, params)
        finally:
            self.in_flight -= 1


class FailingBackend(FakeBackend):
    """Answers like the fake until `fail_after` calls, then fails every call."""

    def __init__(self, tokenizer: Any, fail_after: int) -> None:
        super().__init__(tokenizer, "overlap")
        self.fail_after = fail_after

    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        if self.calls >= self.fail_after:
            raise BackendError("injected failure")
        return await super().generate(prompt, params)


def without_timings(traces: bytes) -> list[dict]:
    """Trace records with the wall-clock `latency_s` removed (everything else is deterministic)."""
    records = [json.loads(line) for line in traces.splitlines()]
    for record in records:
        for window in record["windows"]:
            window.pop("latency_s")
    return records
