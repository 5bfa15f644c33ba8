"""Output scores carry the reranked order: for any first-stage scores (ties, missing, equal
after rounding) and any model answers, an evaluator that sorts the written run by score sees
exactly the reranked order. `output_scores="reference"` reproduces the released code's writing
(positional first-stage scores, `{score:.6f}`), ties and all."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reasonrank.backends.fake import FakeBackend
from reasonrank.config import RerankConfig
from reasonrank.core.prompts import PromptBuilder
from reasonrank.core.scheduler import Scheduler
from reasonrank.evaluation.metrics import trec_order
from reasonrank.io import RunFiles, read_requests, read_trec_run
from reasonrank.runner import score_format
from reasonrank.types import Generation

pytrec_eval = pytest.importorskip("pytrec_eval")

# first-stage scores that tie, are missing (None: the request file has no score), or differ
# only below the 6th decimal
SCORES = st.one_of(
    st.none(),
    st.sampled_from([1.0, 0.5, 0.0, 1.0000001, 1.00000049, 1.0000004, -2.5, 1e-7, 3e-7]),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
ANSWERS = st.one_of(
    st.permutations(list(range(1, 5))).map(
        lambda p: "<think>t</think> <answer>" + " > ".join(f"[{i}]" for i in p) + "</answer>"),
    st.lists(st.integers(0, 9), max_size=8).map(
        lambda ids: "<answer>" + " > ".join(f"[{i}]" for i in ids)),
    st.text(alphabet="[]>0123456789 <answer>/think", max_size=40),
)


class ScriptedBackend(FakeBackend):
    """Answers from a list, in turn (the model's answers are whatever hypothesis draws)."""

    def __init__(self, tokenizer: Any, answers: list[str]) -> None:
        super().__init__(tokenizer)
        self.answers = itertools.cycle(answers)

    async def generate(self, prompt: Any, params: Any) -> Generation:
        return Generation(next(self.answers), 5, 5, "stop")


def request_file(path: Path, scores: list[float | None]) -> Path:
    hits = [{"docid": f"d{i}", "content": f"passage {i}",
             **({"score": s} if s is not None else {})} for i, s in enumerate(scores)]
    path.write_text(json.dumps([{"query": {"text": "q", "qid": "1"}, "hits": hits}]))
    return path


def rerank_and_write(tokenizer: Any, tmp: Path, scores: list[float | None], answers: list[str],
                     output_scores: str = "rank", **options: Any) -> tuple[Any, Path]:
    (request,) = read_requests(request_file(tmp / "requests.json", scores))
    config = RerankConfig(backend="fake", window_size=4, step=2, output_scores=output_scores,
                          **options)
    sched = Scheduler(ScriptedBackend(tokenizer, answers), PromptBuilder(tokenizer, "reasoning",
                                                                         8), config)
    result = asyncio.run(sched.rerank(request))
    out = tmp / "run.trec"
    for path in (out, Path(f"{out}.partial"), Path(f"{out}.traces.partial")):
        path.unlink(missing_ok=True)
    files = RunFiles(out, f"{out}.traces", score_format=score_format(config),
                     decreasing=output_scores == "rank")
    files.append(result)
    files.finalize(["1"])
    return result, out


def evaluated_order(out: Path) -> list[str]:
    """The order trec_eval/pytrec_eval use: score descending, ties by docid descending."""
    (docs,) = read_trec_run(out).values()
    return trec_order(dict(docs))


def pytrec_ndcg(out: Path, reranked: list[str]) -> float:
    """NDCG of the written run against graded labels that only the reranked order maximises."""
    (docs,) = read_trec_run(out).values()
    qrels = {"1": {d: len(reranked) - i for i, d in enumerate(reranked)}}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg"})
    return evaluator.evaluate({"1": dict(docs)})["1"]["ndcg"]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scores=st.lists(SCORES, min_size=1, max_size=14),
       answers=st.lists(ANSWERS, min_size=1, max_size=6), num_passes=st.integers(1, 2))
def test_evaluating_the_written_run_gives_the_reranked_order(qwen_tokenizer, tmp_path_factory,
                                                             scores, answers, num_passes):
    tmp = tmp_path_factory.mktemp("scores")
    result, out = rerank_and_write(qwen_tokenizer, tmp, scores, answers, num_passes=num_passes)
    api_scores = [d.score for d in result.docs]
    assert all(a > b for a, b in itertools.pairwise(api_scores))  # the API result too
    assert [d.first_stage_score for d in result.docs] == [
        0.0 if scores[int(d.docid[1:])] is None else scores[int(d.docid[1:])]
        for d in result.docs]
    assert [d for d, _ in read_trec_run(out)["1"]] == result.docids  # the lines' order
    assert evaluated_order(out) == result.docids
    assert pytrec_ndcg(out, result.docids) == pytest.approx(1.0, abs=1e-12)


def test_reference_scores_reproduce_the_released_writing_and_its_ties(qwen_tokenizer,
                                                                      tmp_path):
    # no scores in the request file (all 0.0) and a model that reverses every window
    answers = ["<think>t</think> <answer>[4] > [3] > [2] > [1]</answer>"]
    scores: list[float | None] = [None] * 8
    result, out = rerank_and_write(qwen_tokenizer, tmp_path, scores, answers, "reference")
    assert [line.split(" ")[4] for line in out.read_text().splitlines()] == ["0.000000"] * 8
    assert result.docids != [f"d{i}" for i in range(8)]
    # every score ties, so an evaluator re-sorts by docid: not the reranked order
    assert evaluated_order(out) == sorted(result.docids, reverse=True) != result.docids
    assert pytrec_ndcg(out, result.docids) < 0.99
    # equal after rounding to 6 decimals: distinct scores, tied once written
    rounded = [1.0000004, 1.0000003, 1.0000002, 1.0000001, 1.0, 0.9, 0.8, 0.7]
    result, out = rerank_and_write(qwen_tokenizer, tmp_path, list(rounded), answers, "reference")
    assert [d.score for d in result.docs] == rounded  # positions keep their scores
    assert evaluated_order(out) != result.docids
    # the default writes n + 1 - rank for the same answers: the order survives
    result, out = rerank_and_write(qwen_tokenizer, tmp_path, list(rounded), answers)
    assert evaluated_order(out) == result.docids
    assert [line.split(" ")[4] for line in out.read_text().splitlines()] == [
        f"{float(8 - i)!r}" for i in range(8)]


def test_relevance_scores_strictly_decrease() -> None:
    from reasonrank.types import relevance_score

    for n in (1, 2, 3, 7, 100, 1000, 4096):
        values = [relevance_score(r, n) for r in range(1, n + 1)]
        assert all(a > b for a, b in itertools.pairwise(values)) and values[-1] > 0
