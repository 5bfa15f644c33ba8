"""Transformers backend: batched greedy generation on CPU or GPU, left padding.

Concurrent `generate` calls are gathered into batches of up to `batch_size` prompts; a batch
starts as soon as the model is free and takes every prompt waiting at that moment, so windows
never wait for a full batch. Generation runs in a worker thread and never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from reasonrank.backends.base import (
    Backend,
    Generation,
    Prompt,
    SamplingParams,
    load_tokenizer,
    split_gguf_path,
)
from reasonrank.config import RerankConfig
from reasonrank.errors import BackendError, ConfigError, require

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    prompt: str
    params: SamplingParams
    future: asyncio.Future[Generation] = field(repr=False)


class HFBackend(Backend):
    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 8) -> None:
        self.model = model
        self._tokenizer = tokenizer
        self.batch_size = batch_size
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos = gen_eos if gen_eos is not None else tokenizer.eos_token_id
        self._eos_ids = set(eos if isinstance(eos, list | tuple) else [eos])
        self._eos_ids.add(tokenizer.eos_token_id)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reasonrank-hf")
        self._queue: list[_Pending] = []
        self._worker: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None

    @classmethod
    def from_config(cls, config: RerankConfig) -> HFBackend:
        torch = require("torch", "hf", "the hf backend")
        transformers = require("transformers", "hf", "the hf backend")
        directory, gguf = split_gguf_path(config.model)
        kwargs: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
        dtype = _resolve_dtype(torch, config.dtype)
        device = _resolve_device(torch, config.device)
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                directory, dtype=dtype, attn_implementation=config.attn_implementation, **kwargs
            )
        except (OSError, ValueError) as exc:
            raise BackendError(f"could not load model {config.model!r}: {exc}") from exc
        model.to(device).eval()
        tokenizer = load_tokenizer(config.tokenizer or config.model, "the hf backend")
        return cls(model, tokenizer, batch_size=config.batch_size)

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._run())
        item = _Pending(prompt.text, params, loop.create_future())
        self._queue.append(item)
        assert self._wakeup is not None
        self._wakeup.set()
        return await item.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                # One batch shares sampling settings: take the oldest prompt and those like it.
                params = self._queue[0].params
                batch = [p for p in self._queue if p.params == params][: self.batch_size]
                taken = {id(p) for p in batch}
                self._queue = [p for p in self._queue if id(p) not in taken]
                try:
                    outs = await loop.run_in_executor(
                        self._executor, self._generate_batch, [p.prompt for p in batch], params
                    )
                except Exception as exc:  # delivered to every waiting caller
                    for p in batch:
                        if not p.future.done():
                            p.future.set_exception(
                                exc if isinstance(exc, BackendError)
                                else BackendError(f"generation failed: {exc!r}")
                            )
                    continue
                for p, out in zip(batch, outs, strict=True):
                    if not p.future.done():
                        p.future.set_result(out)

    def _generate_kwargs(self, params: SamplingParams) -> dict[str, Any]:
        """Keyword arguments for `model.generate`; subclasses may add to them."""
        tok = self._tokenizer
        sample = params.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": sample,
            "use_cache": True,
            "pad_token_id": tok.pad_token_id,
            "eos_token_id": sorted(self._eos_ids),
        }
        if sample:
            kwargs.update(temperature=params.temperature, top_p=params.top_p)
        else:  # silence "temperature is set but do_sample is False" from model defaults
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs

    def _generate_batch(self, prompts: list[str], params: SamplingParams) -> list[Generation]:
        import torch

        tok = self._tokenizer
        # The chat template already rendered every special token the model needs.
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
        enc = {k: v.to(self.model.device, non_blocking=True) for k, v in enc.items()}
        kwargs = self._generate_kwargs(params)
        if params.temperature > 0 and params.seed is not None:
            torch.manual_seed(params.seed)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        width = enc["input_ids"].shape[1]
        results = []
        for row, n_prompt in zip(out[:, width:].tolist(), prompt_tokens, strict=True):
            n = len(row)
            finish = "length"
            for i, token in enumerate(row):
                if token in self._eos_ids:
                    n, finish = i + 1, "stop"
                    break
            text = tok.decode(row[:n], skip_special_tokens=True)
            results.append(Generation(text, int(n_prompt), n, finish))
        return results

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        self._executor.shutdown(wait=False, cancel_futures=True)


def _resolve_device(torch: Any, device: str) -> str:
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def _resolve_dtype(torch: Any, dtype: str) -> Any:
    if dtype == "auto":
        return "auto"
    try:
        return {"bfloat16": torch.bfloat16, "float16": torch.float16,
                "float32": torch.float32}[dtype]
    except KeyError:
        raise ConfigError(
            f"dtype must be auto, bfloat16, float16 or float32; got {dtype!r}"
        ) from None
