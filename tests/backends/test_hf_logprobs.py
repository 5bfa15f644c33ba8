"""The hf backend's stop strings, log-probabilities and allowed tokens on the tiny model, on both
batching paths, checked against direct forward passes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from reasonrank.backends.hf import HFBackend, _stop_cut
from reasonrank.errors import LogprobsUnavailableError
from reasonrank.types import Generation, Prompt, SamplingParams

PROMPTS = ["Determine if the passage is relevant.\nQuery: fleas\nPassage: a flea\n<think>",
           "Query: why is the sky blue\nPassage: scattering of light by air\n<think>"]


@pytest.fixture(scope="module")
def model_and_tok(tiny_qwen_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_qwen_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir, dtype=torch.float32).eval()
    return model, tok


def _generate(model_and_tok: tuple[Any, Any], batching: str, params: SamplingParams,
              prompts: list[str] = PROMPTS) -> list[Generation]:
    model, tok = model_and_tok
    backend = HFBackend(model, tok, batch_size=2, batching=batching)

    async def run() -> list[Generation]:
        try:
            return list(await asyncio.gather(*(backend.generate(Prompt(p, ()), params)
                                               for p in prompts)))
        finally:
            await backend.aclose()

    return asyncio.run(run())


def _direct(model_and_tok: tuple[Any, Any], prompt: str, n: int) -> tuple[list[int], list[Any]]:
    """Greedy ids and each step's log-softmax, by full forward passes."""
    import torch

    model, tok = model_and_tok
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    out: list[int] = []
    steps = []
    with torch.no_grad():
        for _ in range(n):
            x = torch.cat([ids, torch.tensor([out], dtype=torch.long)], 1) if out else ids
            lp = torch.log_softmax(model(x).logits[0, -1].float(), -1)
            steps.append(lp)
            out.append(int(lp.argmax()))
    return out, steps


@pytest.mark.parametrize("batching", ["continuous", "lockstep"])
def test_logprobs_equal_the_logits(model_and_tok: tuple[Any, Any], batching: str) -> None:
    _, tok = model_and_tok
    gens = _generate(model_and_tok, batching, SamplingParams(max_new_tokens=6, logprobs=5))
    for prompt, gen in zip(PROMPTS, gens, strict=True):
        ids, steps = _direct(model_and_tok, prompt, 6)
        assert gen.text == tok.decode(ids, skip_special_tokens=True)
        assert gen.logprobs is not None and len(gen.logprobs) == 6
        for record, lp in zip(gen.logprobs, steps, strict=True):
            values, top = lp.topk(5)
            expected: dict[str, float] = {}
            for t, v in zip(top.tolist(), values.tolist(), strict=True):
                expected.setdefault(tok.decode([t]), v)
            assert record == pytest.approx(expected, abs=1e-4)
    plain = _generate(model_and_tok, batching, SamplingParams(max_new_tokens=2))
    assert all(g.logprobs is None for g in plain)


@pytest.mark.parametrize("batching", ["continuous", "lockstep"])
def test_stop_string_cuts_text_and_tokens(model_and_tok: tuple[Any, Any], batching: str) -> None:
    _, tok = model_and_tok
    ids, _ = _direct(model_and_tok, PROMPTS[0], 10)
    full = tok.decode(ids, skip_special_tokens=True)
    stop = tok.decode(ids[4:6], skip_special_tokens=True)
    assert stop and stop in full
    (gen,) = _generate(model_and_tok, batching, SamplingParams(max_new_tokens=10, stop=(stop,)),
                       PROMPTS[:1])
    complete = next(k for k in range(1, 11)
                    if stop in tok.decode(ids[:k], skip_special_tokens=True))
    assert gen.text == full[:full.index(stop)]
    assert (gen.output_tokens, gen.finish_reason) == (complete, "stop")


@pytest.mark.parametrize("batching", ["continuous", "lockstep"])
def test_allowed_tokens_restrict_and_keep_raw_logprobs(model_and_tok: tuple[Any, Any],
                                                        batching: str) -> None:
    _, tok = model_and_tok
    params = SamplingParams(max_new_tokens=1, logprobs=3, allowed_tokens=(" true", " false"))
    gens = _generate(model_and_tok, batching, params)
    t_id, f_id = (tok(t, add_special_tokens=False).input_ids[0] for t in (" true", " false"))
    for prompt, gen in zip(PROMPTS, gens, strict=True):
        _, (lp,) = _direct(model_and_tok, prompt, 1)
        assert gen.text == (" true" if lp[t_id] >= lp[f_id] else " false")
        assert gen.logprobs is not None
        assert gen.logprobs[0][" true"] == pytest.approx(float(lp[t_id]), abs=1e-4)
        assert gen.logprobs[0][" false"] == pytest.approx(float(lp[f_id]), abs=1e-4)


def test_allowed_token_that_is_not_one_token(model_and_tok: tuple[Any, Any]) -> None:
    params = SamplingParams(max_new_tokens=1, allowed_tokens=(" supercalifragilistic",))
    with pytest.raises(LogprobsUnavailableError, match=r"hf backend .* supercalifragilistic"):
        _generate(model_and_tok, "lockstep", params, PROMPTS[:1])


def test_stop_cut_finds_the_completing_token(qwen_tokenizer: Any) -> None:
    ids = qwen_tokenizer("reason here.\n</think> true and more", add_special_tokens=False
                         ).input_ids
    n, text = _stop_cut(qwen_tokenizer, ids, ("</think> true", "</think> false"))  # type: ignore[misc]
    assert text == "reason here.\n"
    assert qwen_tokenizer.decode(ids[:n]).endswith("</think> true")
    assert _stop_cut(qwen_tokenizer, ids, ("</think> false",)) is None
