"""TREC-style collections: topics (`qid<TAB>text`) with qrels, and RankGPT/rank_llm request files.

The TREC DL 2019 passage files of `../shared/data/trec_dl` are an example::

    topics.dl19-passage.txt       qid<TAB>query             (read_queries)
    qrels.dl19-passage.txt        qid Q0 docid rel          (read_qrels)
    bm25_top100_dl19.json.gz      [{"query", "hits": [{"qid", "docid", "rank", "score",
                                                       "content"}]}]   (read_requests)
"""

from __future__ import annotations

from collections.abc import Sequence

from reasonrank.datasets.base import IRDataset
from reasonrank.io import Qrels, Run, read_qrels, read_queries, read_requests
from reasonrank.io._files import StrPath
from reasonrank.types import Request


def load_trec(
    topics: StrPath, qrels: StrPath, *, judged_only: bool = True, name: str = "trec"
) -> IRDataset:
    """Topics and qrels; with `judged_only` the topics without judgements are dropped."""
    judgements = read_qrels(qrels)
    queries = read_queries(topics)
    if judged_only:
        queries = {q: t for q, t in queries.items() if q in judgements}
    return IRDataset(name, queries, judgements)


def requests_to_run(requests: Sequence[Request], *, use_scores: bool = True) -> Run:
    """The first-stage run a request file carries.

    With `use_scores` the candidates' scores are kept (trec_eval then orders by them, ties by
    doc id); otherwise the list order is made explicit as scores n, n-1, ..., 1.
    """
    run: Run = {}
    for request in requests:
        cands = request.candidates
        if use_scores:
            run[request.query.qid] = [(c.docid, c.score) for c in cands]
        else:
            run[request.query.qid] = [(c.docid, float(len(cands) - i)) for i, c in enumerate(cands)]
    return run


def load_rankgpt(
    path: StrPath, qrels: StrPath | None = None
) -> tuple[list[Request], Run, Qrels | None]:
    """A RankGPT/rank_llm request file: `(requests, first-stage run, qrels or None)`."""
    requests = read_requests(path)
    return requests, requests_to_run(requests), read_qrels(qrels) if qrels is not None else None
