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
        [--attack-clients 16] [--slow-bodies 3000] [--disconnecting 10] [--attack-seconds 20]

`mean batch` is the mean number of windows per backend batch.

Then the same normal clients run twice more, quiet and beside hostile ones: `--disconnecting`
clients that send a 100-document request (9 windows) and hang up after 50 ms, over and over,
and `--slow-bodies` connections that announce a 10 kB body and send one byte a second (lowered
to fit `ulimit -n`). Reported: the normal clients' requests/s and p95 with and without them,
the server's peak open descriptors, the bytes it logged, and the windows generated for clients
that had already gone (each disconnect may cost the one window in flight, no more). The last
line states the p95 ratio (goal: within 2x).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx

from reasonrank import Reranker
from reasonrank.backends.fake import FakeBackend
from reasonrank.config import RerankConfig
from reasonrank.server.app import create_app
from reasonrank.server.settings import ServerSettings
from reasonrank.types import Generation, Prompt, SamplingParams

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
        self.generated = 0  # windows generated (cancelled callers' windows are dropped first)
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
            # a window whose caller was cancelled (client gone) is dropped before generation
            self._waiting = [item for item in self._waiting if not item[1].done()]
            batch = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
            if not batch:
                return
            self.generated += len(batch)
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
                      seconds: float, windows: list[int] | None = None
                      ) -> tuple[list[float], float]:
    """Latencies of every request and the wall time of the run (each answer's window count
    appended to `windows`)."""
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
            if windows is not None:
                windows.append(r.json()["meta"]["windows"])

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        await http.get("/health")
        began = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        return latencies, time.perf_counter() - began


def serve(port: int, latency: float, concurrency: int, ready: Any, log_path: str) -> None:
    """The server process: the batching fake behind the app, until terminated; its stderr
    (uvicorn's and asyncio's logs) goes to `log_path`."""
    import uvicorn
    from transformers import AutoTokenizer

    from reasonrank.offline import build_qwen25_tokenizer
    from reasonrank.server.run import raise_fd_limit, uvicorn_config

    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log_fd, 2)

    tokenizer = AutoTokenizer.from_pretrained(build_qwen25_tokenizer(tempfile.mkdtemp()))
    backend = BatchingBackend(tokenizer, latency)
    config = RerankConfig(model="bench-fake", backend="fake", concurrency=concurrency,
                          max_passage_tokens=100)
    settings = raise_fd_limit(ServerSettings(port=port))
    app = create_app(Reranker(config=config, backend=backend), settings)

    @app.get("/bench/batches", include_in_schema=False)
    async def batches() -> dict[str, float]:
        sizes, backend.batch_sizes = backend.batch_sizes, []
        generated, backend.generated = backend.generated, 0
        return {"mean": statistics.fmean(sizes) if sizes else 0.0, "count": len(sizes),
                "generated": generated}

    @app.get("/bench/fds", include_in_schema=False)
    async def fds() -> dict[str, int]:
        return {"fds": len(os.listdir("/proc/self/fd"))}

    ready.set()
    uvicorn.Server(uvicorn_config(app, settings, log_level="warning", host="127.0.0.1",
                                  port=port)).run()


async def disconnecting_client(url: str, index: int, stop: float, count: list[int]) -> None:
    """Sends a 100-document request (9 windows) and hangs up after 50 ms, until `stop`."""
    rng = random.Random(1000 + index)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(5, read=0.05)) as http:
        while time.perf_counter() < stop:
            docs = [" ".join(rng.choices(WORDS, k=30)) for _ in range(100)]
            try:
                await http.post("/v1/rerank", json={"query": "salt rock", "documents": docs})
            except httpx.TimeoutException:
                count[0] += 1
            await asyncio.sleep(0.05)


