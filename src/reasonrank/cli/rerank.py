"""Implementations of the CLI commands (rich output lives here, not in the library)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.table import Table

from reasonrank.cli.console import console, progress_bar, quiet_libraries
from reasonrank.cli.main import config_from_args, print_json
from reasonrank.errors import InputFormatError
from reasonrank.runner import RunSummary, rerank_to_files
from reasonrank.types import ParseStatus


def cmd_rerank(args: argparse.Namespace) -> int:
    from reasonrank.io import load_requests
    from reasonrank.reranker import Reranker
    from reasonrank.runner import prepare_run, run_settings

    config = config_from_args(args)
    if args.quiet:
        quiet_libraries()
    traces = args.traces or f"{args.output}.traces.jsonl"  # checked with the command's paths
    requests = load_requests(requests=args.requests, run=args.run, corpus=args.corpus,
                             queries=args.queries, top_k=None)
    # lock the output and check a resume before the model is loaded
    lock = prepare_run(args.output, traces, requests, resume=args.resume,
                       settings=run_settings(config, args.tag))
    reranker = None
    try:
        reranker = None if args.ray else Reranker(config=config)
        with progress_bar(args.quiet) as progress:
            task = progress.add_task("reranking", total=len(requests))

            def advance(_result: object) -> None:
                progress.advance(task)

            if reranker is None:
                from reasonrank.distributed import rerank_to_files_ray

                summary = rerank_to_files_ray(
                    config, requests, args.output, traces, replicas=args.replicas,
                    gpus_per_replica=args.gpus_per_replica,
                    cpus_per_replica=args.cpus_per_replica, address=args.ray_address,
                    resume=args.resume, tag=args.tag, on_result=advance,
                )
            else:
                summary = rerank_to_files(
                    reranker, requests, args.output, traces, resume=args.resume, tag=args.tag,
                    on_result=advance,
                )
            progress.update(task, completed=len(requests))
    finally:
        if reranker is not None:
            reranker.close()
        lock.close()
    if not args.quiet:
        _print_summary(summary, args.output, traces)
    return 0


def cmd_prompt(args: argparse.Namespace) -> int:
    from reasonrank.backends.base import load_tokenizer
    from reasonrank.config import RerankConfig
    from reasonrank.core.prompts import PromptBuilder
    from reasonrank.io.readers import read_corpus
    from reasonrank.settings import given_values
    from reasonrank.types import Candidate, Query, Request

    config = RerankConfig.from_options(**given_values(args, RerankConfig))
    docs = read_corpus(args.passages)
    request = Request(Query(args.query), [Candidate(d, doc.text, 0.0, doc.title)
                                          for d, doc in docs.items()])
    builder = PromptBuilder(load_tokenizer(config.tokenizer_name), config.template,
                            config.passage_tokens)
    sys.stdout.write(builder.render_request(request).text)
    return 0


def cmd_parse(args: argparse.Namespace) -> int:
    from reasonrank.core.parsing import parse_ranking

    if args.num < 0:
        raise InputFormatError("--num", None, "must be >= 0")
    text = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    parsed = parse_ranking(text, args.num, args.policy)
    print_json({"order": parsed.order, "status": parsed.status.value})
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from reasonrank.cli import demo
    from reasonrank.config import RerankConfig
    from reasonrank.io import write_trec
    from reasonrank.reranker import Reranker

    model = args.model
    if model is None:
        from reasonrank.offline import smollm2_gguf_path

        model = str(smollm2_gguf_path())
    requests, qrels = demo.load_sample()
    out, err = console(), console(stderr=True)
    if args.quiet:
        quiet_libraries()
    if not args.quiet:
        err.print(f"[bold]reasonrank demo[/]: {len(requests)} queries x 20 passages, "
                  f"model {Path(model).name}, backend {args.backend}")
        err.print("Loading the model (a tiny CPU model: it shows the mechanics, not quality)...")
    import dataclasses

    from reasonrank.backends.registry import options_class

    # every query decodes at once (a backend that batches gets one batch of them all)
    batching = {f.name for f in dataclasses.fields(options_class(args.backend))}
    extra = {"batch_size": len(requests)} if "batch_size" in batching else {}
    config = RerankConfig(model=model, backend=args.backend, max_new_tokens=args.max_new_tokens,
                          concurrency=len(requests), **extra)
    with Reranker(config=config) as reranker, progress_bar(args.quiet) as progress:
        task = progress.add_task("reranking", total=len(requests))
        by_index = {}
        for index, result in reranker.rerank_iter(requests):
            by_index[index] = result
            progress.advance(task)
    results = [by_index[i] for i in range(len(requests))]
    rows = demo.score(results, requests, qrels)
    if args.output:
        write_trec(results, args.output)
    if not args.quiet:
        for res in results:
            judged = qrels.get(res.query.qid, {})
            top = "  ".join(
                f"{d.first_stage_rank}{'*' * judged.get(d.docid, 0)}" for d in res.docs[:10]
            )
            windows = ", ".join(w.status.value for w in res.windows)
            out.print(f"[bold]{res.query.qid}[/] {res.query.text}")
            out.print(f"  new top-10 (first-stage ranks, * = relevance): {top}")
            out.print(f"  windows: {windows}")
            out.print(f"  answer: {json.dumps(res.windows[-1].output[-160:])}")
    table = Table(title="NDCG@10 (x100)")
    for col in ("query", "first stage", "reranked"):
        table.add_column(col, justify="right" if col != "query" else "left")
    for row in rows:
        table.add_row(row.qid, f"{100 * row.first_stage:.2f}", f"{100 * row.reranked:.2f}")
    n = len(rows)
    before = 100 * sum(r.first_stage for r in rows) / n
    after = 100 * sum(r.reranked for r in rows) / n
    table.add_row("mean", f"{before:.2f}", f"{after:.2f}", style="bold")
    out.print(table)
    statuses = {s.value: 0 for s in ParseStatus}
    for res in results:
        for w in res.windows:
            statuses[w.status.value] += 1
    out.print("parse statuses: " + ", ".join(f"{k}={v}" for k, v in statuses.items() if v))
    return 0


def _print_summary(s: RunSummary, output: str, traces: str) -> None:
    table = Table(title="reasonrank rerank", show_header=False)
    table.add_row("queries reranked", str(s.queries))
    if s.skipped:
        table.add_row("queries already done (resume)", str(s.skipped))
    table.add_row("windows", str(s.windows))
    table.add_row("prompt tokens", f"{s.prompt_tokens:,}")
    table.add_row("output tokens", f"{s.output_tokens:,}")
    table.add_row("parse statuses", ", ".join(f"{k}={v}" for k, v in sorted(s.statuses.items())))
    table.add_row("wall time", f"{s.wall_s:.1f} s")
    table.add_row("seconds per query", f"{s.seconds_per_query:.2f}")
    table.add_row("run", output)
    table.add_row("traces", traces)
    console(stderr=True).print(table)
