"""Rank1 (jhu-clsp/rank1-*, code orionw/rank1), the pointwise reasoning reranker, as its
released code runs it:

- one raw prompt per (query, document), no chat template: "Determine if the following passage is
  relevant to the query. Answer only with 'true' or 'false'.\\nQuery: {query}\\nPassage:
  {passage}\\n<think>", the query first put into the dataset's instruction where Rank1 has one
  (`data/rank1/instructions.json`: BEIR sets and BRIGHT tasks) and the passage "title text";
- greedy generation of at most 8,192 tokens, stopping at "</think> true" or "</think> false",
  with the top-20 log-probabilities of every generated token;
- the score p(true) / (p(true) + p(false)) from the last generated token's log-probabilities of
  " true" and " false", when both are among them (status "scored");
- otherwise the repair: the output trimmed to its last sentence (. ! ?), the prompt continued
  with "\\n{trimmed}\\n</think>" and one token restricted to " true" / " false", scored the same
  way (status "score_repaired"), and 0.5 when that still gives no score ("score_fallback").

The documents are ranked by score, ties by first-stage order; the written scores follow
`output_scores` (strictly decreasing by default) and each trace record carries the score.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from reasonrank.core.methods.base import Engine, Method, ranked_result
from reasonrank.errors import ConfigError, LogprobsUnavailableError
from reasonrank.types import (
    Candidate,
    Generation,
    ParseStatus,
    Prompt,
    RankedResult,
    Request,
    SamplingParams,
    WindowTrace,
)

if TYPE_CHECKING:
    from reasonrank.config import RerankConfig
    from reasonrank.core.backend import Backend
    from reasonrank.core.prompts import PromptBuilder

__all__ = [
    "RANK1_MAX_NEW_TOKENS",
    "Rank1Method",
    "instruction_for",
    "rank1_prompt",
    "trim_to_sentence",
    "true_false_score",
]

TRUE, FALSE = " true", " false"
STOP = ("</think> true", "</think> false")
TOP_LOGPROBS = 20
RANK1_MAX_NEW_TOKENS = 8192  # Rank1's max_output_tokens
FALLBACK_SCORE = 0.5
# `max_new_tokens` at this value (the listwise default) means "the method's own budget"
_LISTWISE_DEFAULT_BUDGET = SamplingParams().max_new_tokens
_QUERY_SLOT = "FILL_QUERY_HERE"


@cache
def instructions() -> dict[str, str]:
    """Rank1's per-dataset instructions, by dataset name ("scifact", "bright/pony", ...)."""
    path = resources.files("reasonrank").joinpath("data/rank1/instructions.json")
    data: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def instruction_for(dataset: str | None) -> str | None:
    """The instruction Rank1 uses for `dataset`: its own, else (a BRIGHT task) BRIGHT's
    default, else None (the bare query, as for MS MARCO and TREC DL)."""
    if not dataset:
        return None
    table = instructions()
    key = dataset.lower()
    if key in table:
        return table[key]
    family = key.split("/", 1)[0]
    return table.get(family) if "/" in key else None


def passage_text(candidate: Candidate) -> str:
    """The passage as Rank1 receives it: "title text" when there is a title."""
    if candidate.title is not None:
        return f"{candidate.title} {candidate.text}"
    return candidate.text


def rank1_prompt(query: str, passage: str, instruction: str | None = None) -> str:
    """Rank1's raw prompt; it ends with "<think>", where the model continues."""
    if instruction:
        query = instruction.replace(_QUERY_SLOT, query)
    return ("Determine if the following passage is relevant to the query. "
            "Answer only with 'true' or 'false'.\n"
            f"Query: {query}\n"
            f"Passage: {passage}\n"
            "<think>")


def true_false_score(top: Mapping[str, float] | None) -> float | None:
    """p(true) / (p(true) + p(false)) from one position's log-probabilities; None unless both
    tokens are there."""
    if top is None or TRUE not in top or FALSE not in top:
        return None
    p_true, p_false = math.exp(top[TRUE]), math.exp(top[FALSE])
    if p_true + p_false == 0.0:
        return None
    return p_true / (p_true + p_false)


def last_token_score(gen: Generation) -> float | None:
    return true_false_score(gen.logprobs[-1]) if gen.logprobs else None


def trim_to_sentence(text: str) -> str:
    """Rank1's repair trim: cut after the last . ! or ? unless the text already ends with one."""
    text = text.rstrip()
    if not text.endswith((".", "!", "?")):
        last = max(text.rfind("."), text.rfind("!"), text.rfind("?"))
        if last != -1:
            text = text[:last + 1]
    return text.strip()


