"""The vllm backend against vLLM's REAL front end, with only the engine core replaced.

`reasonrank.backends.vllm.VLLMBackend` drives vLLM's own `AsyncLLM`: engine-argument and config
validation, the renderer (tokenization), the input processor, the output processor and
detokenizer, request queues, abort and shutdown. Only the engine-core client (the process that
schedules and runs the model on a GPU) is replaced by `StubEngineCore`, which answers each request
with fixed token ids, one per step, and applies the engine core's stop rules (EOS, max_tokens).
No GPU and no weights: the tiny random Qwen2 config and the offline Qwen2.5 tokenizer from
`reasonrank.offline`, plus a tokenizer/template pair that adds a BOS (as Llama 3 and Gemma do).

vllm is not in the main .venv (it pins a CUDA torch): `.ci/run` runs this file in .venv-vllm,
built by `scripts/setup-vllm-frontend.sh`. Elsewhere the module is skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import shutil
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")  # vLLM's CPU platform: no GPU probing
vllm = pytest.importorskip("vllm", reason="vllm is not installed here; .ci/run runs this "
                           "file in .venv-vllm (bash scripts/setup-vllm-frontend.sh)")
if str(getattr(vllm, "__version__", "")).endswith("+fake"):  # pragma: no cover
    pytest.skip("the in-repo fake vllm is on the path, not the real one", allow_module_level=True)

from vllm.v1.engine import EngineCoreOutput, EngineCoreOutputs, FinishReason  # noqa: E402
from vllm.v1.engine.core_client import EngineCoreClient  # noqa: E402

from reasonrank.backends.vllm import VLLMBackend  # noqa: E402
from reasonrank.errors import BackendError, ConfigError  # noqa: E402
from reasonrank.offline import build_qwen25_tokenizer, build_tiny_qwen2  # noqa: E402
from reasonrank.types import Prompt, SamplingParams  # noqa: E402

ANSWER = "<think>passage 2 answers it</think>\n<answer>[2] > [1] > [3]</answer>"
REPEAT_BUDGET = 7  # a request with this max_tokens ends with vLLM's "repetition" reason
STEP_SECONDS = 0.002
MAX_MODEL_LEN = 1024
BOS_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class StubEngineCore:
    """Stands in for vLLM's engine-core client (the GPU process) behind the real AsyncLLM.

    Each request gets `answer_ids` one token per step, then EOS; it stops at max_tokens with
    "length" first, like the engine core's `check_stop`, and the EOS is part of the output ids.
    With `logprobs` asked for, each token comes with `stub_top_logprobs` (the sampled token
    first, as vLLM's sampler sends it). Records what the front end sent: the prompt token ids,
    the sampling parameters, aborts, shutdown.
    """

    engine_ranks_managed = (0,)

    def __init__(self, answer_ids: list[int]) -> None:
        self.answer_ids = answer_ids
        self.engine_status = {"status": "healthy"}
        self.resources = type("Resources", (), {"engine_dead": False})()
        self.requests: dict[str, list[int]] = {}
        self.params: dict[str, Any] = {}
        self.aborted: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.shutdown_calls = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._outputs: asyncio.Queue[EngineCoreOutputs] | None = None

    def _queue(self) -> asyncio.Queue[EngineCoreOutputs]:
        if self._outputs is None:
            self._outputs = asyncio.Queue()
        return self._outputs

    async def get_supported_tasks_async(self) -> tuple[str, ...]:
        return ("generate",)

    async def add_request_async(self, request: Any) -> None:
        ids = [int(i) for i in request.prompt_token_ids]
        self.requests[request.request_id] = ids
        self.params[request.request_id] = request.sampling_params
        self._tasks[request.request_id] = asyncio.create_task(self._decode(request))

    async def _decode(self, request: Any) -> None:
        params = request.sampling_params
        queue = self._queue()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            outputs: list[int] = []
            for token in [*self.answer_ids, params.eos_token_id]:
                await asyncio.sleep(STEP_SECONDS)
                outputs.append(token)
                reason = None
                if token == params.eos_token_id:
                    reason = FinishReason.STOP
                elif len(outputs) >= params.max_tokens:
                    reason = FinishReason.LENGTH
                elif len(outputs) == 3 and params.max_tokens == REPEAT_BUDGET:
                    reason = FinishReason.REPETITION
                queue.put_nowait(EngineCoreOutputs(outputs=[EngineCoreOutput(
                    request_id=request.request_id, new_token_ids=[token], finish_reason=reason,
                    new_logprobs=_logprobs_lists(token, params.logprobs),
                )]))
                if reason is not None:
                    return
        finally:
            self.in_flight -= 1
            self._tasks.pop(request.request_id, None)

    async def get_output_async(self) -> EngineCoreOutputs:
        return await self._queue().get()

    async def abort_requests_async(self, request_ids: list[str]) -> None:
        for request_id in request_ids:
            task = self._tasks.pop(request_id, None)
            if task is not None:
                task.cancel()
                self.aborted.append(request_id)

    def shutdown(self, timeout: float | None = None) -> None:
        self.shutdown_calls += 1


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vllm-contract")
    qwen = build_qwen25_tokenizer(root / "qwen25")
    model = build_tiny_qwen2(root / "tiny-qwen2", tokenizer_dir=qwen)
    # A BOS-adding tokenizer (its post-processor prepends <|endoftext|>) and a chat template
    # that starts with {{ bos_token }}, as Llama 3, Mistral and Gemma have.
    bos = root / "bos-tokenizer"
    shutil.copytree(qwen, bos)
    data = json.loads((bos / "tokenizer.json").read_text())
    data["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [151643],
                                             "tokens": ["<|endoftext|>"]}},
    }
    (bos / "tokenizer.json").write_text(json.dumps(data))
    config = json.loads((bos / "tokenizer_config.json").read_text())
    config.update(bos_token="<|endoftext|>", chat_template=BOS_TEMPLATE)
    (bos / "tokenizer_config.json").write_text(json.dumps(config))
    return {"model": model, "qwen": qwen, "bos": bos}


@pytest.fixture(scope="module")
def stub_core(artefacts: dict[str, Path]):
    """Replace the engine-core client factory (and tell vLLM's CPU platform it may run)."""
    import vllm.triton_utils
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(artefacts["qwen"]))
    stubs: list[StubEngineCore] = []
    failure: list[BaseException] = []

    def make_async_mp_client(**_: Any) -> StubEngineCore:
        if failure:
            raise failure[0]
        stub = StubEngineCore(tokenizer(ANSWER, add_special_tokens=False)["input_ids"])
        stubs.append(stub)
        return stub

    saved = EngineCoreClient.__dict__["make_async_mp_client"], vllm.triton_utils.HAS_TRITON
    EngineCoreClient.make_async_mp_client = staticmethod(make_async_mp_client)
    # vLLM's CPU platform refuses x86 without triton-cpu, which only its model runner needs.
    vllm.triton_utils.HAS_TRITON = True
    yield type("Stubs", (), {"made": stubs, "failure": failure, "tokenizer": tokenizer})
    EngineCoreClient.make_async_mp_client, vllm.triton_utils.HAS_TRITON = saved


def stub_top_logprobs(token: int, k: int) -> tuple[list[int], list[float]]:
    """The stub's log-probabilities for a sampled `token`: it (-0.25), then k more ids."""
    ids = [token, *(token + 1 + j for j in range(k))]
    return ids, [-0.25 * (1 + j) for j in range(k + 1)]


def _logprobs_lists(token: int, k: int | None) -> Any:
    if not k:
        return None
    import numpy as np
    from vllm.v1.outputs import LogprobsLists

    ids, values = stub_top_logprobs(token, k)
    return LogprobsLists(np.array([ids]), np.array([values], dtype=np.float32), np.array([1]))


def _backend(artefacts: dict[str, Path], tokenizer: str = "qwen", **kwargs: Any) -> VLLMBackend:
    kwargs.setdefault("max_model_len", MAX_MODEL_LEN)
    return VLLMBackend(str(artefacts["model"]), tokenizer_name=str(artefacts[tokenizer]),
                       **kwargs)


@pytest.fixture(scope="module")
def qwen_backend(artefacts: dict[str, Path], stub_core: Any):
    backend = _backend(artefacts)
    backend.stub = stub_core.made[-1]
    yield backend
    asyncio.run(backend.aclose())


def _render(tokenizer: Any, query: str) -> str:
    messages = [{"role": "system", "content": "You are RankLLM."},
                {"role": "user", "content": f"Rank the passages for: {query}\n[1] a\n[2] b"}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _hf_ids(tokenizer: Any, text: str) -> list[int]:
    """The ids the hf backend feeds its model (backends/hf.py: add_special_tokens=False)."""
    return list(tokenizer([text], add_special_tokens=False)["input_ids"][0])


def _generate(backend: VLLMBackend, text: str, **params: Any) -> Any:
    return asyncio.run(backend.generate(Prompt(text, ()), SamplingParams(**params)))


def _last_request(stub: StubEngineCore) -> list[int]:
    return list(stub.requests.values())[-1]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# --- token ids -------------------------------------------------------------------------------


def test_qwen25_ids_are_the_hf_backends_and_no_deprecation(qwen_backend: VLLMBackend) -> None:
    tokenizer = qwen_backend.tokenizer
    text = _render(tokenizer, "what is BM25?")
    records = _Records()
    logging.getLogger("vllm").addHandler(records)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = _generate(qwen_backend, text)
    finally:
        logging.getLogger("vllm").removeHandler(records)
    assert _last_request(qwen_backend.stub) == _hf_ids(tokenizer, text)
    assert result.prompt_tokens == len(_hf_ids(tokenizer, text))
    noise = [m for m in records.messages if "deprecat" in m.lower()]
    noise += [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)
              and "vllm" in str(w.filename)]
    assert noise == []


def test_bos_template_gets_exactly_one_bos(artefacts: dict[str, Path], stub_core: Any) -> None:
    backend = _backend(artefacts, tokenizer="bos")
    try:
        tokenizer = backend.tokenizer
        text = _render(tokenizer, "what is BM25?")
        # The test can fail: this tokenizer adds a BOS, and the rendered text starts with one.
        assert tokenizer(text)["input_ids"][:2] == [151643, 151643]
        _generate(backend, text)
        sent = _last_request(stub_core.made[-1])
        assert sent == _hf_ids(tokenizer, text)
        assert sent[0] == 151643 and sent[1] != 151643
    finally:
        asyncio.run(backend.aclose())


# --- outputs -----------------------------------------------------------------------------------


def test_stop_detokenized_with_eos_counted(qwen_backend: VLLMBackend, stub_core: Any) -> None:
    result = _generate(qwen_backend, _render(qwen_backend.tokenizer, "stop"))
    assert result.text == ANSWER  # vLLM's own detokenizer; EOS skipped in the text
    answer_ids = stub_core.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    assert result.output_tokens == len(answer_ids) + 1  # vLLM's token_ids include the EOS
    assert (result.finish_reason, result.raw_finish_reason) == ("stop", None)


def test_length(qwen_backend: VLLMBackend, stub_core: Any) -> None:
    result = _generate(qwen_backend, _render(qwen_backend.tokenizer, "length"), max_new_tokens=4)
    answer_ids = stub_core.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    assert (result.finish_reason, result.output_tokens) == ("length", 4)
    assert result.text == stub_core.tokenizer.decode(answer_ids[:4])


def test_other_finish_reasons_map_to_error(qwen_backend: VLLMBackend) -> None:
    text = _render(qwen_backend.tokenizer, "repeat")
    result = _generate(qwen_backend, text, max_new_tokens=REPEAT_BUDGET)
    assert (result.finish_reason, result.raw_finish_reason) == ("error", "repetition")


def test_eight_concurrent_requests(qwen_backend: VLLMBackend) -> None:
    stub: StubEngineCore = qwen_backend.stub  # type: ignore[attr-defined]
    tokenizer = qwen_backend.tokenizer
    texts = [_render(tokenizer, f"query number {i}") for i in range(8)]
    before = len(stub.requests)
    stub.max_in_flight = 0

    async def run_all() -> list[Any]:
        return await asyncio.gather(
            *(qwen_backend.generate(Prompt(t, ()), SamplingParams()) for t in texts)
        )

    results = asyncio.run(run_all())
    assert stub.max_in_flight == 8
    sent = list(stub.requests.values())[before:]
    assert sorted(sent) == sorted(_hf_ids(tokenizer, t) for t in texts)
    assert len(set(list(stub.requests)[before:])) == 8
    assert all(r.text == ANSWER and r.finish_reason == "stop" for r in results)


def test_two_event_loops_one_after_another(qwen_backend: VLLMBackend) -> None:
    text = _render(qwen_backend.tokenizer, "loops")
    assert _generate(qwen_backend, text).text == ANSWER
    assert _generate(qwen_backend, text).text == ANSWER


def test_cancel_aborts_the_request(qwen_backend: VLLMBackend) -> None:
    stub: StubEngineCore = qwen_backend.stub  # type: ignore[attr-defined]
    text = _render(qwen_backend.tokenizer, "cancel me")
    global STEP_SECONDS
    saved, STEP_SECONDS = STEP_SECONDS, 0.2
    before = set(stub.requests)

    async def cancel_one() -> str:
        task = asyncio.create_task(qwen_backend.generate(Prompt(text, ()), SamplingParams()))
        while not set(stub.requests) - before:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return (set(stub.requests) - before).pop()

    try:
        request_id = asyncio.run(cancel_one())
        deadline = time.monotonic() + 5
        while request_id not in stub.aborted and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        STEP_SECONDS = saved
    assert request_id in stub.aborted
    assert qwen_backend.engine.get_num_unfinished_requests() == 0


# --- errors ------------------------------------------------------------------------------------


def test_over_long_prompt_gets_the_hint(qwen_backend: VLLMBackend) -> None:
    text = _render(qwen_backend.tokenizer, "word " * (MAX_MODEL_LEN + 50))
    with pytest.raises(BackendError) as info:
        _generate(qwen_backend, text)
    message = str(info.value)
    assert "raise max_model_len" in message
    assert "\n" not in message


def test_invalid_sampling_is_a_backend_error(qwen_backend: VLLMBackend) -> None:
    with pytest.raises(BackendError, match="top_p"):
        _generate(qwen_backend, "x", temperature=0.7, top_p=0.0)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"dtype": "bf16"}, "dtype='bf16'"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization=1.5"),
        ({"max_model_len": 10**6}, "max_model_len=1000000"),
        ({"engine_kwargs": {"quantization": "no-such-method"}}, "quantization='no-such-method'"),
        ({"engine_kwargs": {"kv_cache_dtype": "fp99"}}, "kv_cache_dtype='fp99'"),
        ({"max_num_seqs": 0}, "max_num_seqs=0"),
        ({"engine_kwargs": {"no_such_setting": 1}}, "no_such_setting"),
    ],
)
def test_invalid_engine_setting_is_a_config_error(
    artefacts: dict[str, Path], stub_core: Any, kwargs: dict[str, Any], named: str
) -> None:
    threads = threading.active_count()
    with pytest.raises(ConfigError) as info:
        _backend(artefacts, **kwargs)
    message = str(info.value)
    assert named in message
    assert "\n" not in message and "GPU" not in message
    assert threading.active_count() == threads


