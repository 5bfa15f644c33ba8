"""The hf backend: continuous batching vs lock-step `generate()` batches, same windows.

Windows whose output lengths spread like real reasoning (lognormal, clipped to the budget): a
logits processor forces EOS once a window has generated its chosen number of tokens, on both
paths, so both decode exactly the same tokens. Lock-step: each batch of `--batch-size` windows
waits for its longest row; continuous: a finished window's slot takes the next one at once.
Both paths' greedy outputs are compared token for token.

    python benchmarks/bench_hf_batching.py                       # tiny random Qwen2, CPU
    python benchmarks/bench_hf_batching.py --device cuda --model-shape 7b --batch-size 48
    (96 windows: lock-step alone is about 2 x 3,172 decode steps, some 7 minutes on an H200)

`--model-shape 7b`: random weights shaped like Qwen2.5-7B (bf16), prompts of 5,000-5,700
tokens, output lengths with mean 750 and max 3,172 (BRIGHT-like); it prints seconds per
BRIGHT-sized query (10 windows over the top 100).

Last line: `hf: continuous X windows/s, lock-step Y windows/s`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import tempfile
import time
from typing import Any

from reasonrank.backends.hf import HFBackend
from reasonrank.types import Generation, Prompt, SamplingParams

SHAPES = {
    # name: (Qwen2Config overrides, prompt tokens range, output median, sigma, max new tokens)
    "tiny": ({}, (150, 400), 24.0, 0.7, 96),
    "7b": (dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                num_attention_heads=28, num_key_value_heads=4, vocab_size=152064),
           (5000, 5700), 650.0, 0.55, 3172),
}


class EosAt:
    """A logits processor that forces EOS when a row has generated its chosen length. Rows are
    told apart by their first `key` prompt tokens (each window's prompt starts differently)."""

    def __init__(self, pad: int, eos: int, key: int = 6) -> None:
        self.pad, self.eos, self.key = pad, eos, key
        self.targets: dict[tuple[int, ...], tuple[int, int]] = {}  # key -> (prompt len, length)

    def add(self, prompt_ids: list[int], length: int) -> None:
        self.targets[tuple(prompt_ids[: self.key])] = (len(prompt_ids), length)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        # Only small tensors leave the device: each row's first prompt tokens and its start.
        starts = (input_ids != self.pad).int().argmax(dim=1)
        index = starts[:, None] + torch.arange(self.key, device=input_ids.device)
        keys = input_ids.gather(1, index.clamp(max=input_ids.shape[1] - 1)).tolist()
        width = input_ids.shape[1]
        for r, (key, start) in enumerate(zip(keys, starts.tolist(), strict=True)):
            prompt_len, length = self.targets[tuple(key)]
            if width - start - prompt_len == length - 1:  # the next token is the last one
                scores[r, :] = -math.inf
                scores[r, self.eos] = 0.0
        return scores


def build_model(shape: str, device: str, tmp: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from reasonrank.offline import build_qwen25_tokenizer, build_tiny_qwen2

    if shape == "tiny":
        path = build_tiny_qwen2(f"{tmp}/tiny", seed=0)
        model = Qwen2ForCausalLM.from_pretrained(path, dtype=torch.float32)
        return model.to(device).eval(), AutoTokenizer.from_pretrained(path)
    tok_dir = build_qwen25_tokenizer(f"{tmp}/tok")
    config = Qwen2Config(**SHAPES[shape][0], max_position_embeddings=32768, rms_norm_eps=1e-6,
                         tie_word_embeddings=False, use_sliding_window=False,
                         bos_token_id=151643, eos_token_id=151645, pad_token_id=151643)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # random bf16 weights, built on the device
    try:
        with torch.device(device):
            model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    model.generation_config = GenerationConfig(eos_token_id=[151645, 151643],
                                               pad_token_id=151643, do_sample=False)
    return model.eval(), AutoTokenizer.from_pretrained(tok_dir)


def make_windows(tok: Any, n: int, shape: str, seed: int) -> tuple[list[str], list[int]]:
    """`n` prompts of the shape's lengths, each starting differently, and output lengths."""
    _, (low, high), median, sigma, budget = SHAPES[shape]
    rng = random.Random(seed)
    words = ["salt", "sea", "river", "rock", "rain", "cell", "heat", "price", "rent", "prime"]
    prompts, lengths = [], []
    for i in range(n):
        target = rng.randint(low, high)
        body = " ".join(rng.choice(words) for _ in range(target))
        ids = tok(f"window {i} of {n}: {body}", add_special_tokens=False)["input_ids"][:target]
        prompts.append(tok.decode(ids))
        lengths.append(max(1, min(budget, round(median * math.exp(sigma * rng.gauss(0, 1))))))
    return prompts, lengths


def run(backend: HFBackend, prompts: list[str], budget: int) -> tuple[float, list[Generation]]:
    async def go() -> list[Generation]:
        try:
            return await asyncio.gather(*(
                backend.generate(Prompt(p, ()), SamplingParams(max_new_tokens=budget))
                for p in prompts))
        finally:
            await backend.aclose()

    began = time.perf_counter()
    outs = asyncio.run(go())
    return time.perf_counter() - began, outs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model-shape", choices=tuple(SHAPES), default="tiny")
    parser.add_argument("--windows", type=int, default=None,
                        help="default: 4 x batch size (tiny), 2 x batch size (7b)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(min(torch.get_num_threads(), 2 if args.device == "cpu" else 16))
    budget = SHAPES[args.model_shape][4]
    n = args.windows or (4 if args.model_shape == "tiny" else 2) * args.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        model, tok = build_model(args.model_shape, args.device, tmp)
    prompts, lengths = make_windows(tok, n, args.model_shape, args.seed)
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    processor = EosAt(tok.pad_token_id if tok.pad_token_id is not None else eos, eos)
    for p, length in zip(prompts, lengths, strict=True):
        processor.add(tok(p, add_special_tokens=False)["input_ids"], length)
    print(f"{n} windows, batch {args.batch_size}, {args.model_shape} on {args.device}; output "
          f"tokens mean {sum(lengths) / n:.0f}, max {max(lengths)} (budget {budget})", flush=True)
    results = {}
    for mode in ("continuous", "lockstep"):
        backend = HFBackend(model, tok, batch_size=args.batch_size, batching=mode,
                            logits_processors=[processor])
        seconds, outs = run(backend, prompts, budget)
        results[mode] = (seconds, outs)
        print(f"{mode:10s} {seconds:7.2f} s  {n / seconds:7.3f} windows/s", flush=True)
    cont, lock = results["continuous"][1], results["lockstep"][1]
    same = [(a.text, a.output_tokens) for a in cont] == [(b.text, b.output_tokens) for b in lock]
    assert [g.output_tokens for g in lock] == lengths, "EOS was not forced where chosen"
    print(f"identical outputs token for token: {same}")
    if args.model_shape == "7b":
        for mode in ("continuous", "lockstep"):
            per_window = results[mode][0] / n
            print(f"{mode}: {10 * per_window:.2f} s per BRIGHT-sized query (10 windows)")
    c, lk = (n / results[m][0] for m in ("continuous", "lockstep"))
    print(f"hf: continuous {c:.3f} windows/s, lock-step {lk:.3f} windows/s")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
