"""The `reasonrank` command line: rerank, prompt, parse, demo.

Every command's settings flags are generated from its settings dataclasses
(`reasonrank.settings`): the reranking flags from `RerankConfig` and each backend's options,
so the CLI, the Python API, YAML files and the server share one definition of every option.
The files each command reads and writes are declared once (`reasonrank.cli.paths`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from reasonrank.config import RerankConfig
from reasonrank.core.options import check_options
from reasonrank.errors import ReasonRankError, describe_os_error

log = logging.getLogger("reasonrank")

# Modules that add subcommands: each has `register(subparsers)`, which adds its parsers with
# `set_defaults(handler="module:function")`; heavy imports stay inside the handlers.
COMMAND_MODULES = ("reasonrank.cli.evaluate", "reasonrank.cli.retrieval",
                   "reasonrank.cli.serve", "reasonrank.cli.data",
                   "reasonrank.cli.train", "reasonrank.cli.synth",
                   "reasonrank.cli.offline")


def add_config_arguments(parser: argparse.ArgumentParser, file: bool = True) -> None:
    """The reranking flags: one per `RerankConfig` field (`window_size` -> `--window-size`),
    then a group per registered backend built from its options dataclass, and (with `file`)
    `--config FILE.yaml` / `--set KEY=VALUE`. Flags default to "not given", so an omitted flag
    keeps the file's value or the config's default."""
    from reasonrank.backends.registry import backend_names, options_class
    from reasonrank.settings import add_file_flags, add_flags

    add_flags(parser, RerankConfig, title="rerank options")
    shared: dict[str, argparse.Action] = {}
    for name in backend_names():
        add_flags(parser, options_class(name), title=f"{name} options", shared=shared,
                  owner=name)
    if file:
        add_file_flags(parser, "rerank options, the backend's included")


def config_values(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The reranking options of parsed arguments: the `--config` file, then `--set`, then the
    flags given; and the name errors give their source."""
    from reasonrank.backends.registry import backend_names, options_class
    from reasonrank.settings import file_values, given_values

    values, source = file_values(args)
    classes = [RerankConfig, *(options_class(name) for name in backend_names())]
    values.update(given_values(args, *classes))
    return values, source


def config_from_args(args: argparse.Namespace, values: dict[str, Any] | None = None,
                     **overrides: Any) -> RerankConfig:
    """The `RerankConfig` of parsed arguments (`values`: those `config_values` gave)."""
    if values is None:
        values, source = config_values(args)
    else:
        source = getattr(args, "config", None) or "options"
    config = RerankConfig.from_options(source=source, **{**values, **overrides})
    for warning in config.warnings():
        log.warning("%s", warning)
    return config


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line usage error (exit 2) that points to `--help`."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from reasonrank import __version__
    from reasonrank.cli.paths import CommandPaths
    from reasonrank.settings import add_flags

    parser = ArgumentParser(
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
                      help="GPUs per replica (default: what one replica of the backend "
                           "holds, e.g. its tensor-parallel size)")
    dist.add_argument("--cpus-per-replica", type=float, default=1, metavar="C",
                      help="CPUs per replica (default: 1)")
    dist.add_argument("--ray-address", default=None, metavar="ADDR",
                      help="Ray cluster to join (default: start a local one)")
    add_config_arguments(rr)
    rr.set_defaults(paths=CommandPaths(
        inputs=("requests", "run", "corpus", "queries", "config"), outputs=("output", "traces"),
        derived_outputs=lambda a: {"--traces": a.traces or f"{a.output}.traces.jsonl"}))

    pr = sub.add_parser("prompt", help="print the rendered prompt of one window")
    pr.add_argument("--query", required=True)
    pr.add_argument("--passages", required=True, help="JSONL with docid, text, optional title")
    add_flags(pr, RerankConfig, title="prompt options", required=("tokenizer",),
              only=("tokenizer", "template", "preset", "max_passage_tokens"))
    pr.set_defaults(paths=CommandPaths(inputs=("passages",)))

    pa = sub.add_parser("parse", help="parse one model output (stdin) into a permutation")
    pa.add_argument("--num", type=int, required=True, help="passages in the window")
    add_flags(pa, RerankConfig, title="parse options", only=("policy",), keep_defaults=True)

    de = sub.add_parser("demo", help="rerank the shipped sample offline and score it")
    de.add_argument("--model", default=None, help="model (default: SmolLM2-135M-Instruct GGUF)")
    de.add_argument("--backend", default="hf", help="backend (default: hf)")
    de.add_argument("--max-new-tokens", type=int, default=160, help="new tokens per window")
    de.add_argument("--output", default=None, help="also write the TREC run here")
    de.add_argument("-q", "--quiet", action="store_true", help="print only the scores")
    de.set_defaults(paths=CommandPaths(outputs=("output",)))
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. The one error boundary of the CLI: an expected failure (a
    `ReasonRankError`, a file that cannot be read or written, no memory) prints one line and
    returns 2; anything else is a bug and keeps its traceback (exit 1)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from reasonrank.cli.paths import check_paths
    from reasonrank.core.redact import install_log_redaction

    install_log_redaction()  # no URL credential or bearer token in any log line
    module, _, name = getattr(args, "handler", f"reasonrank.cli.rerank:cmd_{args.command}")\
        .partition(":")
    previous = _stop_on_sigterm()
    try:
        check_options(vars(args), flags=True)
        check_paths(args)
        return getattr(importlib.import_module(module), name)(args)
    except ReasonRankError as exc:
        return _fail(str(exc), args.verbose)
    except OSError as exc:
        return _fail(describe_os_error(exc), args.verbose)
    except MemoryError:
        return _fail("out of memory; use smaller inputs or options", args.verbose)
    except KeyboardInterrupt:
        print("interrupted; completed queries are saved (rerun with --resume)", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


MAX_ERROR_CHARS = 1000


def _fail(message: str, verbose: bool) -> int:
    """Print `message` as one line of at most `MAX_ERROR_CHARS` characters; exit code 2."""
    if verbose:
        log.debug("details of the error below", exc_info=True)
    line = " ".join(part.strip() for part in message.splitlines())
    if len(line) > MAX_ERROR_CHARS:
        line = line[:MAX_ERROR_CHARS - 3] + "..."
    print(f"error: {line}", file=sys.stderr)
    return 2


def _stop_on_sigterm() -> Any:
    """SIGTERM unwinds like Ctrl-C (temporary files are removed, partial runs saved); returns
    the handler to restore, or None when none was installed."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
