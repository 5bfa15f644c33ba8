"""The hf backend's continuous batching: the same greedy tokens as lock-step `generate()`, slots
refilled as windows finish, and windows whose caller was cancelled never generated."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("torch")

from reasonrank.backends.hf import HFBackend, _ContinuousBatch
from reasonrank.config import RerankConfig
from reasonrank.types import Prompt, SamplingParams


def _backend(tiny_qwen_dir, batching: str, batch_size: int) -> HFBackend:
    return HFBackend.from_config(RerankConfig(
        model=str(tiny_qwen_dir), device="cpu", dtype="float32", batch_size=batch_size,
        hf_batching=batching,
    ))


def _prompts(tokenizer, n: int) -> list[Prompt]:
    words = ["salt", "sea", "river", "onion", "rain", "ion", "cloud", "tear"]
    out = []
    for i in range(n):
        body = " ".join(words[(i * 3 + j) % len(words)] for j in range(5 + 9 * i))
        messages = ({"role": "user", "content": f"query {i}: {body}"},)
        text = tokenizer.apply_chat_template(list(messages), tokenize=False,
                                             add_generation_prompt=True)
        out.append(Prompt(text, messages))
    return out


async def _generate_all(backend: HFBackend, prompts, budgets):
    try:
        return await asyncio.gather(*(
            backend.generate(p, SamplingParams(max_new_tokens=b))
            for p, b in zip(prompts, budgets, strict=True)
        ))
    finally:
        await backend.aclose()


@pytest.fixture(scope="module")
def lockstep(tiny_qwen_dir):
    return _backend(tiny_qwen_dir, "lockstep", 4)


BUDGETS = [9, 2, 17, 5, 1, 12, 7, 3, 14]


def test_continuous_equals_lockstep_token_for_token(tiny_qwen_dir, lockstep):
    prompts = _prompts(lockstep.tokenizer, len(BUDGETS))
    # Lock-step reference: one generate() per budget, prompts of unequal lengths padded together.
    expected = {}
    for budget in sorted(set(BUDGETS)):
        group = [i for i, b in enumerate(BUDGETS) if b == budget]
        outs = lockstep._generate_batch([prompts[i].text for i in group],
                                        SamplingParams(max_new_tokens=budget))
        expected.update(zip(group, outs, strict=True))
    continuous = _backend(tiny_qwen_dir, "continuous", 3)
    admitted: list[int] = []
    original = _ContinuousBatch._admit

    def spy(self, prompts_, params):
        admitted.append(len(prompts_))
        return original(self, prompts_, params)

    _ContinuousBatch._admit = spy
    try:
        got = asyncio.run(_generate_all(continuous, prompts, BUDGETS))
    finally:
        _ContinuousBatch._admit = original
    assert [g.output_tokens for g in got] == [expected[i].output_tokens for i in range(len(got))]
    assert [g.text for g in got] == [expected[i].text for i in range(len(got))]
    assert [(g.prompt_tokens, g.finish_reason) for g in got] == [
        (expected[i].prompt_tokens, expected[i].finish_reason) for i in range(len(got))]
    # Three slots: the first admission fills them, later ones refill slots as windows finish.
    assert admitted[0] == 3 and sum(admitted) == len(BUDGETS) and len(admitted) > 2


def test_continuous_greedy_matches_generate_with_eos(tiny_qwen_dir, lockstep):
    """Rows that stop on EOS: with EOS forced to the model's most likely token, generation ends
    at once on both paths, with finish reason "stop"."""
    prompts = _prompts(lockstep.tokenizer, 4)
    first = lockstep._generate_batch([p.text for p in prompts], SamplingParams(max_new_tokens=1))
    eos = lockstep.tokenizer.convert_tokens_to_ids(lockstep.tokenizer.tokenize(first[2].text))[0]
    continuous = _backend(tiny_qwen_dir, "continuous", 2)
    for backend in (lockstep, continuous):
        backend._eos_ids = backend._eos_ids | {eos}
    try:
        ref = lockstep._generate_batch([p.text for p in prompts], SamplingParams(max_new_tokens=6))
        got = asyncio.run(_generate_all(continuous, prompts, [6] * 4))
    finally:
        lockstep._eos_ids.discard(eos)
    assert ref[2].finish_reason == "stop" and ref[2].output_tokens == 1
    assert [(g.text, g.output_tokens, g.finish_reason) for g in got] == [
        (r.text, r.output_tokens, r.finish_reason) for r in ref]


@pytest.mark.parametrize("batching", ["continuous", "lockstep"])
def test_cancelled_windows_are_never_generated(tiny_qwen_dir, batching):
    backend = _backend(tiny_qwen_dir, batching, 1)
    prompts = _prompts(backend.tokenizer, 3)
    seen: list[str] = []
    tok = backend.tokenizer
    original = tok.__class__.__call__

    def spy(self, text, *args, **kwargs):
        if isinstance(text, list):
            seen.extend(text)
        return original(self, text, *args, **kwargs)

    async def scenario():
        first = asyncio.ensure_future(backend.generate(prompts[0],
                                                       SamplingParams(max_new_tokens=8)))
        doomed = asyncio.ensure_future(backend.generate(prompts[1],
                                                        SamplingParams(max_new_tokens=8)))
        last = asyncio.ensure_future(backend.generate(prompts[2],
                                                      SamplingParams(max_new_tokens=2)))
        await asyncio.sleep(0)  # all three queued; the first is being generated
        doomed.cancel()
        try:
            return await asyncio.gather(first, last)
        finally:
            await backend.aclose()

    tok.__class__.__call__ = spy
    try:
        outs = asyncio.run(scenario())
    finally:
        tok.__class__.__call__ = original
    assert [o.output_tokens for o in outs] == [8, 2]
    assert prompts[1].text not in seen and prompts[0].text in seen and prompts[2].text in seen


class _EosAfter:
    """Forces EOS once a row has generated `lengths[i]` tokens, row i told by its prompt."""

    def __init__(self, pad: int, eos: int, prompts: list[list[int]], lengths: list[int]) -> None:
        self.pad, self.eos, self.prompts, self.lengths = pad, eos, prompts, lengths

    def __call__(self, input_ids, scores):
        for r, row in enumerate(input_ids.tolist()):
            real = row[next(i for i, t in enumerate(row) if t != self.pad):]
            (i,) = [i for i, p in enumerate(self.prompts) if real[:len(p)] == p]
            if len(real) - len(self.prompts[i]) + 1 == self.lengths[i]:
                scores[r, :] = float("-inf")
                scores[r, self.eos] = 0.0
        return scores


def test_logits_processors_apply_alike_on_both_paths(tiny_qwen_dir, lockstep):
    """A processor that ends each window at its own length: rows finish by EOS at different
    steps; continuous and lock-step give the same tokens and the chosen lengths."""
    tok = lockstep.tokenizer
    prompts = _prompts(tok, 6)
    ids = [tok(p.text, add_special_tokens=False)["input_ids"] for p in prompts]
    lengths = [3, 11, 1, 7, 5, 9]
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    outs = {}
    for mode in ("lockstep", "continuous"):
        backend = HFBackend(lockstep.model, tok, batch_size=3, batching=mode,
                            logits_processors=[_EosAfter(tok.pad_token_id, eos, ids, lengths)])
        outs[mode] = asyncio.run(_generate_all(backend, prompts, [20] * 6))
    assert [g.output_tokens for g in outs["lockstep"]] == lengths
    assert {g.finish_reason for g in outs["lockstep"]} == {"stop"}
    assert [(g.text, g.output_tokens) for g in outs["continuous"]] == [
        (g.text, g.output_tokens) for g in outs["lockstep"]]


def test_a_cancelled_window_leaves_the_running_batch(tiny_qwen_dir):
    """Cancelling a window mid-generation frees its slot: the next window does not wait for the
    cancelled one's budget."""
    backend = _backend(tiny_qwen_dir, "continuous", 1)
    prompts = _prompts(backend.tokenizer, 2)

    async def scenario():
        long = asyncio.ensure_future(backend.generate(prompts[0],
                                                      SamplingParams(max_new_tokens=100_000)))
        short = asyncio.ensure_future(backend.generate(prompts[1],
                                                       SamplingParams(max_new_tokens=3)))
        while backend._batcher is None or not backend._batcher.generated:
            await asyncio.sleep(0.01)  # the long window is decoding, the short one waits
        long.cancel()
        try:
            return await asyncio.wait_for(short, timeout=60)
        finally:
            await backend.aclose()

    out = asyncio.run(scenario())
    assert out.output_tokens == 3
    assert len(backend._batcher.generated) <= 1  # only the short window's row, if any
