"""Batch reranking on a Ray cluster: one model replica per actor, queries streamed to them.

Each actor is an async Ray actor running the window scheduler on its own event loop. The driver
keeps up to `concurrency` queries in flight on every replica and hands a replica its next query
the moment one of its queries finishes, so no replica ever waits for the slowest query of a
chunk ("streaming" dispatch). The old "chunked" dispatch (a chunk of queries per call, the next
chunk only once the whole chunk is done) stays available for comparison.

Results stream into the same resumable `RunFiles` as the local runner, so the outputs are the
same files, in the same format and order, and `resume` skips the queries already done.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from reasonrank.backends.base import Backend, backend_class
from reasonrank.config import RerankConfig
from reasonrank.errors import ConfigError, ReasonRankError, require
from reasonrank.runner import RunSummary, stream_to_files
from reasonrank.types import RankedResult, Request

log = logging.getLogger("reasonrank.distributed")

ACTOR_PREFIX = "reasonrank-rerank"
DISPATCH = ("streaming", "chunked")


class RerankWorker:
    """The body of one Ray actor: a `Reranker` built inside the actor's process, driven from
    the actor's event loop (Ray runs the async methods concurrently on that loop)."""

    def __init__(self, config: RerankConfig,
                 backend_factory: Callable[[RerankConfig], Backend] | None = None) -> None:
        from reasonrank.reranker import Reranker

        backend = config.backend if backend_factory is None else backend_factory(config)
        self.reranker = Reranker(config=config, backend=backend)

    async def rerank_one(self, request: Request) -> RankedResult:
        """Rerank one query; many calls run at once and share the backend."""
        return await self.reranker.scheduler.rerank(request)

    async def rerank(self, requests: list[Request]) -> list[RankedResult]:
        """Rerank one chunk of queries concurrently; results in input order."""
        return await self.reranker.scheduler.rerank_all(requests)

    async def close(self) -> None:
        await self.reranker.backend.aclose()


def default_gpus_per_replica(config: RerankConfig) -> float:
    """GPUs one replica needs, as its backend says (vLLM: its tensor-parallel size)."""
    return backend_class(config.backend).replica_gpus(config)


