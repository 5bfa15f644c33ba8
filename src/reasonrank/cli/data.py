"""CLI: `reasonrank data check|filter|sft|rl`, training data in the ReasonRank 13k layout."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from reasonrank.cli.console import console, track
from reasonrank.training.records import DEFAULT_THRESHOLD, DEFAULT_WINDOW


def register(sub: Any) -> None:  # argparse's subparsers action
    """Add `data` and its subcommands to the `reasonrank` parser."""
    data = sub.add_parser("data", help="training data: check, filter, build SFT/RL examples")
    dsub = data.add_subparsers(dest="data_command", required=True)

    def source(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("source", metavar="SOURCE",
                       help=f"a folder in the 13k layout (training_data_all.jsonl, id_query/, "
                            f"id_doc/) or its records file{what}")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress, no table")

    ck = dsub.add_parser("check", help="check records and texts; exit 2 listing each problem")
    source(ck, "")
    ck.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                    help=f"largest list allowed (default: {DEFAULT_WINDOW})")
    ck.set_defaults(handler="reasonrank.cli.data:cmd_check")

    fi = dsub.add_parser("filter", help="self-consistency filter: keep lists whose teacher "
                         "ranking scores NDCG@10 >= threshold against its own labels")
    source(fi, "")
    fi.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                    help=f"keep records with NDCG@10 >= this (default: {DEFAULT_THRESHOLD})")
    fi.add_argument("--output", required=True, help="kept records, written unchanged (JSONL)")
    fi.add_argument("--dropped", default=None, help="also write the dropped records here")
    fi.add_argument("--json", action="store_true", help="print the report as JSON")
    fi.set_defaults(handler="reasonrank.cli.data:cmd_filter",
                    paths=_paths("output", "dropped"))

    sp = dsub.add_parser("split", help="split records in two per domain (e.g. SFT and RL "
                         "halves, as released)")
    source(sp, "")
    sp.add_argument("--fraction", type=float, default=0.5,
                    help="share of each domain in the first part (default: 0.5)")
    sp.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    sp.add_argument("--output", nargs=2, required=True, metavar=("FIRST", "SECOND"),
                    help="the two record files (put them beside id_query/ and id_doc/ to "
                         "build examples from them)")
    sp.set_defaults(handler="reasonrank.cli.data:cmd_split", paths=_paths("output"))

    for name, what, extra in (
            ("sft", "SFT examples (prompt, completion)", ", or the released SFT file "
             "(alpaca JSON: system, instruction, output)"),
            ("rl", "RL examples (prompt, lists for the reward)", ", or the released RL "
             "parquet (chat prompt, initial_list, final_list, relevant_docids)")):
        p = dsub.add_parser(name, help=f"build {what} from records and texts")
        source(p, extra)
        p.add_argument("--tokenizer", default=None,
                       help="tokenizer id or path of the model to train (its chat template; "
                            "default: the one SOURCE's prompt_settings.json records; required "
                            "without it)")
        p.add_argument("--output", required=True, help="examples to write (.jsonl or .parquet)")
        p.add_argument("--max-passage-tokens", type=int, default=None,
                       help="truncate passages to N tokens (default: the length SOURCE's "
                            "prompt_settings.json records, else 512 as at inference)")
        p.add_argument("--template", default=None,
                       help="prompt template (default: the recorded one, else reasoning)")
        p.add_argument("--threshold", type=float, default=None,
                       help="apply the self-consistency filter first (e.g. 0.4)")
        p.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                       help=f"largest list allowed (default: {DEFAULT_WINDOW})")
        if name == "sft":
            p.add_argument("--target", default=None,
                           help="assistant target with {reasoning} and {answer} (default: "
                                "'<think> {reasoning} </think> <answer> {answer} </answer>')")
        p.set_defaults(handler=f"reasonrank.cli.data:cmd_{name}", paths=_paths("output"))


def _paths(*outputs: str) -> Any:
    """The paths of a `data` command: its outputs, never the SOURCE records."""
    from reasonrank.cli.paths import CommandPaths

    return CommandPaths(outputs=outputs, derived_inputs=_source_records)


def _source_records(args: argparse.Namespace) -> dict[str, Any]:
    """SOURCE's records file: SOURCE itself, or the records file of its folder."""
    from reasonrank.training.records import RECORDS_FILE

    source = Path(args.source)
    return {"SOURCE": source if source.is_file() else source / RECORDS_FILE}


