"""The vllm backend, against a fake `vllm` package (tests/fake_vllm) that needs no GPU."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from reasonrank.backends.base import Generation, Prompt, SamplingParams, backend_class
from reasonrank.backends.vllm import VLLMBackend
from reasonrank.config import RerankConfig
from reasonrank.errors import BackendError, ConfigError, MissingDependencyError

FAKE_VLLM = Path(__file__).parent / "fake_vllm"

RENDERED = (
    "<|im_start|>system\nYou are RankLLM.<|im_end|>\n"
    "<|im_start|>user\nRank the passages.\n[1] alpha\n[2] beta  gamma\n[3] delta<|im_end|>\n"
    "<|im_start|>assistant\n"
)
ANSWER = "<think> reversing 3 passages </think> <answer> [3] > [2] > [1] </answer>"


def _forget_vllm() -> None:
    for name in [n for n in sys.modules if n == "vllm" or n.startswith("vllm.")]:
        del sys.modules[name]


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch):
    _forget_vllm()
    monkeypatch.syspath_prepend(str(FAKE_VLLM))
    import vllm

    assert vllm.__version__.endswith("+fake")
    yield vllm
    _forget_vllm()


class StubTokenizer:
    """Stands in for the HF tokenizer; the backend only hands it out."""

    def apply_chat_template(self, messages: Any, tokenize: bool = False, **_: Any) -> str:
        return "".join(m["content"] for m in messages)

    def tokenize(self, text: str) -> list[str]:
        return text.split()

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return " ".join(tokens)


@pytest.fixture
def backends():
    """Build backends with the stub tokenizer and close them all at the end."""
    made: list[VLLMBackend] = []

    def make(model: str = "org/reranker-7B", **kwargs: Any) -> VLLMBackend:
        kwargs.setdefault("tokenizer", StubTokenizer())
        backend = VLLMBackend(model, **kwargs)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        asyncio.run(backend.aclose())


def make_config(**changes: Any) -> RerankConfig:
    """A RerankConfig with its defaults (validation skipped: it is not under test here)."""
    config = object.__new__(RerankConfig)
    for f in dataclasses.fields(RerankConfig):
        setattr(config, f.name, changes.pop(f.name, f.default))
    assert not changes, f"not RerankConfig fields: {changes}"
    return config


def generate(backend: VLLMBackend, text: str = RENDERED, **params: Any) -> Generation:
    return asyncio.run(backend.generate(Prompt(text, ()), SamplingParams(**params)))


def engine_threads() -> int:
    return sum(t.name == "reasonrank-vllm" for t in threading.enumerate())


# --- without vllm --------------------------------------------------------------------------


def test_module_imports_without_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    import reasonrank.backends

    monkeypatch.setitem(sys.modules, "vllm", None)  # any `import vllm` now fails
    # Import the module afresh; both references to the original come back afterwards.
    monkeypatch.setattr(reasonrank.backends, "vllm", sys.modules["reasonrank.backends.vllm"])
    monkeypatch.delitem(sys.modules, "reasonrank.backends.vllm")
    module = importlib.import_module("reasonrank.backends.vllm")
    assert module.VLLMBackend.name == "vllm"
    assert sys.modules["vllm"] is None


def test_missing_vllm_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    before = engine_threads()
    with pytest.raises(MissingDependencyError) as info:
        VLLMBackend("org/reranker-7B")
    assert "reasonrank[vllm]" in str(info.value)
    assert info.value.extra == "vllm"
    assert engine_threads() == before


def test_registered_as_vllm() -> None:
    assert backend_class("vllm") is VLLMBackend
    assert VLLMBackend.name == "vllm"


# --- engine arguments -----------------------------------------------------------------------


def test_engine_args_from_config(fake_vllm: Any) -> None:
    config = make_config(
        backend="vllm", model="org/reranker-7B", tokenizer="org/tok", tensor_parallel_size=2,
        gpu_memory_utilization=0.75, max_model_len=16384, dtype="bfloat16", seed=11,
    )
    backend = VLLMBackend.from_config(config)
    try:
        (engine,) = fake_vllm.ENGINES
        assert backend.engine is engine
        assert engine.engine_args == fake_vllm.AsyncEngineArgs(
            model="org/reranker-7B", tokenizer="org/tok", tensor_parallel_size=2,
            gpu_memory_utilization=0.75, max_model_len=16384, enable_prefix_caching=True,
            dtype="bfloat16", seed=11,
        )
        # Built where no loop runs: in the caller's thread (vLLM's signal handlers need it).
        assert engine.built_on == threading.current_thread().name
    finally:
        asyncio.run(backend.aclose())


def test_engine_args_defaults(fake_vllm: Any, backends: Any) -> None:
    backends("org/reranker-7B")
    args = fake_vllm.ENGINES[0].engine_args
    assert args.model == "org/reranker-7B"
    assert args.tokenizer == "org/reranker-7B"
    assert args.enable_prefix_caching is True
    assert args.tensor_parallel_size == 1
    assert args.gpu_memory_utilization == 0.9
    assert args.dtype == "auto"
    assert args.max_model_len is None  # vLLM's default: the model's own
    assert args.seed is None  # not passed: vLLM keeps its default


def test_extra_engine_kwargs_pass_through_and_typos_fail(fake_vllm: Any, backends: Any) -> None:
    backends(engine_kwargs={"enforce_eager": True, "max_num_seqs": 64})
    args = fake_vllm.ENGINES[0].engine_args
    assert (args.enforce_eager, args.max_num_seqs) == (True, 64)
    with pytest.raises(ConfigError, match="enforce_eagr"):
        backends(engine_kwargs={"enforce_eagr": True})


def test_engine_start_failure_says_a_cuda_gpu_is_needed(fake_vllm: Any) -> None:
    fake_vllm.FAIL_START = RuntimeError("Failed to infer device type")
    before = engine_threads()
    with pytest.raises(BackendError) as info:
        VLLMBackend("org/reranker-7B", tensor_parallel_size=2)
    message = str(info.value)
    assert "CUDA GPU" in message
    assert "Failed to infer device type" in message
    assert "org/reranker-7B" in message
    assert isinstance(info.value.__cause__, RuntimeError)
    assert engine_threads() == before  # the loop thread was stopped


def test_engine_start_failure_without_a_visible_gpu(
    fake_vllm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_cuda = SimpleNamespace(cuda=SimpleNamespace(is_available=lambda: False))
    monkeypatch.setitem(sys.modules, "torch", no_cuda)  # as vLLM leaves it on a CPU machine
    fake_vllm.FAIL_START = RuntimeError("Failed to infer device type")
    with pytest.raises(BackendError) as info:
        VLLMBackend("org/reranker-7B")
    assert "none is visible here" in str(info.value)
    assert "Use the hf or openai backend" in str(info.value)


# --- requests -------------------------------------------------------------------------------


def test_prompt_verbatim_greedy_params_and_generation(fake_vllm: Any, backends: Any) -> None:
    backend = backends()
    result = generate(backend, max_new_tokens=64)

    (request,) = fake_vllm.ENGINES[0].requests
    assert request.prompt == RENDERED  # the rendered string itself, no template re-applied
    assert isinstance(request.prompt, str)
    sampling = request.sampling_params
    assert sampling.temperature == 0.0
    assert sampling.top_p == 1.0
    assert sampling.max_tokens == 64
    assert sampling.seed is None
    assert sampling.skip_special_tokens is True
    assert sampling.n == 1
    assert sampling.output_kind is fake_vllm.sampling_params.RequestOutputKind.FINAL_ONLY
    assert request.thread == "reasonrank-vllm"  # served on the engine's own loop

    assert result == Generation(
        text=ANSWER,
        prompt_tokens=len(RENDERED.split()),
        output_tokens=len(ANSWER.split()),
        finish_reason="stop",
    )


def test_default_budget_and_sampling_settings(fake_vllm: Any, backends: Any) -> None:
    backend = backends()
    generate(backend)
    generate(backend, temperature=0.6, top_p=0.95, seed=5, max_new_tokens=100)
    first, second = (r.sampling_params for r in fake_vllm.ENGINES[0].requests)
    assert first.max_tokens == SamplingParams().max_new_tokens == 3172
    assert (second.temperature, second.top_p, second.seed, second.max_tokens) == (
        0.6, 0.95, 5, 100,
    )


def test_budget_exhausted_reports_length(fake_vllm: Any, backends: Any) -> None:
    result = generate(backends(), max_new_tokens=4)
    assert result.finish_reason == "length"
    assert result.output_tokens == 4
    assert result.text == " ".join(ANSWER.split()[:4])


def test_streaming_engines_final_output_is_used(fake_vllm: Any, backends: Any) -> None:
    backend = backends()
    backend._final_only = None  # as if vLLM had no FINAL_ONLY: intermediate outputs arrive
    result = generate(backend)
    assert fake_vllm.ENGINES[0].requests[0].sampling_params.output_kind.name == "CUMULATIVE"
    assert result.text == ANSWER
    assert result.finish_reason == "stop"


def test_concurrent_calls_are_all_in_flight_at_once(fake_vllm: Any, backends: Any) -> None:
    backend = backends()
    prompts = [" ".join(f"[{i}] p{i}" for i in range(1, n + 2)) for n in range(8)]

    async def run_all() -> list[Generation]:
        return await asyncio.gather(
            *(backend.generate(Prompt(p, ()), SamplingParams()) for p in prompts)
        )

    results = asyncio.run(run_all())
    engine = fake_vllm.ENGINES[0]
    assert engine.max_in_flight == 8  # continuous batching: nobody waited for anybody
    ids = [r.request_id for r in engine.requests]
    assert len(set(ids)) == 8
    assert sorted(r.prompt for r in engine.requests) == sorted(prompts)
    for prompt, result in zip(prompts, results, strict=True):  # each caller gets its own
        markers = prompt.split()[::2]
        assert result.text.endswith(f"<answer> {' > '.join(reversed(markers))} </answer>")
        assert result.prompt_tokens == len(prompt.split())


def test_request_ids_unique_across_backends(fake_vllm: Any, backends: Any) -> None:
    one, two = backends(), backends()
    for backend in (one, one, two):
        generate(backend)
    ids = [r.request_id for e in fake_vllm.ENGINES for r in e.requests]
    assert len(set(ids)) == 3


def test_fake_engine_is_bound_to_its_first_loop(fake_vllm: Any) -> None:
    """The fake reproduces vLLM's loop binding, so the next tests mean something."""
    engine = fake_vllm.AsyncLLMEngine(fake_vllm.AsyncEngineArgs())
    params = fake_vllm.SamplingParams()

    async def once(request_id: str) -> None:
        async for _ in engine.generate("x", params, request_id):
            pass

    asyncio.run(once("a"))
    with pytest.raises(RuntimeError, match="another event loop"):
        asyncio.run(once("b"))