def test_engine_start_failure_says_why(artefacts: dict[str, Path], stub_core: Any) -> None:
    stub_core.failure.append(RuntimeError("Engine core initialization failed."))
    try:
        with pytest.raises(BackendError) as info:
            _backend(artefacts)
    finally:
        stub_core.failure.clear()
    assert "Engine core initialization failed" in str(info.value)
    assert "CUDA GPU" in str(info.value)
    assert "none is visible here" in str(info.value)  # this venv's torch is the CPU build


# --- shutdown ----------------------------------------------------------------------------------


def test_shutdown_leaves_no_thread_or_process(artefacts: dict[str, Path], stub_core: Any) -> None:
    time.sleep(0.2)
    threads = {t.ident for t in threading.enumerate()}
    backend = _backend(artefacts)
    stub = stub_core.made[-1]
    assert _generate(backend, _render(backend.tokenizer, "bye")).text == ANSWER
    asyncio.run(backend.aclose())
    asyncio.run(backend.aclose())  # idempotent
    assert stub.shutdown_calls == 1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [t for t in threading.enumerate() if t.ident not in threads and t.is_alive()]
        if not left:
            break
        time.sleep(0.05)
    assert left == []
    assert multiprocessing.active_children() == []
    with pytest.raises(BackendError, match="closed"):
        _generate(backend, "x")


