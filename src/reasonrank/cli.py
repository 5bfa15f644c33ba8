"""The `reasonrank` command line: rerank, prompt, parse, demo.

Reranking flags are generated from `RerankConfig`, so the CLI, the Python API and the server
share one definition of every option.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from reasonrank.config import RerankConfig
from reasonrank.errors import ReasonRankError

log = logging.getLogger("reasonrank")

def _json_object(text: str) -> dict[str, Any]:
    """A `dict` option given as JSON on the command line (`--extra-body '{"a": 1}'`)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


_json_object.__name__ = "JSON object"  # argparse names the type in its error
_TYPES: dict[str, Any] = {"int": int, "float": float, "str": str,
                          "dict[str, Any]": _json_object}
# Modules that add subcommands: each has `register(subparsers)`, which adds its parsers with
# `set_defaults(handler="module:function")`; heavy imports stay inside the handlers.
COMMAND_MODULES = ("reasonrank.commands_eval", "reasonrank.commands_retrieval",
                   "reasonrank.commands_serve", "reasonrank.commands_data",
                   "reasonrank.commands_train", "reasonrank.commands_synth")


def add_config_arguments(parser: argparse.ArgumentParser, groups: Sequence[str]) -> None:
    """Add a flag for every `RerankConfig` field of `groups` (`window_size` -> `--window-size`).

    Flags default to "not given", so an omitted flag keeps the config's own default.
    """
    by_group: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(RerankConfig):
        group = f.metadata.get("group", "rerank")
        if group not in groups:
            continue
        if group not in by_group:
            by_group[group] = parser.add_argument_group(f"{group} options")
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type).replace(" | None", "")
        help_text = f.metadata["help"]
        if f.default is not None:
            help_text += f" (default: {f.default})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if kind == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif f.metadata.get("choices"):
            kwargs.update(type=_TYPES[kind], choices=f.metadata["choices"])
        else:
            metavar = "JSON" if _TYPES[kind] is _json_object else f.name.upper()
            kwargs.update(type=_TYPES[kind], metavar=metavar)
        by_group[group].add_argument(flag, **kwargs)


def config_from_args(args: argparse.Namespace, **overrides: Any) -> RerankConfig:
    names = {f.name for f in dataclasses.fields(RerankConfig)}
    options = {k: v for k, v in vars(args).items() if k in names}
    options.update(overrides)
    return RerankConfig.from_options(**options)


def build_parser() -> argparse.ArgumentParser:
    from reasonrank import __version__

    parser = argparse.ArgumentParser(
        prog="reasonrank", description="Reasoning-intensive listwise passage reranking."
    )
    parser.add_argument("--version", action="version", version=f"reasonrank {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debugging details")
    sub = parser.add_subparsers(dest="command", required=True)

    rr = sub.add_parser("rerank", help="rerank a first-stage run into a TREC run and traces")
    src = rr.add_argument_group("input (a request file, or a run with its corpus and queries)")
    src.add_argument("--requests", help="RankGPT/rank_llm request file (JSON or JSONL)")
    src.add_argument("--run", help="first-stage run (TREC, or {qid: {docid: score}} JSON)")
    src.add_argument("--corpus", help="corpus JSONL (_id/id/docid, title, text/contents)")
    src.add_argument("--queries", help="queries TSV (qid<TAB>text) or JSONL")
    out = rr.add_argument_group("output")
    out.add_argument("--output", required=True, help="reranked TREC run to write")
    out.add_argument("--traces", help="JSONL traces, one line per query "
                     "(default: OUTPUT.traces.jsonl)")
    out.add_argument("--tag", default="reasonrank", help="run tag of the TREC run")
    out.add_argument("--resume", action="store_true", help="skip queries already written")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    dist = rr.add_argument_group("data parallelism (Ray; pip install 'reasonrank[ray]')")
    dist.add_argument("--ray", action="store_true",
                      help="shard queries across model replicas, one Ray actor each")
    dist.add_argument("--replicas", type=int, default=2, help="model replicas (default: 2)")
    dist.add_argument("--gpus-per-replica", type=float, default=None, metavar="G",
                      help="GPUs per replica (default: --tensor-parallel-size for vllm, else 0)")
    dist.add_argument("--cpus-per-replica", type=float, default=1, metavar="C",
                      help="CPUs per replica (default: 1)")
    dist.add_argument("--ray-address", default=None, metavar="ADDR",
                      help="Ray cluster to join (default: start a local one)")
    add_config_arguments(rr, ("rerank", "hf", "openai", "vllm"))

    pr = sub.add_parser("prompt", help="print the rendered prompt of one window")
    pr.add_argument("--query", required=True)
    pr.add_argument("--passages", required=True, help="JSONL with docid, text, optional title")
    pr.add_argument("--tokenizer", required=True, help="tokenizer id or path")
    pr.add_argument("--max-passage-tokens", type=int, default=None,
                    help="truncate passages to N tokens (default 512)")
    pr.add_argument("--template", default="reasoning", help="prompt template")

    pa = sub.add_parser("parse", help="parse one model output (stdin) into a permutation")
    pa.add_argument("--num", type=int, required=True, help="passages in the window")
    pa.add_argument("--policy", default="reproduce", choices=("reproduce", "strict"))

    de = sub.add_parser("demo", help="rerank the shipped sample offline and score it")
    de.add_argument("--model", default=None, help="model (default: SmolLM2-135M-Instruct GGUF)")
    de.add_argument("--backend", default="hf", help="backend (default: hf)")
    de.add_argument("--max-new-tokens", type=int, default=160, help="new tokens per window")
    de.add_argument("--output", default=None, help="also write the TREC run here")
    de.add_argument("-q", "--quiet", action="store_true", help="print only the scores")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from reasonrank.redact import install_log_redaction

    install_log_redaction()  # no URL credential or bearer token in any log line
    module, _, name = getattr(args, "handler", f"reasonrank.commands:cmd_{args.command}")\
        .partition(":")
    try:
        return getattr(importlib.import_module(module), name)(args)
    except ReasonRankError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; completed queries are saved (rerun with --resume)", file=sys.stderr)
        return 130


def print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def progress_bar(quiet: bool, transient: bool = False,
                 description: str = "{task.description}") -> Any:
    """The CLI's rich progress bar on stderr: description, bar, done/total, elapsed time."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True), disable=quiet,
                    transient=transient)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