def check_vocabulary(backend: Backend) -> None:
    """A `LogprobsUnavailableError` unless " true" and " false" are one token each."""
    tokenizer = backend.tokenizer
    for token in (TRUE, FALSE):
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise LogprobsUnavailableError(
                f"the rank1 method scores the tokens {TRUE!r} and {FALSE!r}, but the "
                f"{backend.name} backend's vocabulary encodes {token!r} as {len(ids)} tokens; "
                "use a model whose vocabulary has them (Rank1's models do)"
            )


@dataclass(frozen=True, slots=True)
class _Scored:
    score: float
    trace: WindowTrace


class Rank1Method(Method):
    """Pointwise: every document of the top k is one prompt, all through the scheduler's cap."""

    name = "rank1"

    def __init__(self, config: RerankConfig, instruction: str | None = None) -> None:
        self.config = config
        self.instruction = instruction
        budget = config.max_new_tokens
        if budget == _LISTWISE_DEFAULT_BUDGET:
            budget = RANK1_MAX_NEW_TOKENS
        self.params = SamplingParams(
            max_new_tokens=budget, temperature=config.temperature, seed=config.seed,
            stop=STOP, logprobs=TOP_LOGPROBS,
        )
        self.repair_params = SamplingParams(
            max_new_tokens=1, temperature=0.0, logprobs=TOP_LOGPROBS, allowed_tokens=(TRUE, FALSE)
        )
        self._checked: set[int] = set()

    @classmethod
    def from_config(cls, config: RerankConfig, builder: PromptBuilder) -> Rank1Method:
        return cls(config)

    @classmethod
    def check_settings(cls, config: RerankConfig) -> None:
        problem = config.backend_options.raw_prompt_problem()
        if problem:
            raise ConfigError(f"the rank1 method continues a raw prompt and reads its "
                              f"log-probabilities: {problem}")

    def for_dataset(self, dataset: str | None) -> Rank1Method:
        return Rank1Method(self.config, instruction_for(dataset))

    def prompt(self, query: str, candidate: Candidate) -> Prompt:
        text = rank1_prompt(query, passage_text(candidate), self.instruction)
        return Prompt(text=text, messages=({"role": "user", "content": text},))

    async def rerank(self, engine: Engine, request: Request) -> RankedResult:
        if id(engine.backend) not in self._checked:
            check_vocabulary(engine.backend)
            self._checked.add(id(engine.backend))
        scored = self.config.top_k
        cands = request.candidates[:scored]
        results = await asyncio.gather(*(
            self._score(engine, request, i, self.prompt(request.query.text, c))
            for i, c in enumerate(cands)
        ))
        order = scores_in_order([r.score for r in results])
        items = order + list(range(len(cands), len(request.candidates)))
        return ranked_result(request, items, [r.trace for r in results],
                             self.config.output_scores)

    async def _score(self, engine: Engine, request: Request, index: int,
                     prompt: Prompt) -> _Scored:
        backend = engine.backend
        repair: Generation | None = None
        repaired_text = ""
        async with engine.slots():
            began = time.perf_counter()
            gen = await backend.generate(prompt, self.params)
            _require_logprobs(backend, gen)
            score = last_token_score(gen)
            if score is None:
                repaired_text = f"\n{trim_to_sentence(gen.text)}\n</think>"
                continuation = Prompt(text=prompt.text + repaired_text,
                                      messages=(*prompt.messages,
                                                {"role": "assistant", "content": repaired_text}))
                repair = await backend.generate(continuation, self.repair_params)
                _require_logprobs(backend, repair)
                score = last_token_score(repair)
            latency = time.perf_counter() - began
        if repair is None:
            status, output = ParseStatus.SCORED, gen.text
        else:
            output = repaired_text + repair.text
            status = ParseStatus.SCORE_REPAIRED if score is not None else ParseStatus.SCORE_FALLBACK
        final = FALLBACK_SCORE if score is None else score
        trace = WindowTrace(
            start=index, end=index + 1, status=status, output=output, order=[0],
            prompt_tokens=gen.prompt_tokens, output_tokens=gen.output_tokens,
            finish_reason=gen.finish_reason, latency_s=latency,
            raw_finish_reason=gen.raw_finish_reason, forced=repair is not None,
            forced_tokens=None if repair is None else repair.output_tokens, score=final,
        )
        engine.emit(request, trace)
        return _Scored(final, trace)


def _require_logprobs(backend: Backend, gen: Generation) -> None:
    if gen.logprobs is None:
        raise LogprobsUnavailableError(
            f"the {backend.name} backend returned no log-probabilities; the rank1 method needs "
            "them (backends that give them: hf, vllm, openai with the completions endpoint)"
        )


def scores_in_order(scores: Sequence[float]) -> list[int]:
    """Indices by score, highest first, ties by first-stage order (Rank1's final order)."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))