async def slow_body(host: str, port: int, stop: float, opened: list[int]) -> None:
    """Announces a 10 kB body and sends one byte a second until `stop` (reconnecting when the
    server closes the connection)."""
    head = (b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10000\r\n\r\n")
    while time.perf_counter() < stop:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(1)
            continue
        opened[0] += 1
        try:
            writer.write(head)
            while time.perf_counter() < stop and not reader.at_eof():
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(1)
        except OSError:
            pass
        finally:
            writer.close()


async def hostile_clients(url: str, slow: int, disconnecting: int, seconds: float,
                          ramp: float) -> tuple[int, int]:
    """`slow` slow-body connections, then after `ramp` s `disconnecting` hanging-up clients,
    until `seconds` from now; (slow-body connections opened, hang-ups)."""
    host, port = url.removeprefix("http://").split(":")
    stop = time.perf_counter() + seconds
    opened, hangups = [0], [0]
    tasks = [asyncio.ensure_future(slow_body(host, int(port), stop, opened))
             for _ in range(slow)]
    await asyncio.sleep(ramp)
    tasks += [asyncio.ensure_future(disconnecting_client(url, i, stop, hangups))
              for i in range(disconnecting)]
    await asyncio.gather(*tasks, return_exceptions=True)
    return opened[0], hangups[0]


def hostile_process(url: str, slow: int, disconnecting: int, seconds: float, ramp: float,
                    out: Any) -> None:
    """The attackers in their own process, so they do not slow the normal clients' loop."""
    out.put(asyncio.run(hostile_clients(url, slow, disconnecting, seconds, ramp)))


async def attack_phase(url: str, clients: int, seconds: float, slow: int,
                       disconnecting: int) -> dict[str, Any]:
    """The normal clients for `seconds`, beside `slow` slow-body connections and
    `disconnecting` clients that hang up (another process)."""
    ramp = min(5.0, seconds / 4) if slow else 0.0  # let the slow connections open first
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    attackers = None
    if slow or disconnecting:
        attackers = ctx.Process(target=hostile_process, daemon=True,
                                args=(url, slow, disconnecting, seconds + ramp, ramp, out))
        attackers.start()
        await asyncio.sleep(ramp + 1.0)  # the process starts, then its ramp
    stop = time.perf_counter() + seconds
    peak_fds = 0

    async def watch_fds() -> None:
        nonlocal peak_fds
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            while time.perf_counter() < stop:
                peak_fds = max(peak_fds, (await http.get("/bench/fds")).json()["fds"])
                await asyncio.sleep(1)

    watcher = asyncio.ensure_future(watch_fds())
    windows: list[int] = []
    latencies, wall = await run_clients(url, clients, 10**6, seconds, windows)
    await watcher
    opened = hangups = 0
    if attackers is not None:
        opened, hangups = await asyncio.to_thread(out.get, True, seconds + 60)
        attackers.join(10)
    return {"latencies": latencies, "wall": wall, "windows": sum(windows),
            "opened": opened, "hangups": hangups, "peak_fds": peak_fds}


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
    parser.add_argument("--attack-clients", type=int, default=16,
                        help="normal clients of the quiet and attacked runs (0: skip them)")
    parser.add_argument("--attack-seconds", type=float, default=20.0,
                        help="length of the quiet and of the attacked run")
    parser.add_argument("--slow-bodies", type=int, default=3000,
                        help="slow-body connections (lowered to fit ulimit -n)")
    parser.add_argument("--disconnecting", type=int, default=10,
                        help="clients that hang up 50 ms into each request")
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.slow_bodies + args.attack_clients + args.disconnecting + 256
    if soft < want:
        soft = min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    slow = max(0, min(args.slow_bodies, soft - args.attack_clients - args.disconnecting - 256))
    port = free_port()
    log_path = Path(tempfile.mkdtemp()) / "server.log"
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=serve, args=(port, args.latency, args.concurrency, ready,
                                           str(log_path)), daemon=True)
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
        if args.attack_clients:
            attack(url, args, slow, log_path)
    finally:
        proc.terminate()
        proc.join(10)
    return 0


def attack(url: str, args: argparse.Namespace, slow: int, log_path: Path) -> None:
    print(f"\n{args.attack_clients} normal clients for {args.attack_seconds:g} s, quiet, then "
          f"beside {slow} slow-body connections and {args.disconnecting} clients that hang up "
          f"after 50 ms")
    print(f"{'run':>8} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'peak fds':>8} {'log bytes':>9} {'vanished windows':>16}")
    p95 = {}
    for name, slow_n, gone_n in (("quiet", 0, 0), ("attacked", slow, args.disconnecting)):
        httpx.get(f"{url}/bench/batches")
        log_before = log_path.stat().st_size
        run = asyncio.run(attack_phase(url, args.attack_clients, args.attack_seconds, slow_n,
                                       gone_n))
        time.sleep(1)  # windows in flight at the end finish
        generated = httpx.get(f"{url}/bench/batches").json()["generated"]
        vanished = generated - run["windows"]
        latencies = run["latencies"]
        cuts = statistics.quantiles(latencies, n=100)
        p95[name] = cuts[94]
        print(f"{name:>8} {len(latencies):>8} {len(latencies) / run['wall']:>8.1f} "
              f"{cuts[49] * 1000:>8.1f} {cuts[94] * 1000:>8.1f} {run['peak_fds']:>8} "
              f"{log_path.stat().st_size - log_before:>9} {vanished:>16}")
        if gone_n:
            print(f"         {run['hangups']} hang-ups, {run['opened']} slow-body connections "
                  f"opened; windows generated for gone clients: {vanished} "
                  f"({vanished / max(run['hangups'], 1):.2f} per hang-up; 9 without "
                  "cancellation)")
    print(f"normal clients' p95 under attack / quiet: {p95['attacked'] / p95['quiet']:.2f}x "
          f"(goal: <= 2x)")


if __name__ == "__main__":
    sys.exit(main())
