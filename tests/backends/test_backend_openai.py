"""The OpenAI-compatible backend against a real local HTTP server with injected faults."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
import types
from typing import Any

import pytest

import reasonrank.backends.openai as openai_module
from fake_openai_server import FakeOpenAIServer, Fault, reverse_answer
from reasonrank.backends.base import backend_class
from reasonrank.backends.openai import OpenAIBackend, parse_retry_after
from reasonrank.errors import BackendError, BackendRequestError, ConfigError
from reasonrank.types import Generation, Prompt, SamplingParams

KEY_ENV = "REASONRANK_TEST_OPENAI_KEY"


class StubTokenizer:
    """Stands in for a real tokenizer: the backend only hands it out."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [len(w) for w in text.split()]


def make_prompt(n: int = 3, tag: str = "") -> Prompt:
    passages = "\n".join(f"[{i}] passage {i} {tag}" for i in range(1, n + 1))
    system = "You are RankLLM, an intelligent assistant that can rank passages."
    user = f"Rank the {n} passages below for the query: what is ünïcode?\n{passages}\n"
    text = (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    messages = ({"role": "system", "content": system}, {"role": "user", "content": user})
    return Prompt(text=text, messages=messages)


def make_backend(server: FakeOpenAIServer, **kwargs: Any) -> OpenAIBackend:
    options: dict[str, Any] = {
        "api_base": server.url,
        "api_key_env": KEY_ENV,
        "tokenizer": StubTokenizer(),
        "request_timeout": 5.0,
        "max_retries": 3,
        "concurrency": 4,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
    }
    options.update(kwargs)
    return OpenAIBackend("test-model", **options)


def generate_all(
    backend: OpenAIBackend, prompts: list[Prompt], params: SamplingParams | None = None
) -> list[Generation]:
    params = params or SamplingParams(max_new_tokens=64)

    async def main() -> list[Generation]:
        try:
            return list(await asyncio.gather(*(backend.generate(p, params) for p in prompts)))
        finally:
            await backend.aclose()

    return asyncio.run(main())


def generate_one(backend: OpenAIBackend, prompt: Prompt, params: SamplingParams | None = None):
    return generate_all(backend, [prompt], params)[0]


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


# -- what is sent --------------------------------------------------------------------------------


def test_completions_sends_the_exact_rendered_prompt_and_sampling_params() -> None:
    prompt = make_prompt(4)
    params = SamplingParams(max_new_tokens=77, temperature=0.0, top_p=0.95, seed=1234)
    with FakeOpenAIServer() as server:
        gen = generate_one(make_backend(server), prompt, params)
    [request] = server.requests
    assert request.path == "/v1/completions"
    assert request.body == {
        "model": "test-model",
        "prompt": prompt.text,
        "max_tokens": 77,
        "temperature": 0.0,
        "top_p": 0.95,
        "seed": 1234,
    }
    assert request.body["prompt"].endswith("<|im_start|>assistant\n")  # byte for byte
    assert gen.text == reverse_answer(prompt.text)
    assert "<answer>[4] > [3] > [2] > [1]</answer>" in gen.text


def test_seed_is_omitted_when_unset() -> None:
    with FakeOpenAIServer() as server:
        generate_one(make_backend(server), make_prompt(), SamplingParams(max_new_tokens=10))
    assert "seed" not in server.requests[0].body


def test_chat_sends_the_messages() -> None:
    prompt = make_prompt(3)
    with FakeOpenAIServer() as server:
        gen = generate_one(make_backend(server, endpoint="chat"), prompt)
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.body["messages"] == list(prompt.messages)
    assert "prompt" not in request.body
    assert request.body["model"] == "test-model"
    assert gen.text == reverse_answer(prompt.text)
    assert gen.finish_reason == "stop"


def test_chat_puts_a_server_split_reasoning_back_in_think_tags() -> None:
    prompt = make_prompt(3)
    with FakeOpenAIServer(reasoning_split=True) as server:
        gen = generate_one(make_backend(server, endpoint="chat"), prompt)
    message = server.requests[0]  # the server really split it
    assert message.status == 200
    assert gen.text == reverse_answer(prompt.text)
    assert gen.text.startswith("<think>Reverse order of 3 passages.</think>")


def test_authorization_header_comes_from_the_named_env_var(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-123")
    with FakeOpenAIServer() as server:
        generate_one(make_backend(server), make_prompt())
    assert server.requests[0].headers["authorization"] == "Bearer sk-test-123"
    assert server.requests[0].headers["content-type"] == "application/json"


def test_no_authorization_header_without_a_key() -> None:
    with FakeOpenAIServer() as server:
        generate_one(make_backend(server), make_prompt())
    assert "authorization" not in server.requests[0].headers


# -- what is read back ---------------------------------------------------------------------------


def test_usage_and_finish_reason_are_parsed() -> None:
    prompt = make_prompt(3)
    with FakeOpenAIServer() as server:
        gen = generate_one(make_backend(server), prompt)
        cut = generate_one(make_backend(server), prompt, SamplingParams(max_new_tokens=2))
    answer = reverse_answer(prompt.text)
    assert gen.prompt_tokens == len(prompt.text.split())
    assert gen.output_tokens == len(answer.split())
    assert gen.finish_reason == "stop"
    assert cut.finish_reason == "length"
    assert cut.output_tokens == 2
    assert cut.text == " ".join(answer.split()[:2])


def test_missing_usage_gives_none() -> None:
    with FakeOpenAIServer(include_usage=False) as server:
        gen = generate_one(make_backend(server), make_prompt())
    assert gen.prompt_tokens is None
    assert gen.output_tokens is None
    assert gen.finish_reason == "stop"


def test_malformed_json_raises_backend_error_without_retry() -> None:
    with (
        FakeOpenAIServer(faults=[Fault.malformed("{oops")]) as server,
        pytest.raises(BackendError, match="not JSON") as info,
    ):
        generate_one(make_backend(server), make_prompt())
    assert "{oops" in str(info.value)
    assert len(server.requests) == 1


def test_response_without_choices_raises_backend_error() -> None:
    with (
        FakeOpenAIServer(faults=[Fault.malformed('{"object": "list"}')]) as server,
        pytest.raises(BackendError, match="no choices"),
    ):
        generate_one(make_backend(server), make_prompt())
    assert len(server.requests) == 1


# -- retries -------------------------------------------------------------------------------------


def test_concurrent_requests_survive_429_5xx_and_timeouts(caplog: pytest.LogCaptureFixture) -> None:
    faults = [
        Fault.rate_limited("0"),
        Fault.server_error(500),
        Fault.unavailable(),
        Fault.slow(10.0),  # longer than request_timeout: the client gives up and retries
        Fault.rate_limited("0"),
        Fault.server_error(502),
    ]
    prompts = [make_prompt(n) for n in range(2, 10)]
    caplog.set_level(logging.WARNING, logger="reasonrank.backends.openai")
    with FakeOpenAIServer(faults=faults) as server:
        backend = make_backend(server, request_timeout=0.5, max_retries=4)
        gens = generate_all(backend, prompts)
    assert [g.text for g in gens] == [reverse_answer(p.text) for p in prompts]
    assert len(server.requests) == len(prompts) + len(faults)
    counts = server.status_counts()
    assert counts[429] == 2
    assert counts[500] == 1
    assert counts[502] == 1
    assert counts[503] == 1
    assert counts[200] == len(prompts) + 1  # the slow answer the client gave up on counts here
    assert sum(r.fault == Fault.slow(10.0) for r in server.requests) == 1
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == len(faults)
    assert any("no answer within 0.5s" in r.getMessage() for r in retries)


def test_retry_after_is_honoured() -> None:
    # backoff alone would wait 1 s (capped); Retry-After asks for 0.3 s
    with FakeOpenAIServer(faults=[Fault.rate_limited("0.3")]) as server:
        backend = make_backend(server, backoff_base=5.0, backoff_max=1.0)
        generate_one(backend, make_prompt())
    first, second = server.requests
    waited = second.received_at - first.received_at
    assert 0.25 <= waited < 0.9


def test_retry_after_is_capped_by_backoff_max() -> None:
    with FakeOpenAIServer(faults=[Fault.rate_limited("3600")]) as server:
        start = time.monotonic()
        generate_one(make_backend(server, backoff_max=0.05), make_prompt())
        elapsed = time.monotonic() - start
    assert server.statuses() == [429, 200]
    assert elapsed < 2.0


def test_exhausted_retries_raise_backend_error_saying_what_and_how_often() -> None:
    with (
        FakeOpenAIServer(default_fault=Fault.unavailable()) as server,
        pytest.raises(BackendError) as info,
    ):
        generate_one(make_backend(server, max_retries=2), make_prompt())
    assert not isinstance(info.value, BackendRequestError)
    message = str(info.value)
    assert "3 attempt" in message
    assert "3x HTTP 503" in message
    assert "The server is overloaded" in message
    assert server.statuses() == [503, 503, 503]


def test_exhausted_timeouts_raise_backend_error() -> None:
    with FakeOpenAIServer(default_fault=Fault.slow(10.0)) as server:
        backend = make_backend(server, request_timeout=0.2, max_retries=1)
        with pytest.raises(BackendError, match=r"2x timeout") as info:
            generate_one(backend, make_prompt())
    assert "request_timeout" in str(info.value)
    assert len(server.requests) == 2


def test_connection_errors_are_retried_then_reported() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = OpenAIBackend(
        "m", api_base=f"http://127.0.0.1:{port}/v1", tokenizer=StubTokenizer(),
        max_retries=2, backoff_base=0.01, backoff_max=0.02, request_timeout=2.0,
    )
    with pytest.raises(BackendError, match=r"3x connection error") as info:
        generate_one(backend, make_prompt())
    assert "Is the server running" in str(info.value)


def test_bad_request_raises_at_once_with_the_server_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="reasonrank.backends.openai")
    fault = Fault.bad_request("This model's maximum context length is 8192 tokens")
    with (
        FakeOpenAIServer(faults=[fault]) as server,
        pytest.raises(BackendRequestError) as info,
    ):
        generate_one(make_backend(server, max_retries=5), make_prompt())
    assert info.value.status_code == 400
    assert info.value.detail == "This model's maximum context length is 8192 tokens"
    assert "maximum context length is 8192" in str(info.value)
    assert server.statuses() == [400]
    assert not caplog.records


def test_unknown_model_is_a_request_error_with_a_hint() -> None:
    with (
        FakeOpenAIServer(model="served-model") as server,
        pytest.raises(BackendRequestError) as info,
    ):
        generate_one(make_backend(server), make_prompt())
    assert info.value.status_code == 404
    assert "The model `test-model` does not exist." in info.value.detail
    assert "check api_base" in info.value.detail
    assert len(server.requests) == 1


def test_unauthorized_names_the_key_variable() -> None:
    fault = Fault(401, "Incorrect API key provided", "invalid_request_error")
    with (
        FakeOpenAIServer(faults=[fault]) as server,
        pytest.raises(BackendRequestError) as info,
    ):
        generate_one(make_backend(server), make_prompt())
    assert info.value.status_code == 401
    assert "Incorrect API key provided" in info.value.detail
    assert KEY_ENV in info.value.detail
    assert len(server.requests) == 1


# -- concurrency ---------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 3])
def test_concurrency_limit_is_respected_and_reached(limit: int) -> None:
    prompts = [make_prompt(3, tag=str(i)) for i in range(4 * limit)]
    with FakeOpenAIServer(answer_delay=0.1) as server:
        gens = generate_all(make_backend(server, concurrency=limit), prompts)
    assert len(gens) == len(prompts)
    assert server.max_in_flight == limit
    assert len(server.requests) == len(prompts)


# -- construction --------------------------------------------------------------------------------


def test_from_config_and_lazy_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    if "reasonrank.core.prompts" not in sys.modules:
        try:
            import reasonrank.core.prompts  # noqa: F401 - RerankConfig validates templates with it
        except ImportError:  # not written yet: a stand-in that knows the default template
            stub = types.ModuleType("reasonrank.core.prompts")
            stub.TEMPLATES = {"reasoning": None}  # type: ignore[attr-defined]
            monkeypatch.setitem(sys.modules, "reasonrank.core.prompts", stub)
    from reasonrank.config import RerankConfig

    loaded: list[tuple[str, str]] = []
    stub_tokenizer = StubTokenizer()

    def fake_load(name: str, purpose: str = "") -> StubTokenizer:
        loaded.append((name, purpose))
        return stub_tokenizer

    monkeypatch.setattr(openai_module, "load_tokenizer", fake_load)
    with FakeOpenAIServer() as server:
        config = RerankConfig(
            backend="openai", model="org/model", tokenizer="org/tok", api_base=server.url + "/",
            api_key_env=KEY_ENV, endpoint="chat", request_timeout=7.0, max_retries=2,
            concurrency=5,
        )
        backend = backend_class("openai").from_config(config)
        assert isinstance(backend, OpenAIBackend)
        assert (backend.model, backend.api_base, backend.endpoint) == (
            "org/model", server.url, "chat")
        assert (backend.request_timeout, backend.max_retries, backend.concurrency) == (7.0, 2, 5)
        assert loaded == []  # construction is cheap
        assert backend.tokenizer is stub_tokenizer
        assert backend.tokenizer is stub_tokenizer
        assert [name for name, _ in loaded] == ["org/tok"]  # loaded once
        generate_one(backend, make_prompt())
    assert server.requests[0].path == "/v1/chat/completions"
    assert server.requests[0].body["model"] == "org/model"


def test_invalid_options_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="endpoint"):
        OpenAIBackend("m", endpoint="embeddings")
    with pytest.raises(ConfigError, match="concurrency"):
        OpenAIBackend("m", concurrency=0)


def test_backend_works_across_event_loops_and_aclose() -> None:
    prompt = make_prompt(2)
    with FakeOpenAIServer() as server:
        backend = make_backend(server)
        params = SamplingParams(max_new_tokens=32)
        first = asyncio.run(backend.generate(prompt, params))
        first_client = backend._client
        assert first_client is not None
        assert first_client.is_closed  # asyncio.run's shutdown closed it, no socket leaks
        second = asyncio.run(backend.generate(prompt, params))  # a new loop: a new client
        assert backend._client is not first_client

        async def close_and_check() -> None:
            await backend.generate(prompt, params)
            client = backend._client
            assert client is not None
            await backend.aclose()
            assert client.is_closed
            assert backend._client is None
            await backend.aclose()  # idempotent

        asyncio.run(close_and_check())
    assert first == second
    assert len(server.requests) == 3


def test_parse_retry_after() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("soon") is None
    now = 1_445_412_480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=now) == pytest.approx(30.0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now=now) == 0.0
