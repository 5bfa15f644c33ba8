"""In-process vLLM: one `AsyncLLMEngine` (continuous batching) shared by every window.

Each `generate` call is submitted to the engine the moment it is made, so the engine's scheduler
batches whatever is in flight; nothing waits for a lock-step batch.

vLLM's async engine binds its background output task to the event loop it first runs on, and
`asyncio.run` cancels that task when its loop ends: a second `asyncio.run` over the same engine
would wait forever. The backend therefore gives the engine a private event loop on a daemon
thread and hands each request to it, so callers may use any loop, or a new one per call.

Only vLLM's documented API is used: `AsyncEngineArgs`, `AsyncLLMEngine.from_engine_args`,
`SamplingParams`, `engine.generate(prompt, sampling_params, request_id)` (an async generator of
`RequestOutput`) and `engine.shutdown()`. vLLM is imported when the backend is built, never
when this module is imported.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import itertools
import logging
import sys
import threading
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from reasonrank.backends.base import Backend, Generation, Prompt, SamplingParams, load_tokenizer
from reasonrank.errors import BackendError, ConfigError, require

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


class VLLMBackend(Backend):
    """Generate with an in-process vLLM engine (`AsyncLLMEngine`, continuous batching).

    The prompt string is sent to the engine verbatim: vLLM tokenizes it with the model's
    tokenizer and applies no chat template. `tokenizer` (used for prompt rendering and
    passage truncation) is the one given, else `AutoTokenizer.from_pretrained(tokenizer_name)`
    loaded on first use; vLLM loads its own copy of the same tokenizer for the engine.

    `engine_kwargs` are passed on to `vllm.AsyncEngineArgs` as extra keywords (for instance
    `quantization`, `enforce_eager`, `trust_remote_code`, `max_num_seqs`).
    """

    name: ClassVar[str] = "vllm"

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
        if max_model_len is not None:
            args["max_model_len"] = max_model_len
        if seed is not None:
            args["seed"] = seed
        args.update(engine_kwargs or {})
        try:
            self.engine_args = self._vllm.AsyncEngineArgs(**args)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"vllm.AsyncEngineArgs rejected the engine arguments: {exc}") from exc

        self._loop = _EngineLoop()
        try:
            self.engine = self._start_engine()
        except BaseException:
            self._loop.stop()
            raise

    def _start_engine(self) -> Any:
        def build() -> Any:
            return self._vllm.AsyncLLMEngine.from_engine_args(self.engine_args)

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
        return self._vllm.SamplingParams(**kwargs)

    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        if self._closed:
            raise BackendError("the vllm backend is closed")
        request_id = f"{self._id_prefix}-{next(self._ids)}"
        future = self._loop.submit(
            self._run_request(prompt.text, self.sampling_params(params), request_id)
        )
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
            async for output in self.engine.generate(text, sampling, request_id):
                final = output
        except Exception as exc:
            raise BackendError(self._request_failure(request_id, exc)) from exc
        if final is None or not final.finished or not final.outputs:
            raise BackendError(f"vLLM request {request_id} ended without a finished output")
        completion = final.outputs[0]
        prompt_ids = final.prompt_token_ids
        return Generation(
            text=completion.text,
            prompt_tokens=len(prompt_ids) if prompt_ids is not None else None,
            output_tokens=len(completion.token_ids),
            finish_reason=completion.finish_reason,
        )

    @staticmethod
    def _request_failure(request_id: str, exc: Exception) -> str:
        cause = exc
        # vLLM wraps request errors (EngineGenerateError) around the real cause.
        while str(cause) == "" and cause.__cause__ is not None:
            cause = cause.__cause__  # type: ignore[assignment]
        message = f"vLLM request {request_id} failed: {type(cause).__name__}: {cause}"
        if "max_model_len" in str(cause) or "maximum model length" in str(cause):
            message += " (raise max_model_len, or shorten the prompt: fewer passage tokens)"
        return message

    async def aclose(self) -> None:
        """Shut the engine down and stop its loop thread. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        engine = self.engine
        shutdown = getattr(engine, "shutdown", None) or getattr(
            engine, "shutdown_background_loop", None
        )
        try:
            if shutdown is not None:
                await asyncio.wrap_future(self._loop.call(shutdown))
        except Exception as exc:
            logger.warning("vLLM engine shutdown failed: %s", exc)
        finally:
            await asyncio.to_thread(self._loop.stop)

    @classmethod
    def replica_gpus(cls, config: RerankConfig) -> float:
        return config.tensor_parallel_size  # one engine spans this many GPUs

    @classmethod
    def from_config(cls, config: RerankConfig) -> VLLMBackend:
        return cls(
            config.model,
            tokenizer_name=config.tokenizer_name,
            tensor_parallel_size=config.tensor_parallel_size,
            gpu_memory_utilization=config.gpu_memory_utilization,
            max_model_len=config.max_model_len,
            enable_prefix_caching=config.enable_prefix_caching,
            dtype=config.dtype,
            seed=config.seed,
        )
