"""CLI: `reasonrank evaluate` (score a run, optionally against a second one) and `reasonrank
bright` (the paper's BRIGHT table: first stage, optionally reranked, against published rows)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reasonrank.cli.console import console, progress_bar, say
from reasonrank.evaluation.reference import BRIGHT_TASKS

if TYPE_CHECKING:
    from reasonrank.evaluation import Comparison, EvalResult
    from reasonrank.evaluation.reference import ReferenceRow

_SHOWN = 5  # unjudged query ids listed on stderr


def register(sub: Any) -> None:  # argparse's subparsers action
    """Add `evaluate` and `bright` to the `reasonrank` parser."""
    from reasonrank.cli.main import add_config_arguments
    from reasonrank.cli.paths import CommandPaths

    ev = sub.add_parser(
        "evaluate", help="score a run against qrels (trec_eval semantics)",
        description="Score a run against qrels as trec_eval does (ties by doc id descending). "
                    "Run queries without judgements are reported on stderr and not averaged.",
    )
    ev.add_argument("--run", required=True,
                    help="run to score: TREC (qid Q0 docid rank score tag) or {qid: {docid: "
                         "score}} JSON; .gz is read directly")
    ev.add_argument("--qrels", required=True, help="TREC qrels (qid iter docid rel) or BEIR TSV")
    ev.add_argument("--exclude", metavar="EXAMPLES",
                    help="BRIGHT examples file (JSONL[.gz]): each query's excluded_ids are "
                         "removed from the run(s) before scoring")
    ev.add_argument("--metrics", nargs="+", metavar="METRIC",
                    help="metrics such as ndcg@10 recall@100 mrr@10 map p@5 "
                         "(default: ndcg@1/5/10/20/100, recall@10/20/100, mrr@10, map)")
    ev.add_argument("--compare", metavar="RUN2",
                    help="also score RUN2 and compare it with RUN per metric (paired t-test, "
                         "permutation test, wins/ties/losses of RUN2)")
    ev.add_argument("--permutations", type=int, default=10000,
                    help="random sign flips of the permutation test (default: 10000)")
    ev.add_argument("--json", action="store_true",
                    help="print one JSON object {mean, per_query, queries, unjudged[, compare]}")
    ev.set_defaults(handler="reasonrank.cli.evaluate:cmd_evaluate")

    br = sub.add_parser(
        "bright", help="score (and optionally rerank) BRIGHT runs against the paper's table",
        description="For each BRIGHT task: load queries, gold ids and excluded ids, the "
                    "first-stage run, optionally rerank it, score NDCG@10 with the excluded ids "
                    "removed, and print the paper's table with our rows added. Writes "
                    "OUT/bright.json and a bar chart OUT/<task>.png per task.",
    )
    br.add_argument("--data", required=True,
                    help="BRIGHT folder: examples/<task>.jsonl[.gz] (or <task>/examples.jsonl)")
    br.add_argument("--runs", help="first-stage runs, <task>.txt[.gz] (TREC) or <task>.json "
                                   "(default: DATA/runs_reasonir_gpt4cot_top100)")
    br.add_argument("--tasks", nargs="+", choices=BRIGHT_TASKS, metavar="TASK",
                    help=f"tasks to run (default: all 12: {' '.join(BRIGHT_TASKS)})")
    br.add_argument("--out", required=True, help="output folder (bright.json, PNGs, runs)")
    br.add_argument("--metrics", nargs="+", metavar="METRIC",
                    help="metrics written to bright.json besides ndcg@10")
    br.add_argument("--no-plots", action="store_true", help="do not draw the PNG bar charts")
    br.add_argument("-q", "--quiet", action="store_true", help="no progress, no table")
    rr = br.add_argument_group("reranking")
    rr.add_argument("--rerank", action="store_true",
                    help="rerank each first-stage run (needs --corpus-dir) and score it too")
    rr.add_argument("--corpus-dir", metavar="DIR",
                    help="passages per task: DIR/<task>.jsonl[.gz] (id + text/contents, or "
                         "BRIGHT's id + content); BRIGHT's texts are on the hub only")
    rr.add_argument("--tag", default="reasonrank", help="run tag of the reranked runs")
    rr.add_argument("--resume", action="store_true",
                    help="skip queries already in OUT/runs/<task>.txt")
    add_config_arguments(br)
    br.set_defaults(handler="reasonrank.cli.evaluate:cmd_bright",
                    paths=CommandPaths(output_dirs=("out",), inputs=("config",)))


# --- evaluate -------------------------------------------------------------------------------


def _report_unjudged(run: str, qrels: str, result: EvalResult) -> None:
    if not result.unjudged:
        return
    ids = result.unjudged
    shown = ", ".join(ids[:_SHOWN]) + (", ..." if len(ids) > _SHOWN else "")
    say(f"note: {len(ids)} query(ies) of {run} have no judgements in {qrels} and are not "
        f"averaged: {shown}")


def _finite(obj: Any) -> Any:
    """`obj` with +-inf/NaN floats as None, so the JSON stays standard."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def cmd_evaluate(args: argparse.Namespace) -> int:
    from reasonrank.cli.main import print_json
    from reasonrank.datasets.bright import read_excluded
    from reasonrank.errors import ConfigError, ReasonRankError
    from reasonrank.evaluation import DEFAULT_METRICS, compare, evaluate, parse_metrics
    from reasonrank.io import read_qrels, read_run

    metrics = [m.name for m in parse_metrics(args.metrics or DEFAULT_METRICS)]
    _check_files(run=args.run, qrels=args.qrels, exclude=args.exclude, compare=args.compare)
    if args.permutations < 1:
        raise ConfigError(f"--permutations must be at least 1, got {args.permutations}")
    qrels = read_qrels(args.qrels)
    exclude = read_excluded(args.exclude) if args.exclude else None
    result = evaluate(read_run(args.run), qrels, metrics, exclude=exclude)
    _report_unjudged(args.run, args.qrels, result)
    if result.queries == 0:
        raise ReasonRankError(f"no query of {args.run} has judgements in {args.qrels}: "
                              "nothing to score (do the query ids match?)")
    other: EvalResult | None = None
    comparisons: list[Comparison] = []
    if args.compare:
        other = evaluate(read_run(args.compare), qrels, metrics, exclude=exclude)
        _report_unjudged(args.compare, args.qrels, other)
        comparisons = [compare(result.per_query, other.per_query, m,
                               n_permutations=args.permutations) for m in metrics]

    if args.json:
        out = result.to_dict()
        if other is not None:
            out["compare"] = {
                "run": args.compare,
                "mean": other.mean,
                "queries": other.queries,
                "unjudged": other.unjudged,
                "per_query": other.per_query,
                "tests": {c.metric: c.to_dict() for c in comparisons},
            }
        print_json(_finite(out))
        return 0

    from rich.table import Table

    stdout = console()
    stdout.print(f"{args.run}: {result.queries} queries scored"
                 + (", excluded ids removed" if exclude else ""), markup=False, highlight=False)
    table = Table()
    table.add_column("metric")
    table.add_column("mean", justify="right")
    table.add_column("x100", justify="right")
    for m in metrics:
        table.add_row(m, f"{result.mean[m]:.4f}", f"{100 * result.mean[m]:.2f}")
    stdout.print(table)
    if comparisons:
        stdout.print(f"B = {args.compare} against A = {args.run}, paired over the queries "
                     "both have", markup=False, highlight=False)
        table = Table()
        for col in ("metric", "n", "A", "B", "B - A", "t", "p (t-test)", "p (permutation)",
                    "wins/ties/losses of B"):
            table.add_column(col, justify="left" if col == "metric" else "right")
        for c in comparisons:
            table.add_row(c.metric, str(c.n), f"{c.mean_a:.4f}", f"{c.mean_b:.4f}",
                          f"{c.mean_diff:+.4f}", f"{c.t_stat:.3f}", _p(c.p_ttest),
                          _p(c.p_permutation), f"{c.wins}/{c.ties}/{c.losses}")
        stdout.print(table)
    return 0


