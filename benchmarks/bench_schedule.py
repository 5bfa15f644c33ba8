"""Window scheduling on a simulated continuous-batching GPU engine: ours vs lock-step batches.

A discrete-event simulation on a VIRTUAL clock: the asyncio event loop's `time()` is a number
that only moves when every coroutine is blocked, so hours of simulated GPU time run in seconds.
The simulated engine is a `Backend`; the real `reasonrank.core.scheduler.Scheduler` drives it
(window chains per query, `concurrency` queries in flight), and the authors' schedule (all queries'
window k form one batch; window k+1 starts when the slowest sequence of the batch is done, vLLM
`generate` over 512-query batches) drives the same engine through a direct loop.

    python benchmarks/bench_schedule.py [--queries 200] [--concurrency 64 128]
    python benchmarks/bench_schedule.py --replicas 8 --replica-concurrency 256 --replicas-only

`--replicas N` also simulates N engines fed like the Ray runner: streaming dispatch (each
replica keeps `--replica-concurrency` queries in flight, topped up as each finishes) vs chunked
dispatch (a chunk per replica, the next one only when the whole chunk is done), over
`--replica-queries` queries (1,384: BRIGHT), against the ideal (a perfect split: one replica
running its 1/N share).

Engine model (one H100-class GPU, 7B model, bf16), every constant a flag:
- a decode step over n running sequences takes `step_ms + per_seq_ms * n` (default 12 ms +
  0.25 ms per sequence: weight reads dominate the fixed part, each sequence's ~5.5k-token KV
  cache the per-sequence part);
- a sequence that joins costs `prompt_tokens / prefill_tokens_per_s` (default 38,000 tokens/s),
  added to the step in which it joins (prefill stalls decode, as without chunked prefill; no
  prefix caching);
- at most `max_batch` sequences run at once (default 256); the others queue FIFO and join as
  soon as a slot frees (continuous batching); `--kv-tokens` optionally also caps the sum of
  prompt + output tokens of the running sequences (admission reserves the full length; no
  preemption);
- each window's output length is lognormal (median 680 tokens, `--out-sigma` 0.35), clipped to
  [150, 3172]; its prompt length is uniform in [5000, 5700] (reference section 2). Both come
  from a hash of (seed, qid, window index), so the two schedules see identical windows.
Between two events (a sequence finishing or a batch of joins) the engine jumps all decode steps
at once, which is exact because the batch does not change in between.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import selectors
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from reasonrank.backends.base import Backend
from reasonrank.config import RerankConfig
from reasonrank.core.prompts import PreparedRequest
from reasonrank.core.scheduler import Scheduler
from reasonrank.core.windows import sliding_windows
from reasonrank.types import Candidate, Generation, Prompt, Query, Request, SamplingParams

# ---------------------------------------------------------------------------- virtual clock


class _VirtualSelector(selectors.SelectSelector):
    """Never blocks: a wait of `timeout` seconds advances the loop's virtual clock instead."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualLoop | None = None

    def select(self, timeout: float | None = None) -> list[Any]:
        loop = self.loop
        if timeout == 0 or loop is None:
            return []
        # Nothing can run at this instant: wake the idle waiters first, else move time on.
        if loop.idle_waiters:
            waiters, loop.idle_waiters = loop.idle_waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
            return []
        if timeout is None:
            raise RuntimeError("simulation stalled: every task waits and no timer is pending")
        loop.now += timeout
        return []


class VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock is virtual; `idle()` waits until nothing else can run now."""

    def __init__(self) -> None:
        selector = _VirtualSelector()
        self.now = 0.0
        self.idle_waiters: list[asyncio.Future[None]] = []
        super().__init__(selector)
        selector.loop = self

    def time(self) -> float:
        return self.now

    def idle(self) -> asyncio.Future[None]:
        fut = self.create_future()
        self.idle_waiters.append(fut)
        return fut


# ---------------------------------------------------------------------------- the engine


@dataclass
class EngineModel:
    step_s: float = 0.012
    per_seq_s: float = 0.00025
    prefill_tokens_per_s: float = 38_000.0
    max_batch: int = 256
    kv_tokens: int = 0  # 0: no KV-cache cap
    seed: int = 0
    out_median: float = 680.0
    out_sigma: float = 0.35
    out_min: int = 150
    out_max: int = 3172
    prompt_min: int = 5000
    prompt_max: int = 5700

    def window(self, qid: str, index: int) -> tuple[int, int]:
        """(prompt tokens, output tokens) of window `index` of query `qid`: order-independent."""
        rng = random.Random(f"{self.seed}:{qid}:{index}")
        out = round(math.exp(rng.gauss(math.log(self.out_median), self.out_sigma)))
        return rng.randint(self.prompt_min, self.prompt_max), min(max(out, self.out_min),
                                                                   self.out_max)


@dataclass
class _Seq:
    qid: str
    prompt_tokens: int
    output_tokens: int
    remaining: int
    future: asyncio.Future[Generation]
    answer: str


@dataclass
class EngineStats:
    decode_s: float = 0.0
    prefill_s: float = 0.0
    seq_seconds: float = 0.0  # integral of running sequences over decode time
    low_s: float = 0.0  # decode time with fewer than `low` sequences running
    steps: int = 0
    windows: int = 0
    output_tokens: int = 0
    query_start: dict[str, float] = field(default_factory=dict)
    query_end: dict[str, float] = field(default_factory=dict)


def _answer(num: int) -> str:
    ranking = " > ".join(f"[{i}]" for i in range(1, num + 1))
    return f"<think>simulated</think> <answer>{ranking}</answer>"


class SimEngineBackend(Backend):
    """A `Backend` whose generations are finished by a simulated continuous-batching engine.

    The prompt text is `"qid\\tnum_passages"` (see `SimBuilder`); the k-th call for a query is
    its window k (windows of one query are sequential in both schedules).
    """

    name = "sim"

    def __init__(self, model: EngineModel, low: int) -> None:
        self.model = model
        self.low = low
        self.stats = EngineStats()
        self._calls: dict[str, int] = {}
        self._answers: dict[int, str] = {}
        self._waiting: deque[_Seq] = deque()
        self._active: list[_Seq] = []
        self._kv_used = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def tokenizer(self) -> Any:
        return None

    @classmethod
    def from_config(cls, config: RerankConfig) -> SimEngineBackend:
        return cls(EngineModel(), 32)

    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        qid, num = prompt.text.split("\t")
        index = self._calls.get(qid, 0)
        self._calls[qid] = index + 1
        prompt_tokens, output_tokens = self.model.window(qid, index)
        output_tokens = min(output_tokens, params.max_new_tokens)
        answer = self._answers.get(int(num))
        if answer is None:
            answer = self._answers[int(num)] = _answer(int(num))
        loop = asyncio.get_running_loop()
        self.stats.query_start.setdefault(qid, loop.time())
        fut: asyncio.Future[Generation] = loop.create_future()
        self._waiting.append(_Seq(qid, prompt_tokens, output_tokens, output_tokens, fut, answer))
        self._wake.set()
        return await fut

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _admit(self) -> int:
        """Move queued sequences into the batch; returns the prompt tokens to prefill."""
        m, joined = self.model, 0
        while self._waiting and len(self._active) < m.max_batch:
            seq = self._waiting[0]
            need = seq.prompt_tokens + seq.output_tokens
            if m.kv_tokens and self._active and self._kv_used + need > m.kv_tokens:
                break
            self._waiting.popleft()
            self._active.append(seq)
            self._kv_used += need
            joined += seq.prompt_tokens
        return joined

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualLoop), "the simulated engine needs the virtual clock"
        m, st = self.model, self.stats
        while True:
            await loop.idle()  # every client has submitted what it can at this instant
            if not self._waiting and not self._active:
                self._wake.clear()
                await self._wake.wait()
                continue
            joined = self._admit()
            if joined:
                prefill = joined / m.prefill_tokens_per_s
                st.prefill_s += prefill
                await asyncio.sleep(prefill)
            n = len(self._active)
            k = min(s.remaining for s in self._active)  # steps until the next sequence ends
            dt = k * (m.step_s + m.per_seq_s * n)
            st.decode_s += dt
            st.seq_seconds += n * dt
            st.steps += k
            if n < self.low:
                st.low_s += dt
            await asyncio.sleep(dt)
            now = loop.time()
            still: list[_Seq] = []
            for seq in self._active:
                seq.remaining -= k
                if seq.remaining:
                    still.append(seq)
                    continue
                self._kv_used -= seq.prompt_tokens + seq.output_tokens
                st.windows += 1
                st.output_tokens += seq.output_tokens
                st.query_end[seq.qid] = now
                seq.future.set_result(Generation(seq.answer, seq.prompt_tokens,
                                                 seq.output_tokens, "stop"))
            self._active = still


class SimBuilder:
    """Stands in for `PromptBuilder`: the prompt only names the query and the window size."""

    def prepare(self, request: Request) -> PreparedRequest:
        return PreparedRequest(request, request.query.qid, [c.docid for c in request.candidates])

    def render(self, query: str, passages: list[str]) -> Prompt:
        return Prompt(f"{query}\t{len(passages)}", ())


# ---------------------------------------------------------------------------- the schedules


def make_requests(n_queries: int, n_candidates: int) -> list[Request]:
    return [
        Request(Query(f"query {q}", f"q{q}"),
                [Candidate(f"d{q}-{i}", "", float(n_candidates - i)) for i in range(n_candidates)])
        for q in range(n_queries)
    ]


async def run_ours(backend: SimEngineBackend, requests: list[Request], concurrency: int) -> int:
    config = RerankConfig(backend="fake", concurrency=concurrency)
    scheduler = Scheduler(backend, SimBuilder(), config)  # type: ignore[arg-type]
    results = await scheduler.rerank_all(requests)
    await backend.aclose()
    return sum(len(r.windows) for r in results)


async def run_lockstep(backend: SimEngineBackend, requests: list[Request], batch: int) -> int:
    """The authors' loop: window position k of a batch of queries, all at once, then k+1."""
    params = SamplingParams()
    builder = SimBuilder()
    windows = 0
    for first in range(0, len(requests), batch):
        chunk = [builder.prepare(r) for r in requests[first:first + batch]]
        spans = [sliding_windows(len(p.passages)) for p in chunk]
        for k in range(max(map(len, spans))):
            calls = [
                backend.generate(builder.render(p.query, p.passages[s[k][0]:s[k][1]]), params)
                for p, s in zip(chunk, spans, strict=True) if k < len(s)
            ]
            windows += len(await asyncio.gather(*calls))
    await backend.aclose()
    return windows


