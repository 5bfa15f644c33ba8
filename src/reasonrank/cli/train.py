"""CLI: `reasonrank train sft|grpo|merge` (needs the `train` extra).

    reasonrank train sft  --config configs/train/sft-7b.yaml  [--set key=value ...] [--FLAG ...]
    reasonrank train grpo --config configs/train/grpo-7b.yaml [--set key=value ...] [-q]
    reasonrank train merge OUTPUT/adapter --output OUTPUT/merged

Multi-GPU: `accelerate launch --config_file configs/accelerate/zero3.yaml -m reasonrank.cli
train sft --config ...` (see docs/training.md).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger(__name__)


def register(sub: Any) -> None:  # argparse's subparsers action
    """Add `train` (with `sft`, `grpo`, `merge`) to the `reasonrank` parser."""
    from reasonrank.cli.paths import CommandPaths
    from reasonrank.settings import add_file_flags, add_flags
    from reasonrank.training.settings import settings_class

    tr = sub.add_parser("train", help="fine-tune a reranker: SFT, GRPO, LoRA merge")
    stages = tr.add_subparsers(dest="train_command", required=True)
    for kind, help_text in (("sft", "cold-start SFT on reasoning traces (TRL SFTTrainer)"),
                            ("grpo", "GRPO with the multi-view ranking reward (TRL GRPOTrainer)")):
        p = stages.add_parser(kind, help=help_text,
                              description=f"{help_text}. Settings come from --config (YAML), "
                              "then --set, then the flags given; see docs/training.md.")
        add_file_flags(p, "training settings (configs/train/*.yaml)")
        p.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bar or library logs; summary only")
        add_flags(p, settings_class(kind), title=f"{kind} settings")
        p.set_defaults(handler=f"reasonrank.cli.train:cmd_train_{kind}", train_kind=kind,
                       paths=CommandPaths(inputs=("config",)))
    mg = stages.add_parser("merge", help="merge a LoRA adapter into its base model")
    mg.add_argument("adapter", metavar="ADAPTER", help="adapter directory (OUTPUT/adapter)")
    mg.add_argument("--output", required=True, metavar="DIR", help="merged model directory")
    mg.add_argument("--base-model", default=None,
                    help="base model (default: the one the adapter config names)")
    mg.add_argument("--dtype", default="auto",
                    choices=("auto", "bfloat16", "float16", "float32"),
                    help="dtype to load the base model in (default: auto)")
    mg.set_defaults(handler="reasonrank.cli.train:cmd_train_merge", paths=CommandPaths(
        output_dirs=("output",), read=("adapter", "base_model"), positional=("adapter",)))


def _run(args: argparse.Namespace) -> int:
    from reasonrank.cli.console import quiet_libraries
    from reasonrank.errors import require

    for module in ("torch", "transformers", "trl", "datasets", "yaml"):
        require(module, "train", f"reasonrank train {args.train_kind}")
    from reasonrank.settings import given_values
    from reasonrank.training.settings import load_settings, settings_class

    flags = given_values(args, settings_class(args.train_kind))
    settings = load_settings(args.config, args.train_kind, args.overrides, flags)
    if args.quiet:
        settings.progress = "none"
        quiet_libraries()
    if args.train_kind == "sft":
        from reasonrank.training.sft import train_sft

        result = train_sft(settings)
    else:
        from reasonrank.training.grpo import train_grpo

        result = train_grpo(settings)
    if result.final_checkpoint is not None:  # the main process reports
        _summary(args.train_kind, result)
    return 0


def cmd_train_sft(args: argparse.Namespace) -> int:
    return _run(args)


def cmd_train_grpo(args: argparse.Namespace) -> int:
    return _run(args)


def _summary(kind: str, result: Any) -> None:
    from reasonrank.cli.console import console

    rows = [("output dir", str(result.output_dir)), ("model", str(result.final_checkpoint))]
    if result.adapter_dir is not None:
        rows.append(("adapter", str(result.adapter_dir)))
    if result.resumed_from:
        rows.append(("resumed from", result.resumed_from))
    rows.append(("optimizer steps", str(result.global_step)))
    for key, label in (("loss", "final loss"), ("reward", "final reward"),
                       ("rewards/format_error/mean", "format errors"),
                       ("rewards/ndcg/mean", "NDCG@k")):
        value = result.last(key)
        if value is not None:
            rows.append((label, f"{value:.4f}"))
    runtime = result.metrics.get("train_runtime")
    if runtime is not None:
        rows.append(("runtime", f"{runtime:.1f} s"))
    out = console()
    out.print(f"[bold]reasonrank train {kind}[/]: done", highlight=False)
    for label, value in rows:
        out.print(f"  {label:<16} {value}", soft_wrap=True, highlight=False)


def cmd_train_merge(args: argparse.Namespace) -> int:
    from reasonrank.cli.console import console
    from reasonrank.training.checkpoint import check_causal_lm, merge_lora

    out = merge_lora(args.adapter, args.output, base_model=args.base_model, dtype=args.dtype)
    summary = check_causal_lm(out)
    console().print(f"merged [bold]{args.adapter}[/] into [bold]{out}[/] "
                    f"(eos ids {summary['eos_token_id']})")
    return 0
