from __future__ import annotations

import asyncio

import pytest

from helpers import CountingBackend, FailingBackend, JitterBackend, make_requests
from reasonrank.config import RerankConfig
from reasonrank.core.prompts import PromptBuilder
from reasonrank.core.scheduler import Scheduler
from reasonrank.core.windows import sliding_windows
from reasonrank.errors import BackendError


def _scheduler(backend, tokenizer, **options) -> Scheduler:
    config = RerankConfig(backend="fake", **options)
    return Scheduler(backend, PromptBuilder(tokenizer, "reasoning", 64), config)


def _summary(results):
    return [(r.query.qid, r.docids, [d.score for d in r.docs],
             [(w.start, w.end, w.output, w.order) for w in r.windows]) for r in results]


def test_concurrent_equals_sequential(qwen_tokenizer):
    requests = make_requests(12, 45, seed=1)
    concurrent = asyncio.run(
        _scheduler(JitterBackend(qwen_tokenizer, seed=2), qwen_tokenizer, concurrency=8)
        .rerank_all(requests)
    )
    sched = _scheduler(JitterBackend(qwen_tokenizer, seed=3), qwen_tokenizer, concurrency=1)

    async def one_by_one():
        return [await sched.rerank(r) for r in requests]

    sequential = asyncio.run(one_by_one())
    assert _summary(concurrent) == _summary(sequential)
    # the overlap fake really reorders something, so the comparison is not vacuous
    assert any(r.docids != [c.docid for c in q.candidates]
               for r, q in zip(concurrent, requests, strict=True))


def test_results_scores_strictly_decrease_and_keep_the_first_stage(qwen_tokenizer):
    request = make_requests(1, 100, seed=4)[0]
    result = asyncio.run(_scheduler(JitterBackend(qwen_tokenizer), qwen_tokenizer)
                         .rerank(request))
    assert [d.score for d in result.docs] == [float(100 - i) for i in range(100)]
    first_stage = {c.docid: c.score for c in request.candidates}
    assert all(d.first_stage_score == first_stage[d.docid] for d in result.docs)
    assert sorted(result.docids) == sorted(c.docid for c in request.candidates)
    assert [d.rank for d in result.docs] == list(range(1, 101))
    assert [(w.start, w.end) for w in result.windows] == sliding_windows(100)
    by_id = {c.docid: i + 1 for i, c in enumerate(request.candidates)}
    assert all(d.first_stage_rank == by_id[d.docid] for d in result.docs)
    reference = asyncio.run(_scheduler(JitterBackend(qwen_tokenizer), qwen_tokenizer,
                                       output_scores="reference").rerank(request))
    assert reference.docids == result.docids
    assert [d.score for d in reference.docs] == [c.score for c in request.candidates]


def test_in_flight_generations_reach_the_cap(qwen_tokenizer):
    cap, n_queries = 4, 10
    backend = CountingBackend(qwen_tokenizer)
    results = asyncio.run(
        _scheduler(backend, qwen_tokenizer, concurrency=cap).rerank_all(
            make_requests(n_queries, 100))
    )
    per_query = len(sliding_windows(100))
    assert len(backend.samples) == n_queries * per_query
    assert max(backend.samples) == cap
    # once warmed up, every generation starts with the cap reached while >= cap queries have
    # work left: no lock-step batch drains the backend between windows
    steady = backend.samples[cap - 1 : len(backend.samples) - cap * per_query]
    assert steady and all(s == cap for s in steady)
    assert [r.query.qid for r in results] == [f"q{i}" for i in range(n_queries)]


def test_num_passes_start_each_pass_one_step_later(qwen_tokenizer):
    result = asyncio.run(
        _scheduler(JitterBackend(qwen_tokenizer), qwen_tokenizer, num_passes=2)
        .rerank(make_requests(1, 45)[0])
    )
    # the reference starts pass p at step * p: [(25,45), (15,35), (5,25), (0,15)], then
    # [(25,45), (15,35), (10,25)]
    assert [(w.start, w.end, w.pass_index) for w in result.windows] == [
        (s, e, p) for p in (0, 1) for s, e in sliding_windows(45, rank_start=10 * p)
    ]


def test_backend_failure_propagates_and_cancels(qwen_tokenizer):
    sched = _scheduler(FailingBackend(qwen_tokenizer, fail_after=5), qwen_tokenizer,
                       concurrency=3)

    async def consume():
        got = []
        async for item in sched.stream(make_requests(6, 30)):
            got.append(item)
        return got

    with pytest.raises(BackendError, match="injected failure"):
        asyncio.run(consume())


def test_prompt_thread_is_released_on_close(qwen_tokenizer):
    """The server's prompt thread (prompt_thread=True) ends with the reranker."""
    import threading

    from reasonrank import Reranker

    def prompt_threads() -> int:
        return sum(t.name.startswith("reasonrank-prompts") for t in threading.enumerate())

    before = prompt_threads()
    rr = Reranker(backend=JitterBackend(qwen_tokenizer, seed=4), model="fake",
                  max_passage_tokens=16)
    rr.scheduler.prompt_thread = True
    rr.rerank("q", ["a", "b", "c"])
    assert prompt_threads() == before + 1
    rr.close()
    assert prompt_threads() == before
