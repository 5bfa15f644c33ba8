"""The prompt builder (reference section 1).

Templates are data files (`core/prompt_template.py`, `core/templates/*.yaml`); the "reasoning"
template is the one the released 7B/32B models were trained on, verbatim.
`PromptBuilder.prepare` cleans and truncates each passage once per query; `render` then builds a
window's prompt from the prepared passages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from reasonrank.core.prompt_template import (
    PromptTemplate,
    get_template,
    load_template,
    register_template,
    template_names,
)
from reasonrank.core.text import clean_query, fix_text, passage_content, replace_number
from reasonrank.core.truncation import Truncator
from reasonrank.errors import ConfigError
from reasonrank.types import Prompt, Request

__all__ = ["PreparedRequest", "PromptBuilder", "PromptTemplate", "get_template",
           "load_template", "register_template", "render_chat", "template_names"]


def render_chat(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """System + user messages through the chat template with the generation prompt, then
    ftfy over the whole text: the prompt as the released code builds it."""
    text = tokenizer.apply_chat_template(list(messages), tokenize=False,
                                         add_generation_prompt=True)
    return fix_text(text)


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A request whose query and passages are cleaned and truncated, ready for any window."""

    request: Request
    query: str
    passages: list[str]  # aligned with request.candidates


class PromptBuilder:
    """Renders window prompts exactly as the released code does, without repeating work.

    Prepared passages are cached (LRU, `cache_size` entries), so a document that recurs across
    queries, as first-stage lists of one corpus often do, is cleaned and truncated once.
    """

    def __init__(self, tokenizer: Any, template: str | PromptTemplate = "reasoning",
                 max_passage_tokens: int = 512, cache_size: int = 50_000) -> None:
        self.tokenizer = tokenizer
        self.prepare_passage = lru_cache(maxsize=cache_size)(self._prepare_passage)
        self.template = template if isinstance(template, PromptTemplate) else get_template(template)
        self.truncator = Truncator(tokenizer, max_passage_tokens)
        if getattr(tokenizer, "chat_template", None) is None:
            raise ConfigError(
                "the tokenizer has no chat template; ReasonRank prompts are rendered with the "
                "model's own chat template (use an instruct/chat model's tokenizer)"
            )

    def _prepare_passage(self, text: str, title: str | None = None) -> str:
        """Passage steps 2-5: title, strip, ftfy, truncate, `[n]` -> `(n)`."""
        return replace_number(self.truncator(passage_content(text, title)))

    def prepare(self, request: Request) -> PreparedRequest:
        passages = [self.prepare_passage(c.text, c.title) for c in request.candidates]
        return PreparedRequest(request, clean_query(request.query.text), passages)

    def messages(self, query: str, passages: Sequence[str]) -> tuple[dict[str, str], ...]:
        """The window's chat messages (`PromptTemplate.messages`)."""
        return self.template.messages(query, passages)

    def render(self, query: str, passages: Sequence[str]) -> Prompt:
        """The window prompt: chat template with a generation prompt, then ftfy once more."""
        messages = self.messages(query, passages)
        return Prompt(text=render_chat(self.tokenizer, messages), messages=messages)

    def render_request(self, request: Request, start: int = 0, end: int | None = None) -> Prompt:
        """Render one window of a raw request (prepares only that window's passages)."""
        window = request.candidates[start:end]
        passages = [self.prepare_passage(c.text, c.title) for c in window]
        return self.render(clean_query(request.query.text), passages)
