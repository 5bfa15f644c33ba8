"""Data-parallel reranking on a local Ray cluster: same outputs as the local runner, resumable,
and robust to a replica dying mid-run."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from helpers import make_requests, without_timings
from reasonrank import Reranker
from reasonrank.cli.main import main
from reasonrank.config import RerankConfig
from reasonrank.io.writers import work_path
from reasonrank.runner import rerank_to_files

ray = pytest.importorskip("ray")

from reasonrank.distributed import rerank_to_files_ray  # noqa: E402
from reasonrank.distributed.ray_runner import ACTOR_PREFIX  # noqa: E402

REQUESTS = make_requests(6, 25, seed=3)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """One local Ray instance for the module (starting one takes seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def config(tiny_qwen_dir) -> RerankConfig:
    return RerankConfig(model=str(tiny_qwen_dir), backend="hf", device="cpu", dtype="float32",
                        max_new_tokens=2, max_passage_tokens=16)


@pytest.fixture(scope="module")
def local_run(config, tmp_path_factory) -> tuple[bytes, list[dict]]:
    out = tmp_path_factory.mktemp("local")
    with Reranker(config=config) as rr:
        rerank_to_files(rr, REQUESTS, str(out / "run.trec"), str(out / "run.jsonl"))
    return (out / "run.trec").read_bytes(), without_timings((out / "run.jsonl").read_bytes())


def _assert_same_as_local(run, traces, local_run) -> None:
    assert run.read_bytes() == local_run[0]
    assert without_timings(traces.read_bytes()) == local_run[1]  # each query once, in order


@pytest.mark.parametrize("dispatch", ["streaming", "chunked"])
def test_ray_matches_local_run(ray_cluster, config, local_run, tmp_path, dispatch):
    run, traces = tmp_path / "run.trec", tmp_path / "run.jsonl"
    summary = rerank_to_files_ray(config, REQUESTS, str(run), str(traces), replicas=2,
                                  dispatch=dispatch)
    assert summary.queries == len(REQUESTS) and summary.skipped == 0
    _assert_same_as_local(run, traces, local_run)
    assert not _our_actors()  # the replicas are gone


def _our_actors() -> list[str]:
    return sorted(n["name"] for n in ray.util.list_named_actors(all_namespaces=True)
                  if n["name"].startswith(ACTOR_PREFIX))


def test_replica_killed_midway_its_queries_go_to_the_other(ray_cluster, config, local_run,
                                                          tmp_path, caplog):
    run, traces = tmp_path / "run.trec", tmp_path / "run.jsonl"
    killed: list[str] = []

    def kill_one(_result) -> None:
        if not killed:
            killed.append(_our_actors()[0])
            ray.kill(ray.get_actor(killed[0]))

    summary = rerank_to_files_ray(config, REQUESTS, str(run), str(traces), replicas=2,
                                  on_result=kill_one)
    assert killed and summary.queries == len(REQUESTS)
    assert "a Ray replica died" in caplog.text  # its chunk was re-queued, not lost
    _assert_same_as_local(run, traces, local_run)


def test_interrupted_ray_run_resumes_through_the_cli(ray_cluster, config, local_run, tmp_path):
    run, traces = tmp_path / "run.trec", tmp_path / "run.jsonl"
    seen: list[str] = []

    def stop_after_two(result) -> None:
        seen.append(result.query.qid)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rerank_to_files_ray(config, REQUESTS, str(run), str(traces), replicas=2, chunk_size=1,
                            on_result=stop_after_two)
    assert not run.exists() and not traces.exists()  # the run in progress is in .partial files
    done = [json.loads(line)["qid"] for line in work_path(traces).read_text().splitlines()]
    assert sorted(done) == sorted(seen)

    requests = tmp_path / "requests.jsonl"
    with requests.open("w") as fh:
        for req in REQUESTS:
            fh.write(json.dumps({"query": {"text": req.query.text, "qid": req.query.qid},
                                 "candidates": [{"docid": c.docid, "doc": {"contents": c.text},
                                                 "score": c.score} for c in req.candidates]})
                     + "\n")
    args = ["rerank", "--requests", str(requests), "--output", str(run), "--traces",
            str(traces), "--resume", "--quiet", "--ray", "--replicas", "2",
            "--model", config.model, "--backend", "hf", "--device", "cpu", "--dtype", "float32",
            "--max-new-tokens", "2", "--max-passage-tokens", "16"]
    assert main(args) == 0
    _assert_same_as_local(run, traces, local_run)


def test_replicas_that_cannot_be_placed_are_refused(ray_cluster, config, tmp_path):
    from reasonrank.distributed.ray_runner import _check_resources
    from reasonrank.errors import ConfigError

    with pytest.raises(ConfigError, match="GPUs"):
        _check_resources(ray, 2, 1, 1, fixed=True)
    _check_resources(ray, 2, 1, 0, fixed=True)
