"""Listwise ReasonRank against pointwise Rank1 on the same first-stage input: the paper's
efficiency claim ("1.8 vs 4.8 s per query on earth science") on your hardware.

Input: BRIGHT earth_science queries with their ReasonIR top-k lists (`../shared/data`); passage
texts are synthetic, 0.6-1.8 KB per docid built from TREC DL19 passages (BRIGHT's own texts are
on the hub only), so that a 20-passage window has about the 5,000-5,700 prompt tokens the
reference measured on BRIGHT. Both methods run through the same scheduler, concurrency cap
and hf backend.

1. Counts (no model): prompts, prompt tokens (real Qwen2.5 tokenizer) and generated tokens per
   query, the generated tokens at `--listwise-output-tokens` per window (the reference measured
   600-750 with the 7B) and `--rank1-output-tokens` per document (an assumption: read the
   `output_tokens` of a real Rank1 trace and pass it).
2. Timing: `--device cpu` (default) the tiny random Qwen2 with the output lengths scaled by
   `--scale` (0.1); `--device cuda` random weights of Qwen2.5-7B's shape in bfloat16 with the
   full output lengths. EOS is banned, so every generation runs to its length: listwise windows
   generate exactly their length, Rank1 documents their length (rarely a stop string), then
   usually the one-token repair, as a model that never closes its reasoning would.

    python benchmarks/bench_methods.py                      # CPU, tiny model
    python benchmarks/bench_methods.py --device cuda --queries 8 --depth 100 --batch-size 64

The last line reads `methods: listwise X s/query, rank1 Y s/query`.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from reasonrank.backends.hf import HFBackend
from reasonrank.config import RerankConfig
from reasonrank.core.methods.rank1 import Rank1Method
from reasonrank.core.prompts import PromptBuilder
from reasonrank.core.scheduler import Scheduler
from reasonrank.core.windows import pass_windows
from reasonrank.io import read_requests, read_trec_run
from reasonrank.types import Candidate, Query, Request

SHARED = Path(os.environ.get("REASONRANK_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))
TASK = "earth_science"
QWEN25_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                 num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                 max_position_embeddings=32768, rope_theta=1_000_000.0,
                 tie_word_embeddings=False, rms_norm_eps=1e-6)


def build_requests(n_queries: int, depth: int) -> list[Request]:
    """BRIGHT earth_science queries and ReasonIR lists; synthetic 0.6-1.8 KB text per docid."""
    pool = [c.text for r in read_requests(SHARED / "trec_dl/bm25_top100_dl19.json.gz")
            for c in r.candidates]
    run = read_trec_run(SHARED / f"bright/runs_reasonir_gpt4cot_top100/{TASK}.txt.gz")
    with gzip.open(SHARED / f"bright/examples/{TASK}.jsonl.gz", "rt") as f:
        queries = {str(e["id"]): e["query"] for e in map(json.loads, f)}

    def text_of(docid: str) -> str:
        rng = random.Random(int(hashlib.md5(docid.encode()).hexdigest(), 16))
        target, parts = rng.randint(600, 1800), []
        while sum(map(len, parts)) < target:
            parts.append(rng.choice(pool))
        return " ".join(parts)[:target]

    qids = [q for q in run if q in queries and len(run[q]) >= depth][:n_queries]
    return [Request(Query(queries[q], q), [Candidate(d, text_of(d), s) for d, s in run[q][:depth]])
            for q in qids]


def counts(tokenizer: Any, requests: list[Request], listwise_len: int,
           rank1_len: int) -> dict[str, dict[str, float]]:
    """Prompts, prompt tokens and generated tokens per query for both methods."""
    builder = PromptBuilder(tokenizer, "reasoning", 512)
    rank1 = Rank1Method(RerankConfig(backend="fake")).for_dataset(f"bright/{TASK}")
    out = {"listwise": [0, 0, 0], "rank1": [0, 0, 0]}
    for request in requests:
        n = len(request.candidates)
        for _, start, end in pass_windows(n, 20, 10, 0, n, 1):
            # the first window's order: the token counts do not depend on the order
            prompt = builder.render_request(request, start, end)
            out["listwise"][0] += 1
            out["listwise"][1] += len(tokenizer(prompt.text, add_special_tokens=False).input_ids)
            out["listwise"][2] += listwise_len
        for c in request.candidates:
            text = rank1.prompt(request.query.text, c).text
            out["rank1"][0] += 1
            out["rank1"][1] += len(tokenizer(text, add_special_tokens=False).input_ids)
            out["rank1"][2] += rank1_len
    q = max(1, len(requests))
    return {m: {"prompts": v[0] / q, "prompt_tokens": v[1] / q, "generated_tokens": v[2] / q}
            for m, v in out.items()}


class _BanEos:
    """Every generation runs to its budget (random weights decide nothing)."""

    def __init__(self, eos: list[int]) -> None:
        self.eos = eos

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        scores[:, self.eos] = float("-inf")
        return scores


def load_model(device: str, work: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    from reasonrank.offline import build_qwen25_tokenizer, build_tiny_qwen2

    tok_dir = build_qwen25_tokenizer(work / "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    if device == "cpu":
        model_dir = build_tiny_qwen2(work / "tiny", seed=0, tokenizer_dir=tok_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        return model, tokenizer
    config = Qwen2Config(**QWEN25_7B)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
    return model, tokenizer


def seconds_per_query(model: Any, tokenizer: Any, requests: list[Request], method: str,
                      output_tokens: int, batch_size: int, concurrency: int) -> float:
    eos = sorted({tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")})
    backend = HFBackend(model, tokenizer, batch_size=batch_size,
                        logits_processors=[_BanEos(eos)])
    config = RerankConfig(backend="hf", method=method, max_new_tokens=output_tokens,
                          concurrency=concurrency, top_k=len(requests[0].candidates))
    scheduler = Scheduler(backend, PromptBuilder(tokenizer, "reasoning", 512), config)
    scheduler.method = scheduler.method.for_dataset(f"bright/{TASK}")  # type: ignore[union-attr]

    async def run() -> float:
        began = time.perf_counter()
        await scheduler.rerank_all(requests)
        elapsed = time.perf_counter() - began
        await backend.aclose()
        return elapsed

    return asyncio.run(run()) / len(requests)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu (tiny model) or cuda (7B shape)")
    ap.add_argument("--queries", type=int, default=None,
                    help="timed queries (default: 2 on cpu, 8 on cuda)")
    ap.add_argument("--depth", type=int, default=None,
                    help="first-stage depth reranked (default: 20 on cpu, 100 on cuda)")
    ap.add_argument("--count-queries", type=int, default=10, help="queries counted (top 100)")
    ap.add_argument("--listwise-output-tokens", type=int, default=650)
    ap.add_argument("--rank1-output-tokens", type=int, default=250)
    ap.add_argument("--scale", type=float, default=None,
                    help="output lengths x this in the timing (default: 0.1 on cpu, 1 on cuda)")
    ap.add_argument("--batch-size", type=int, default=None, help="hf batch (8 cpu, 64 cuda)")
    args = ap.parse_args()
    cpu = args.device == "cpu"
    queries = args.queries or (2 if cpu else 8)
    depth = args.depth or (20 if cpu else 100)
    scale = args.scale if args.scale is not None else (0.1 if cpu else 1.0)
    batch = args.batch_size or (8 if cpu else 64)
    if not SHARED.is_dir():
        print(f"shared data {SHARED} is missing (set REASONRANK_SHARED_DATA)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer = load_model(args.device, Path(tmp))
        table = counts(tokenizer, build_requests(args.count_queries, 100),
                       args.listwise_output_tokens, args.rank1_output_tokens)
        print(f"per query, {TASK}, top 100, {args.count_queries} queries "
              "(generated tokens at the assumed output lengths):")
        for method, row in table.items():
            print(f"  {method:9s} prompts {row['prompts']:6.1f}  prompt tokens "
                  f"{row['prompt_tokens']:9.0f}  generated tokens {row['generated_tokens']:8.0f}")
        requests = build_requests(queries, depth)
        lw_len = max(1, round(args.listwise_output_tokens * scale))
        r1_len = max(1, round(args.rank1_output_tokens * scale))
        print(f"timing: {args.device}, {queries} queries x top {depth}, hf batch {batch}, "
              f"output tokens listwise {lw_len}/window, rank1 {r1_len}/document")
        results = {}
        for method, length in (("listwise", lw_len), ("rank1", r1_len)):
            results[method] = seconds_per_query(model, tokenizer, requests, method, length,
                                                batch, concurrency=4 * batch)
            print(f"  {method}: {results[method]:.3f} s/query")
    print(f"methods: listwise {results['listwise']:.3f} s/query, "
          f"rank1 {results['rank1']:.3f} s/query")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
