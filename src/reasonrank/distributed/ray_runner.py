"""Batch reranking on a Ray cluster: one model replica per actor, queries sharded dynamically.

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

from reasonrank.config import RerankConfig
from reasonrank.errors import ConfigError, ReasonRankError, require
from reasonrank.runner import RunSummary, stream_to_files
from reasonrank.types import RankedResult, Request

log = logging.getLogger("reasonrank.distributed")

ACTOR_PREFIX = "reasonrank-rerank"


class RerankWorker:
    """The body of one Ray actor: a `Reranker` built inside the actor's process."""

    def __init__(self, config: RerankConfig) -> None:
        from reasonrank.reranker import Reranker

        self.reranker = Reranker(config=config)

    def rerank(self, requests: list[Request]) -> list[RankedResult]:
        """Rerank one chunk of queries concurrently; results in input order."""
        return self.reranker.rerank_batch(requests)

    def close(self) -> None:
        self.reranker.close()


def default_gpus_per_replica(config: RerankConfig) -> int:
    """GPUs one replica needs: vLLM's tensor-parallel size, else none (CPU)."""
    return config.tensor_parallel_size if config.backend == "vllm" else 0


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
    chunk_size: int | None = None,
    resume: bool = False,
    tag: str = "reasonrank",
    on_result: Callable[[RankedResult], None] | None = None,
) -> RunSummary:
    """`rerank_to_files` with `replicas` Ray actors, each holding one model replica.

    Ray is joined at `address` (None: the running instance, else a new local cluster). Each
    actor reserves `gpus_per_replica` GPUs (default: `tensor_parallel_size` for vLLM, else 0)
    and `cpus_per_replica` CPUs. Queries go out in chunks of `chunk_size` (default: about four
    chunks per replica) to whichever actor is free. A chunk whose actor dies goes back to the
    queue for the other actors; if every actor dies the run stops with the finished queries
    saved (rerun with `resume`).
    """
    if replicas < 1:
        raise ConfigError(f"replicas must be at least 1, got {replicas}")
    if chunk_size is not None and chunk_size < 1:
        raise ConfigError(f"chunk_size must be at least 1, got {chunk_size}")
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
        for i in range(replicas):
            actors.append(remote.options(
                name=f"{ACTOR_PREFIX}-{run_id}-{i}", num_cpus=cpus_per_replica, num_gpus=gpus,
                max_restarts=0,
            ).remote(config))

        def produce(todo: list[Request]) -> Iterator[RankedResult]:
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
    that never come would hold its chunk forever); on a joined cluster, which may scale up,
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


def _schedule(ray: Any, actors: Sequence[Any], chunks: Sequence[list[Request]]
              ) -> Iterator[RankedResult]:
    """Hand `chunks` to free actors one at a time; re-queue the chunk of an actor that dies."""
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
            raise ReasonRankError(
                "every Ray replica died; the finished queries are saved (rerun with resume)"
                + (f": {last_death}" if last_death else "")
            ) from last_death
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