def rerank_to_files_ray(
    config: RerankConfig,
    requests: Sequence[Request],
    run_path: str,
    trace_path: str,
    *,
    replicas: int = 2,
    gpus_per_replica: float | None = None,
    cpus_per_replica: float = 1,
    address: str | None = None,
    dispatch: str = "streaming",
    chunk_size: int | None = None,
    resume: bool = False,
    tag: str = "reasonrank",
    on_result: Callable[[RankedResult], None] | None = None,
    backend_factory: Callable[[RerankConfig], Backend] | None = None,
) -> RunSummary:
    """`rerank_to_files` with `replicas` Ray actors, each holding one model replica.

    Ray is joined at `address` (None: the running instance, else a new local cluster). Each
    actor reserves `gpus_per_replica` GPUs (default: the backend's need, `tensor_parallel_size`
    for vLLM, else 0) and `cpus_per_replica` CPUs. With "streaming" dispatch (default) every
    replica keeps `config.concurrency` queries in flight and takes the next query as each one
    finishes; with "chunked", queries go out in chunks of `chunk_size` (default: about four
    chunks per replica) to whichever actor is free. The queries of an actor that dies go back
    to the queue for the others; if every actor dies the run stops with the finished queries
    saved (rerun with `resume`). `backend_factory` (pickled to every actor) builds a custom
    backend in each replica instead of `config.backend`.
    """
    if replicas < 1:
        raise ConfigError(f"replicas must be at least 1, got {replicas}")
    if chunk_size is not None and chunk_size < 1:
        raise ConfigError(f"chunk_size must be at least 1, got {chunk_size}")
    if dispatch not in DISPATCH:
        raise ConfigError(f"dispatch must be one of {', '.join(DISPATCH)}; got {dispatch!r}")
    gpus = default_gpus_per_replica(config) if gpus_per_replica is None else gpus_per_replica
    if gpus < 0 or cpus_per_replica < 0:
        raise ConfigError("gpus_per_replica and cpus_per_replica must be >= 0")
    ray = require("ray", "ray", "data-parallel reranking")
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, ignore_reinit_error=True)
    actors: list[Any] = []
    try:
        _check_resources(ray, replicas, cpus_per_replica, gpus, fixed=started)
        remote = ray.remote(RerankWorker)
        run_id = uuid.uuid4().hex[:8]
        # A few queries beyond `concurrency` wait at each replica, so a finished query's slot is
        # refilled at once, not a driver round trip later (the scheduler still runs at most
        # `concurrency` generations at a time).
        prefetch = max(1, config.concurrency // 8)
        for i in range(replicas):
            actors.append(remote.options(
                name=f"{ACTOR_PREFIX}-{run_id}-{i}", num_cpus=cpus_per_replica, num_gpus=gpus,
                max_restarts=0, max_concurrency=config.concurrency + prefetch + 2,
            ).remote(config, backend_factory))
        # Every replica has loaded its model before the first query goes out (an actor that
        # cannot start raises here, with its own error, instead of dying under a query).
        ray.get([actor.__ray_ready__.remote() for actor in actors])

        def produce(todo: list[Request]) -> Iterator[RankedResult]:
            if dispatch == "streaming":
                yield from stream_queries(ray, actors, todo, config.concurrency + prefetch)
                return
            size = chunk_size or max(1, min(config.concurrency,
                                            math.ceil(len(todo) / (4 * replicas))))
            chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
            yield from _schedule(ray, actors, chunks)

        return stream_to_files(requests, run_path, trace_path, produce, resume=resume, tag=tag,
                               on_result=on_result, config=config)
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()


def _check_resources(ray: Any, replicas: int, cpus: float, gpus: float, *, fixed: bool) -> None:
    """Fail fast where the replicas cannot all be placed (a replica waiting for resources
    that never come would hold its queries forever); on a joined cluster, which may scale up,
    only warn."""
    have = ray.cluster_resources()
    for what, each in (("CPU", cpus), ("GPU", gpus)):
        need, total = replicas * each, have.get(what, 0)
        if need > total:
            message = (f"{replicas} replicas need {need:g} {what}s in all; the Ray cluster has "
                       f"{total:g} (lower --replicas or --{what.lower()}s-per-replica)")
            if fixed:
                raise ConfigError(message)
            log.warning("%s", message)


def _all_died(last_death: BaseException | None) -> ReasonRankError:
    return ReasonRankError(
        "every Ray replica died; the finished queries are saved (rerun with resume)"
        + (f": {last_death}" if last_death else "")
    )


def stream_queries(ray: Any, actors: Sequence[Any], requests: Sequence[Request],
                   per_actor: int) -> Iterator[RankedResult]:
    """Keep `per_actor` queries in flight on every live actor, topping an actor up as each of
    its queries finishes; yield results as they come. The unfinished queries of an actor that
    dies go back to the front of the queue."""
    from ray.exceptions import RayActorError

    pending = deque(requests)
    live = list(actors)
    load = {id(actor): 0 for actor in actors}
    in_flight: dict[Any, tuple[Any, Request]] = {}
    last_death: BaseException | None = None
    while pending or in_flight:
        while pending and live:  # to the least loaded live actor, so all share the work
            actor = min(live, key=lambda a: load[id(a)])
            if load[id(actor)] >= per_actor:
                break
            request = pending.popleft()
            in_flight[actor.rerank_one.remote(request)] = (actor, request)
            load[id(actor)] += 1
        if not in_flight:
            raise _all_died(last_death) from last_death
        refs = list(in_flight)
        ready, _ = ray.wait(refs, num_returns=1)
        more, _ = ray.wait(refs, num_returns=len(refs), timeout=0)  # everything else done now
        for ref in dict.fromkeys([*ready, *more]):
            actor, request = in_flight.pop(ref)
            load[id(actor)] -= 1
            try:
                result = ray.get(ref)
            except RayActorError as exc:
                last_death = exc
                pending.appendleft(request)
                if actor in live:
                    live.remove(actor)
                    log.warning("a Ray replica died; its unfinished queries go to the others")
                continue
            yield result


def _schedule(ray: Any, actors: Sequence[Any], chunks: Sequence[list[Request]]
              ) -> Iterator[RankedResult]:
    """Chunked dispatch: hand `chunks` to free actors one at a time; re-queue the chunk of an
    actor that dies."""
    from ray.exceptions import RayActorError

    pending = deque(chunks)
    idle = list(actors)
    in_flight: dict[Any, tuple[Any, list[Request]]] = {}
    last_death: BaseException | None = None
    while pending or in_flight:
        while idle and pending:
            actor, chunk = idle.pop(0), pending.popleft()
            in_flight[actor.rerank.remote(chunk)] = (actor, chunk)
        if not in_flight:
            raise _all_died(last_death) from last_death
        (ref,), _ = ray.wait(list(in_flight), num_returns=1)
        actor, chunk = in_flight.pop(ref)
        try:
            results = ray.get(ref)
        except RayActorError as exc:
            last_death = exc
            pending.appendleft(chunk)
            log.warning("a Ray replica died; its %d queries go to the others", len(chunk))
            continue
        idle.append(actor)
        yield from results
