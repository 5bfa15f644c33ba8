"""In-process vLLM: one `AsyncLLM` engine (continuous batching) shared by every window.

Each `generate` call is submitted to the engine the moment it is made, so the engine's scheduler
batches whatever is in flight; nothing waits for a lock-step batch.

vLLM's async engine binds its background output task to the event loop it first runs on, and
`asyncio.run` cancels that task when its loop ends: a second `asyncio.run` over the same engine
would wait forever. The backend therefore gives the engine a private event loop on a daemon
thread and hands each request to it, so callers may use any loop, or a new one per call.

The engine gets exactly the token ids the hf backend feeds its model,
`tokenizer(prompt, add_special_tokens=False)`: the prompt is already rendered with the chat
template, so a tokenizer that adds a BOS (Llama 3, Mistral, Gemma) must not add a second one.
They reach the engine through vLLM's renderer, the non-deprecated input path (vLLM 0.33 and
later; found by feature detection, not by version): `parse_model_prompt` +
`engine.renderer.render_cmpl_async([...], tok_params)` with `add_special_tokens=False`, then
`engine.generate(engine_input, ...)`; vLLM tokenizes in its own worker threads. An engine without
a renderer (vLLM < 0.33) is refused with a message naming the supported range.
vLLM is imported when the backend is built, never when this module is imported; the contract
test (tests/backends/test_vllm_contract.py) drives this module through vLLM's real front end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import importlib
import itertools
import logging
import re
import sys
import threading
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from reasonrank.backends.base import Backend, load_tokenizer
from reasonrank.config import BackendOptions
from reasonrank.core.options import AT_LEAST_1, Range
from reasonrank.errors import BackendError, ConfigError, require
from reasonrank.settings import option
from reasonrank.types import Generation, Prompt, SamplingParams

if TYPE_CHECKING:
    from reasonrank.config import RerankConfig

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


class _EngineLoop:
    """An event loop running on a daemon thread; the engine's tasks all live on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="reasonrank-vllm", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:  # what asyncio.run does on exit: cancel leftovers, close async generators
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, fn: Callable[[], _T]) -> concurrent.futures.Future[_T]:
        """Run a plain callable on the loop thread, inside the running loop."""

        async def run() -> _T:
            return fn()

        return self.submit(run())

    def stop(self, timeout: float = 30.0) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)


# vLLM's finish reasons, as reasonrank reports them: "stop" (EOS or a stop token), "length" (the
# budget or the context ran out), "error" for the rest ("abort", "error", "repetition"), whose raw
# name is kept in `Generation.raw_finish_reason` and the window trace.
FINISH_REASONS = {"stop": "stop", "length": "length"}
# vLLM's field names where they differ from the engine argument that sets them.
_FIELD_TO_ARG = {"cache_dtype": "kv_cache_dtype"}
_CONTEXT_HINT = " (raise max_model_len, or shorten the prompt: fewer passage tokens)"


def _engine_setting_error(exc: Exception, args: Mapping[str, Any]) -> str:
    """One line naming the engine setting (and its value) that vLLM's validation rejected."""
    problems: list[tuple[str | None, Any, str]] = []
    errors = getattr(exc, "errors", None)
    if callable(errors):  # pydantic's ValidationError
        try:
            for error in errors():
                loc = error.get("loc") or ()
                name = loc[0] if loc and isinstance(loc[0], str) else None
                name = _FIELD_TO_ARG.get(name, name) if name else None
                msg = str(error.get("msg", "")).removeprefix("Value error, ")
                problems.append((name, error.get("input"), msg.splitlines()[0] if msg else ""))
        except Exception:  # pragma: no cover - an unexpected shape: fall back to str(exc)
            problems = []
    if not problems:
        problems = [(None, None, str(exc).strip().splitlines()[0] if str(exc).strip() else "")]
    # The first problem with a setting the caller gave; else the first with a name in its text.
    named = [p for p in problems if p[0] in args] or problems
    name, value, msg = named[0]
    if name not in args:
        name = next((a for a in args if a != "model" and re.search(rf"\b{a}\b", msg)), name)
    if name is not None and name in args:
        value = args[name]
    if name is None:
        return f"vLLM rejected the engine settings: {type(exc).__name__}: {msg}"
    return f"invalid vllm setting {name}={value!r}: {msg}"


