"""Budget forcing: a window that spends its budget without an answer is continued after the
template's answer tags, through the same backend interface (hf, openai completions, vllm)."""

from __future__ import annotations

from typing import Any

import pytest

from fake_openai_server import FakeOpenAIServer, passage_ids
from helpers import make_requests
from reasonrank import Reranker
from reasonrank.backends.base import Backend
from reasonrank.config import RerankConfig
from reasonrank.core.prompts import get_template
from reasonrank.errors import ConfigError
from reasonrank.types import Generation, ParseStatus, Prompt, SamplingParams, WindowTrace

REASONING = "<think>passage 3 looks best, then passage 1, but"


class OverrunBackend(Backend):
    """A deterministic model that reasons past any budget; asked to continue after an opened
    answer it ranks the window in reverse and stops. Records every call."""

    name = "overrun"

    def __init__(self, tokenizer: Any, reasoning: str = REASONING) -> None:
        self._tokenizer = tokenizer
        self.reasoning = reasoning
        self.calls: list[tuple[Prompt, SamplingParams]] = []

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @classmethod
    def from_config(cls, config: RerankConfig) -> OverrunBackend:  # pragma: no cover
        raise NotImplementedError

    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        self.calls.append((prompt, params))
        if prompt.text.endswith("<answer>"):
            ids = passage_ids(prompt.text.split("<|im_start|>assistant")[0])
            text = " > ".join(f"[{i}]" for i in reversed(ids)) + "</answer>"
            return Generation(text, 999, 7, "stop")
        return Generation(self.reasoning, 900, params.max_new_tokens, "length")


def _rerank(backend: Backend, **options: Any):
    with Reranker(backend=backend, model="m", max_new_tokens=50, max_passage_tokens=16,
                  **options) as rr:
        return rr.rerank_batch(make_requests(1, 30, seed=1))[0]


def test_off_by_default_the_reference_is_reproduced(qwen_tokenizer):
    assert RerankConfig().force_answer_tokens == 0
    backend = OverrunBackend(qwen_tokenizer)
    result = _rerank(backend)
    assert len(backend.calls) == len(result.windows) == 2  # one generation per window
    assert all(w.status is ParseStatus.NO_ANSWER and not w.forced for w in result.windows)
    assert all("forced" not in w.to_dict() for w in result.windows)  # traces as before


def test_forced_answer_continues_the_window(qwen_tokenizer):
    backend = OverrunBackend(qwen_tokenizer)
    result = _rerank(backend, force_answer_tokens=40, temperature=0.7, seed=3)
    assert len(backend.calls) == 4  # each window: its reasoning, then its forced answer
    (first, p1), (cont, p2) = backend.calls[:2]
    assert cont.text == first.text + REASONING + "</think>\n<answer>"
    assert cont.messages[:-1] == first.messages
    assert cont.messages[-1] == {"role": "assistant", "content": REASONING + "</think>\n<answer>"}
    assert p1.max_new_tokens == 50 and p1.temperature == 0.7
    assert (p2.max_new_tokens, p2.temperature) == (40, 0.0)  # at most N more tokens, greedily
    for w in result.windows:
        assert w.status is ParseStatus.FORCED and w.forced
        assert (w.output_tokens, w.forced_tokens, w.finish_reason) == (50, 7, "stop")
        assert w.output.startswith(REASONING + "</think>\n<answer>[20] > [19]")
        assert w.order == list(range(w.end - w.start))[::-1]  # the forced answer was applied
        data = w.to_dict()
        assert (data["forced"], data["forced_tokens"], data["status"]) == (True, 7,
                                                                           "answer_forced")
        assert WindowTrace.from_dict(data).to_dict() == data