async def run_replicas(backends: list[SimEngineBackend], requests: list[Request],
                       concurrency: int, dispatch: str) -> int:
    """N replicas (one engine + one scheduler each, like the Ray actors) over one queue.

    "streaming": every replica keeps `concurrency` queries in flight and takes the next query
    the moment one finishes. "chunked": a free replica takes the next chunk of queries (the Ray
    runner's default size) and takes no more until the whole chunk is done."""
    config = RerankConfig(backend="fake", concurrency=concurrency)
    queue = deque(requests)
    windows = 0

    async def streaming_slot(scheduler: Scheduler) -> None:
        nonlocal windows
        while queue:
            result = await scheduler.rerank(queue.popleft())
            windows += len(result.windows)

    size = max(1, min(concurrency, math.ceil(len(requests) / (4 * len(backends)))))
    chunks = deque(list(queue)[i:i + size] for i in range(0, len(queue), size))

    async def chunked_replica(scheduler: Scheduler) -> None:
        nonlocal windows
        while chunks:
            results = await scheduler.rerank_all(chunks.popleft())
            windows += sum(len(r.windows) for r in results)

    schedulers = [Scheduler(b, SimBuilder(), config) for b in backends]  # type: ignore[arg-type]
    if dispatch == "streaming":  # slots interleaved: queries go to the least loaded replica
        tasks = [streaming_slot(s) for _ in range(concurrency) for s in schedulers]
    else:
        tasks = [chunked_replica(s) for s in schedulers]
    await asyncio.gather(*tasks)
    for backend in backends:
        await backend.aclose()
    return windows


def simulate_replicas(model: EngineModel, low: int, requests: list[Request], replicas: int,
                      concurrency: int, dispatch: str) -> tuple[float, int]:
    """(virtual makespan, windows) of `replicas` engines under `dispatch`."""
    loop = VirtualLoop()
    try:
        asyncio.set_event_loop(loop)
        backends = [SimEngineBackend(model, low) for _ in range(replicas)]
        windows = loop.run_until_complete(run_replicas(backends, requests, concurrency,
                                                       dispatch))
        return loop.time(), windows
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@dataclass
class Outcome:
    name: str
    makespan: float
    windows: int
    stats: EngineStats
    max_batch: int
    wall: float


