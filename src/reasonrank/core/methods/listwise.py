"""ReasonRank's listwise method: sliding windows of passages, back to front, each window
reordered by the model's `<answer>` permutation (the default method).

Budget forcing (`force_answer_tokens` > 0, off by default): a window whose generation spent its
whole budget without closing an answer is continued through the same backend with the
continuation prompt `prompt + output + forced tags` (the template's `</think>` and `<answer>`)
and at most `force_answer_tokens` greedy tokens, so every backend that completes a raw prompt
supports it unchanged.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING

from reasonrank.core.methods.base import Engine, Method, ranked_result
from reasonrank.core.parsing import extract_answer, parse_ranking
from reasonrank.core.windows import pass_windows, permute_window
from reasonrank.types import (
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
    from reasonrank.core.prompts import PromptBuilder

log = logging.getLogger(__name__)


class ListwiseMethod(Method):
    """Windows of one query run in order (each depends on the last)."""

    name = "listwise"

    def __init__(self, config: RerankConfig, builder: PromptBuilder) -> None:
        self.config = config
        self.builder = builder
        self.params = SamplingParams(max_new_tokens=config.max_new_tokens,
                                     temperature=config.temperature, seed=config.seed)

    @classmethod
    def from_config(cls, config: RerankConfig, builder: PromptBuilder) -> ListwiseMethod:
        return cls(config, builder)

    async def rerank(self, engine: Engine, request: Request) -> RankedResult:
        """Rerank one request: its windows back to front, one after another."""
        c = self.config
        prepared = await engine.offload(self.builder.prepare, request)
        slots = engine.slots()
        # Items move; `ranked_result` gives the scores (see `RerankConfig.output_scores`).
        items = list(range(len(request.candidates)))
        windows: list[WindowTrace] = []
        # pass p starts at rank_start + step * p, as `run_rank_llm.py` calls each pass
        spans = pass_windows(len(items), c.window_size, c.step, c.rank_start, c.top_k,
                             c.num_passes)
        if not spans and len(items) > max(1, c.rank_start):
            log.warning(
                "query %s: window %d / step %d from rank %d over %d candidates runs no window "
                "(the reference loop stops at once); the first-stage order is kept",
                request.query.qid, c.window_size, c.step, c.rank_start, len(items),
            )
        for pass_index, start, end in spans:
            passages = [prepared.passages[i] for i in items[start:end]]
            prompt = await engine.offload(self.builder.render, prepared.query, passages)
            async with slots:
                began = time.perf_counter()
                gen = await engine.backend.generate(prompt, self.params)
                forced = await self._force_answer(engine, prompt, gen)
                latency = time.perf_counter() - began
            text = gen.text if forced is None else forced[0]
            parsed = parse_ranking(text, end - start, c.policy)
            status = parsed.status
            if forced is not None and status is ParseStatus.OK:
                status = ParseStatus.FORCED
            items = permute_window(items, start, end, parsed.order)
            trace = WindowTrace(
                start=start, end=end, status=status, output=text,
                order=parsed.order, prompt_tokens=gen.prompt_tokens,
                output_tokens=gen.output_tokens,
                finish_reason=gen.finish_reason if forced is None else forced[1].finish_reason,
                latency_s=latency, pass_index=pass_index, forced=forced is not None,
                forced_tokens=None if forced is None else forced[1].output_tokens,
                raw_finish_reason=(gen if forced is None else forced[1]).raw_finish_reason,
            )
            windows.append(trace)
            engine.emit(request, trace)
        return ranked_result(request, items, windows, c.output_scores)

    async def _force_answer(self, engine: Engine, prompt: Prompt, gen: Generation
                            ) -> tuple[str, Generation] | None:
        """Budget forcing: where `gen` ran out of budget without a closed answer, continue it
        after the template's answer tags; the whole output and the continuation, else None."""
        limit = self.config.force_answer_tokens
        if not limit or gen.finish_reason != "length":
            return None
        if extract_answer(gen.text)[1] not in (ParseStatus.NO_ANSWER, ParseStatus.UNTERMINATED):
            return None  # the answer is there (closed), whatever its quality
        suffix = self.builder.template.forced_answer_suffix(gen.text)
        if suffix is None:
            return None
        head = gen.text + suffix
        continuation = Prompt(
            text=prompt.text + head,
            messages=(*prompt.messages, {"role": "assistant", "content": head}),
        )
        params = dataclasses.replace(self.params, max_new_tokens=limit, temperature=0.0)
        more = await engine.backend.generate(continuation, params)
        return head + more.text, more