ENGINE_CONCURRENCY = 256
"""--concurrency when it is not given: the engine keeps hundreds of sequences decoding."""


@dataclass
class VLLMOptions(BackendOptions):
    """Options of the in-process vLLM backend (engine arguments)."""

    tensor_parallel_size: int = option(1, "GPUs per model replica", group="vllm",
                                       range=AT_LEAST_1)
    gpu_memory_utilization: float = option(0.9, "fraction of GPU memory vLLM may take",
                                           group="vllm", range=Range(0, 1, low_open=True))
    max_model_len: int | None = option(None, "context length (default: the model's)",
                                       group="vllm", range=AT_LEAST_1)
    enable_prefix_caching: bool = option(True, "reuse the KV cache of shared prefixes",
                                         group="vllm")
    dtype: str = option("auto", "weights dtype (auto, bfloat16, float16, float32)",
                        group="vllm")
    max_num_seqs: int | None = option(None, "sequences decoded at once (default: vLLM's)",
                                      group="vllm", range=AT_LEAST_1)
    max_num_batched_tokens: int | None = option(
        None, "tokens per engine step (default: vLLM's)", group="vllm", range=AT_LEAST_1)

    def default_concurrency(self) -> int:
        return ENGINE_CONCURRENCY


class VLLMBackend(Backend):
    """Generate with an in-process vLLM engine (`AsyncLLM`, continuous batching).

    The rendered prompt's token ids, `tokenizer(prompt, add_special_tokens=False)`, are what the
    engine receives; vLLM applies no chat template and adds no special token. `tokenizer` (used
    for prompt rendering and passage truncation) is the one given, else
    `AutoTokenizer.from_pretrained(tokenizer_name)` loaded on first use; vLLM loads its own copy
    of the same tokenizer.

    `max_num_seqs` and `max_num_batched_tokens` size the engine's batches (None: vLLM's
    offline defaults for the GPU). `engine_kwargs` are passed on to `vllm.AsyncEngineArgs` as
    extra keywords (for instance `quantization`, `enforce_eager`, `kv_cache_dtype`). An invalid
    setting raises `ConfigError` naming it.
    """

    name: ClassVar[str] = "vllm"
    Options = VLLMOptions

    def __init__(
        self,
        model: str,
        *,
        tokenizer_name: str | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        enable_prefix_caching: bool = True,
        dtype: str = "auto",
        seed: int | None = None,
        max_num_seqs: int | None = None,
        max_num_batched_tokens: int | None = None,
        tokenizer: Any = None,
        engine_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self._vllm = require("vllm", "vllm", "the vllm backend")
        self.model = model
        self.tokenizer_name = tokenizer_name or model
        self.tensor_parallel_size = tensor_parallel_size
        self._tokenizer = tokenizer
        self._tokenizer_lock = threading.Lock()
        self._ids = itertools.count()
        self._id_prefix = f"reasonrank-{uuid.uuid4().hex[:8]}"
        self._closed = False
        # Only the final output is wanted: FINAL_ONLY spares the engine a streamed
        # RequestOutput, with all the text so far, for every generated token.
        try:
            kind = importlib.import_module("vllm.sampling_params").RequestOutputKind
            self._final_only: Any = kind.FINAL_ONLY
        except (ImportError, AttributeError):  # pragma: no cover - vLLM >= 0.6 has it
            self._final_only = None

        args: dict[str, Any] = {
            "model": model,
            "tokenizer": self.tokenizer_name,
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "enable_prefix_caching": enable_prefix_caching,
            "dtype": dtype,
        }
        optional = {
            "max_model_len": max_model_len,
            "seed": seed,
            "max_num_seqs": max_num_seqs,
            "max_num_batched_tokens": max_num_batched_tokens,
        }
        args.update({k: v for k, v in optional.items() if v is not None})
        args.update(engine_kwargs or {})
        self._engine_settings = args
        try:
            self.engine_args = self._vllm.AsyncEngineArgs(**args)
        except TypeError as exc:
            raise ConfigError(f"vllm.AsyncEngineArgs rejected the engine arguments: {exc}") from exc
        except ValueError as exc:
            raise ConfigError(_engine_setting_error(exc, args)) from exc

        self._loop = _EngineLoop()
        try:
            self.engine = self._start_engine()
            self._render = self._find_renderer()
        except BaseException:
            self._loop.stop()
            raise
        if self._render is None:
            self._closed = True
            with contextlib.suppress(Exception):
                self._loop.call(self.engine.shutdown).result(30)
            self._loop.stop()
            version = getattr(self._vllm, "__version__", "?")
            raise BackendError(
                f"vLLM {version} has no renderer (engine.renderer.render_cmpl_async): the vllm "
                f"backend needs vllm>=0.33 (pip install 'reasonrank[vllm]')"
            )

    def _start_engine(self) -> Any:
        # vLLM sizes its batches by usage context; reranking is offline batch work, so take
        # its LLM-class defaults (per GPU: 1024 sequences on H100/H200, 256 on smaller ones)
        # rather than the generic engine ones (128 sequences, 2,048 tokens per step).
        try:
            usage = {"usage_context": importlib.import_module(
                "vllm.usage.usage_lib").UsageContext.LLM_CLASS}
        except (ImportError, AttributeError):  # pragma: no cover - every vLLM >= 0.4 has it
            usage = {}

        def build() -> Any:
            return self._vllm.AsyncLLMEngine.from_engine_args(self.engine_args, **usage)

        try:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                # No loop here: build in this thread (vLLM installs its signal handlers only in
                # the main thread); the engine starts its output task on its first request,
                # which runs on the engine loop.
                return build()
            # A loop runs here, and vLLM would start its output task on it: build on the
            # engine loop instead, so that everything the engine schedules lives there.
            return self._loop.call(build).result()
        except ValueError as exc:
            # vLLM validates its configs (pydantic, a ValueError) while building the engine:
            # a setting it does not accept, before any GPU is touched.
            raise ConfigError(_engine_setting_error(exc, self._engine_settings)) from exc
        except Exception as exc:
            raise BackendError(self._start_failure(exc)) from exc

    def _start_failure(self, exc: Exception) -> str:
        message = (
            f"vLLM could not start an engine for {self.model!r}: {type(exc).__name__}: {exc}. "
            "The vllm backend runs the model in this process and needs a CUDA GPU per "
            f"tensor-parallel rank (tensor_parallel_size={self.tensor_parallel_size})"
        )
        torch = sys.modules.get("torch")  # vLLM has imported it if it got that far
        cuda = getattr(torch, "cuda", None)
        if cuda is not None and not cuda.is_available():
            return message + "; none is visible here. Use the hf or openai backend instead."
        return message + (
            "; check that one is visible and has room "
            "(gpu_memory_utilization, max_model_len, tensor_parallel_size)."
        )

    def _find_renderer(self) -> Callable[[str], Coroutine[Any, Any, Any]] | None:
        """Render text to the engine's input (exact ids, no special tokens added), or None."""
        renderer = getattr(self.engine, "renderer", None)
        render = getattr(renderer, "render_cmpl_async", None)
        defaults = getattr(renderer, "default_cmpl_tok_params", None)
        parse = None
        for module in ("vllm.renderers.inputs.preprocess", "vllm.inputs"):
            try:
                parse = getattr(importlib.import_module(module), "parse_model_prompt", None)
            except ImportError:
                continue
            if parse is not None:
                break
        if (render is None or parse is None or not dataclasses.is_dataclass(defaults)
                or isinstance(defaults, type)):
            return None
        tok_params = dataclasses.replace(defaults, add_special_tokens=False)
        model_config = self.engine.model_config

        async def render_text(text: str) -> Any:
            (engine_input,) = await render([parse(model_config, text)], tok_params)
            return engine_input

        return render_text

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            with self._tokenizer_lock:
                if self._tokenizer is None:
                    self._tokenizer = load_tokenizer(
                        self.tokenizer_name, purpose="the vllm backend's prompt rendering"
                    )
        return self._tokenizer

    def sampling_params(self, params: SamplingParams) -> Any:
        """The `vllm.SamplingParams` for one request: greedy at temperature 0."""
        greedy = params.temperature == 0
        kwargs: dict[str, Any] = {
            "temperature": params.temperature,
            "top_p": 1.0 if greedy else params.top_p,
            "max_tokens": params.max_new_tokens,
            "seed": params.seed,
            "skip_special_tokens": True,
        }
        if self._final_only is not None:
            kwargs["output_kind"] = self._final_only
        if params.stop:
            kwargs["stop"] = list(params.stop)
        if params.logprobs:
            kwargs["logprobs"] = params.logprobs
        if params.allowed_tokens:
            from reasonrank.backends.hf import allowed_ids

            kwargs["allowed_token_ids"] = allowed_ids(self.tokenizer, params.allowed_tokens,
                                                      self.name)
        try:
            return self._vllm.SamplingParams(**kwargs)
        except Exception as exc:  # VLLMValidationError (not a ValueError), ValueError, TypeError
            raise BackendError(f"vLLM rejected the sampling parameters: {exc}") from exc

    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        if self._closed:
            raise BackendError("the vllm backend is closed")
        request_id = f"{self._id_prefix}-{next(self._ids)}"
        sampling = self.sampling_params(params)
        future = self._loop.submit(self._run_request(prompt.text, sampling, request_id))
        try:
            # Cancelling this await cancels the request's task on the engine loop, and
            # vLLM aborts the request when its generator is closed.
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            raise BackendError(
                f"vLLM request {request_id} was cancelled (the backend was closed)"
            ) from None

    async def _run_request(self, text: str, sampling: Any, request_id: str) -> Generation:
        final = None
        try:
            engine_input = await self._render(text)  # type: ignore[misc]
            async for output in self.engine.generate(engine_input, sampling, request_id):
                final = output
        except Exception as exc:
            raise BackendError(self._request_failure(request_id, exc)) from exc
        if final is None or not final.finished or not final.outputs:
            raise BackendError(f"vLLM request {request_id} ended without a finished output")
        completion = final.outputs[0]
        prompt_ids = final.prompt_token_ids
        raw = completion.finish_reason
        raw = None if raw is None else str(raw)
        reason = FINISH_REASONS.get(raw, "error") if raw is not None else None
        return Generation(
            text=completion.text,
            prompt_tokens=len(prompt_ids) if prompt_ids is not None else None,
            output_tokens=len(completion.token_ids),
            finish_reason=reason,
            raw_finish_reason=raw if raw != reason else None,
            logprobs=self._logprobs(completion.logprobs) if sampling.logprobs else None,
        )

    def _logprobs(self, positions: Any) -> tuple[dict[str, float], ...]:
        """vLLM's per-token {id: Logprob} as {token text: log-probability} (the most likely id
        wins where two decode alike)."""
        out = []
        for position in positions or ():
            record: dict[str, float] = {}
            ranked = sorted(position.items(), key=lambda kv: -float(kv[1].logprob))
            for token_id, entry in ranked:
                text = entry.decoded_token
                if text is None:
                    text = self.tokenizer.decode([token_id])
                record.setdefault(str(text), float(entry.logprob))
            out.append(record)
        return tuple(out)

    @staticmethod
    def _request_failure(request_id: str, exc: Exception) -> str:
        cause = exc
        # vLLM wraps unexpected request errors (EngineGenerateError, empty message) around the
        # real cause; validation errors come directly.
        while str(cause) == "" and cause.__cause__ is not None:
            cause = cause.__cause__  # type: ignore[assignment]
        text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        message = f"vLLM request {request_id} failed: {type(cause).__name__}: {text}"
        lowered = text.lower()
        if any(k in lowered for k in ("max_model_len", "maximum model length",
                                      "maximum context length")):
            message += _CONTEXT_HINT
        return message

    async def aclose(self) -> None:
        """Shut the engine down and stop its loop thread. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        shutdown = getattr(self.engine, "shutdown", None)
        try:
            if shutdown is not None:
                await asyncio.wrap_future(self._loop.call(shutdown))
        except Exception as exc:
            logger.warning("vLLM engine shutdown failed: %s", exc)
        finally:
            await asyncio.to_thread(self._loop.stop)

    @classmethod
    def replica_gpus(cls, config: RerankConfig) -> float:
        return VLLMOptions.of(config).tensor_parallel_size  # one engine spans this many GPUs

    @classmethod
    def from_config(cls, config: RerankConfig) -> VLLMBackend:
        options = VLLMOptions.of(config)
        return cls(
            config.model,
            tokenizer_name=config.tokenizer_name,
            tensor_parallel_size=options.tensor_parallel_size,
            gpu_memory_utilization=options.gpu_memory_utilization,
            max_model_len=options.max_model_len,
            enable_prefix_caching=options.enable_prefix_caching,
            dtype=options.dtype,
            seed=config.seed,
            max_num_seqs=options.max_num_seqs,
            max_num_batched_tokens=options.max_num_batched_tokens,
        )
