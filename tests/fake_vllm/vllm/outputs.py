"""Fake `vllm.outputs`: `RequestOutput` and `CompletionOutput` with vLLM's field names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: Sequence[int]
    cumulative_logprob: float | None
    logprobs: object | None
    finish_reason: str | None = None  # "stop" or "length" once finished
    stop_reason: int | str | None = None

    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int] | None
    prompt_logprobs: object | None
    outputs: list[CompletionOutput]
    finished: bool