def _check_files(**paths: str | None) -> None:
    """A missing, directory or unreadable input is a clean error (exit 2), not a traceback."""
    from reasonrank.io.paths import check_input_file

    for flag, path in paths.items():
        if path is not None:
            check_input_file(path, f"--{flag}")


def _p(p: float) -> str:
    return f"{p:.2e}" if 0 < p < 1e-3 else f"{p:.4f}"


# --- bright ---------------------------------------------------------------------------------


@dataclasses.dataclass
class _TaskScores:
    first_stage: EvalResult
    reranked: EvalResult | None = None
    rerank_summary: dict[str, Any] | None = None


def _given_config_flags(args: argparse.Namespace) -> list[str]:
    from reasonrank.cli.main import config_values

    given = [*config_values(args)[0], *(["--config"] if args.config else [])]
    return sorted("--" + k.replace("_", "-") for k in given)


def _corpus_paths(corpus_dir: str | None, tasks: Sequence[str]) -> dict[str, Path]:
    from reasonrank.datasets._layout import JSONL_SUFFIXES, DatasetNotFoundError, find_file
    from reasonrank.errors import ConfigError

    if not corpus_dir:
        raise ConfigError(
            "--rerank needs the passage texts: BRIGHT's documents are not in the local data "
            "(they are on the Hugging Face hub only). Give --corpus-dir DIR with "
            "DIR/<task>.jsonl[.gz] per task, e.g. written by reasonrank.datasets.bright."
            "save_corpus(load_hub(task, corpus=True).corpus, ...) where the hub is reachable"
        )
    folder = Path(corpus_dir)
    if not folder.is_dir():
        raise DatasetNotFoundError(f"--corpus-dir {folder} is not a folder")
    paths = {t: find_file(folder, t, (*JSONL_SUFFIXES, ".tsv", ".tsv.gz")) for t in tasks}
    missing = [t for t, p in paths.items() if p is None]
    if missing:
        raise DatasetNotFoundError(
            f"no corpus for {len(missing)} task(s) in {folder}: {', '.join(missing)} "
            "(expected DIR/<task>.jsonl[.gz])"
        )
    return {t: p for t, p in paths.items() if p is not None}


