"""GPU throughput of the hf and vllm backends on a Qwen2.5-7B-shaped model at BRIGHT prompt sizes.

A randomly initialised model of the Qwen2.5-7B shape is built directly on the GPU in bf16 (no
checkpoint, no network), with the real Qwen2.5 tokenizer rebuilt offline. Requests are BRIGHT
sized: 100 candidates per query, each passage made of concatenated TREC DL19 (MS MARCO)
passages and truncated to 512 tokens by our `PromptBuilder`, so a 20-passage window prompt is
about 5,500 tokens. The `HFBackend` runs them through `Reranker` (the window scheduler), 9
windows per query, and every window generates exactly `--new-tokens` tokens (random weights
never stop on their own). For each batch size it prints seconds per query, windows/s, prefill
tokens/s, decode tokens/s and peak GPU memory, one line as soon as a setting is measured.

    python benchmarks/gpu_rerank.py --data DIR [--batch-sizes 8 16 32] [--new-tokens 64]
    python benchmarks/gpu_rerank.py --data DIR --backend vllm [--max-num-seqs 64 256]
    python benchmarks/gpu_rerank.py --tiny --data /work/shared/data      # CPU smoke test

`--data DIR` is the folder holding `trec_dl/bm25_top100_dl19.json.gz`. By default each setting
runs as many queries as its batch size (all in flight at once, so every batch is full: windows
of one query run one after another); `--queries N` fixes the count instead. Settings run in
increasing batch size and stop once the next one would overrun `--time-budget` seconds
(counted from start-up, model init included).

`--backend vllm` (default `both`: hf, then vllm where it is installed) runs the vllm backend on
the same shape with dummy weights (`load_format="dummy"`, no checkpoint), prefix caching on, its
default `--concurrency` (256) or `--queries`, once per `--max-num-seqs` value (default 256): one
window per query is in flight, so N queries keep up to N sequences decoding. vLLM must be
installed (`pip install 'reasonrank[vllm]'`, its own environment: it brings a CUDA torch).
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import gc  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import ftfy  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM  # noqa: E402

from reasonrank.backends.hf import HFBackend  # noqa: E402
from reasonrank.config import RerankConfig  # noqa: E402
from reasonrank.core.prompts import PromptBuilder  # noqa: E402
from reasonrank.io import read_requests  # noqa: E402
from reasonrank.offline import build_qwen25_tokenizer  # noqa: E402
from reasonrank.reranker import Reranker  # noqa: E402
from reasonrank.types import (  # noqa: E402
    Candidate,
    Query,
    Request,
    SamplingParams,
)

try:
    from transformers.generation.streamers import BaseStreamer
except ImportError:  # pragma: no cover
    BaseStreamer = object  # type: ignore[misc,assignment]

QWEN25_7B = dict(
    hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
    num_key_value_heads=4, vocab_size=152064, max_position_embeddings=32768, rope_theta=1e6,
    tie_word_embeddings=False,
)
TINY = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, vocab_size=152064, max_position_embeddings=32768, rope_theta=1e6,
    tie_word_embeddings=False,
)
EOS = [151645, 151643]
PAD = 151643
WINDOWS_PER_QUERY = 9  # 100 candidates, window 20, step 10


def log(*parts: Any) -> None:
    print(*parts, flush=True)


def elapsed() -> float:
    return time.perf_counter() - T0


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------
# data


def build_requests(data: Path, n_queries: int, passage_tokens: int, n_passages: int = 100,
                   seed: int = 0) -> list[Request]:
    """BRIGHT-sized requests of DL19 passage text (seeded, so every run sends the same)."""
    dl19 = read_requests(data / "trec_dl" / "bm25_top100_dl19.json.gz")
    rng = random.Random(seed)
    raw = [c.text for r in dl19 for c in r.candidates]
    pool = [ftfy.fix_text(t) for t in rng.sample(raw, min(len(raw), 1500))]
    # bench_pipeline's BRIGHT-sized texts: 2,000-3,000 characters (most pass 512 tokens);
    # scaled down with shorter truncation so the smoke test stays small.
    scale = min(1.0, passage_tokens / 512)
    requests = []
    for q in range(n_queries):
        cands = []
        for d in range(n_passages):
            chars, parts = int(scale * rng.randint(2000, 3000)), []
            while sum(map(len, parts)) < chars:
                parts.append(rng.choice(pool))
            text = " ".join(parts)[:chars]
            cands.append(Candidate(f"q{q}d{d}", text, float(n_passages - d)))
        query = f"What explains the question {q} about {pool[q % len(pool)][:60]}?"
        requests.append(Request(Query(query, f"q{q}"), cands))
    return requests


# ---------------------------------------------------------------------------------------------
# model


def build_model(tiny: bool, device: str, attn: str) -> tuple[Any, float]:
    shape = TINY if tiny else QWEN25_7B
    config = Qwen2Config(
        **shape, rms_norm_eps=1e-6, use_sliding_window=False, bos_token_id=PAD,
        eos_token_id=EOS[0], pad_token_id=PAD, initializer_range=0.02,
        attn_implementation=attn,
    )
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    began = time.perf_counter()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(0)
        # Parameters are allocated on the device in the target dtype and initialised there
        # (normal(0, 0.02), norms at 1): no CPU copy of 15 GB of weights.
        with torch.device(device):
            model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.eval()  # parameters are already in `dtype`; the RoPE buffer stays float32
    model.generation_config = GenerationConfig(
        bos_token_id=PAD, eos_token_id=EOS, pad_token_id=PAD, do_sample=False
    )
    with torch.inference_mode():  # random weights must not give NaNs
        ids = torch.tensor([[PAD + 2, 9707, 11, 1879, 13]], device=device)
        logits = model(input_ids=ids).logits
        if not torch.isfinite(logits).all():
            raise SystemExit("random model gives non-finite logits")
    sync(device)
    return model, time.perf_counter() - began


# ---------------------------------------------------------------------------------------------
# backend with fixed-length outputs and per-batch timing


class _Timer(BaseStreamer):
    """Marks when the first new token reaches the host (the end of prefill)."""

    def __init__(self) -> None:
        self.first: float | None = None

    def put(self, value: Any) -> None:
        if value.ndim == 2 and value.shape[-1] >= 16:  # the prompt, handed over before prefill
            return
        if self.first is None:
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


@dataclass
class BatchStat:
    size: int
    prompt_tokens: int
    padded_tokens: int
    output_tokens: int
    prefill_s: float
    decode_s: float


class FixedLengthHF(HFBackend):
    """Benchmark only: every window generates exactly `new_tokens` tokens; batches are timed."""

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int, new_tokens: int,
                 device: str) -> None:
        super().__init__(model, tokenizer, batch_size=batch_size)
        self.new_tokens = new_tokens
        self.device = device
        self.stats: list[BatchStat] = []
        self._timer = _Timer()

    def _generate_kwargs(self, params: SamplingParams) -> dict[str, Any]:
        kwargs = super()._generate_kwargs(params)
        kwargs.update(min_new_tokens=self.new_tokens, max_new_tokens=self.new_tokens,
                      streamer=self._timer)
        return kwargs

    def _generate_batch(self, prompts: list[str], params: SamplingParams) -> list[Any]:
        sync(self.device)
        self._timer = _Timer()
        began = time.perf_counter()
        outs = super()._generate_batch(prompts, params)
        sync(self.device)
        done = time.perf_counter()
        first = self._timer.first if self._timer.first is not None else done
        width = max(o.prompt_tokens for o in outs)
        self.stats.append(BatchStat(
            len(prompts), sum(o.prompt_tokens for o in outs), width * len(prompts),
            sum(o.output_tokens for o in outs), first - began, done - first,
        ))
        return outs


# ---------------------------------------------------------------------------------------------
# one setting


@dataclass
class Result:
    batch: int
    queries: int
    windows: int
    wall_s: float
    stats: list[BatchStat]
    peak_gib: float | None
    bad_lengths: int


def run_setting(model: Any, tokenizer: Any, requests: list[Request], batch: int,
                new_tokens: int, passage_tokens: int, device: str) -> Result:
    backend = FixedLengthHF(model, tokenizer, batch_size=batch, new_tokens=new_tokens,
                            device=device)
    config = RerankConfig(
        model="random-qwen2.5-7b-shape", backend="hf", template="reasoning",
        max_passage_tokens=passage_tokens, max_new_tokens=new_tokens, concurrency=batch,
        batch_size=batch, top_k=100, window_size=20, step=10,
    )
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    rr = Reranker(backend=backend, config=config)
    try:
        began = time.perf_counter()
        results = rr.rerank_batch(requests)
        sync(device)
        wall = time.perf_counter() - began
    finally:
        rr.close()
    windows = [w for r in results for w in r.windows]
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    bad = sum(1 for w in windows if w.output_tokens != new_tokens)
    return Result(batch, len(requests), len(windows), wall, backend.stats, peak, bad)


HEADER = (f"{'batch':>5} {'queries':>7} {'windows':>7} {'wall s':>7} {'s/query':>7} "
          f"{'win/s':>6} {'mean bs':>7} {'prompt tok':>10} {'pad %':>5} {'prefill tok/s':>13} "
          f"{'decode tok/s':>12} {'out tok/s':>9} {'gpu busy':>8} {'peak GiB':>8}")


def format_result(r: Result) -> str:
    s = r.stats
    prompt = sum(b.prompt_tokens for b in s)
    padded = sum(b.padded_tokens for b in s)
    out = sum(b.output_tokens for b in s)
    prefill = sum(b.prefill_s for b in s)
    decode = sum(b.decode_s for b in s)
    decoded = sum(b.output_tokens - b.size for b in s)  # tokens after the first of each row
    busy = (prefill + decode) / r.wall_s
    peak = f"{r.peak_gib:8.1f}" if r.peak_gib is not None else f"{'-':>8}"
    line = (f"{r.batch:>5} {r.queries:>7} {r.windows:>7} {r.wall_s:7.1f} "
            f"{r.wall_s / r.queries:7.2f} {r.windows / r.wall_s:6.2f} "
            f"{sum(b.size for b in s) / len(s):7.1f} {prompt / max(1, r.windows):10.0f} "
            f"{100 * (padded - prompt) / max(1, padded):5.1f} {prompt / prefill:13.0f} "
            f"{decoded / max(decode, 1e-9):12.1f} {out / r.wall_s:9.1f} {busy:8.0%} {peak}")
    if r.bad_lengths:
        line += f"  WARNING: {r.bad_lengths} windows without exactly the fixed output length"
    return line


# ---------------------------------------------------------------------------------------------
# time budget


@dataclass
class Calibration:
    prefill_per_token: float  # seconds per prompt token
    step_s: float  # seconds per decode step at small batch
    factor: float = 1.0  # measured / estimated, from the last setting


def estimate(cal: Calibration, batch: int, queries: int, new_tokens: int,
             prompt_tokens: float) -> float:
    rounds = WINDOWS_PER_QUERY * math.ceil(queries / batch)
    size = min(batch, queries)
    per_batch = size * prompt_tokens * cal.prefill_per_token + new_tokens * cal.step_s * (
        1 + size / 16)
    return 1.3 * max(cal.factor, 1.0) * rounds * per_batch


# ---------------------------------------------------------------------------------------------
# vLLM (only where it is installed)


def run_vllm(args: argparse.Namespace, tokenizer: Any, requests: list[Request],
             config_shape: dict[str, Any]) -> None:
    try:
        import vllm
    except Exception as exc:
        log(f"vllm: not installed ({type(exc).__name__}: {exc}); pip install 'reasonrank[vllm]'")
        return
    from reasonrank.backends.vllm import VLLMBackend

    class FixedLengthVLLM(VLLMBackend):
        def sampling_params(self, params: SamplingParams) -> Any:
            kwargs: dict[str, Any] = dict(
                temperature=0.0, max_tokens=args.new_tokens, min_tokens=args.new_tokens,
                ignore_eos=True, skip_special_tokens=True,
            )
            if self._final_only is not None:
                kwargs["output_kind"] = self._final_only
            return self._vllm.SamplingParams(**kwargs)

    model_dir = Path(tempfile.mkdtemp(prefix="reasonrank-vllm-"))
    Qwen2Config(**config_shape, rms_norm_eps=1e-6, use_sliding_window=False,
                bos_token_id=PAD, eos_token_id=EOS[0], dtype="bfloat16",
                architectures=["Qwen2ForCausalLM"]).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    log(f"vllm {vllm.__version__}: dummy weights, prefix caching on, "
        f"tensor_parallel_size {args.tensor_parallel_size}")
    for seqs in args.max_num_seqs:
        remaining = args.time_budget - elapsed()
        if remaining < 180:
            log(f"vllm max_num_seqs {seqs}: skipped ({remaining:.0f} s of the budget left)")
            break
        queries = args.queries or seqs
        try:
            began = time.perf_counter()
            backend = FixedLengthVLLM(
                str(model_dir), tokenizer=tokenizer, dtype="bfloat16", max_model_len=8192,
                gpu_memory_utilization=args.gpu_memory_utilization,
                tensor_parallel_size=args.tensor_parallel_size, max_num_seqs=seqs,
                engine_kwargs={"load_format": "dummy"},
            )
            log(f"vllm: engine up in {time.perf_counter() - began:.0f} s")
            config = RerankConfig(
                model=str(model_dir), backend="vllm", template="reasoning",
                max_passage_tokens=args.passage_tokens, max_new_tokens=args.new_tokens,
                concurrency=queries, max_num_seqs=seqs,
            )
            rr = Reranker(backend=backend, config=config)
            try:
                qs = requests[:queries]
                began = time.perf_counter()
                results = rr.rerank_batch(qs)
                wall = time.perf_counter() - began
            finally:
                rr.close()
        except Exception as exc:
            log(f"vllm max_num_seqs {seqs}: failed: {type(exc).__name__}: {str(exc)[:300]}")
            break
        windows = [w for r in results for w in r.windows]
        prompt = sum(w.prompt_tokens or 0 for w in windows)
        out = sum(w.output_tokens or 0 for w in windows)
        bad = sum(1 for w in windows if w.output_tokens != args.new_tokens)
        log(f"vllm: max_num_seqs {seqs}, {len(qs)} queries, {len(windows)} windows, "
            f"{wall:.1f} s, {wall / len(qs):.2f} s/query, {len(windows) / wall:.2f} windows/s, "
            f"{prompt / wall:.0f} prompt tok/s, {out / wall:.1f} out tok/s (end to end)"
            + (f"  WARNING: {bad} windows without exactly {args.new_tokens} tokens" if bad else ""))


# ---------------------------------------------------------------------------------------------


def run_hf(args: argparse.Namespace, tokenizer: Any, requests: list[Request],
           device: str) -> None:
    """The hf backend: warm-up, calibration, then one line per batch size."""
    model, init_s = build_model(args.tiny, device, args.attn)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"random {'tiny' if args.tiny else 'Qwen2.5-7B-shaped'} model: {n_params / 1e9:.2f} B "
        f"params, {next(model.parameters()).dtype}, built in {init_s:.1f} s "
        f"({elapsed():.0f} s since start)")

    # Warm-up and calibration: the first two windows of one query, 8 new tokens.
    builder = PromptBuilder(tokenizer, "reasoning", args.passage_tokens)
    prepared = builder.prepare(requests[0])
    prompts = [builder.render(prepared.query, prepared.passages[s:s + 20]).text
               for s in (80, 70)]
    warm = FixedLengthHF(model, tokenizer, batch_size=2, new_tokens=8, device=device)
    params = SamplingParams(max_new_tokens=8)
    for _ in range(2):  # the first call pays for kernel selection
        warm.stats.clear()
        warm._generate_batch(prompts, params)
    w = warm.stats[0]
    prompt_tokens = w.prompt_tokens / w.size
    cal = Calibration(w.prefill_s / w.prompt_tokens, w.decode_s / 7)
    log(f"warm-up: prompts of {prompt_tokens:.0f} tokens; batch 2: prefill {w.prefill_s:.2f} s, "
        f"decode {1000 * cal.step_s:.1f} ms/step ({elapsed():.0f} s since start)")
    del warm

    log(f"fixed {args.new_tokens} new tokens per window, {WINDOWS_PER_QUERY} windows per query, "
        f"passages cut at {args.passage_tokens} tokens; time budget {args.time_budget:.0f} s")
    log(HEADER)
    for batch in args.batch_sizes:
        queries = args.queries or batch
        guess = estimate(cal, batch, queries, args.new_tokens, prompt_tokens)
        if elapsed() + guess > args.time_budget:
            log(f"batch {batch}: skipped (estimated {guess:.0f} s; {elapsed():.0f} s of "
                f"{args.time_budget:.0f} s used)")
            break
        try:
            result = run_setting(model, tokenizer, requests[:queries], batch, args.new_tokens,
                                 args.passage_tokens, device)
        except Exception as exc:  # out of memory most likely: larger batches fail too
            log(f"batch {batch}: failed: {type(exc).__name__}: {str(exc)[:300]}")
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
            break
        log(format_result(result))
        cal.factor = result.wall_s / (guess / 1.3 / max(cal.factor, 1.0))
    log(f"hf done ({elapsed():.0f} s since start)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="folder holding trec_dl/bm25_top100_dl19.json.gz")
    parser.add_argument("--queries", type=int, default=None,
                        help="queries per setting (default: the setting's batch size)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                        help="default 8 16 32 (--tiny: 2 4)")
    parser.add_argument("--new-tokens", type=int, default=None,
                        help="output tokens per window (default 64; --tiny: 8)")
    parser.add_argument("--passage-tokens", type=int, default=None,
                        help="passage truncation (default 512; --tiny: 48)")
    parser.add_argument("--attn", default="sdpa", choices=("sdpa", "eager", "flash_attention_2"))
    parser.add_argument("--time-budget", type=float, default=420.0,
                        help="seconds from start-up; no setting starts that would overrun it")
    parser.add_argument("--tiny", action="store_true", help="tiny random model on the CPU")
    parser.add_argument("--tokenizer", help="tokenizer dir (default: Qwen2.5 rebuilt offline)")
    parser.add_argument("--backend", choices=("hf", "vllm", "both"), default="both",
                        help="both: hf, then vllm where installed")
    parser.add_argument("--max-num-seqs", type=int, nargs="+", default=[256],
                        help="vllm: one engine per value (default 256)")
    parser.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm: GPUs")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vllm")
    args = parser.parse_args()
    args.batch_sizes = sorted(set(args.batch_sizes or ([2, 4] if args.tiny else [8, 16, 32])))
    args.new_tokens = args.new_tokens or (8 if args.tiny else 64)
    args.passage_tokens = args.passage_tokens or (48 if args.tiny else 512)
    if args.tiny:
        device = "cpu"
        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    elif torch.cuda.is_available():
        device = "cuda"
    else:
        log("no CUDA device: use --tiny for the CPU smoke test")
        return 1

    log(f"torch {torch.__version__}, transformers {transformers.__version__}, device "
        f"{torch.cuda.get_device_name(0) if device == 'cuda' else 'cpu'}, attn {args.attn}")
    tok_dir = args.tokenizer or build_qwen25_tokenizer(
        Path(tempfile.gettempdir()) / "reasonrank-qwen25-tok")
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    vllm_sizes = args.max_num_seqs if args.backend != "hf" and not args.tiny else []
    n_requests = max(args.queries or 0, *args.batch_sizes, *vllm_sizes)
    requests = build_requests(args.data, n_requests, args.passage_tokens)
    log(f"{n_requests} requests x 100 passages built ({elapsed():.0f} s)")

    if args.backend in ("hf", "both") or args.tiny:
        run_hf(args, tokenizer, requests, device)

    if args.backend in ("vllm", "both") and not args.tiny:
        gc.collect()
        torch.cuda.empty_cache()
        run_vllm(args, tokenizer, requests, QWEN25_7B)
    log(f"total {elapsed():.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