def simulate(name: str, model: EngineModel, low: int, schedule, *args) -> Outcome:
    loop = VirtualLoop()
    began = time.perf_counter()
    try:
        asyncio.set_event_loop(loop)
        backend = SimEngineBackend(model, low)
        windows = loop.run_until_complete(schedule(backend, *args))
        makespan = loop.time()
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    return Outcome(name, makespan, windows, backend.stats, model.max_batch,
                   time.perf_counter() - began)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def report(outcomes: list[Outcome], n_queries: int, low: int) -> None:
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, fmt) -> None:
        rows.append((label, [fmt(o) for o in outcomes]))

    def latencies(o: Outcome) -> list[float]:
        st = o.stats
        return [st.query_end[q] - st.query_start[q] for q in st.query_start]

    row("windows", lambda o: f"{o.windows}")
    row("total time (virtual)", lambda o: f"{o.makespan:,.1f} s")
    row("seconds / query", lambda o: f"{o.makespan / n_queries:.3f}")
    row("windows / s", lambda o: f"{o.windows / o.makespan:.2f}")
    row("output tokens (all windows)", lambda o: f"{o.stats.output_tokens:,}")
    row("output tokens / s", lambda o: f"{o.stats.output_tokens / o.makespan:,.0f}")
    row("mean running seqs, all time", lambda o: f"{o.stats.seq_seconds / o.makespan:.1f}")
    row("mean running seqs, decode time",
        lambda o: f"{o.stats.seq_seconds / max(o.stats.decode_s, 1e-12):.1f}")
    row("utilisation (mean/max batch)",
        lambda o: f"{o.stats.seq_seconds / o.makespan / o.max_batch:.1%}")
    row(f"decode time with < {low} seqs",
        lambda o: f"{o.stats.low_s / max(o.stats.decode_s, 1e-12):.1%}")
    row("prefill share of time", lambda o: f"{o.stats.prefill_s / o.makespan:.1%}")
    row("decode steps", lambda o: f"{o.stats.steps:,}")
    row("query latency p50", lambda o: f"{_pct(latencies(o), 0.50):,.1f} s")
    row("query latency p95", lambda o: f"{_pct(latencies(o), 0.95):,.1f} s")
    row("query latency max", lambda o: f"{max(latencies(o)):,.1f} s")
    row("wall time of the simulation", lambda o: f"{o.wall:.2f} s")
    width = max(len(label) for label, _ in rows)
    cols = [max(len(o.name), *(len(r[1][i]) for r in rows)) for i, o in enumerate(outcomes)]
    print(" " * width + "  " + "  ".join(o.name.rjust(c) for o, c in zip(outcomes, cols,
                                                                            strict=True)))
    for label, cells in rows:
        print(label.ljust(width) + "  " + "  ".join(v.rjust(c) for v, c in zip(cells, cols,
                                                                                strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 128, 256],
                        help="Scheduler concurrency caps to simulate (one column each)")
    parser.add_argument("--authors-batch", type=int, default=512,
                        help="queries per lock-step batch (the authors used 512)")
    parser.add_argument("--step-ms", type=float, default=12.0,
                        help="fixed cost of one decode step (ms)")
    parser.add_argument("--per-seq-ms", type=float, default=0.25,
                        help="added decode-step cost per running sequence (ms)")
    parser.add_argument("--prefill-tokens-per-s", type=float, default=38_000.0)
    parser.add_argument("--max-batch", type=int, default=256, help="engine max running seqs")
    parser.add_argument("--kv-tokens", type=int, default=0,
                        help="KV-cache capacity in tokens (0: unlimited; ~850000 fits a 7B "
                             "on an 80 GB GPU)")
    parser.add_argument("--out-median", type=float, default=680.0)
    parser.add_argument("--out-sigma", type=float, default=0.35,
                        help="lognormal sigma of the output lengths")
    parser.add_argument("--low-batch", type=int, default=32,
                        help="report the share of decode time with fewer running sequences")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replicas", type=int, default=0,
                        help="also simulate N replicas (Ray), streaming vs chunked dispatch "
                             "(e.g. --replicas 8 --replica-queries 1384)")
    parser.add_argument("--replica-concurrency", type=int, default=256,
                        help="queries in flight per replica")
    parser.add_argument("--replica-queries", type=int, default=1384,
                        help="queries of the replica simulation (1,384: BRIGHT)")
    parser.add_argument("--replicas-only", action="store_true",
                        help="skip the single-engine comparison")
    args = parser.parse_args(argv)
    model = EngineModel(
        step_s=args.step_ms / 1000, per_seq_s=args.per_seq_ms / 1000,
        prefill_tokens_per_s=args.prefill_tokens_per_s, max_batch=args.max_batch,
        kv_tokens=args.kv_tokens, seed=args.seed, out_median=args.out_median,
        out_sigma=args.out_sigma,
    )
    if args.replicas:
        replica_report(model, args)
        if args.replicas_only:
            return 0
    requests = make_requests(args.queries, args.candidates)
    n_windows = len(sliding_windows(args.candidates)) * args.queries
    print(f"{args.queries} queries x {args.candidates} candidates = {n_windows} windows; engine: "
          f"step {args.step_ms:g} ms + {args.per_seq_ms:g} ms/seq, prefill "
          f"{args.prefill_tokens_per_s:,.0f} tok/s, max batch {args.max_batch}, KV cap "
          f"{args.kv_tokens or 'none'}; outputs lognormal median {args.out_median:g} "
          f"sigma {args.out_sigma:g} in [150, 3172], prompts 5000-5700, seed {args.seed}")
    outcomes = [
        simulate(f"ours c={c}", model, args.low_batch, run_ours, requests, c)
        for c in args.concurrency
    ]
    batch = min(args.authors_batch, args.queries)
    authors = simulate(f"lock-step B={batch}", model, args.low_batch, run_lockstep, requests,
                       args.authors_batch)
    outcomes.append(authors)
    for o in outcomes:
        if o.windows != n_windows or o.stats.windows != n_windows:
            print(f"ERROR: {o.name} ran {o.windows} windows, expected {n_windows}", file=sys.stderr)
            return 1
    report(outcomes, args.queries, args.low_batch)
    best = min(outcomes[:-1], key=lambda o: o.makespan)
    print(f"speed-up: {best.name} {best.makespan / args.queries:.3f} s/query vs lock-step "
          f"{authors.makespan / args.queries:.3f} s/query = x{authors.makespan / best.makespan:.2f}"
          f" (same {n_windows} windows, same simulated engine)")
    return 0