def cmd_bright(args: argparse.Namespace) -> int:
    from reasonrank.cli.main import config_from_args
    from reasonrank.datasets import bright
    from reasonrank.errors import require
    from reasonrank.evaluation import parse_metrics
    from reasonrank.io import read_run

    tasks = [t for t in BRIGHT_TASKS if t in set(args.tasks or BRIGHT_TASKS)]  # table order
    data = Path(args.data)
    runs_dir = Path(args.runs) if args.runs else bright.default_runs_dir(data)
    out = Path(args.out)
    metrics = [m.name for m in parse_metrics(["ndcg@10", *(args.metrics or [])])]
    # Fail before any work: the runs, the corpora, the reranking options, matplotlib.
    run_paths = {t: bright.run_path(runs_dir, t) for t in tasks}
    for t in tasks:
        bright.examples_path(data, t)
    config = None
    corpora: dict[str, Path] = {}
    if args.rerank:
        corpora = _corpus_paths(args.corpus_dir, tasks)
        config = config_from_args(args)
    elif _given_config_flags(args) or args.corpus_dir:
        ignored = [*_given_config_flags(args), *(["--corpus-dir"] if args.corpus_dir else [])]
        say(f"note: {', '.join(ignored)} ignored without --rerank")
    if not args.no_plots:
        require("matplotlib", "plots", "the bar charts of `reasonrank bright` (or --no-plots)")
    if args.rerank:
        from reasonrank.io.outputs import check_outputs

        check_outputs(
            {"--out (runs)": [out / "runs" / f"{t}.txt" for t in tasks],
             "--out (traces)": [out / "traces" / f"{t}.jsonl" for t in tasks],
             "--out (report)": out / "bright.json"},
            {"--runs": list(run_paths.values()), "--corpus-dir": list(corpora.values())})
    out.mkdir(parents=True, exist_ok=True)

    scores: dict[str, _TaskScores] = {}
    reranker = None
    if config is not None:
        from reasonrank.reranker import Reranker

        reranker = Reranker(config=config)
    try:
        for t in tasks:
            task = bright.load_task(data, t)
            run = read_run(run_paths[t])
            first = task.evaluate(run, metrics)
            _report_unjudged(str(run_paths[t]), f"BRIGHT {t} gold ids", first)
            scores[t] = _TaskScores(first)
            if reranker is not None and config is not None:
                reranker.set_dataset(f"bright/{t}")  # Rank1's per-task instruction
                scores[t].reranked, scores[t].rerank_summary = _rerank_task(
                    reranker, config.top_k, task, run, corpora[t], out, metrics, args)
    finally:
        if reranker is not None:
            reranker.close()

    model = _system_name(config)
    report = _bright_report(scores, metrics, data, runs_dir, config, run_paths, out)
    _write_json(out / "bright.json", report)
    if not args.no_plots:
        for t, s in scores.items():
            _plot_task(out / f"{t}.png", t, s, model)
    if not args.quiet:
        _print_bright_table(scores, model, runs_dir.name, _published_row(config))
        say(f"wrote {out / 'bright.json'}" + ("" if args.no_plots else
            f" and {len(scores)} bar chart(s) {out}/<task>.png"))
    return 0