# --- settings, loops, closing ------------------------------------------------------------------


def test_settings_reach_vllms_config(artefacts: dict[str, Path], stub_core: Any) -> None:
    from reasonrank.config import RerankConfig

    config = RerankConfig(
        backend="vllm", model=str(artefacts["model"]), tokenizer=str(artefacts["qwen"]),
        gpu_memory_utilization=0.75, max_model_len=2048, dtype="float32", seed=11,
        max_num_seqs=64, max_num_batched_tokens=4096,
    )
    assert config.concurrency == 256  # the vllm backend's default
    backend = VLLMBackend.from_config(config)
    try:
        vc = backend.engine.vllm_config
        assert (vc.scheduler_config.max_num_seqs, vc.scheduler_config.max_num_batched_tokens) == (
            64, 4096,
        )
        assert vc.cache_config.gpu_memory_utilization == 0.75
        assert vc.cache_config.enable_prefix_caching is True
        assert vc.model_config.max_model_len == 2048
        assert str(vc.model_config.dtype) == "torch.float32"
        assert vc.model_config.seed == 11
        assert vc.model_config.tokenizer == str(artefacts["qwen"])
        assert vc.parallel_config.tensor_parallel_size == 1
    finally:
        asyncio.run(backend.aclose())


def test_built_inside_a_running_loop(artefacts: dict[str, Path]) -> None:
    async def build() -> VLLMBackend:
        return _backend(artefacts)

    backend = asyncio.run(build())  # vLLM starts its output task at once inside a loop
    try:
        assert _generate(backend, _render(backend.tokenizer, "inside")).text == ANSWER
        # vLLM's offline (LLM-class) batch sizes, not its generic engine ones (128 sequences):
        # room for the default --concurrency of 256.
        assert backend.engine.vllm_config.scheduler_config.max_num_seqs >= 256
    finally:
        asyncio.run(backend.aclose())


