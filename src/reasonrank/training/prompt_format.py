"""How a data folder's prompts were rendered: template, passage length, tokenizer. Pure.

`reasonrank synth` writes `prompt_settings.json` beside the 13k layout it exports. The
`id_doc/` texts there are the full passages; the teacher saw them cut to `max_passage_tokens`
tokens of `tokenizer`, in `template`. `reasonrank data sft|rl` read the file and use these
settings unless told otherwise, so a record's training prompt is the prompt its teacher
answered; the example rows carry them (`prompt_format`), so `reasonrank train` can check the
model's chat template against the one that rendered the prompts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reasonrank.errors import InputFormatError
from reasonrank.io._files import StrPath, atomic_write

PROMPT_FILE = "prompt_settings.json"
"""The prompt settings of a data folder, beside `training_data_all.jsonl`."""


def chat_template_digest(tokenizer: Any) -> str | None:
    """SHA-256 of the tokenizer's chat template (None when it has none)."""
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str):
        return None
    return hashlib.sha256(template.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PromptFormat:
    """What renders a record's prompt from its texts: the prompt template, the passage length
    in tokens and the tokenizer (its name or path, and a digest of its chat template)."""

    template: str
    max_passage_tokens: int
    tokenizer: str
    chat_template_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromptFormat:
        tokens = data.get("max_passage_tokens")
        if not isinstance(data.get("template"), str) or not isinstance(tokens, int) \
                or isinstance(tokens, bool) or tokens < 1:
            raise ValueError("expected template (a string) and max_passage_tokens (an integer "
                             ">= 1)")
        digest = data.get("chat_template_sha256")
        return cls(data["template"], tokens, str(data.get("tokenizer") or ""),
                   digest if isinstance(digest, str) else None)

    def describe(self) -> str:
        return (f"template {self.template}, passages cut to {self.max_passage_tokens} tokens "
                f"of {self.tokenizer or 'an unnamed tokenizer'}")

    def differences(self, other: PromptFormat) -> list[str]:
        """What `other` renders differently: `name recorded -> other` for each change."""
        out = []
        if other.template != self.template:
            out.append(f"template {self.template} -> {other.template}")
        if other.max_passage_tokens != self.max_passage_tokens:
            out.append(f"max_passage_tokens {self.max_passage_tokens} -> "
                       f"{other.max_passage_tokens}")
        if (self.chat_template_sha256 and other.chat_template_sha256
                and other.chat_template_sha256 != self.chat_template_sha256):
            out.append(f"chat template of {self.tokenizer or 'the recorded tokenizer'} -> "
                       f"that of {other.tokenizer}")
        return out


def read_prompt_format(folder: StrPath) -> PromptFormat | None:
    """The `prompt_settings.json` of a data folder, or None when it has none."""
    path = Path(folder) / PROMPT_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return PromptFormat.from_dict(data)
    except json.JSONDecodeError as exc:
        raise InputFormatError(path, exc.lineno, f"invalid JSON: {exc.msg}") from None
    except ValueError as exc:
        raise InputFormatError(path, None, str(exc)) from None


def write_prompt_format(folder: StrPath, fmt: PromptFormat) -> Path:
    path = Path(folder) / PROMPT_FILE
    with atomic_write(path) as fh:
        fh.write((json.dumps(fmt.to_dict(), indent=2) + "\n").encode("utf-8"))
    return path


def check_examples(rows: list[Mapping[str, Any]], tokenizer: Any, model: str,
                   path: StrPath) -> list[str]:
    """Warnings about training on `rows` (example rows) with `model`'s `tokenizer`: prompts
    rendered with another chat template, or passages cut to a length other than the
    reranker's default. Rows without `prompt_format` are not checked."""
    from reasonrank.config import DEFAULT_PASSAGE_TOKENS

    formats = {}
    for row in rows:
        data = row.get("prompt_format")
        if isinstance(data, Mapping):
            try:
                fmt = PromptFormat.from_dict(data)
            except ValueError:
                continue
            formats.setdefault(fmt, None)
    digest = chat_template_digest(tokenizer)
    out = []
    for fmt in formats:
        if fmt.chat_template_sha256 and digest and fmt.chat_template_sha256 != digest:
            out.append(f"{path}: the prompts were rendered with the chat template of "
                       f"{fmt.tokenizer}, not {model}'s: the model would train on prompts it "
                       f"never sees at inference; rebuild them with `reasonrank data ... "
                       f"--tokenizer {model}`")
        if fmt.max_passage_tokens != DEFAULT_PASSAGE_TOKENS:
            out.append(f"{path}: the prompts cut passages to {fmt.max_passage_tokens} tokens "
                       f"(the reranker's default is {DEFAULT_PASSAGE_TOKENS}): rerank with "
                       f"--max-passage-tokens {fmt.max_passage_tokens} to give the trained "
                       "model the prompts it learnt from")
    return out
