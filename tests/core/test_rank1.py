"""The rank1 method against an independent transcription of Rank1's released code (orionw/rank1
`rank1.py`, `prompts.py`): prompts on BRIGHT and DL19 inputs, the score, the repair path and the
0.5 fallback, the final order, and scoring on the tiny model from its own logits."""

from __future__ import annotations

import asyncio
import gzip
import json
import math
from pathlib import Path
from typing import Any

import pytest

from reasonrank.config import RerankConfig
from reasonrank.core.backend import Backend
from reasonrank.core.methods import method_class, method_names, register_method
from reasonrank.core.methods.rank1 import (
    Rank1Method,
    instruction_for,
    trim_to_sentence,
    true_false_score,
)
from reasonrank.core.scheduler import Scheduler
from reasonrank.errors import ConfigError, LogprobsUnavailableError
from reasonrank.types import (
    Candidate,
    Generation,
    ParseStatus,
    Prompt,
    Query,
    Request,
    SamplingParams,
)

# --- an independent transcription of Rank1's prompt and scoring --------------------------------

_HEAD = "Determine if the following passage is relevant to the query. Answer only with 'true' or 'false'.\n"  # noqa: E501
_BRIGHT = ("Can you find background information about the concepts used to answer the question:"
           "\n\nFILL_QUERY_HERE\n\nA passage is relevant if it contains background information "
           "about a **sub-concept** that someone might cite/link to when answering the above "
           "question.")
_PONY = ("I will use the programming language pony. Problem: FILL_QUERY_HERE\n\nBut to solve the "
         "problem above, I need to know things about pony. A passage is relevant if it contains "
         "docs that match **any** part (even basic parts) of the code I will have to write for "
         "the above program.")
_THEOREMQA = "Find a passage which uses the same mathematical process as this one: FILL_QUERY_HERE"
_AOPS = ("Find different but similar math problems to FILL_QUERY_HERE\n\nA document is relevant "
         "if it uses the same class of functions and shares **any** overlapping techniques.")
_LEETCODE = ("I am looking to find different problems that share similar data structures (of any "
             "kind) or algorithms (e.g. DFS, DP, sorting, traversals, etc.). I am looking for "
             "problems that share one or both of these similarities to this:\n    \n"
             "FILL_QUERY_HERE\n\nDoes this passage share any similarities? e.g. if there was a "
             "textbook on leetcode problems, this would be in the same book even though it could "
             "be in a different chapter. \n\n\n")
EXPECTED_INSTRUCTION = {"pony": _PONY, "aops": _AOPS, "leetcode": _LEETCODE,
                        "theoremqa_questions": _THEOREMQA, "theoremqa_theorems": _THEOREMQA}


def their_prompt(query: str, doc: dict[str, str], prompt: str | None) -> str:
    query = prompt.replace("FILL_QUERY_HERE", query) if prompt else query
    passage = f"{doc['title']} {doc['text']}" if "title" in doc else doc["text"]
    return _HEAD + "Query: " + query + "\n" + "Passage: " + passage + "\n" + "<think>"


def their_score(final_logits: dict[str, float]) -> float | None:
    if " true" not in final_logits or " false" not in final_logits:
        return None
    true_score, false_score = math.exp(final_logits[" true"]), math.exp(final_logits[" false"])
    return true_score / (true_score + false_score)


def their_trim(text: str) -> str:
    text = text.rstrip()
    if text[-1:] not in (".", "!", "?"):
        cut = max(text.rfind(c) for c in ".!?")
        text = text[:cut + 1] if cut >= 0 else text
    return text.strip()


def _bright_queries(shared_data: Path, task: str, n: int = 3) -> list[dict[str, Any]]:
    with gzip.open(shared_data / "bright" / "examples" / f"{task}.jsonl.gz", "rt") as f:
        return [json.loads(line) for _, line in zip(range(n), f, strict=False)]


@pytest.mark.parametrize("task", ["biology", "earth_science", "stackoverflow", "pony", "leetcode",
                                  "aops", "theoremqa_questions", "theoremqa_theorems"])
