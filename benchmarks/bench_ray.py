"""Ray data parallelism: streaming dispatch vs chunked dispatch vs the ideal.

N replicas (Ray actors on a local cluster) of a backend that answers like the fake backend but
first sleeps a long-tailed random time per window (lognormal, drawn from a hash of the prompt,
so both dispatches see the same windows). The same queries go through "chunked" dispatch (a
chunk of queries per actor call; the actor takes no new work until its whole chunk is done) and
"streaming" dispatch (every actor keeps `--concurrency` queries in flight and takes the next as
each one finishes). Ideal: N replicas x `--concurrency` queries always in flight, i.e.
N x concurrency / mean query time (the sum of its windows' sleeps).

    python benchmarks/bench_ray.py [--replicas 2] [--concurrency 4] [--queries 256]

Last line: `ray: streaming X queries/s, chunked Y queries/s, ideal Z queries/s`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from reasonrank.backends.fake import FakeBackend
from reasonrank.config import RerankConfig
from reasonrank.types import Candidate, Generation, Prompt, Query, Request, SamplingParams


def window_seconds(prompt_text: str, median: float, sigma: float, cap: float) -> float:
    """The sleep of one window: lognormal(median, sigma) clipped to `cap`, from the prompt."""
    digest = hashlib.blake2b(prompt_text.encode(), digest_size=8).digest()
    u = (int.from_bytes(digest, "big") + 0.5) / 2**64
    z = math.sqrt(2) * _erfinv(2 * u - 1)
    return min(cap, median * math.exp(sigma * z))


def _erfinv(y: float) -> float:
    """Inverse error function (Newton on math.erf; plenty for a benchmark's draws)."""
    x = 0.0
    for _ in range(60):
        x -= (math.erf(x) - y) / (2 / math.sqrt(math.pi) * math.exp(-x * x))
        x = max(-6.0, min(6.0, x))
    return x


class SleepyBackend(FakeBackend):
    """The fake backend, sleeping `window_seconds(prompt)` before each answer."""

    def __init__(self, tokenizer: Any, median: float, sigma: float, cap: float) -> None:
        super().__init__(tokenizer, "overlap")
        self.median, self.sigma, self.cap = median, sigma, cap

    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        await asyncio.sleep(window_seconds(prompt.text, self.median, self.sigma, self.cap))
        text = self.answer(prompt.text)
        return Generation(text, None, len(text) // 4, "stop")


class SleepyFactory:
    """Builds a `SleepyBackend` inside each Ray actor (pickled to it)."""

    def __init__(self, median: float, sigma: float, cap: float) -> None:
        self.median, self.sigma, self.cap = median, sigma, cap

    def __call__(self, config: RerankConfig) -> SleepyBackend:
        from reasonrank.backends.base import load_tokenizer

        return SleepyBackend(load_tokenizer(config.tokenizer_name), self.median, self.sigma,
                             self.cap)


def make_requests(n: int, candidates: int) -> list[Request]:
    words = ["salt", "sea", "river", "rock", "rain", "cell", "heat", "price", "rent", "prime"]
    out = []
    for q in range(n):
        query = " ".join(words[(q * k) % len(words)] for k in (1, 3, 7))
        cands = [Candidate(f"q{q}-d{i}", f"{words[(q + i) % 10]} {words[(q * i) % 10]} {i}",
                           score=float(candidates - i)) for i in range(candidates)]
        out.append(Request(Query(query, f"q{q}"), cands))
    return out


def query_seconds(config: RerankConfig, factory: SleepyFactory, tok: Any, request: Request
                  ) -> float:
    """The sum of one query's window sleeps, walking its window chain like the scheduler."""
    from reasonrank.core.prompts import PromptBuilder
    from reasonrank.core.scheduler import Scheduler

    total = 0.0
    fake = FakeBackend(tok, "overlap")

    class Timed(FakeBackend):
        async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
            nonlocal total
            total += window_seconds(prompt.text, factory.median, factory.sigma, factory.cap)
            return await fake.generate(prompt, params)

    scheduler = Scheduler(Timed(tok), PromptBuilder(tok, config.template,
                                                    config.passage_tokens), config)
    asyncio.run(scheduler.rerank(request))
    return total


def run(dispatch: str, config: RerankConfig, factory: SleepyFactory, requests: list[Request],
        replicas: int, out: Path) -> float:
    from reasonrank.distributed import rerank_to_files_ray

    began = time.perf_counter()
    summary = rerank_to_files_ray(
        config, requests, str(out / f"{dispatch}.trec"), str(out / f"{dispatch}.jsonl"),
        replicas=replicas, dispatch=dispatch, backend_factory=factory,
    )
    wall = time.perf_counter() - began
    assert summary.queries == len(requests)
    # the run's own time, without starting the actors: the summary's wall clock
    print(f"{dispatch:9s} {len(requests)} queries in {summary.wall_s:6.2f} s "
          f"(with actor start {wall:.2f} s)", flush=True)
    return len(requests) / summary.wall_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="queries in flight per replica")
    parser.add_argument("--queries", type=int, default=256)
    parser.add_argument("--candidates", type=int, default=40, help="40: 3 windows per query")
    parser.add_argument("--median", type=float, default=0.1, help="median window seconds")
    parser.add_argument("--sigma", type=float, default=0.8, help="lognormal sigma")
    parser.add_argument("--cap", type=float, default=1.0, help="longest window, seconds")
    args = parser.parse_args(argv)

    import ray

    from reasonrank.offline import build_qwen25_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        tok_dir = build_qwen25_tokenizer(out / "tokenizer")
        config = RerankConfig(model="sleepy", backend="fake", tokenizer=str(tok_dir),
                              concurrency=args.concurrency, max_passage_tokens=16)
        factory = SleepyFactory(args.median, args.sigma, args.cap)
        requests = make_requests(args.queries, args.candidates)
        from reasonrank.backends.base import load_tokenizer

        tok = load_tokenizer(config.tokenizer_name)
        seconds = [query_seconds(config, factory, tok, r) for r in requests]
        ideal = args.replicas * args.concurrency / (sum(seconds) / len(seconds))
        ray.init(num_cpus=args.replicas, include_dashboard=False, log_to_driver=False)
        try:
            streaming = run("streaming", config, factory, requests, args.replicas, out)
            chunked = run("chunked", config, factory, requests, args.replicas, out)
        finally:
            ray.shutdown()
        same = (out / "streaming.trec").read_bytes() == (out / "chunked.trec").read_bytes()
    print(f"mean query {sum(seconds) / len(seconds):.3f} s, slowest {max(seconds):.3f} s; "
          f"streaming/ideal {streaming / ideal:.1%}; same run files: {same}")
    print(f"ray: streaming {streaming:.2f} queries/s, chunked {chunked:.2f} queries/s, "
          f"ideal {ideal:.2f} queries/s")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
