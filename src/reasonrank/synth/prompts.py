"""The teacher's listwise selection prompts (positive mining, hard-negative mining).

Our own wording. The teacher sees the query, the gold answer when there is one, and numbered
passages prepared exactly as the engine prepares them (`PromptBuilder.prepare_passage`:
cleaning, truncation to `max_passage_tokens`, `[n]` -> `(n)`); it answers with identifiers
inside `<answer> </answer>`, or `none`. Listwise labelling does not use these: it uses the
engine's own reasoning prompt, so the SFT data matches inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reasonrank.core.prompts import PromptBuilder, render_chat
from reasonrank.core.text import clean_query
from reasonrank.types import Prompt

_SYSTEM = (
    "You are a careful relevance assessor for a search engine. You read a question, the "
    "reference answer when one is given, and a numbered list of passages, and you decide which "
    "passages fit a criterion. Think it through inside <think> </think>, then give your final "
    "choice inside <answer> </answer>: the identifiers of the chosen passages separated by "
    "commas, e.g. <answer>[2], [5]</answer>, or <answer>none</answer> when no passage fits."
)


@dataclass(frozen=True)
class SelectionTemplate:
    """A selection prompt: a system message and the criterion after the passages."""

    name: str
    system: str
    criterion: str  # str.format over {num}

    def user_message(self, query: str, answer: str | None, passages: Sequence[str]) -> str:
        reference = (f"Reference answer: {answer}\n" if answer
                     else "Reference answer: (none given; judge from the question alone)\n")
        lines = "".join(f"[{i}] {p}\n" for i, p in enumerate(passages, start=1))
        return (f"Question: {query}\n{reference}\nHere are {len(passages)} candidate passages, "
                f"each marked by an identifier in square brackets.\n\n{lines}\n"
                + self.criterion.format(num=len(passages)))


POSITIVES = SelectionTemplate(
    name="positives",
    system=_SYSTEM,
    criterion=(
        "Task: select every passage that helps answer the question. A passage helps when it "
        "contains information a reader needs to reach the reference answer: a fact, a "
        "definition, a method, a theorem or an example that the answer relies on. Passages "
        "that only share words or topic with the question do not count. List the identifiers "
        "of the helpful passages among the {num} above, most helpful first."
    ),
)

HARD_NEGATIVES = SelectionTemplate(
    name="hard_negatives",
    system=_SYSTEM,
    criterion=(
        "Task: select the misleading passages. A passage is misleading when it looks relevant "
        "- it shares the question's topic, terms or entities, and a quick reader would take it "
        "for a useful source - but it does not help reach the reference answer. Do not select "
        "passages that help answer the question, nor passages plainly about something else. "
        "List the identifiers of the misleading passages among the {num} above."
    ),
)

TEMPLATES = {t.name: t for t in (POSITIVES, HARD_NEGATIVES)}


def selection_prompt(builder: PromptBuilder, template: SelectionTemplate, query: str,
                     answer: str | None, passages: Sequence[str]) -> Prompt:
    """The rendered selection prompt for raw passage texts (prepared here, as the engine does)."""
    prepared = [builder.prepare_passage(p) for p in passages]
    messages = (
        {"role": "system", "content": template.system},
        {"role": "user", "content": template.user_message(
            clean_query(query), clean_query(answer) if answer else None, prepared)},
    )
    return Prompt(text=render_chat(builder.tokenizer, messages), messages=messages)
