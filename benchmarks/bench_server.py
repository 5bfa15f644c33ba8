"""HTTP throughput of `reasonrank serve`: concurrent clients, one shared scheduler.

A uvicorn server on 127.0.0.1 (its own process, so clients and server do not share a GIL)
serves a fake backend that batches like a GPU engine: one batch at a time, a fixed latency per
batch (default 200 ms) whatever its size, and the windows that arrive meanwhile form the next.
N concurrent httpx clients (1, 4, 16, 64) each send rerank requests of 20-40 documents
(1-3 sliding windows of 20), until a request count or a time limit. The windows of concurrent
requests share the backend, so throughput grows with the clients up to the `--concurrency` cap
(64 generations in flight). With `--latency 0.05` a 2-core machine runs out of CPU (clients
plus server) before 64 clients.

    python benchmarks/bench_server.py [--clients 1 4 16 64] [--latency 0.2] [--seconds 5]

`mean batch` is the mean number of windows per backend batch.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx

from reasonrank import Reranker
from reasonrank.backends.base import Generation, Prompt, SamplingParams
from reasonrank.backends.fake import FakeBackend
from reasonrank.config import RerankConfig
from reasonrank.server.app import create_app
from reasonrank.server.settings import ServerSettings

WORDS = ["salt", "ocean", "river", "rock", "rain", "plant", "light", "shade", "stem", "cell",
         "heat", "price", "rent", "supply", "demand", "string", "window", "index", "prime",
         "theorem", "proof", "integer"]


class BatchingBackend(FakeBackend):
    """The overlap fake served like one GPU engine: one batch at a time, each taking
    `batch_latency` seconds however many windows it holds (up to `max_batch`); windows that
    arrive while a batch runs wait for the next one. Throughput grows only if concurrent
    requests share batches."""

    def __init__(self, tokenizer: Any, batch_latency: float = 0.2, max_batch: int = 64) -> None:
        super().__init__(tokenizer, "overlap")
        self.batch_latency = batch_latency
        self.max_batch = max_batch
        self.batch_sizes: list[int] = []
        self._waiting: list[tuple[Prompt, asyncio.Future[Generation]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Generation] = loop.create_future()
        self._waiting.append((prompt, future))
        self.calls += 1
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._serve())
        return await future

    async def _serve(self) -> None:
        while self._waiting:
            batch = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
            self.batch_sizes.append(len(batch))
            await asyncio.sleep(self.batch_latency)
            for prompt, future in batch:
                if not future.done():
                    text = self.answer(prompt.text)
                    future.set_result(Generation(text, None, len(text) // 4, "stop"))


def make_payload(rng: random.Random) -> dict[str, Any]:
    n = rng.randint(20, 40)
    docs = [" ".join(rng.choices(WORDS, k=rng.randint(20, 60))) for _ in range(n)]
    return {"query": " ".join(rng.sample(WORDS, 4)), "documents": docs, "top_n": 10}


async def run_clients(url: str, clients: int, requests_per_client: int,
                      seconds: float) -> tuple[list[float], float]:
    """Latencies of every request and the wall time of the run."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(index: int, http: httpx.AsyncClient) -> None:
        rng = random.Random(index)
        for _ in range(requests_per_client):
            if time.perf_counter() > deadline:
                return
            began = time.perf_counter()
            r = await http.post("/v1/rerank", json=make_payload(rng))
            r.raise_for_status()
            latencies.append(time.perf_counter() - began)

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        await http.get("/health")
        began = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        return latencies, time.perf_counter() - began


def serve(port: int, latency: float, concurrency: int, ready: Any) -> None:
    """The server process: the batching fake behind the app, until terminated."""
    import uvicorn
    from transformers import AutoTokenizer

    from reasonrank.offline import build_qwen25_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(build_qwen25_tokenizer(tempfile.mkdtemp()))
    backend = BatchingBackend(tokenizer, latency)
    config = RerankConfig(model="bench-fake", backend="fake", concurrency=concurrency,
                          max_passage_tokens=100)
    app = create_app(Reranker(config=config, backend=backend), ServerSettings(port=port))

    @app.get("/bench/batches", include_in_schema=False)
    async def batches() -> dict[str, float]:
        sizes, backend.batch_sizes = backend.batch_sizes, []
        return {"mean": statistics.fmean(sizes) if sizes else 0.0, "count": len(sizes)}

    ready.set()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per batch")
    parser.add_argument("--requests", type=int, default=200, help="requests per client at most")
    parser.add_argument("--seconds", type=float, default=5.0, help="time limit per level")
    parser.add_argument("--concurrency", type=int, default=64, help="generations in flight")
    args = parser.parse_args()

    port = free_port()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=serve, args=(port, args.latency, args.concurrency, ready),
                       daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{port}"
    try:
        ready.wait(120)
        for _ in range(300):
            try:
                httpx.get(f"{url}/health", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        print(f"server process on {url}: batch latency {args.latency * 1000:.0f} ms, "
              f"concurrency cap {args.concurrency}, 20-40 documents per request, up to "
              f"{args.requests} requests or {args.seconds:g} s per client level")
        print(f"{'clients':>7} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
              f"{'mean batch':>10}")
        for clients in args.clients:
            httpx.get(f"{url}/bench/batches")
            latencies, wall = asyncio.run(
                run_clients(url, clients, args.requests, args.seconds)
            )
            cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
            batch = httpx.get(f"{url}/bench/batches").json()["mean"]
            print(f"{clients:>7} {len(latencies):>8} {len(latencies) / wall:>8.1f} "
                  f"{cuts[49] * 1000:>8.1f} {cuts[94] * 1000:>8.1f} {batch:>10.1f}")
    finally:
        proc.terminate()
        proc.join(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
