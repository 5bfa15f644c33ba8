"""CLI: `reasonrank index`, `reasonrank retrieve` and `reasonrank fuse` (first-stage runs)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from reasonrank.cli.console import counter, progress_bar, quiet_libraries, say

DEFAULT_FUSED_DEPTH = 1000


def register(sub: Any) -> None:  # argparse's subparsers action
    """Add this module's subcommands to the `reasonrank` parser."""
    from reasonrank.cli.paths import CommandPaths

    ix = sub.add_parser("index", help="build a BM25 (or dense) index of a corpus")
    ix.add_argument("--corpus", required=True,
                    help="corpus JSONL/TSV (_id/id/docid, title, text), or the SciFact CSV zip")
    ix.add_argument("--index", required=True, help="index directory to write")
    bm = ix.add_argument_group("BM25 options")
    bm.add_argument("--k1", type=float, default=0.9, help="BM25 k1 (default: 0.9)")
    bm.add_argument("--b", type=float, default=0.4, help="BM25 b (default: 0.4)")
    bm.add_argument("--method", default="lucene",
                    choices=("lucene", "robertson", "atire", "bm25l", "bm25+"),
                    help="BM25 variant (default: lucene)")
    bm.add_argument("--stemmer", default="porter",
                    help="PyStemmer algorithm (default: porter, as Anserini)")
    bm.add_argument("--no-stem", action="store_true", help="do not stem")
    bm.add_argument("--no-stopwords", action="store_true", help="keep stopwords")
    ix.add_argument("--fields", default="title+text", choices=("title+text", "text", "title"),
                    help="what is indexed (default: title+text)")
    dn = ix.add_argument_group("dense options")
    dn.add_argument("--dense", metavar="MODEL", default=None,
                    help="build a dense index with this sentence-transformers model (path or "
                    "name; 'all-MiniLM-L6-v2' is the packaged offline copy)")
    dn.add_argument("--batch-size", type=int, default=64, help="encoding batch (default: 64)")
    dn.add_argument("--device", default=None, help="torch device (default: automatic)")
    ix.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    ix.set_defaults(handler="reasonrank.cli.retrieval:cmd_index",
                    paths=CommandPaths(inputs=("corpus",), output_dirs=("index",)))

    rt = sub.add_parser("retrieve", help="search an index and write a TREC run")
    rt.add_argument("--index", required=True, help="index directory (from `reasonrank index`)")
    rt.add_argument("--queries", required=True, help="queries TSV (qid<TAB>text) or JSONL")
    rt.add_argument("--k", type=int, default=100, help="documents per query (default: 100)")
    rt.add_argument("--output", required=True, help="TREC run to write (.gz compresses)")
    rt.add_argument("--tag", default=None, help="run tag (default: bm25 or dense)")
    rt.add_argument("--dense", metavar="MODEL", default=None,
                    help="query encoder for a dense index (default: the index's model)")
    rt.add_argument("--batch-size", type=int, default=None,
                    help="queries per batch (default: 256 for BM25, 64 for dense)")
    rt.add_argument("--threads", type=int, default=1,
                    help="BM25 search threads (0: one per CPU; default: 1)")
    rt.add_argument("--device", default=None, help="torch device for dense queries")
    rt.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    rt.set_defaults(handler="reasonrank.cli.retrieval:cmd_retrieve",
                    paths=CommandPaths(inputs=("queries",), outputs=("output",),
                                       read=("index",)))

    fu = sub.add_parser("fuse", help="fuse TREC runs (reciprocal rank fusion or interpolation)")
    fu.add_argument("--runs", nargs="+", required=True, metavar="RUN", help="runs to fuse")
    fu.add_argument("--output", required=True, help="fused TREC run to write")
    fu.add_argument("--method", default="rrf", choices=("rrf", "interpolate"),
                    help="fusion method (default: rrf)")
    fu.add_argument("--weights", nargs="+", type=float, default=None,
                    help="one weight per run (default: 1 each)")
    fu.add_argument("--rrf-k", type=float, default=60, help="RRF constant (default: 60)")
    fu.add_argument("--normalization", default="minmax", choices=("minmax", "zscore"),
                    help="score normalisation for interpolate (default: minmax)")
    fu.add_argument("--depth", type=int, default=None,
                    help="use only the top DEPTH docs of each run (default: all)")
    fu.add_argument("--k", type=int, default=DEFAULT_FUSED_DEPTH,
                    help=f"documents per query written (default: {DEFAULT_FUSED_DEPTH})")
    fu.add_argument("--tag", default=None, help="run tag (default: rrf or interpolate)")
    fu.add_argument("-q", "--quiet", action="store_true", help="no summary")
    fu.set_defaults(handler="reasonrank.cli.retrieval:cmd_fuse",
                    paths=CommandPaths(inputs=("runs",), outputs=("output",)))