def replica_report(model: EngineModel, args: argparse.Namespace) -> None:
    """N replicas streaming vs chunked, and the ideal: a perfect split (each replica runs its
    1/N share of the queries, all started at once)."""
    n, c, q = args.replicas, args.replica_concurrency, args.replica_queries
    requests = make_requests(q, args.candidates)
    expected = len(sliding_windows(args.candidates)) * q
    times = {}
    for dispatch in ("streaming", "chunked"):
        makespan, windows = simulate_replicas(model, args.low_batch, requests, n, c, dispatch)
        assert windows == expected, (dispatch, windows, expected)
        times[dispatch] = makespan
    # Ideal: a perfect split, each replica running exactly its 1/N share of the queries.
    share = make_requests(math.ceil(q / n), args.candidates)
    one, _ = simulate_replicas(model, args.low_batch, share, 1, c, "streaming")
    ideal = q / one
    # A replica that never runs dry (always 4 x concurrency queries to take), for scale.
    steady_share = make_requests(4 * c, args.candidates)
    steady_one, _ = simulate_replicas(model, args.low_batch, steady_share, 1, c, "streaming")
    print(f"(one replica kept full: {len(steady_share) / steady_one:.3f} queries/s; "
          f"x{n}: {n * len(steady_share) / steady_one:.3f})")
    print(f"{n} replicas x concurrency {c}, {q} queries x {args.candidates} candidates:")
    for dispatch, makespan in times.items():
        print(f"  {dispatch:9s} {makespan:9,.1f} s  {q / makespan:7.3f} queries/s  "
              f"{makespan / q:.3f} s/query  ({q / makespan / ideal:.1%} of ideal)")
    print(f"replicas: streaming {q / times['streaming']:.3f} queries/s, chunked "
          f"{q / times['chunked']:.3f} queries/s, ideal {ideal:.3f} queries/s "
          f"(x{times['chunked'] / times['streaming']:.2f} from streaming)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