def cmd_check(args: argparse.Namespace) -> int:
    from reasonrank.training.records import ensure_valid, read_training_set

    data = ensure_valid(read_training_set(args.source), args.window)
    counts: dict[str, int] = {}
    for record in data.records:
        counts[record.dataset] = counts.get(record.dataset, 0) + 1
    if not args.quiet:
        from rich.table import Table

        table = Table()
        table.add_column("dataset")
        table.add_column("records", justify="right")
        for name, n in sorted(counts.items()):
            table.add_row(name, str(n))
        out = console()
        out.print(f"{len(data.records)} records: no problems")
        out.print(table)
    return 0


def _report_table(rows: list[dict[str, Any]], threshold: float) -> Any:
    from rich.table import Table

    table = Table(title=f"self-consistency filter: NDCG@10 >= {threshold}")
    for name in ("dataset", "total", "kept", "dropped", "kept %"):
        table.add_column(name, justify="left" if name == "dataset" else "right")
    for i, row in enumerate(rows):
        last = i == len(rows) - 1  # the report's final row totals every dataset
        table.add_row("all datasets" if last else row["dataset"], str(row["total"]),
                      str(row["kept"]), str(row["dropped"]),
                      f"{100 * row['kept_fraction']:.1f}", end_section=i == len(rows) - 2)
    return table


def cmd_filter(args: argparse.Namespace) -> int:
    from reasonrank.training.records import (
        filter_is_vacuous,
        read_records,
        records_path,
        self_consistency_filter,
        write_records,
    )

    records = read_records(records_path(args.source))
    floor = filter_is_vacuous(args.threshold, (
        (len(r.initial_list), len(set(r.relevant_docids) & set(r.initial_list)))
        for r in records))
    if floor is not None:
        import logging

        logging.getLogger("reasonrank").warning(
            "every list is so short that any ranking scores NDCG@10 >= %.2f: threshold %s "
            "cannot drop a record (raise it above %.2f to filter)", floor, args.threshold, floor)
    result = self_consistency_filter(records, args.threshold)
    write_records(result.kept, args.output)
    if args.dropped:
        write_records(result.dropped, args.dropped)
    rows = result.report()
    if args.json:
        sys.stdout.write(json.dumps({"threshold": args.threshold, "domains": rows}) + "\n")
    elif not args.quiet:
        console().print(_report_table(rows, args.threshold))
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    from reasonrank.errors import ConfigError
    from reasonrank.training.records import read_records, records_path, split_records, write_records

    if not 0.0 <= args.fraction <= 1.0:
        raise ConfigError(f"--fraction must be in [0, 1], got {args.fraction}")
    first, second = split_records(read_records(records_path(args.source)), args.fraction,
                                  args.seed)
    write_records(first, args.output[0])
    write_records(second, args.output[1])
    if not args.quiet:
        console().print(f"{len(first)} records -> {args.output[0]}, {len(second)} records -> "
                        f"{args.output[1]}")
    return 0


def _load_for_examples(args: argparse.Namespace) -> Any:
    from reasonrank.training.records import ensure_valid, read_training_set, self_consistency_filter

    data = read_training_set(args.source)
    if args.threshold is not None:
        data.records = self_consistency_filter(data.records, args.threshold).kept
    return ensure_valid(data, args.window)


def _is_release(source: str, kind: str) -> bool:
    path = Path(source)
    if not path.is_file():
        return False
    if kind == "rl":
        return path.name.lower().endswith((".parquet", ".pq"))
    from reasonrank.training.records import RECORDS_FILE

    if path.name == RECORDS_FILE:
        return False
    with open(path, encoding="utf-8", errors="replace") as fh:
        head = fh.read(4096).lstrip()
    return head.startswith("[") or '"instruction"' in head


