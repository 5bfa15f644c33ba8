"""A deterministic, model-free backend for dry runs, tests and CPU-side benchmarks.

It reads the passages back from the rendered prompt and answers in the reasoning format, ranking
them by a fixed strategy: "overlap" (query term overlap, a tiny lexical reranker), "reverse" or
"identity". `latency` simulates generation time.

Asked for log-probabilities (the rank1 method's pointwise prompts), it judges the passage after
"Passage:" against the text after "Query:" instead: with k distinct query terms in the passage,
p(true) = (k + 1) / (k + 2); it closes its reasoning ("</think> true" when p > 1/2, else
"</think> false", the text cut before it as stop strings do) and gives the last token's
log-probabilities of " true" and " false".
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass
from typing import Any

from reasonrank.backends.base import Backend
from reasonrank.config import BackendOptions, RerankConfig
from reasonrank.core.options import NON_NEGATIVE
from reasonrank.errors import ConfigError
from reasonrank.settings import option
from reasonrank.types import Generation, Prompt, SamplingParams

_PASSAGE = re.compile(r"^\[(\d+)\] (.*)$", re.MULTILINE)
_QUERY = re.compile(r"^Search Query: (.*)\.$", re.MULTILINE)
_WORD = re.compile(r"\w+")
_POINTWISE = re.compile(r"Query: (.*)\nPassage: (.*)\n<think>", re.DOTALL)
STRATEGIES = ("overlap", "reverse", "identity")


@dataclass
class FakeOptions(BackendOptions):
    """Options of the fake backend."""

    fake_strategy: str = option("overlap", "how the fake backend ranks: overlap (query term "
                                "overlap), reverse or identity", group="fake", choices=STRATEGIES)
    fake_latency: float = option(0.0, "seconds each fake generation takes", group="fake",
                                 range=NON_NEGATIVE)


class FakeBackend(Backend):
    name = "fake"
    Options = FakeOptions

    def __init__(self, tokenizer: Any = None, strategy: str = "overlap", latency: float = 0.0):
        if strategy not in STRATEGIES:
            raise ConfigError(f"fake strategy must be one of {STRATEGIES}, got {strategy!r}")
        self._tokenizer = tokenizer
        self.strategy = strategy
        self.latency = latency
        self.calls = 0

    @classmethod
    def from_config(cls, config: RerankConfig) -> FakeBackend:
        from reasonrank.backends.base import load_tokenizer

        options = FakeOptions.of(config)
        return cls(load_tokenizer(config.tokenizer_name), options.fake_strategy,
                   options.fake_latency)

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def answer(self, prompt_text: str) -> str:
        """The response this backend gives to a rendered prompt."""
        passages = [(int(i), text) for i, text in _PASSAGE.findall(prompt_text)]
        ids = [i for i, _ in passages]
        if self.strategy == "reverse":
            ids.reverse()
        elif self.strategy == "overlap":
            match = _QUERY.search(prompt_text)
            terms = set(_WORD.findall(match.group(1).lower())) if match else set()
            score = {i: len(terms & set(_WORD.findall(t.lower()))) for i, t in passages}
            ids.sort(key=lambda i: -score[i])  # stable: ties keep the window order
        ranking = " > ".join(f"[{i}]" for i in ids)
        reasoning = f"ranked {len(ids)} passages by {self.strategy}"
        return f"<think>{reasoning}</think> <answer>{ranking}</answer>"

    def judge(self, prompt_text: str) -> tuple[str, dict[str, float]]:
        """The pointwise reasoning and the last token's log-probabilities of a prompt."""
        match = _POINTWISE.search(prompt_text)
        query, passage = match.groups() if match else ("", prompt_text)
        terms = set(_WORD.findall(query.lower())) & set(_WORD.findall(passage.lower()))
        p_true = (len(terms) + 1) / (len(terms) + 2)
        reasoning = f"\n{len(terms)} query terms appear in the passage.\n"
        return reasoning, {" true": math.log(p_true), " false": math.log(1 - p_true)}

    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        self.calls += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        if params.logprobs:
            reasoning, last = self.judge(prompt.text)
            if params.allowed_tokens:  # one constrained token
                token = max(params.allowed_tokens, key=lambda t: last.get(t, -math.inf))
                return Generation(token, None, 1, "length", logprobs=(last,))
            n = len(reasoning) // 4 + 2
            return Generation(reasoning, None, n, "stop", logprobs=(({},) * (n - 1)) + (last,))
        text = self.answer(prompt.text)
        return Generation(text, None, len(text) // 4, "stop")