def _system_name(config: Any) -> str | None:
    """Our reranked row's name: the model, and the method where it is not listwise."""
    if config is None:
        return None
    name = Path(config.model).name
    return name if config.method == "listwise" else f"{name} ({config.method})"


def _published_row(config: Any) -> ReferenceRow | None:
    """The paper's row our reranked run reproduces: Rank1-7B for the rank1 method."""
    from reasonrank.evaluation.reference import RANK1_7B

    return RANK1_7B if config is not None and config.method == "rank1" else None


def _rerank_task(
    reranker: Any, top_k: int, task: Any, run: Mapping[str, Any], corpus_path: Path, out: Path,
    metrics: Sequence[str], args: argparse.Namespace,
) -> tuple[EvalResult, dict[str, Any]]:
    """Rerank one task's run into OUT/runs/<task>.txt (+ traces) and score the written run."""
    from reasonrank.datasets.bright import read_documents
    from reasonrank.io import read_run
    from reasonrank.runner import rerank_to_files

    requests = task.requests(run, top_k=top_k, corpus=read_documents(corpus_path))
    run_out = out / "runs" / f"{task.name}.txt"
    trace_out = out / "traces" / f"{task.name}.jsonl"
    run_out.parent.mkdir(parents=True, exist_ok=True)
    trace_out.parent.mkdir(parents=True, exist_ok=True)
    with progress_bar(args.quiet) as progress:
        bar = progress.add_task(f"reranking {task.name}", total=len(requests))
        summary = rerank_to_files(reranker, requests, str(run_out), str(trace_out),
                                  resume=args.resume, tag=args.tag,
                                  on_result=lambda _r: progress.advance(bar))
    reranked = task.evaluate(read_run(run_out), metrics)
    info = {
        "run": str(run_out), "traces": str(trace_out), "queries": summary.queries,
        "skipped": summary.skipped, "windows": summary.windows,
        "prompt_tokens": summary.prompt_tokens, "output_tokens": summary.output_tokens,
        "statuses": dict(summary.statuses), "wall_s": round(summary.wall_s, 3),
        "seconds_per_query": round(summary.seconds_per_query, 4),
    }
    return reranked, info


def _mean_of(results: Mapping[str, EvalResult], metrics: Sequence[str]) -> dict[str, float]:
    """The unweighted mean over tasks of each task's mean (the paper's "avg")."""
    n = len(results)
    return {m: sum(r.mean[m] for r in results.values()) / n if n else 0.0 for m in metrics}


def _bright_report(
    scores: Mapping[str, _TaskScores], metrics: Sequence[str], data: Path, runs_dir: Path,
    config: Any, run_paths: Mapping[str, Path], out: Path,
) -> dict[str, Any]:
    from reasonrank.evaluation.reference import BRIGHT_NDCG10

    first = {t: s.first_stage for t, s in scores.items()}
    reranked = {t: s.reranked for t, s in scores.items() if s.reranked is not None}
    tasks: dict[str, Any] = {}
    for t, s in scores.items():
        entry: dict[str, Any] = {"run": str(run_paths[t]), "first_stage": s.first_stage.to_dict()}
        if s.reranked is not None:
            entry["reranked"] = s.reranked.to_dict()
            entry["rerank"] = s.rerank_summary
        tasks[t] = entry
    report: dict[str, Any] = {
        "benchmark": "BRIGHT",
        "metric": "ndcg@10",
        "metrics": list(metrics),
        "note": "values in [0, 1]; the table and the reference rows are x100; excluded ids "
                "removed before scoring; avg is the unweighted mean of the task means",
        "data": str(data),
        "runs": str(runs_dir),
        "tasks": tasks,
        "average": {"first_stage": _mean_of(first, metrics), "tasks": list(first)},
        "reference": [row.to_dict() for row in BRIGHT_NDCG10],
        "config": config.to_dict() if config is not None else None,
    }
    published = _published_row(config)
    if published is not None:
        report["published_row"] = published.to_dict()
    if reranked:
        report["average"]["reranked"] = _mean_of(reranked, metrics)
    return report


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_finite(obj), ensure_ascii=False, indent=1) + "\n",
                   encoding="utf-8")
    tmp.replace(path)


