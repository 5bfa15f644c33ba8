"""A fake `vllm` for the tests: the documented async-engine API, no GPU, no model.

It mirrors what reasonrank uses: `AsyncEngineArgs` (a dataclass, so a misspelt keyword raises
TypeError), `SamplingParams`, `AsyncLLMEngine.from_engine_args(engine_args)`, the async generator
`engine.generate(prompt, sampling_params, request_id)` yielding `RequestOutput`s (intermediate
ones unless `output_kind` is FINAL_ONLY, then a final one with `finished=True`), and
`engine.shutdown()`.

Like vLLM's AsyncLLM, an engine binds itself to the event loop it first runs on (its output
task lives there); the fake raises where vLLM would hang if it is then driven from another loop.

The completion is deterministic: the `[n]` markers of the prompt in reverse order. Prompt and
output "tokens" are whitespace-separated words. Every engine records its arguments, each request
(prompt, sampling params, request id), the largest number of requests in flight at once, aborted
requests and shutdown calls. Set `FAIL_START` to make `from_engine_args` raise, or an engine's
`fail_with` to make its requests fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from dataclasses import dataclass

from vllm.outputs import CompletionOutput, RequestOutput
from vllm.sampling_params import RequestOutputKind, SamplingParams

__all__ = [
    "AsyncEngineArgs",
    "AsyncLLMEngine",
    "CompletionOutput",
    "RequestOutput",
    "SamplingParams",
]
__version__ = "0.0.0+fake"

ENGINES: list[AsyncLLMEngine] = []
FAIL_START: BaseException | None = None
STEPS = 3  # engine steps per request; each step yields to the event loop
STEP_SECONDS = 0.01


@dataclass
class AsyncEngineArgs:
    """The engine arguments reasonrank may pass (vLLM's names and defaults)."""

    model: str = "facebook/opt-125m"
    tokenizer: str | None = None
    tokenizer_mode: str = "auto"
    trust_remote_code: bool = False
    revision: str | None = None
    dtype: str = "auto"
    seed: int | None = None
    max_model_len: int | None = None
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    enable_prefix_caching: bool | None = None
    quantization: str | None = None
    enforce_eager: bool = False
    max_num_seqs: int | None = None
    disable_log_stats: bool = False
    enable_log_requests: bool = False


class EngineGenerateError(Exception):
    """What vLLM's AsyncLLM.generate raises (empty message, real error as __cause__)."""


@dataclass
class Request:
    prompt: object
    sampling_params: SamplingParams
    request_id: str
    thread: str


def complete(prompt: str, max_tokens: int | None) -> tuple[str, str]:
    """The fake model: the prompt's `[n]` markers reversed, cut at max_tokens words."""
    markers = list(dict.fromkeys(re.findall(r"\[(\d+)\]", prompt)))
    answer = " > ".join(f"[{n}]" for n in reversed(markers))
    words = f"<think> reversing {len(markers)} passages </think> <answer> {answer} </answer>"
    words = words.split()
    if max_tokens is not None and len(words) > max_tokens:
        return " ".join(words[:max_tokens]), "length"
    return " ".join(words), "stop"


class AsyncLLMEngine:
    def __init__(self, engine_args: AsyncEngineArgs) -> None:
        self.engine_args = engine_args
        self.requests: list[Request] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.aborted: list[str] = []
        self.shutdown_calls = 0
        self.fail_with: BaseException | None = None
        self.built_on = threading.current_thread().name
        self._loop: asyncio.AbstractEventLoop | None = None
        # AsyncLLM starts its output task at once when built inside a running loop.
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
        ENGINES.append(self)

    @classmethod
    def from_engine_args(
        cls, engine_args: AsyncEngineArgs, start_engine_loop: bool = True,
        usage_context: object = None, stat_loggers: object = None,
    ) -> AsyncLLMEngine:
        if not isinstance(engine_args, AsyncEngineArgs):
            raise TypeError(f"expected AsyncEngineArgs, got {type(engine_args).__name__}")
        if FAIL_START is not None:
            raise FAIL_START
        return cls(engine_args)

    async def generate(
        self, prompt: object, sampling_params: SamplingParams, request_id: str, *,
        lora_request: object = None, trace_headers: object = None, priority: int = 0,
    ):
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop or loop.is_closed():
            raise RuntimeError(
                "fake vllm: the engine's output task runs on another event loop "
                "(real vLLM would wait forever here)"
            )
        if not isinstance(sampling_params, SamplingParams):
            raise TypeError(f"expected SamplingParams, got {type(sampling_params).__name__}")
        if not isinstance(request_id, str):
            raise TypeError("request_id must be a str")
        if any(r.request_id == request_id for r in self.requests):
            raise ValueError(f"Request id {request_id} already running.")
        text = prompt["prompt"] if isinstance(prompt, dict) else prompt
        if not isinstance(text, str):
            raise TypeError(f"unsupported prompt {prompt!r}")
        self.requests.append(
            Request(prompt, sampling_params, request_id, threading.current_thread().name)
        )
        prompt_ids = list(range(len(text.split())))
        final_text, reason = complete(text, sampling_params.max_tokens)
        words = final_text.split()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for step in range(1, STEPS + 1):
                await asyncio.sleep(STEP_SECONDS)
                if self.fail_with is not None:
                    raise EngineGenerateError() from self.fail_with
                done = step == STEPS
                if not done and sampling_params.output_kind is RequestOutputKind.FINAL_ONLY:
                    continue
                shown = words if done else words[: len(words) * step // STEPS]
                completion = CompletionOutput(
                    index=0, text=" ".join(shown), token_ids=list(range(len(shown))),
                    cumulative_logprob=None, logprobs=None,
                    finish_reason=reason if done else None,
                )
                yield RequestOutput(request_id, text, prompt_ids, None, [completion], done)
        except (asyncio.CancelledError, GeneratorExit):
            self.aborted.append(request_id)
            raise
        finally:
            self.in_flight -= 1

    def shutdown(self) -> None:
        self.shutdown_calls += 1
