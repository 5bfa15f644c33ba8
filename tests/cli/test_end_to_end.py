"""End to end: the hf backend on a tiny random Qwen2, and the openai backend on a fake server."""

from __future__ import annotations

import json

import pytest

from fake_openai_server import FakeOpenAIServer, Fault
from helpers import make_requests
from reasonrank import Reranker
from reasonrank.backends.hf import HFBackend, _ContinuousBatch
from reasonrank.backends.openai import OpenAIBackend
from reasonrank.cli.main import main
from reasonrank.core.windows import sliding_windows
from reasonrank.errors import BackendRequestError
from reasonrank.types import ParseStatus


@pytest.fixture(scope="module")
def tiny_reranker(tiny_qwen_dir):
    with Reranker(str(tiny_qwen_dir), backend="hf", max_new_tokens=6, max_passage_tokens=48,
                  batch_size=4, concurrency=4, device="cpu") as rr:
        yield rr


def test_hf_tiny_qwen_reranks_two_queries(tiny_reranker):
    assert isinstance(tiny_reranker.backend, HFBackend)
    assert tiny_reranker.backend.batching == "continuous"
    batches: list[int] = []
    original = _ContinuousBatch._admit

    def spy(self, prompts, params):
        batches.append(len(prompts))
        return original(self, prompts, params)

    _ContinuousBatch._admit = spy
    requests = make_requests(2, 30, seed=7)
    try:
        results = tiny_reranker.rerank_batch(requests)
    finally:
        _ContinuousBatch._admit = original
    assert max(batches) == 2  # both queries' windows decoded together
    for request, result in zip(requests, results, strict=True):
        assert result.query.qid == request.query.qid
        assert sorted(result.docids) == sorted(c.docid for c in request.candidates)
        assert [d.score for d in result.docs] == [float(30 - i) for i in range(30)]
        first_stage = {c.docid: c.score for c in request.candidates}
        assert all(d.first_stage_score == first_stage[d.docid] for d in result.docs)
        assert [(w.start, w.end) for w in result.windows] == sliding_windows(30)
        for w in result.windows:
            assert isinstance(w.status, ParseStatus)
            assert sorted(w.order) == list(range(w.end - w.start))
            assert w.prompt_tokens > 400  # 20 passages plus the template
            assert 1 <= w.output_tokens <= 6
            assert w.finish_reason in ("stop", "length")


def test_hf_single_query_api(tiny_reranker):
    result = tiny_reranker.rerank("why is the sea salty?", ["rivers carry ions", "rain is fresh",
                                                           "evaporation leaves salt behind"])
    assert sorted(result.docids) == ["0", "1", "2"]
    assert len(result.windows) == 1 and result.windows[0].output is not None


def _openai_reranker(server: FakeOpenAIServer, tokenizer, **kw) -> Reranker:
    backend = OpenAIBackend("reasonrank-7B", api_base=server.url, tokenizer=tokenizer,
                            request_timeout=0.5, max_retries=4, backoff_base=0.01,
                            backoff_max=0.05, concurrency=4, **kw)
    return Reranker(backend=backend, model="reasonrank-7B", concurrency=4,
                    max_passage_tokens=32)


def test_openai_completes_through_rate_limits_errors_and_timeouts(qwen_tokenizer):
    faults = [Fault.rate_limited("0"), Fault.server_error(500), Fault.slow(2.0),
              Fault.unavailable(), Fault.rate_limited("0"), Fault.server_error(502)]
    requests = make_requests(6, 45, seed=3)
    with FakeOpenAIServer(faults=faults) as server:
        with _openai_reranker(server, qwen_tokenizer) as rr:
            results = rr.rerank_batch(requests)
        statuses = server.status_counts()
        requests_seen = list(server.requests)
    windows = len(sliding_windows(45))
    assert len(results) == 6
    # every window answered once, after each injected failure was retried
    assert len(requests_seen) == 6 * windows + len(faults)
    assert statuses[429] == 2 and statuses[500] == 1 and statuses[503] == 1
    for result in results:
        assert [w.status for w in result.windows] == [ParseStatus.OK] * windows
        # the fake ranks each window in reverse: after all windows the list is reordered
        assert result.docids != [c.docid for c in requests[0].candidates]


def test_openai_rejected_request_is_a_clear_error(qwen_tokenizer):
    with FakeOpenAIServer(default_fault=Fault.bad_request("maximum context length exceeded")) \
            as server, _openai_reranker(server, qwen_tokenizer) as rr:
        with pytest.raises(BackendRequestError, match=r"400.*maximum context length"):
            rr.rerank("q", ["a", "b"])
        assert server.status_counts() == {400: 1}  # no retry on a 4xx other than 429


def test_openai_400_through_the_cli(qwen_tokenizer_dir, tmp_path, capsys):
    requests = tmp_path / "req.jsonl"
    requests.write_text(json.dumps({"query": {"qid": "1", "text": "q"},
                                    "hits": [{"docid": "a", "content": "x"}]}) + "\n")
    with FakeOpenAIServer(default_fault=Fault.bad_request("prompt too long")) as server:
        code = main(["rerank", "--backend", "openai", "--model", "m", "--api-base", server.url,
                     "--tokenizer", str(qwen_tokenizer_dir), "--requests", str(requests),
                     "--output", str(tmp_path / "run.trec"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "HTTP 400" in err and "prompt too long" in err