def test_usable_from_successive_event_loops(fake_vllm: Any, backends: Any) -> None:
    backend = backends()
    assert generate(backend).text == ANSWER
    assert generate(backend).text == ANSWER  # a second asyncio.run, a new loop


def test_built_inside_a_running_loop(fake_vllm: Any, backends: Any) -> None:
    async def build() -> VLLMBackend:
        return backends()

    backend = asyncio.run(build())
    assert fake_vllm.ENGINES[0].built_on == "reasonrank-vllm"  # not bound to the dead loop
    assert generate(backend).text == ANSWER


def test_engine_error_becomes_backend_error(fake_vllm: Any, backends: Any) -> None:
    backend = backends()
    fake_vllm.ENGINES[0].fail_with = ValueError(
        "The decoder prompt (length 9000) is longer than the maximum model length of 8192."
    )
    with pytest.raises(BackendError) as info:
        generate(backend)
    message = str(info.value)
    assert "maximum model length of 8192" in message
    assert "max_model_len" in message
    assert isinstance(info.value.__cause__, fake_vllm.EngineGenerateError)


def test_cancelling_a_call_aborts_its_request(fake_vllm: Any, backends: Any) -> None:
    backend = backends()
    engine = fake_vllm.ENGINES[0]
    fake_vllm.STEP_SECONDS = 0.2

    async def cancel_one() -> None:
        task = asyncio.create_task(backend.generate(Prompt(RENDERED, ()), SamplingParams()))
        while not engine.requests:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_one())
    deadline = time.monotonic() + 5
    while not engine.aborted and time.monotonic() < deadline:
        time.sleep(0.005)
    assert engine.aborted == [engine.requests[0].request_id]
    assert engine.in_flight == 0