def test_aclose_with_a_request_in_flight(artefacts: dict[str, Path], stub_core: Any) -> None:
    backend = _backend(artefacts)
    stub = stub_core.made[-1]
    text = _render(backend.tokenizer, "closing")
    global STEP_SECONDS
    saved, STEP_SECONDS = STEP_SECONDS, 0.2

    async def close_midway() -> None:
        task = asyncio.create_task(backend.generate(Prompt(text, ()), SamplingParams()))
        while not stub.requests:
            await asyncio.sleep(0.005)
        await backend.aclose()
        with pytest.raises(BackendError, match="closed"):
            await task

    try:
        asyncio.run(close_midway())
    finally:
        STEP_SECONDS = saved
    assert stub.shutdown_calls == 1


# --- budget forcing --------------------------------------------------------------------------


def test_budget_forcing_continues_through_the_engine(artefacts: dict[str, Path],
                                                     stub_core: Any) -> None:
    """A window that spends its budget inside the reasoning is continued through the real front
    end: the engine receives exactly the hf ids of prompt + output + `</think>\n<answer>`."""
    from reasonrank import Reranker
    from reasonrank.reranker import make_request

    backend = _backend(artefacts)
    stub: StubEngineCore = stub_core.made[-1]
    docs = [f"passage {i}" for i in range(3)]
    with Reranker(backend=backend, model=str(artefacts["model"]), max_new_tokens=3,
                  max_passage_tokens=16, force_answer_tokens=25) as rr:
        result = rr.rerank("q", docs)
        first_text = rr.builder.render_request(make_request("q", docs)).text
    (w,) = result.windows
    answer_ids = stub_core.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    head = stub_core.tokenizer.decode(answer_ids[:3])
    assert "</answer>" not in head and w.forced and w.output_tokens == 3
    first, second = list(stub.requests.values())[-2:]
    assert first == _hf_ids(backend.tokenizer, first_text)
    assert second == _hf_ids(backend.tokenizer, first_text + head + "</think>\n<answer>")
    assert w.forced_tokens is not None and 0 < w.forced_tokens <= 25
    assert w.output.startswith(head + "</think>\n<answer>")