def _prompt_format(args: argparse.Namespace, data: Any) -> tuple[Any, Any]:
    """The tokenizer and `PromptFormat` for examples of `data`: the options given, else what
    its `prompt_settings.json` records (the teacher's prompts), else the inference defaults.
    A given option that renders other prompts than the recorded ones is warned about."""
    import logging

    from reasonrank.backends.base import load_tokenizer
    from reasonrank.config import DEFAULT_PASSAGE_TOKENS
    from reasonrank.errors import ConfigError
    from reasonrank.training.prompt_format import PROMPT_FILE, PromptFormat, chat_template_digest

    recorded = data.prompt_format
    name = args.tokenizer or (recorded.tokenizer if recorded is not None else None)
    if not name:
        raise ConfigError(f"--tokenizer is required: {args.source} has no {PROMPT_FILE} "
                          "recording the tokenizer its prompts were rendered with")
    try:
        tokenizer = load_tokenizer(name, f"building {args.kind.upper()} examples")
    except ConfigError as exc:
        if args.tokenizer:
            raise
        raise ConfigError(f"{exc} (the tokenizer {PROMPT_FILE} records; pass --tokenizer "
                          "with a copy of it)") from None
    fmt = PromptFormat(
        args.template or (recorded.template if recorded is not None else "reasoning"),
        args.max_passage_tokens or (recorded.max_passage_tokens if recorded is not None
                                    else DEFAULT_PASSAGE_TOKENS),
        name, chat_template_digest(tokenizer))
    changed = recorded.differences(fmt) if recorded is not None else []
    if changed:
        logging.getLogger("reasonrank").warning(
            "these %s prompts differ from the ones %s records (%s): %s; drop the option(s) "
            "to train on the prompts the teacher answered", args.kind.upper(), PROMPT_FILE,
            recorded.describe(), "; ".join(changed))
    return tokenizer, fmt


def _build(args: argparse.Namespace, kind: str,
           from_records: Callable[[Any, Any, Any], Iterator[dict[str, Any]]],
           from_release: Callable[[str, Any], Iterator[dict[str, Any]]]) -> int:
    from reasonrank.backends.base import load_tokenizer
    from reasonrank.core.prompts import PromptBuilder
    from reasonrank.errors import ConfigError
    from reasonrank.training.examples import write_examples

    args.kind = kind
    if _is_release(args.source, kind):
        if not args.tokenizer:
            raise ConfigError(f"--tokenizer is required to build examples from {args.source}")
        tokenizer = load_tokenizer(args.tokenizer, f"building {kind.upper()} examples")
        rows: Iterable[dict[str, Any]] = from_release(args.source, tokenizer)
        total = None
    else:
        data = _load_for_examples(args)
        tokenizer, fmt = _prompt_format(args, data)
        builder = PromptBuilder(tokenizer, fmt.template, fmt.max_passage_tokens)
        rows, total = from_records(data, builder, fmt), len(data.records)
    n = write_examples(track(rows, total, f"{kind} examples", args.quiet), args.output)
    if not args.quiet:
        console(stderr=True).print(f"wrote {n} {kind.upper()} examples to {args.output}")
    return 0


def cmd_sft(args: argparse.Namespace) -> int:
    from reasonrank.training.examples import DEFAULT_TARGET, sft_examples, sft_release_examples

    target = args.target or DEFAULT_TARGET
    return _build(args, "sft",
                  lambda data, builder, fmt: sft_examples(data, builder, target, fmt),
                  sft_release_examples)


def cmd_rl(args: argparse.Namespace) -> int:
    from reasonrank.training.examples import rl_examples, rl_release_examples

    return _build(args, "rl", lambda data, builder, fmt: rl_examples(data, builder, fmt),
                  rl_release_examples)