def test_prompts_on_bright_equal_the_transcription(shared_data: Path, task: str) -> None:
    method = Rank1Method(RerankConfig(backend="fake")).for_dataset(f"bright/{task}")
    for example in _bright_queries(shared_data, task):
        # BRIGHT's passage texts are not in the shared data: synthetic text per docid
        docid = (example["gold_ids"] or ["d0"])[0]
        doc = {"text": f"passage {docid}: [1] some (text) about {task}."}
        ours = method.prompt(example["query"], Candidate(docid, doc["text"])).text
        assert ours == their_prompt(example["query"], doc, EXPECTED_INSTRUCTION.get(task, _BRIGHT))


def test_prompts_on_dl19_are_the_bare_query_with_titles(shared_data: Path) -> None:
    with gzip.open(shared_data / "trec_dl" / "bm25_top100_dl19.json.gz", "rt") as f:
        data = json.load(f)[:3]
    method = Rank1Method(RerankConfig(backend="fake")).for_dataset("dl19")
    assert method.instruction is None
    for item in data:
        for hit in item["hits"][:5]:
            ours = method.prompt(item["query"], Candidate(hit["docid"], hit["content"])).text
            assert ours == their_prompt(item["query"], {"text": hit["content"]}, None)
            titled = method.prompt(item["query"], Candidate("x", hit["content"], title="T")).text
            assert titled == their_prompt(item["query"], {"title": "T", "text": hit["content"]},
                                          None)


def test_instruction_lookup() -> None:
    assert instruction_for("bright/biology") == _BRIGHT
    assert instruction_for("bright/theoremqa_theorems") == _THEOREMQA
    assert instruction_for("scifact", ).startswith("Claim: FILL_QUERY_HERE")
    assert instruction_for("msmarco") is None and instruction_for(None) is None


@pytest.mark.parametrize("logits", [
    {" true": -0.1, " false": -2.3, " maybe": -4.0},
    {" true": -7.5, " false": -0.002},
    {" true": -0.7, "true": -0.5},  # no " false": not scorable
    {},
])
def test_score_equals_the_transcription(logits: dict[str, float]) -> None:
    assert true_false_score(logits) == their_score(logits)


@pytest.mark.parametrize("text", ["The passage is about fleas. It says nothing about dogs",
                                  "Done!  ", "no punctuation at all", "Is it? Maybe. so",
                                  "  ends well.\n"])
def test_trim_equals_the_transcription(text: str) -> None:
    assert trim_to_sentence(text) == their_trim(text)


# --- a deterministic backend: repair path, fallback, order, concurrency ------------------------


class _Tok:
    """Splits on characters when `split` (a vocabulary without " true" as one token)."""

    def __init__(self, split: bool = False) -> None:
        self.split = split

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) for c in text] if self.split else [hash(text) % 1000]}


class ScriptedBackend(Backend):
    """Answers Rank1 prompts by a rule on the passage: "good N" -> a closed answer whose last
    token's log-probabilities give p(true) = N/10; "ramble" -> no </think> (repaired, the repair
    token's logits from the passage length); "broken" -> repaired without " false" (0.5)."""

    name = "scripted"

    def __init__(self, split: bool = False, logprobs: bool = True) -> None:
        self._tok = _Tok(split)
        self.with_logprobs = logprobs
        self.calls: list[tuple[str, SamplingParams]] = []
        self.in_flight = self.max_in_flight = 0

    @property
    def tokenizer(self) -> Any:
        return self._tok

    @classmethod
    def from_config(cls, config: RerankConfig) -> ScriptedBackend:
        return cls()

    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        self.calls.append((prompt.text, params))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(0.001)
        self.in_flight -= 1
        passage = prompt.text.split("Passage: ", 1)[1].split("\n<think>", 1)[0]
        if not self.with_logprobs:
            return Generation("x", 10, 1, "stop")
        if params.allowed_tokens:  # the repair's one constrained token
            top = {" true": -len(passage) / 10, " false": -1.0}
            if "broken" in passage:
                top = {" true": -0.1}
            return Generation(" true", 20, 1, "length", logprobs=(top,))
        if passage.startswith("good"):
            p = int(passage.split()[1]) / 10
            last = {" true": math.log(p), " false": math.log(1 - p)}
            return Generation("\nIt is about it.\n", 10, 3, "stop",
                              logprobs=({"\n": -0.1}, {"</think>": -0.2}, last))
        return Generation("\nThe passage is long. It rambles on and", 10, 4, "length",
                          logprobs=({"x": -0.1},) * 4)