def test_stop_string_cut_by_the_front_end(qwen_backend: VLLMBackend, stub_core: Any) -> None:
    """vLLM's detokenizer ends the request at a stop string: the text stops before it and the
    tokens end with the one that completes it (what the rank1 method stops on)."""
    text = _render(qwen_backend.tokenizer, "stop")
    gen = _generate(qwen_backend, text, max_new_tokens=200, stop=("</think>",))
    assert gen.text == ANSWER[:ANSWER.index("</think>")]
    assert gen.finish_reason == "stop"
    ids = stub_core.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    complete = next(k for k in range(1, len(ids) + 1)
                    if "</think>" in stub_core.tokenizer.decode(ids[:k]))
    assert gen.output_tokens == complete


def test_logprobs_reach_the_generation(qwen_backend: VLLMBackend, stub_core: Any) -> None:
    """`logprobs` goes to the engine and its per-token answer comes back keyed by token text."""
    text = _render(qwen_backend.tokenizer, "logprobs")
    gen = _generate(qwen_backend, text, max_new_tokens=4, logprobs=2)
    assert qwen_backend.stub.params[list(qwen_backend.stub.params)[-1]].logprobs == 2
    ids = stub_core.tokenizer(ANSWER, add_special_tokens=False)["input_ids"][:4]
    assert gen.logprobs is not None and len(gen.logprobs) == 4
    for position, token in zip(gen.logprobs, ids, strict=True):
        top_ids, values = stub_top_logprobs(token, 2)
        expected: dict[str, float] = {}
        for t, v in zip(top_ids, values, strict=True):
            expected.setdefault(stub_core.tokenizer.decode([t]), v)
        assert position == pytest.approx(expected)
    plain = _generate(qwen_backend, text, max_new_tokens=4)
    assert plain.logprobs is None


def test_allowed_tokens_become_allowed_token_ids(qwen_backend: VLLMBackend,
                                                 stub_core: Any) -> None:
    tok = stub_core.tokenizer
    expected = [tok(t, add_special_tokens=False)["input_ids"][0] for t in (" true", " false")]
    _generate(qwen_backend, _render(qwen_backend.tokenizer, "allowed"), max_new_tokens=1,
              logprobs=2, allowed_tokens=(" true", " false"))
    params = qwen_backend.stub.params[list(qwen_backend.stub.params)[-1]]
    assert list(params.allowed_token_ids) == expected and params.max_tokens == 1