def _ours_rows(scores: Mapping[str, _TaskScores], model: str | None,
               runs_name: str) -> list[tuple[str, dict[str, float]]]:
    """("ours: ...", {task: NDCG@10 x100}) rows: the first stage, then the reranked runs."""
    rows = [(f"ours: first stage ({runs_name})",
             {t: 100 * s.first_stage.mean["ndcg@10"] for t, s in scores.items()})]
    reranked = {t: 100 * s.reranked.mean["ndcg@10"] for t, s in scores.items()
                if s.reranked is not None}
    if reranked:
        rows.append((f"ours: {model} reranked", reranked))
    return rows


def _print_bright_table(scores: Mapping[str, _TaskScores], model: str | None,
                        runs_name: str, beside: ReferenceRow | None = None) -> None:
    """The paper's rows, then ours; with `beside`, our reranked row right after that
    published row."""
    from rich.table import Table

    from reasonrank.datasets.bright import SHORT_NAMES
    from reasonrank.evaluation.reference import BRIGHT_NDCG10

    subset = len(scores) < len(BRIGHT_TASKS)
    table = Table(title="BRIGHT NDCG@10 (x100)",
                  caption="published rows from the ReasonRank paper; ours scored with the "
                          "excluded ids removed" + ("; avg* over the tasks run" if subset else ""))
    table.add_column("system")
    for t in BRIGHT_TASKS:
        table.add_column(SHORT_NAMES[t], justify="right")
    table.add_column("avg", justify="right")
    ours = _ours_rows(scores, model, runs_name)

    def add_ours(name: str, values: dict[str, float]) -> None:
        cells = [f"{values[t]:.2f}" if t in values else "-" for t in BRIGHT_TASKS]
        avg = sum(values.values()) / len(values)
        table.add_row(name, *cells, f"{avg:.2f}" + ("*" if subset else ""), style="bold")

    paired = ours[1:] if beside is not None else []
    for row in BRIGHT_NDCG10:
        table.add_row(row.system, *(f"{v:.2f}" for v in row.values()), f"{row.avg:.2f}",
                      style="dim")
        if row is beside:
            for name, values in paired:
                add_ours(name, values)
    for name, values in ours[:1] if paired else ours:
        add_ours(name, values)
    console().print(table)


def _plot_task(path: Path, task: str, scores: _TaskScores, model: str | None) -> None:
    from matplotlib.figure import Figure

    from reasonrank.evaluation.reference import BRIGHT_NDCG10

    refs: list[ReferenceRow] = list(BRIGHT_NDCG10)
    labels = [r.system for r in refs]
    values = [r[task] for r in refs]
    colors = ["#b0b0b0"] * len(refs)
    labels.append("ours: first stage")
    values.append(100 * scores.first_stage.mean["ndcg@10"])
    colors.append("#4c72b0")
    if scores.reranked is not None:
        labels.append(f"ours: {model}")
        values.append(100 * scores.reranked.mean["ndcg@10"])
        colors.append("#dd8452")
    fig = Figure(figsize=(8, 4.2), dpi=100)
    ax = fig.add_subplot()
    bars = ax.bar(range(len(values)), values, color=colors)
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=2, fontsize=8)
    ax.set_xticks(range(len(values)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("NDCG@10 (x100)")
    ax.set_ylim(0, max(values) * 1.18 + 1)
    ax.set_title(f"BRIGHT {task}: ours vs published")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    tmp.replace(path)


__all__ = ["cmd_bright", "cmd_evaluate", "register"]
