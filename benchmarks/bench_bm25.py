"""BM25 throughput on SciFact: reasonrank's bm25s index against rank_bm25's BM25Okapi.

Both engines get the same tokens (reasonrank's analyzer: Lucene stopwords, Porter stemming)
and k1=0.9, b=0.4. Indexing is timed on the pre-tokenised corpus (docs/s) and, for
reasonrank, also end to end from raw text (`BM25Index.build`); search is timed end to end from
the query strings to the top 100 (queries/s), for rank_bm25 as `get_scores` plus a top-100
sort. Each timing is the best of `--repeats` runs. NDCG@10 of both runs is printed as a sanity
check (they differ a little: BM25Okapi uses Robertson's idf with an epsilon floor, not
Lucene's).

    python benchmarks/bench_bm25.py [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from reasonrank.evaluation import evaluate
from reasonrank.io import read_qrels, read_queries
from reasonrank.retrieval import BM25Index, scifact_corpus

SHARED = Path(os.environ.get("REASONRANK_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))


def best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, out = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def ndcg10(run: dict[str, list[tuple[str, float]]], qrels: dict[str, dict[str, int]]) -> float:
    return evaluate(run, qrels, ["ndcg@10"]).mean["ndcg@10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="reasonrank search threads")
    parser.add_argument("--k", type=int, default=100)
    args = parser.parse_args()

    import bm25s
    import rank_bm25

    data = SHARED / "scifact"
    corpus = scifact_corpus(data / "scifact_hf_csv.zip")
    queries = read_queries(data / "topics.test.tsv.gz")
    qrels = read_qrels(data / "qrels.test.txt")
    n_docs, n_queries = len(corpus), len(queries)
    print(f"SciFact: {n_docs:,} docs, {n_queries} queries; k1=0.9 b=0.4, top {args.k}; "
          f"bm25s {bm25s.__version__}, rank_bm25 {getattr(rank_bm25, '__version__', '0.2.x')}")

    t_build, index = best_of(args.repeats, lambda: BM25Index.build(corpus))
    analyzer = index.analyzer
    texts = [f"{d.title} {d.text}" if d.title else d.text for d in corpus.values()]
    t_tok, tokens = best_of(args.repeats, lambda: type(analyzer)(index.settings)(texts))

    def bm25s_index() -> Any:
        retriever = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
        retriever.index(tokens, show_progress=False)
        return retriever

    t_bm25s, _ = best_of(args.repeats, bm25s_index)
    t_okapi, okapi = best_of(args.repeats, lambda: rank_bm25.BM25Okapi(tokens, k1=0.9, b=0.4))

    t_search, run = best_of(
        args.repeats, lambda: index.search(queries, k=args.k, n_threads=args.threads))
    docids = list(corpus)

    def okapi_search() -> dict[str, list[tuple[str, float]]]:
        out = {}
        for qid, toks in zip(queries, analyzer(list(queries.values())), strict=True):
            scores = okapi.get_scores(toks)
            best = np.argsort(-scores, kind="stable")[: args.k]
            out[qid] = [(docids[i], float(scores[i])) for i in best]
        return out

    t_okapi_search, okapi_run = best_of(args.repeats, okapi_search)

    print(f"tokenisation (shared)          {n_docs / t_tok:12,.0f} docs/s")
    print(f"indexing, tokenised  bm25s     {n_docs / t_bm25s:12,.0f} docs/s")
    print(f"indexing, tokenised  rank_bm25 {n_docs / t_okapi:12,.0f} docs/s  "
          f"(bm25s / rank_bm25 = {t_okapi / t_bm25s:.1f}x)")
    print(f"BM25Index.build, from text     {n_docs / t_build:12,.0f} docs/s  "
          f"({t_build:.2f} s; vs rank_bm25 incl. tokenisation "
          f"{(t_okapi + t_tok) / t_build:.1f}x)")
    print(f"search  reasonrank/bm25s       {n_queries / t_search:12,.0f} queries/s "
          f"({t_search * 1000:.0f} ms, {args.threads} thread(s))")
    print(f"search  rank_bm25              {n_queries / t_okapi_search:12,.0f} queries/s "
          f"({t_okapi_search * 1000:.0f} ms)")
    print(f"search speed-up                {t_okapi_search / t_search:12.1f}x")
    print(f"NDCG@10: reasonrank {ndcg10(run, qrels):.4f}, rank_bm25 BM25Okapi "
          f"{ndcg10(okapi_run, qrels):.4f}")


if __name__ == "__main__":
    main()
