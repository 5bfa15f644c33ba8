"""Transformers backend: greedy (or sampled) generation on CPU or GPU, batched two ways.

- "continuous" (default): up to `batch_size` windows decode together, and the moment one
  finishes its slot takes the next waiting window (prefilled, then merged into the running
  left-padded KV cache), so no row waits for the longest one of its batch.
- "lockstep": a batch of up to `batch_size` prompts goes through one `generate()` call.

Stop strings (`SamplingParams.stop`) end a row once its text contains one (the text is cut before
it, as vLLM does); `logprobs` returns each generated token's top log-probabilities, taken from
the model's logits (log-softmax) before any restriction; `allowed_tokens` restricts the choice.

Both start work as soon as the model is free, take only windows whose caller still waits
(a cancelled window is dropped before it is generated), and run in a worker thread so the event
loop never blocks. Greedy outputs are the same token for token on either path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from reasonrank.backends.base import Backend, load_tokenizer, split_gguf_path
from reasonrank.config import BackendOptions, RerankConfig
from reasonrank.core.options import AT_LEAST_1
from reasonrank.errors import BackendError, ConfigError, LogprobsUnavailableError, require
from reasonrank.settings import option
from reasonrank.types import Generation, Prompt, SamplingParams

log = logging.getLogger(__name__)

BATCHING_MODES = ("continuous", "lockstep")
DTYPES = ("auto", "bfloat16", "float16", "float32")
CONCURRENCY_PER_BATCH = 4
"""--concurrency when it is not given: this many batches of --batch-size windows."""
# A running continuous batch returns to the event loop at least this often (decode steps), so
# newly arrived or cancelled windows are seen promptly.
_MAX_STEPS_PER_CALL = 16
# Tokens decoded from a row's end to look for a stop string after each step.
_STOP_TAIL = 32


@dataclass
class _Pending:
    prompt: str
    params: SamplingParams
    future: asyncio.Future[Generation] = field(repr=False)

    @property
    def wanted(self) -> bool:
        """False once the caller has stopped waiting (cancelled) or the window is answered."""
        return not self.future.done()


@dataclass
class HFOptions(BackendOptions):
    """Options of the transformers backend."""

    device: str = option("auto", "torch device: auto, cpu, cuda, cuda:1, mps", group="hf")
    dtype: str = option("auto", "torch dtype", group="hf", choices=DTYPES)
    batch_size: int = option(8, "most windows decoding together", group="hf", range=AT_LEAST_1)
    hf_batching: str = option(
        "continuous", "continuous (a finished window's slot takes the next one) or lockstep "
        "(one generate() call per batch)", group="hf", choices=BATCHING_MODES)
    attn_implementation: str = option(
        "sdpa", "attention kernel", group="hf", choices=("sdpa", "eager", "flash_attention_2"))

    def default_concurrency(self) -> int:
        return CONCURRENCY_PER_BATCH * self.batch_size


class HFBackend(Backend):
    name = "hf"
    Options = HFOptions

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 8,
                 batching: str = "continuous", logits_processors: Sequence[Any] = ()) -> None:
        """`logits_processors`: transformers-style `(input_ids, scores) -> scores` callables
        applied before each token is chosen, on either path (`input_ids`: the rows' prompt and
        output so far, left-padded with the pad token)."""
        if batching not in BATCHING_MODES:
            raise ConfigError(f"hf batching must be one of {', '.join(BATCHING_MODES)}; "
                              f"got {batching!r}")
        self.model = model
        self._tokenizer = tokenizer
        self.batch_size = batch_size
        self.batching = batching
        self.logits_processors = list(logits_processors)
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
        self._batcher: _ContinuousBatch | None = None

    @classmethod
    def from_config(cls, config: RerankConfig) -> HFBackend:
        torch = require("torch", "hf", "the hf backend")
        transformers = require("transformers", "hf", "the hf backend")
        options = HFOptions.of(config)
        directory, gguf = split_gguf_path(config.model)
        kwargs: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
        dtype = _resolve_dtype(torch, options.dtype)
        device = _resolve_device(torch, options.device)
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                directory, dtype=dtype, attn_implementation=options.attn_implementation, **kwargs
            )
        except (OSError, ValueError) as exc:
            raise BackendError(f"could not load model {config.model!r}: {exc}") from exc
        model.to(device).eval()
        tokenizer = load_tokenizer(config.tokenizer or config.model, "the hf backend")
        return cls(model, tokenizer, batch_size=options.batch_size, batching=options.hf_batching)

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._wakeup = asyncio.Event()
            run = self._run_continuous if self.batching == "continuous" else self._run_lockstep
            self._worker = loop.create_task(run())
        item = _Pending(prompt.text, params, loop.create_future())
        self._queue.append(item)
        assert self._wakeup is not None
        self._wakeup.set()
        return await item.future

    def _take(self, limit: int, params: SamplingParams | None = None) -> list[_Pending]:
        """Up to `limit` waiting windows, oldest first, that can join a batch decoding with
        `params` (default: the oldest one's); windows nobody waits for any more are dropped on
        the way, never generated."""
        self._queue = [p for p in self._queue if p.wanted]
        if not self._queue or limit <= 0:
            return []
        params = self._queue[0].params if params is None else params
        same = _same_decoding if self.batching == "continuous" else SamplingParams.__eq__
        batch = [p for p in self._queue if same(p.params, params)][:limit]
        taken = {id(p) for p in batch}
        self._queue = [p for p in self._queue if id(p) not in taken]
        return batch

    async def _run_lockstep(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while batch := self._take(self.batch_size):
                params = batch[0].params
                try:
                    outs = await loop.run_in_executor(
                        self._executor, self._generate_batch, [p.prompt for p in batch], params
                    )
                except Exception as exc:  # delivered to every waiting caller
                    _fail(batch, exc)
                    continue
                for p, out in zip(batch, outs, strict=True):
                    if p.wanted:
                        p.future.set_result(out)

    async def _run_continuous(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wakeup is not None
        if self._batcher is None:
            self._batcher = _ContinuousBatch(self.model, self._tokenizer, self._eos_ids,
                                             self.logits_processors)
        batcher = self._batcher
        rows: list[_Pending] = []  # the windows in the running batch, in cache row order
        # A row leaves the batch once its caller no longer waits: answered, or cancelled.
        while True:
            rows_alive = [p.wanted for p in rows]
            if not any(rows_alive) and not any(p.wanted for p in self._queue):
                rows = []
                batcher.reset()
                await self._wakeup.wait()
                self._wakeup.clear()
                continue
            params = rows[0].params if rows else None
            admit = self._take(self.batch_size - sum(rows_alive), params)
            rows = [p for p, alive in zip(rows, rows_alive, strict=True) if alive] + admit

            def more_work(live: int = len(rows)) -> bool:  # read from the worker thread
                return live < self.batch_size and any(p.wanted for p in self._queue)

            try:
                finished = await loop.run_in_executor(
                    self._executor, batcher.advance, rows_alive, [p.prompt for p in admit],
                    [p.params for p in admit], more_work,
                )
            except Exception as exc:  # delivered to every window of the batch
                _fail(rows, exc)
                rows = []
                batcher.reset()
                continue
            for index, out in finished:  # answered rows are dropped at the next advance
                if rows[index].wanted:
                    rows[index].future.set_result(out)

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
        processors = list(self.logits_processors)
        if params.allowed_tokens:
            processors.append(_AllowOnly(allowed_ids(tok, params.allowed_tokens)))
        if processors:
            from transformers import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList(processors)
        if params.logprobs:
            kwargs.update(output_logits=True, return_dict_in_generate=True)
        return kwargs

    def _generate_batch(self, prompts: list[str], params: SamplingParams) -> list[Generation]:
        """Lock-step: one `generate()` call for the whole batch."""
        import torch

        tok = self._tokenizer
        # The chat template already rendered every special token the model needs.
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
        enc = {k: v.to(self.model.device, non_blocking=True) for k, v in enc.items()}
        kwargs = self._generate_kwargs(params)
        if params.stop:  # on the generated text only (transformers' stop_strings see the prompt)
            from transformers import StoppingCriteriaList

            kwargs["stopping_criteria"] = StoppingCriteriaList(
                [_StopOnGenerated(tok, params.stop, enc["input_ids"].shape[1])])
        if params.temperature > 0 and params.seed is not None:
            torch.manual_seed(params.seed)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        width = enc["input_ids"].shape[1]
        sequences = out.sequences if params.logprobs else out
        rows = sequences[:, width:].tolist()
        records: list[list[dict[int, float]]] | None = None
        if params.logprobs:
            allowed = allowed_ids(tok, params.allowed_tokens)
            records = [[] for _ in rows]
            for step, logits in enumerate(out.logits):
                logprobs = torch.log_softmax(logits.float(), dim=-1)
                chosen = [row[step] if step < len(row) else None for row in rows]
                for i, rec in enumerate(_top_records(logprobs, params.logprobs, chosen, allowed)):
                    records[i].append(rec)
        return [
            _generation(tok, row, int(n_prompt), self._eos_ids, params,
                        None if records is None else records[i])
            for i, (row, n_prompt) in enumerate(zip(rows, prompt_tokens, strict=True))
        ]

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        self._executor.shutdown(wait=False, cancel_futures=True)


def _same_decoding(a: SamplingParams, b: SamplingParams) -> bool:
    """Windows may share a continuous batch when they decode alike (budgets may differ)."""
    return (a.temperature, a.top_p, a.seed) == (b.temperature, b.top_p, b.seed)


def _fail(batch: list[_Pending], exc: Exception) -> None:
    error = exc if isinstance(exc, BackendError) else BackendError(f"generation failed: {exc!r}")
    for p in batch:
        if p.wanted:
            p.future.set_exception(error)


def _generation(tok: Any, row: list[int], prompt_tokens: int, eos_ids: set[int],
                params: SamplingParams | None = None,
                records: list[dict[int, float]] | None = None) -> Generation:
    """A generated row cut after its first EOS (the EOS counts as an output token), or after
    the token that completes a stop string (the text then ends before the stop string)."""
    n, finish = len(row), "length"
    for i, token in enumerate(row):
        if token in eos_ids:
            n, finish = i + 1, "stop"
            break
    text: str | None = None
    if params is not None and params.stop:
        cut = _stop_cut(tok, row[:n], params.stop)
        if cut is not None:
            (n, text), finish = cut, "stop"
    if text is None:
        text = tok.decode(row[:n], skip_special_tokens=True)
    logprobs = None
    if params is not None and params.logprobs and records is not None:
        logprobs = tuple(_by_text(tok, rec) for rec in records[:n])
    return Generation(text, prompt_tokens, n, finish, logprobs=logprobs)


def _stop_cut(tok: Any, row: list[int], stops: Sequence[str]) -> tuple[int, str] | None:
    """(tokens up to the one completing the first stop string, the text before it), or None."""
    text = tok.decode(row, skip_special_tokens=True)
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    if not found:
        return None

    def has_stop(k: int) -> bool:
        prefix = tok.decode(row[:k], skip_special_tokens=True)
        return any(s in prefix for s in stops)

    low, high = 1, len(row)  # the shortest prefix whose text holds a stop string
    while low < high:
        mid = (low + high) // 2
        if has_stop(mid):
            high = mid
        else:
            low = mid + 1
    return low, text[:min(found)]


def _by_text(tok: Any, record: dict[int, float]) -> dict[str, float]:
    """Token ids -> their texts (the most likely id wins where two decode alike)."""
    out: dict[str, float] = {}
    for token, value in sorted(record.items(), key=lambda kv: -kv[1]):
        out.setdefault(_token_text(tok, token), value)
    return out


@lru_cache(maxsize=1 << 20)
def _token_text(tok: Any, token: int) -> str:
    """One token's text (cached: a long generation's log-probabilities repeat most ids)."""
    return str(tok.decode([token]))


def allowed_ids(tok: Any, tokens: Sequence[str], backend: str = "hf") -> list[int]:
    """The vocabulary ids of `tokens`, each of which must be one token."""
    ids = []
    for token in tokens:
        enc = tok(token, add_special_tokens=False)["input_ids"]
        if len(enc) != 1:
            raise LogprobsUnavailableError(
                f"the {backend} backend cannot restrict generation to {token!r}: this model's "
                f"vocabulary encodes it as {len(enc)} tokens"
            )
        ids.append(int(enc[0]))
    return ids


def _top_records(logprobs: Any, k: int, chosen: Sequence[int | None],
                 allowed: Sequence[int]) -> list[dict[int, float]]:
    """Per row of `logprobs` [rows, vocab]: the top `k`, the chosen token and `allowed`."""
    values, ids = logprobs.topk(min(k, logprobs.shape[-1]), dim=-1)
    extra = sorted({*allowed, *(c for c in chosen if c is not None)})
    extra_values = logprobs[:, extra].tolist() if extra else [[] for _ in chosen]
    out = []
    for row_ids, row_values, row_extra, token in zip(ids.tolist(), values.tolist(), extra_values,
                                                     chosen, strict=True):
        record = dict(zip(row_ids, row_values, strict=True))
        for t, v in zip(extra, row_extra, strict=True):
            if t == token or t in allowed:
                record.setdefault(t, v)
        out.append(record)
    return out


class _StopOnGenerated:
    """A stopping criterion: a row is done once its generated text holds a stop string."""

    def __init__(self, tok: Any, stops: Sequence[str], prompt_width: int) -> None:
        self.tok, self.stops, self.width = tok, list(stops), prompt_width

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = []
        for row in input_ids[:, self.width:].tolist():
            tail = self.tok.decode(row[-_STOP_TAIL:], skip_special_tokens=True)
            done.append(any(stop in tail for stop in self.stops))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class _AllowOnly:
    """A logits processor that leaves only `ids` choosable."""

    def __init__(self, ids: Sequence[int]) -> None:
        self.ids = list(ids)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        mask = torch.full_like(scores, float("-inf"))
        mask[:, self.ids] = 0.0
        return scores + mask


class _ContinuousBatch:
    """A running batch of sequences over one left-padded `DynamicCache`, used from one thread.

    `advance` merges newly admitted prompts into the cache (prefilled on their own, then padded
    on the left to the running length) and decodes until a row finishes; `keep` drops finished
    rows and the padding columns nobody needs any more. Row i of the cache is the caller's row i.
    """

    def __init__(self, model: Any, tokenizer: Any, eos_ids: set[int],
                 processors: Sequence[Any] = ()) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.processors = list(processors)
        import inspect

        # transformers renamed `past_key_values` to `cache` (the old name warns from 5.2x on).
        names = inspect.signature(model.forward).parameters
        self.cache_kwarg = "cache" if "cache" in names else "past_key_values"
        self.logits_to_keep = "logits_to_keep" in names
        self.reset()

    def reset(self) -> None:
        self.cache: Any = None
        self.mask: Any = None  # [rows, cache length + 1]: the cache's columns and the next token
        self.next_ids: Any = None  # [rows, 1]: each row's last sampled token, not yet in the cache
        self.ids: Any = None  # [rows, like mask]: prompt + output ids (only for processors)
        self.generated: list[list[int]] = []
        self.row_params: list[SamplingParams] = []  # each row's own (stop, logprobs, allowed)
        self.records: list[list[dict[int, float]]] = []  # each row's logprobs, when asked for
        self.budgets: list[int] = []
        self.prompt_tokens: list[int] = []
        self.params: SamplingParams | None = None

    def keep(self, keep: list[bool]) -> None:
        import torch

        if all(keep):
            return
        if not any(keep):
            self.reset()
            return
        index = torch.tensor([i for i, k in enumerate(keep) if k], device=self.mask.device)
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)
            layer.values = layer.values.index_select(0, index)
        self.mask = self.mask.index_select(0, index)
        self.next_ids = self.next_ids.index_select(0, index)
        if self.ids is not None:
            self.ids = self.ids.index_select(0, index)
        for name in ("generated", "row_params", "records", "budgets", "prompt_tokens"):
            setattr(self, name, [v for v, k in zip(getattr(self, name), keep, strict=True) if k])
        # Columns that are padding in every remaining row are never attended to: drop them.
        unused = int((self.mask.sum(dim=0) == 0).long().cumprod(dim=0).sum())
        if unused:
            self.mask = self.mask[:, unused:]
            if self.ids is not None:
                self.ids = self.ids[:, unused:]
            for layer in self.cache.layers:
                layer.keys = layer.keys[:, :, unused:]
                layer.values = layer.values[:, :, unused:]

    def advance(self, alive: list[bool], prompts: list[str], params: list[SamplingParams],
                more_work: Any) -> list[tuple[int, Generation]]:
        """Drop the rows not `alive`, admit `prompts`, then decode until a row finishes, or
        until `more_work()` says windows wait for a free slot; `(row, generation)` of each
        finished row (rows numbered after the drop, admitted rows last)."""
        import torch

        with torch.inference_mode():
            self.keep(alive)
            if prompts:
                self._admit(prompts, params)
            finished = self._finished()
            steps = 0
            while not finished and steps < _MAX_STEPS_PER_CALL and not (steps and more_work()):
                self._step()
                steps += 1
                finished = self._finished()
        return finished

    def _finished(self) -> list[tuple[int, Generation]]:
        out = []
        for i, (row, budget) in enumerate(zip(self.generated, self.budgets, strict=True)):
            params = self.row_params[i]
            if (len(row) >= budget or (row and row[-1] in self.eos_ids)
                    or (params.stop and self._stopped(row, params.stop))):
                out.append((i, _generation(self.tokenizer, row, self.prompt_tokens[i],
                                           self.eos_ids, params, self.records[i])))
        return out

    def _stopped(self, row: list[int], stops: Sequence[str]) -> bool:
        tail = self.tokenizer.decode(row[-_STOP_TAIL:], skip_special_tokens=True)
        return any(stop in tail for stop in stops)

    def _admit(self, prompts: list[str], params: list[SamplingParams]) -> None:
        import torch
        from transformers import DynamicCache

        if self.params is None or self.cache is None:
            self.params = params[0]
            if self.params.temperature > 0 and self.params.seed is not None:
                torch.manual_seed(self.params.seed)
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        device = self.model.device
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        cache = DynamicCache(config=self.model.config)
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        # Only the last position's logits are needed (as `generate` does: logits_to_keep=1).
        keep = {"logits_to_keep": 1} if self.logits_to_keep else {}
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         use_cache=True, **keep, **{self.cache_kwarg: cache})
        if not all(type(layer).__name__ == "DynamicLayer" for layer in cache.layers):
            raise BackendError(
                "continuous batching needs a full-attention KV cache; this model's is "
                f"{type(cache.layers[0]).__name__} (use --hf-batching lockstep)"
            )
        first, records = self._sample(out.logits[:, -1, :], ids, params)
        self.row_params += params
        self.records += [[r] for r in records]
        self.prompt_tokens += mask.sum(dim=1).tolist()
        self.budgets += [p.max_new_tokens for p in params]
        self.generated += [[t] for t in first.tolist()]
        new_mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        new_ids = torch.cat([ids, first[:, None]], dim=1) if self.processors else None
        if self.cache is None:
            self.cache, self.mask, self.next_ids = cache, new_mask, first[:, None]
            self.ids = new_ids
            return
        width = max(self.mask.shape[1], new_mask.shape[1])
        self.mask = torch.cat([_pad_left(self.mask, width, 1), _pad_left(new_mask, width, 1)])
        if new_ids is not None:
            pad = self.tokenizer.pad_token_id
            self.ids = torch.cat([_pad_left(self.ids, width, 1, pad),
                                  _pad_left(new_ids, width, 1, pad)])
        layers: list[Any] = list(self.cache.layers)  # plain DynamicLayers (checked on entry)
        new_layers: list[Any] = list(cache.layers)
        for old, new in zip(layers, new_layers, strict=True):
            old.keys = torch.cat([_pad_left(old.keys, width - 1, 2),
                                  _pad_left(new.keys, width - 1, 2)])
            old.values = torch.cat([_pad_left(old.values, width - 1, 2),
                                    _pad_left(new.values, width - 1, 2)])
        self.next_ids = torch.cat([self.next_ids, first[:, None]])

    def _step(self) -> None:
        import torch

        positions = self.mask.long().sum(dim=1, keepdim=True) - 1
        out = self.model(input_ids=self.next_ids, attention_mask=self.mask,
                         position_ids=positions, use_cache=True, **{self.cache_kwarg: self.cache})
        tokens, records = self._sample(out.logits[:, -1, :], self.ids, self.row_params)
        for row_records, record in zip(self.records, records, strict=True):
            row_records.append(record)
        self.next_ids = tokens[:, None]
        if self.ids is not None:
            self.ids = torch.cat([self.ids, self.next_ids], dim=1)
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        for row, token in zip(self.generated, tokens.tolist(), strict=True):
            row.append(token)

    def _sample(self, logits: Any, ids: Any, rows: Sequence[SamplingParams]
                ) -> tuple[Any, list[dict[int, float]]]:
        """The next token of each row, and each row's log-probabilities record (empty unless
        the row asked for them)."""
        import torch

        raw = logits
        tokens = self._choose(logits, ids, rows)
        records: list[dict[int, float]] = [{} for _ in rows]
        want = [i for i, p in enumerate(rows) if p.logprobs]
        if want:
            chosen = tokens.tolist()
            logprobs = torch.log_softmax(raw[want].float(), dim=-1)
            k = max(rows[i].logprobs for i in want)
            allowed = sorted({t for i in want for t in self._allowed(rows[i])})
            for i, record in zip(want, _top_records(logprobs, k, [chosen[i] for i in want],
                                                    allowed), strict=True):
                mine = set(self._allowed(rows[i]))
                top = sorted(record.items(), key=lambda kv: -kv[1])[:rows[i].logprobs]
                records[i] = {t: v for t, v in record.items()
                              if t in mine or t == chosen[i] or (t, v) in top}
        return tokens, records

    def _allowed(self, params: SamplingParams) -> list[int]:
        return allowed_ids(self.tokenizer, params.allowed_tokens) if params.allowed_tokens else []

    def _choose(self, logits: Any, ids: Any, rows: Sequence[SamplingParams]) -> Any:
        import torch

        params = self.params
        assert params is not None
        for processor in self.processors:
            logits = processor(ids, logits)
        if any(p.allowed_tokens for p in rows):
            mask = torch.zeros_like(logits)
            for i, p in enumerate(rows):
                if p.allowed_tokens:
                    mask[i] = float("-inf")
                    mask[i, self._allowed(p)] = 0.0
            logits = logits + mask
        if params.temperature <= 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits.float() / params.temperature, dim=-1)
        if params.top_p < 1.0:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            drop = sorted_probs.cumsum(dim=-1) - sorted_probs > params.top_p
            sorted_probs = sorted_probs.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        return torch.multinomial(probs, 1)[:, 0]


def _pad_left(tensor: Any, width: int, dim: int, value: int = 0) -> Any:
    """`tensor` padded with `value` on the left of `dim` to `width`."""
    import torch

    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_full(shape, value), tensor], dim=dim)


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