@pytest.mark.parametrize(("output", "finish", "suffix"), [
    (REASONING, "stop", None),  # ended on its own (EOS): not a budget overrun
    ("<think>a</think> <answer>[2] > [1]</answer> and more", "length", None),  # answered
    ("<think>a</think> <answer>[2] >", "length", ""),  # answer left open: it goes on
    ("<think>a</think> hmm", "length", "<answer>"),  # thought closed: only the answer opens
    ("no tags at all", "length", "</think>\n<answer>"),
])
def test_which_windows_are_forced_and_with_what(qwen_tokenizer, output, finish, suffix):
    class Fixed(OverrunBackend):
        async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
            self.calls.append((prompt, params))
            if len(self.calls) % 2 == 0:
                return Generation("[1]</answer>", None, 3, "stop")
            return Generation(output, None, 50, finish)

    backend = Fixed(qwen_tokenizer)
    with Reranker(backend=backend, model="m", max_passage_tokens=16,
                  force_answer_tokens=8) as rr:
        result = rr.rerank("q", ["a", "b"])
    (window,) = result.windows
    if suffix is None:
        assert len(backend.calls) == 1 and not window.forced and window.output == output
    else:
        assert len(backend.calls) == 2 and window.forced
        assert backend.calls[1][0].text == backend.calls[0][0].text + output + suffix
        assert window.output == output + suffix + "[1]</answer>"


def test_suffix_is_data_of_the_template():
    assert get_template("reasoning").forced_answer_suffix("x") == "</think>\n<answer>"
    assert get_template("qwen3").forced_answer_suffix("x") == "</think>\n<answer>"
    assert get_template("rankgpt").forced_answer_suffix("x") is None


def test_options_that_cannot_force_are_refused():
    with pytest.raises(ConfigError, match="no answer tag"):
        RerankConfig(template="rankgpt", force_answer_tokens=10)
    with pytest.raises(ConfigError, match="completions endpoint"):
        RerankConfig(backend="openai", endpoint="chat", force_answer_tokens=10)
    with pytest.raises(ConfigError, match=">= 0"):
        RerankConfig(force_answer_tokens=-1)


def _overrun_then_answer(prompt: str) -> str:
    """The fake server's model: reasoning that never ends, unless an answer was opened."""
    if prompt.endswith("<answer>"):
        ids = passage_ids(prompt.split("<|im_start|>assistant")[0])
        return " > ".join(f"[{i}]" for i in ids[::-1]) + " </answer>"
    return "<think> " + "thinking " * 100


def test_openai_completions_forces_through_the_server(qwen_tokenizer):
    from reasonrank.backends.openai import OpenAIBackend

    with FakeOpenAIServer(answer=_overrun_then_answer) as server:
        backend = OpenAIBackend("reasonrank-7B", api_base=server.url, tokenizer=qwen_tokenizer,
                                concurrency=2)
        with Reranker(backend=backend, model="reasonrank-7B", max_new_tokens=12,
                      max_passage_tokens=16, force_answer_tokens=50) as rr:
            result = rr.rerank_batch(make_requests(1, 20, seed=2))[0]
        bodies = [r.body for r in server.requests]
    first, second = bodies
    assert (first["max_tokens"], second["max_tokens"]) == (12, 50)
    assert second["temperature"] == 0
    assert second["prompt"].startswith(first["prompt"] + "<think> thinking")
    assert second["prompt"].endswith("</think>\n<answer>")
    (w,) = result.windows
    assert w.forced and w.status is ParseStatus.FORCED and w.output_tokens == 12
    assert w.order == list(range(20))[::-1]


def test_hf_forced_answer_is_the_greedy_continuation(tiny_qwen_dir):
    """On the real hf backend the forced continuation is what greedy `generate()` gives for
    the continuation prompt, at most N tokens."""
    from reasonrank.reranker import make_request

    config = RerankConfig(model=str(tiny_qwen_dir), device="cpu", dtype="float32",
                          max_new_tokens=4, force_answer_tokens=5, max_passage_tokens=8)
    docs = ["rivers carry ions", "rain is fresh"]
    with Reranker(config=config) as rr:
        (w,) = rr.rerank("why is the sea salty?", docs).windows
        prompt = rr.builder.render_request(make_request("why is the sea salty?", docs))
        head = w.output[: w.output.index(FORCED_TAGS) + len(FORCED_TAGS)]
        ref = rr.backend._generate_batch([prompt.text + head], SamplingParams(max_new_tokens=5))
    assert w.output_tokens == 4 and w.forced  # the random model never closes its answer
    assert w.forced_tokens == ref[0].output_tokens and 1 <= w.forced_tokens <= 5
    assert w.output == head + ref[0].text


FORCED_TAGS = "</think>\n<answer>"