def _run(backend: Backend, docs: list[str], **options: Any) -> Any:
    config = RerankConfig(backend="fake", method="rank1", **options)
    scheduler = Scheduler(backend, None, config)  # type: ignore[arg-type]  # rank1: no builder
    request = Request(Query("q", "1"), [Candidate(str(i), d, float(10 - i))
                                        for i, d in enumerate(docs)])
    return asyncio.run(scheduler.rerank(request))


def test_scored_repaired_and_fallback_statuses_and_order() -> None:
    backend = ScriptedBackend()
    docs = ["good 3", "ramble on", "good 8", "broken one", "good 3", "ramble"]
    result = _run(backend, docs)
    statuses = [w.status for w in result.windows]
    assert statuses == [ParseStatus.SCORED, ParseStatus.SCORE_REPAIRED, ParseStatus.SCORED,
                        ParseStatus.SCORE_FALLBACK, ParseStatus.SCORED,
                        ParseStatus.SCORE_REPAIRED]
    scores = [w.score for w in result.windows]
    assert scores[0] == pytest.approx(0.3) and scores[2] == pytest.approx(0.8)
    assert scores[3] == 0.5
    for i in (1, 5):  # the repair token's log-probabilities, scored as Rank1 does
        assert scores[i] == their_score({" true": -(len(docs[i])) / 10, " false": -1.0})
    expected = sorted(range(len(docs)), key=lambda i: (-scores[i], i))  # ties: first stage
    assert result.docids == [str(i) for i in expected]
    assert [d.score for d in result.docs] == [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    # the repair prompt: the output trimmed to its last sentence, then "\n</think>"
    prompt_1 = their_prompt("q", {"text": "ramble on"}, None)
    repair = [(t, p) for t, p in backend.calls if t.startswith(prompt_1) and p.allowed_tokens]
    assert len(repair) == 1
    text, params = repair[0]
    assert text == prompt_1 + "\nThe passage is long.\n</think>"
    assert (params.max_new_tokens, params.allowed_tokens) == (1, (" true", " false"))
    first = next(p for t, p in backend.calls if t == prompt_1)
    assert first.stop == ("</think> true", "</think> false") and first.logprobs == 20
    assert first.max_new_tokens == 8192 and first.temperature == 0.0
    trace = result.windows[1].to_dict()
    assert trace["status"] == "score_repaired" and trace["forced"] and trace["score"] == scores[1]


def test_top_k_only_and_the_rest_keep_their_order() -> None:
    result = _run(ScriptedBackend(), ["good 1", "good 2", "good 9", "good 5"], top_k=2)
    assert result.docids == ["1", "0", "2", "3"]
    assert len(result.windows) == 2


def test_one_slot_per_generation_under_the_cap() -> None:
    backend = ScriptedBackend()
    _run(backend, [f"good {1 + i % 8}" for i in range(12)], concurrency=3)
    assert backend.max_in_flight == 3


def test_budget_follows_an_explicit_max_new_tokens() -> None:
    backend = ScriptedBackend()
    _run(backend, ["good 2"], max_new_tokens=100)
    assert backend.calls[0][1].max_new_tokens == 100


def test_vocabulary_without_single_true_false_tokens_is_refused() -> None:
    with pytest.raises(LogprobsUnavailableError, match=r"scripted backend.*' true'"):
        _run(ScriptedBackend(split=True), ["good 2"])


def test_backend_without_logprobs_is_refused() -> None:
    with pytest.raises(LogprobsUnavailableError, match="scripted backend returned no log-prob"):
        _run(ScriptedBackend(logprobs=False), ["good 2"])


def test_settings() -> None:
    assert {"listwise", "rank1"} <= set(method_names())
    assert RerankConfig().method == "listwise"
    with pytest.raises(ConfigError, match="unknown method 'setwise'"):
        RerankConfig(method="setwise")
    with pytest.raises(ConfigError, match="completions endpoint"):
        RerankConfig(method="rank1", backend="openai", endpoint="chat")
    register_method("pointwise-again", "reasonrank.core.methods.rank1:Rank1Method")
    assert method_class("pointwise-again") is Rank1Method
    assert RerankConfig(method="pointwise-again").method == "pointwise-again"


# --- the tiny model: the hf backend's scores equal a direct computation from its logits --------


def _direct_scores(model_dir: Path, prompts: list[str], budget: int) -> list[float]:
    """Rank1 on the tiny model by hand: greedy decoding with full forward passes, then the
    last position's top 20 (+ the chosen token), else the repair prompt's next-token logits."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    t_id = tok(" true", add_special_tokens=False).input_ids[0]
    f_id = tok(" false", add_special_tokens=False).input_ids[0]
    scores = []
    for prompt in prompts:
        ids = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
        out: list[int] = []
        last_lp = None
        with torch.no_grad():
            for _ in range(budget):
                logits = model(torch.cat([ids, torch.tensor([out], dtype=torch.long)], 1)
                               if out else ids).logits[0, -1]
                last_lp = torch.log_softmax(logits.float(), -1)
                out.append(int(logits.argmax()))
                if out[-1] == tok.eos_token_id:
                    break
            text = tok.decode(out, skip_special_tokens=True)
            assert "</think>" not in text  # a random model never closes its reasoning
            assert last_lp is not None
            top = set(last_lp.topk(20).indices.tolist()) | {out[-1]}
            if t_id in top and f_id in top:
                scores.append(1 / (1 + math.exp(float(last_lp[f_id] - last_lp[t_id]))))
                continue
            repair = prompt + "\n" + their_trim(text) + "\n</think>"
            rids = tok(repair, add_special_tokens=False, return_tensors="pt").input_ids
            lp = torch.log_softmax(model(rids).logits[0, -1].float(), -1)
            scores.append(their_score({" true": float(lp[t_id]), " false": float(lp[f_id])})
                          or 0.5)
    return scores


@pytest.mark.parametrize("batching", ["continuous", "lockstep"])
def test_tiny_model_scores_equal_a_direct_computation(tiny_qwen_dir: Path, batching: str) -> None:
    from reasonrank import Reranker

    docs = ["Fleas live a year. They bite.", "The sky is blue", "a flea's life cycle has stages!"]
    query = "how long is the life cycle of a flea"
    with Reranker(str(tiny_qwen_dir), backend="hf", method="rank1", max_new_tokens=12,
                  device="cpu", dtype="float32", hf_batching=batching, batch_size=2) as rr:
        result = rr.rerank(query, docs)
    expected = _direct_scores(tiny_qwen_dir, [their_prompt(query, {"text": d}, None)
                                              for d in docs], 12)
    got = [w.score for w in result.windows]
    assert got == pytest.approx(expected, abs=1e-5)
    assert all(w.status is not ParseStatus.SCORE_FALLBACK for w in result.windows)
    order = sorted(range(3), key=lambda i: (-expected[i], i))
    assert result.docids == [str(i) for i in order]


@pytest.mark.parametrize("dataset", ["bright/pony", "scifact"])
def test_the_dataset_setting_picks_rank1s_instruction(dataset: str) -> None:
    """`RerankConfig.dataset` (`--dataset`, YAML, the server) reaches every prompt as Rank1's
    per-dataset instruction, the same as `Reranker.set_dataset`."""
    backend = ScriptedBackend()
    _run(backend, ["good 3", "good 8"], dataset=dataset)
    instruction = instruction_for(dataset)
    assert instruction is not None
    head = instruction.split("FILL_QUERY_HERE")[0]
    prompts = [t for t, p in backend.calls if not p.allowed_tokens]
    assert len(prompts) == 2 and all(head in t for t in prompts)
    plain = ScriptedBackend()
    _run(plain, ["good 3", "good 8"])
    assert not any(head in t for t, _ in plain.calls)
