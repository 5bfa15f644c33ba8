"""The on-disk answer cache: teacher answers keyed by a hash of the canonical request.

One JSONL line per answer, appended and fsynced the moment it arrives; only offsets stay in
memory, so a cache of many long reasoning chains costs little RAM.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from reasonrank.backends.openai import request_body
from reasonrank.io._files import StrPath
from reasonrank.synth.store import JsonlLog
from reasonrank.types import Prompt, SamplingParams


def canonical_request(model: str, endpoint: str, prompt: Prompt, params: SamplingParams,
                      extra_body: dict[str, Any] | None = None) -> dict[str, Any]:
    """What identifies a request: the body the OpenAI backend sends for it (`extra_body`
    included: server options such as a grammar change the answer), and the endpoint."""
    return {"endpoint": endpoint, **request_body(model, endpoint, prompt, params, extra_body)}


def request_key(model: str, endpoint: str, prompt: Prompt, params: SamplingParams,
                extra_body: dict[str, Any] | None = None) -> str:
    """SHA-256 of the canonical request as sorted, compact JSON (stable across runs; without
    `extra_body`, the same key as before it existed)."""
    raw = json.dumps(canonical_request(model, endpoint, prompt, params, extra_body),
                     sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedAnswer:
    """One teacher answer as the cache stores it."""

    key: str
    stage: str
    text: str
    finish_reason: str | None
    prompt_tokens: int
    output_tokens: int
    estimated: bool = False  # token counts estimated with the tokenizer (no `usage`)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CachedAnswer:
        return cls(key=str(data["key"]), stage=str(data["stage"]), text=str(data["text"]),
                   finish_reason=data.get("finish_reason"),
                   prompt_tokens=int(data.get("prompt_tokens") or 0),
                   output_tokens=int(data.get("output_tokens") or 0),
                   estimated=bool(data.get("estimated", False)))


class AnswerCache:
    """key -> `CachedAnswer`, persisted in a JSONL file."""

    def __init__(self, path: StrPath) -> None:
        self._log = JsonlLog(path)
        self._offsets: dict[str, int] = {}
        self._loaded: list[CachedAnswer] = []
        for offset, record in self._log.scan():
            answer = CachedAnswer.from_dict(record)
            self._offsets.setdefault(answer.key, offset)
            self._loaded.append(CachedAnswer(answer.key, answer.stage, "", answer.finish_reason,
                                             answer.prompt_tokens, answer.output_tokens,
                                             answer.estimated))

    @property
    def path(self) -> Any:
        return self._log.path

    def __len__(self) -> int:
        return len(self._offsets)

    def __contains__(self, key: str) -> bool:
        return key in self._offsets

    def entries(self) -> Iterator[CachedAnswer]:
        """The answers found on opening, without their texts (for accounting)."""
        yield from self._loaded

    def get(self, key: str) -> CachedAnswer | None:
        offset = self._offsets.get(key)
        return None if offset is None else CachedAnswer.from_dict(self._log.read_at(offset))

    def put(self, answer: CachedAnswer) -> None:
        """Store `answer` durably (fsynced before returning)."""
        if answer.key not in self._offsets:
            self._offsets[answer.key] = self._log.append(asdict(answer))

    def close(self) -> None:
        self._log.close()
