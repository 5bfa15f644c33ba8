"""The openai backend's log-probabilities (completions `logprobs`, `stop`, `logit_bias`) and the
rank1 method end to end against the fake server, whose log-probabilities come from a rule."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from fake_openai_server import FakeOpenAIServer, default_token_logits, log_softmax, word_tokens
from reasonrank.backends.openai import OpenAIBackend
from reasonrank.errors import LogprobsUnavailableError
from reasonrank.types import Prompt, SamplingParams


def _rank1_answer(prompt: str) -> str:
    """Closes its reasoning for passages that mention "year", else runs on without </think>."""
    passage = prompt.split("Passage: ", 1)[-1]
    if "year" in passage:
        return "\nIt mentions fleas.\n</think> true"
    return "\nIt does not say. Keep reading the passage and"


def _backend(server: FakeOpenAIServer, tokenizer: Any, **kwargs: Any) -> OpenAIBackend:
    return OpenAIBackend("m", api_base=server.url, api_key_env=None, tokenizer=tokenizer,
                         max_retries=0, **kwargs)


def test_logprobs_stop_and_request_body(qwen_tokenizer: Any) -> None:
    with FakeOpenAIServer(answer=_rank1_answer) as server:
        backend = _backend(server, qwen_tokenizer)
        prompt = "Query: q\nPassage: a flea a year\n<think>"
        params = SamplingParams(max_new_tokens=50, stop=("</think> true", "</think> false"),
                                logprobs=3)
        gen = asyncio.run(backend.generate(Prompt(prompt, ()), params))
        body = server.requests[-1].body
    assert body["logprobs"] == 3 and body["stop"] == ["</think> true", "</think> false"]
    assert gen.text == "\nIt mentions fleas.\n"  # cut before the stop string, as vLLM does
    tokens = word_tokens(_rank1_answer(prompt))
    assert gen.logprobs is not None and len(gen.logprobs) == len(tokens)
    expected = log_softmax(default_token_logits(prompt, tokens, len(tokens) - 1))
    assert gen.logprobs[-1] == pytest.approx(dict(sorted(expected.items(),
                                                         key=lambda kv: -kv[1])[:3]))


def test_allowed_tokens_become_logit_bias(qwen_tokenizer: Any) -> None:
    t_id = qwen_tokenizer(" true", add_special_tokens=False)["input_ids"][0]
    f_id = qwen_tokenizer(" false", add_special_tokens=False)["input_ids"][0]
    vocab = {t_id: " true", f_id: " false"}
    with FakeOpenAIServer(answer=lambda p: " maybe", vocab=vocab) as server:
        backend = _backend(server, qwen_tokenizer)
        params = SamplingParams(max_new_tokens=1, logprobs=20, allowed_tokens=(" true", " false"))
        gen = asyncio.run(backend.generate(Prompt("x", ()), params))
        assert server.requests[-1].body["logit_bias"] == {str(t_id): 100, str(f_id): 100}
    assert gen.text in (" true", " false")
    assert gen.logprobs is not None and {" true", " false"} <= set(gen.logprobs[-1])


def test_chat_endpoint_and_missing_logprobs_are_refused(qwen_tokenizer: Any) -> None:
    with FakeOpenAIServer() as server:
        chat = _backend(server, qwen_tokenizer, endpoint="chat")
        with pytest.raises(LogprobsUnavailableError, match=r"chat endpoint .*chat/completions"):
            asyncio.run(chat.generate(Prompt("x", ()), SamplingParams(logprobs=5)))
        assert server.requests == []
        plain = _backend(server, qwen_tokenizer)
        # a server that ignores `logprobs`: the fake answers without them
        orig = server._with_logprobs
        server._with_logprobs = lambda *a: (*orig(*a)[:3], None)  # type: ignore[method-assign]
        with pytest.raises(LogprobsUnavailableError, match="returned no logprobs"):
            asyncio.run(plain.generate(Prompt("x", ()), SamplingParams(logprobs=5)))


def _after_think(prompt: str, tokens: list[str], i: int) -> dict[str, float]:
    """" true" / " false" are candidates only right after "</think>"; " true" gets 2 per
    "flea" in the passage."""
    logits = {tokens[i]: 4.0, " maybe": 0.0}
    previous = tokens[i - 1] if i else prompt
    if previous.endswith("</think>"):
        passage = prompt.split("Passage: ", 1)[-1]
        logits.update({" true": 2.0 * passage.count("flea"), " false": 1.0})
    return logits


def test_rank1_through_the_openai_backend(qwen_tokenizer: Any) -> None:
    from reasonrank import Reranker

    t_id = qwen_tokenizer(" true", add_special_tokens=False)["input_ids"][0]
    f_id = qwen_tokenizer(" false", add_special_tokens=False)["input_ids"][0]
    docs = ["dogs bark", "a flea lives a year", "cats. flea flea"]
    with FakeOpenAIServer(answer=_rank1_answer, token_logits=_after_think,
                          vocab={t_id: " true", f_id: " false"}) as server:
        backend = _backend(server, qwen_tokenizer)
        with Reranker(backend=backend, method="rank1", model="m") as rr:
            result = rr.rerank("flea life", docs)
        repairs = [r.body for r in server.requests if r.body.get("logit_bias")]
    statuses = [w.status.value for w in result.windows]
    assert statuses == ["score_repaired", "scored", "score_repaired"]
    assert len(repairs) == 2
    assert all(b["max_tokens"] == 1 and b["prompt"].endswith("\n</think>") for b in repairs)

    # p(true) / (p(true) + p(false)) under the rule; the repair's bias shifts both alike
    scores = [w.score for w in result.windows]
    assert scores == pytest.approx([1 / (1 + math.exp(1.0 - 2.0 * d.count("flea")))
                                    for d in docs])
    assert result.docids == ["2", "1", "0"]