# --- tokenizer and shutdown -----------------------------------------------------------------


def test_tokenizer_given_or_loaded_once(
    fake_vllm: Any, backends: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub = StubTokenizer()
    assert backends(tokenizer=stub).tokenizer is stub

    calls: list[str] = []

    def fake_load(name: str, purpose: str = "") -> StubTokenizer:
        calls.append(name)
        return stub

    monkeypatch.setattr(sys.modules[VLLMBackend.__module__], "load_tokenizer", fake_load)
    backend = backends("org/reranker-7B", tokenizer=None, tokenizer_name="org/tok")
    assert calls == []  # lazy
    assert backend.tokenizer is stub
    assert backend.tokenizer is stub
    assert calls == ["org/tok"]


def test_aclose_shuts_the_engine_down(fake_vllm: Any) -> None:
    before = engine_threads()
    backend = VLLMBackend("org/reranker-7B", tokenizer=StubTokenizer())
    assert engine_threads() == before + 1
    generate(backend)
    asyncio.run(backend.aclose())
    asyncio.run(backend.aclose())  # idempotent
    assert fake_vllm.ENGINES[0].shutdown_calls == 1
    assert engine_threads() == before
    with pytest.raises(BackendError, match="closed"):
        generate(backend)


def test_aclose_with_a_request_in_flight(fake_vllm: Any) -> None:
    backend = VLLMBackend("org/reranker-7B", tokenizer=StubTokenizer())
    engine = fake_vllm.ENGINES[0]
    fake_vllm.STEP_SECONDS = 0.2

    async def close_midway() -> None:
        task = asyncio.create_task(backend.generate(Prompt(RENDERED, ()), SamplingParams()))
        while not engine.requests:
            await asyncio.sleep(0.005)
        await backend.aclose()
        with pytest.raises(BackendError, match="closed"):
            await task

    asyncio.run(close_midway())
    assert engine.shutdown_calls == 1
