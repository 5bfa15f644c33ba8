"""One SFT step and one GRPO step of a randomly initialised Qwen2.5-0.5B-shaped model, on a GPU
in bf16, through `reasonrank.training` (the same code as `reasonrank train sft|grpo`).

No checkpoint and no network: the model is built from a `Qwen2Config` of the 0.5B shape and
saved locally, the tokenizer is the real Qwen2.5 one rebuilt offline, and the training records
are synthetic (windows of 20 passages of `--passage-tokens` tokens with a teacher reasoning of
about `--reasoning-words` words), turned into SFT and RL examples by the engine's prompt
builder. For each stage it prints the wall time of the step(s), the TRL metrics and the peak
GPU memory.

    python benchmarks/gpu_train.py [--passage-tokens 256] [--generations 8]
    python benchmarks/gpu_train.py --tiny           # CPU smoke test with a tiny model
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

QWEN25_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                  rope_theta=1_000_000.0, tie_word_embeddings=True, rms_norm_eps=1e-6)
_TEXT = ("cell membrane protein energy light plant root water salt river ocean current heat "
         "pressure enzyme gene signal theorem proof integer prime graph vertex edge market "
         "price demand supply robot sensor motor torque")
WORDS = tuple(_TEXT.split(" "))


def build_model(out: Path, tokenizer_dir: Path, tiny: bool) -> Path:
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from reasonrank.offline import build_tiny_qwen2

    if tiny:
        return Path(build_tiny_qwen2(out, tokenizer_dir=tokenizer_dir))
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=151_936, bos_token_id=151_643, eos_token_id=151_645,
                         pad_token_id=151_643, torch_dtype="bfloat16", **QWEN25_05B)
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.generation_config = GenerationConfig(eos_token_id=[151_645, 151_643],
                                               pad_token_id=151_643)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: random Qwen2.5-0.5B shape, {params / 1e6:.0f}M parameters, bf16")
    del model
    torch.cuda.empty_cache()
    return out


def make_data(folder: Path, tokenizer: Any, n: int, passage_tokens: int,
              reasoning_words: int) -> tuple[Path, Path]:
    from reasonrank.core.prompts import PromptBuilder
    from reasonrank.training.examples import rl_examples, sft_examples, write_examples
    from reasonrank.training.records import TextTable, TrainingRecord, TrainingSet

    rng = random.Random(0)

    def text(words: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(words))

    records, queries, docs = [], {}, {}
    for q in range(n):
        ids = [f"q{q}d{i}" for i in range(20)]
        docs.update({d: text(passage_tokens) for d in ids})  # ~1 token a word, cut at N
        queries[f"q{q}"] = text(20) + "?"
        final = ids[:]
        rng.shuffle(final)
        records.append(TrainingRecord("synthetic", f"q{q}", tuple(ids), tuple(final),
                                      text(reasoning_words), tuple(final[:3])))
    data = TrainingSet(records, TextTable(tables={"q": queries}), TextTable(tables={"d": docs}))
    builder = PromptBuilder(tokenizer, max_passage_tokens=passage_tokens)
    sft, rl = folder / "sft.jsonl", folder / "rl.jsonl"
    write_examples(sft_examples(data, builder), sft)
    write_examples(rl_examples(data, builder), rl)
    row = json.loads(sft.read_text().splitlines()[0])
    print(f"examples: {n}; SFT prompt {len(tokenizer(row['prompt'])['input_ids'])} tokens, "
          f"completion {len(tokenizer(row['completion'])['input_ids'])} tokens")
    return sft, rl


def peak_memory() -> str:
    import torch

    if not torch.cuda.is_available():
        return "n/a (CPU)"
    gib = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    return f"{gib:.1f} GiB"


def report(stage: str, result: Any, seconds: float) -> None:
    keep = ("loss", "reward", "reward_std", "rewards/format_error/mean", "kl",
            "completions/mean_length", "train_runtime")
    metrics = {k: round(v, 4) for e in result.log_history for k, v in e.items()
               if k in keep and isinstance(v, int | float)}
    print(f"{stage}: {result.global_step} optimizer step(s) in {seconds:.1f} s "
          f"(model load and save included); peak memory {peak_memory()}; {metrics}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model on the CPU (smoke test)")
    parser.add_argument("--passage-tokens", type=int, default=256)
    parser.add_argument("--reasoning-words", type=int, default=600)
    parser.add_argument("--generations", type=int, default=8, help="GRPO rollouts per prompt")
    parser.add_argument("--completion-tokens", type=int, default=512,
                        help="GRPO max new tokens per rollout")
    args = parser.parse_args()
    if args.tiny:
        args.passage_tokens, args.reasoning_words = 16, 20
        args.generations, args.completion_tokens = 2, 8

    import torch
    from transformers import AutoTokenizer

    from reasonrank.offline import build_qwen25_tokenizer
    from reasonrank.training.grpo import train_grpo
    from reasonrank.training.settings import GRPOSettings, SFTSettings
    from reasonrank.training.sft import train_sft

    device = "cpu" if args.tiny else torch.cuda.get_device_name(0)
    print(f"device: {device}; torch {torch.__version__}")
    root = Path(tempfile.mkdtemp(prefix="gpu_train_"))
    tokenizer_dir = build_qwen25_tokenizer(root / "tokenizer")
    model = build_model(root / "model", tokenizer_dir, args.tiny)
    sft, rl = make_data(root, AutoTokenizer.from_pretrained(tokenizer_dir), 4,
                        args.passage_tokens, args.reasoning_words)
    common = dict(precision="fp32" if args.tiny else "bf16", use_cpu=args.tiny,
                  progress="none", save_steps=10**6, warmup_ratio=0.0)

    start = time.perf_counter()
    result = train_sft(SFTSettings(model=str(model), train_file=str(sft),
                                   output_dir=str(root / "sft"), max_steps=1,
                                   gradient_accumulation=1, learning_rate=5e-6,
                                   logging_steps=1, **common))
    report("SFT (full fine-tune, batch 1, gradient checkpointing)", result,
           time.perf_counter() - start)

    start = time.perf_counter()
    result = train_grpo(GRPOSettings(
        model=str(result.final_checkpoint), train_file=str(rl), output_dir=str(root / "grpo"),
        max_steps=1, num_generations=args.generations, prompts_per_step=2, mini_batch_prompts=2,
        per_device_batch_size=args.generations, max_completion_length=args.completion_tokens,
        learning_rate=1e-6, **common))
    report(f"GRPO ({args.generations} rollouts x 2 prompts, KL 0.001)", result,
           time.perf_counter() - start)


if __name__ == "__main__":
    main()
