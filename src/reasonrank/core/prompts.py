"""Prompt templates and the prompt builder (reference section 1).

The "reasoning" template is the one the released 7B/32B models were trained on, verbatim.
`PromptBuilder.prepare` cleans and truncates each passage once per query; `render` then builds a
window's prompt from the prepared passages.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from reasonrank.core.text import clean_query, fix_text, passage_content, replace_number
from reasonrank.core.truncation import Truncator
from reasonrank.errors import ConfigError
from reasonrank.types import Prompt, Request

_FIELDS = {"num", "query"}


@dataclass(frozen=True)
class PromptTemplate:
    """A listwise prompt: system message, and a user message `prefix + "\\n" + passages + post`.

    `prefix` and `post` are `str.format` templates over `{num}` and `{query}`; each passage line
    is `[{i}] {passage}\\n`. `close_thought` and `open_answer` are the tags budget forcing
    appends to a window that ran out of budget before answering (None: the template has no
    such tag; without `open_answer` an answer cannot be forced).
    """

    name: str
    system: str
    prefix: str
    post: str
    close_thought: str | None = None
    open_answer: str | None = None

    def __post_init__(self) -> None:
        for part in ("prefix", "post"):
            fields = {f for _, f, _, _ in string.Formatter().parse(getattr(self, part)) if f}
            if not fields <= _FIELDS:
                raise ConfigError(
                    f"template {self.name!r}: {part} uses unknown placeholders "
                    f"{sorted(fields - _FIELDS)}; allowed: {{num}}, {{query}}"
                )
        used = {f for p in (self.prefix, self.post) for _, f, _, _ in string.Formatter().parse(p)}
        if "query" not in used:
            raise ConfigError(f"template {self.name!r} never shows the query ({{query}})")

    def forced_answer_suffix(self, output: str) -> str | None:
        """What budget forcing appends to `output` so the model answers next: the closing of
        the thought and the opening of the answer, each unless already there (an answer left
        open just continues: ""); None where the template cannot force an answer."""
        if self.open_answer is None:
            return None
        if self.open_answer in output:
            return ""
        parts = [self.close_thought] if self.close_thought and self.close_thought not in output \
            else []
        return "\n".join([*parts, self.open_answer])

    def user_message(self, query: str, passages: Sequence[str]) -> str:
        num = len(passages)
        lines = "".join(f"[{i}] {p}\n" for i, p in enumerate(passages, start=1))
        return (
            self.prefix.format(num=num, query=query) + "\n" + lines
            + self.post.format(num=num, query=query)
        )


_PREFIX = (
    "I will provide you with {num} passages, each indicated by a numerical identifier []. "
    "Rank the passages based on their relevance to the search query: {query}.\n"
)
_POST_HEAD = (
    "Search Query: {query}.\nRank the {num} passages above based on their relevance to the "
    "search query. All the passages should be included and listed using identifiers, in "
    "descending order of relevance. "
)
_SHORT_SYSTEM = (
    "You are RankLLM, an intelligent assistant that can rank passages based on their relevance "
    "to the query."
)

TEMPLATES: dict[str, PromptTemplate] = {}


def register_template(template: PromptTemplate) -> PromptTemplate:
    TEMPLATES[template.name] = template
    return template


REASONING = register_template(PromptTemplate(
    name="reasoning",
    system=(
        _SHORT_SYSTEM + " Given a query and a passage list, you first thinks about the reasoning "
        "process in the mind and then provides the answer (i.e., the reranked passage list). The "
        "reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
        "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here "
        "</answer>."
    ),
    prefix=_PREFIX,
    post=_POST_HEAD + "The format of the answer should be [] > [], e.g., [2] > [1].",
    close_thought="</think>",
    open_answer="<answer>",
))
RANKGPT = register_template(PromptTemplate(
    name="rankgpt",
    system=_SHORT_SYSTEM,
    prefix=_PREFIX,
    post=_POST_HEAD + (
        "The output format should be [] > [], e.g., [2] > [1]. Only respond with the ranking "
        "results, do not say any word or explain."
    ),
))
QWEN3 = register_template(PromptTemplate(
    name="qwen3",
    system=_SHORT_SYSTEM,
    prefix=_PREFIX,
    post=_POST_HEAD + (
        "The final ranked list should be enclosed within <answer> </answer> tags, i.e., <answer> "
        "ranked list here </answer>. The format of ranked list should be [] > [], e.g., "
        "[2] > [1]. Only respond with the ranking results, do not say any word or explain."
    ),
    close_thought="</think>",  # Qwen3 thinks inside <think> on its own
    open_answer="<answer>",
))


def get_template(name: str) -> PromptTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ConfigError(
            f"unknown template {name!r}; choose one of: {', '.join(TEMPLATES)}"
        ) from None


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
        return (
            {"role": "system", "content": self.template.system},
            {"role": "user", "content": self.template.user_message(query, passages)},
        )

    def render(self, query: str, passages: Sequence[str]) -> Prompt:
        """The window prompt: chat template with a generation prompt, then ftfy once more."""
        messages = self.messages(query, passages)
        return Prompt(text=render_chat(self.tokenizer, messages), messages=messages)

    def render_request(self, request: Request, start: int = 0, end: int | None = None) -> Prompt:
        """Render one window of a raw request (prepares only that window's passages)."""
        window = request.candidates[start:end]
        passages = [self.prepare_passage(c.text, c.title) for c in window]
        return self.render(clean_query(request.query.text), passages)