def _input(path: str) -> str:
    """`path`, or a clear error (exit 2) when it is not a readable file."""
    from pathlib import Path

    from reasonrank.errors import InputFormatError

    if not Path(path).is_file():
        raise InputFormatError(path, None, "no such file")
    return path


def _read_corpus(path: str) -> Any:
    _input(path)
    if path.lower().endswith(".zip"):
        from reasonrank.retrieval.scifact import scifact_corpus

        return scifact_corpus(path)
    from reasonrank.io import read_corpus

    return read_corpus(path)


def cmd_index(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    corpus = _read_corpus(args.corpus)
    bar = progress_bar(args.quiet, transient=True)
    advance = counter(bar, "encoding" if args.dense else "indexing", len(corpus))
    if args.dense:
        from reasonrank.retrieval.dense import DenseIndex

        if args.quiet:
            quiet_libraries()
        with bar:
            index: Any = DenseIndex.build(corpus, args.dense, batch_size=args.batch_size,
                                          device=args.device, fields=args.fields,
                                          progress=advance)
        what = f"dense ({args.dense}, {index.embeddings.shape[1]}-d)"
    else:
        from reasonrank.retrieval.bm25 import BM25Index

        stemmer = None if args.no_stem else args.stemmer
        stopwords = None if args.no_stopwords else "en"
        with bar:
            index = BM25Index.build(corpus, k1=args.k1, b=args.b, method=args.method,
                                    stemmer=stemmer, stopwords=stopwords, fields=args.fields,
                                    progress=advance)
        what = (f"BM25 ({args.method}, k1={args.k1:g}, b={args.b:g}, stemmer={stemmer}, "
                f"stopwords={stopwords})")
    index.save(args.index)
    if not args.quiet:
        elapsed = time.perf_counter() - start
        say(f"indexed {len(corpus):,} documents, {what}, in {elapsed:.1f} s "
                         f"-> {args.index}")
    return 0


def cmd_retrieve(args: argparse.Namespace) -> int:
    from reasonrank.errors import ConfigError
    from reasonrank.io import read_queries
    from reasonrank.io.readers import require_items
    from reasonrank.retrieval.common import check_k, index_kind, write_run

    check_k(args.k)
    start = time.perf_counter()
    kind = index_kind(args.index)
    if args.dense and kind != "dense":
        raise ConfigError(f"--dense needs a dense index, but {args.index} is a {kind} index")
    queries = require_items(args.queries, read_queries(_input(args.queries)), "queries")
    bar = progress_bar(args.quiet, transient=True)
    advance = counter(bar, "retrieving", len(queries))
    if kind == "dense":
        from reasonrank.retrieval.dense import DenseIndex

        if args.quiet:
            quiet_libraries()
        index: Any = DenseIndex.load(args.index, model=args.dense, device=args.device)
        with bar:
            run = index.search(queries, args.k, batch_size=args.batch_size or 64,
                               progress=advance)
    else:
        from reasonrank.retrieval.bm25 import BM25Index

        index = BM25Index.load(args.index)
        with bar:
            run = index.search(queries, args.k, batch_size=args.batch_size or 256,
                               n_threads=args.threads, progress=advance)
    lines = write_run(run, args.output, tag=args.tag or kind)
    if not args.quiet:
        empty = sum(1 for docs in run.values() if not docs)
        note = f" ({empty} without any match)" if empty else ""
        elapsed = time.perf_counter() - start
        say(
            f"retrieved {lines:,} results for {len(run):,} queries{note} from {len(index):,} "
            f"documents ({kind}, k={args.k}) in {elapsed:.1f} s -> {args.output}"
        )
    return 0


def cmd_fuse(args: argparse.Namespace) -> int:
    from reasonrank.errors import ConfigError
    from reasonrank.io import read_run, trec_eval_order
    from reasonrank.retrieval.common import check_k, write_run
    from reasonrank.retrieval.fusion import interpolate, reciprocal_rank_fusion

    check_k(args.k)
    if len(args.runs) < 2:
        raise ConfigError("fuse needs at least two runs")
    # fusion ranks each run as an evaluator does: by score (trec_eval's order)
    runs = [trec_eval_order(read_run(_input(path))) for path in args.runs]
    if args.method == "rrf":
        fused = reciprocal_rank_fusion(runs, k=args.rrf_k, weights=args.weights,
                                       depth=args.depth)
    else:
        fused = interpolate(runs, args.weights, normalization=args.normalization,
                            depth=args.depth)
    fused = {qid: docs[: args.k] for qid, docs in fused.items()}
    lines = write_run(fused, args.output, tag=args.tag or args.method)
    if not args.quiet:
        say(f"fused {len(runs)} runs ({args.method}) into {lines:,} results for "
                         f"{len(fused):,} queries -> {args.output}")
    return 0
