"""Reading teacher answers: selections (stages 2-3) and rankings (stage 5). Pure.

Each parser returns the value and `problem`: None for a usable answer, else a short reason
("truncated", "no_answer", "out_of_range", ...) that makes the answer malformed: it is logged
and the request retried.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reasonrank.core.parsing import digit_runs, extract_answer, parse_ranking, split_output
from reasonrank.types import ParseStatus

_NONE_WORDS = re.compile(r"\b(none|no passages?|nothing)\b")


@dataclass(frozen=True)
class Selection:
    """0-based positions the teacher selected, in its order, without repeats."""

    ids: tuple[int, ...]
    problem: str | None = None


@dataclass(frozen=True)
class Ranking:
    """A full permutation of the window (0-based) and the teacher's reasoning."""

    order: tuple[int, ...]
    reasoning: str
    problem: str | None = None


def parse_selection(text: str, num: int, finish_reason: str | None = None) -> Selection:
    """Identifiers inside `<answer>...</answer>` (`[3], [7]`, `3, 7` or `none`) of a window of
    `num` passages. Malformed: cut by the token limit, no complete answer block, identifiers
    outside 1..num, or neither identifiers nor "none"."""
    if finish_reason == "length":
        return Selection((), "truncated")
    body, status = extract_answer(text)
    if body is None:
        return Selection((), "no_answer")
    if status is ParseStatus.UNTERMINATED:
        return Selection((), "unterminated")
    body = re.split(r"</answer>", body, maxsplit=1, flags=re.IGNORECASE)[0]
    try:
        numbers = [int(run) for run in digit_runs(body)]
    except ValueError:  # a digit int() rejects, such as a superscript
        return Selection((), "invalid_digits")
    if not numbers:
        lowered = body.strip().lower()
        if not lowered or lowered in ("[]", "-") or _NONE_WORDS.search(lowered):
            return Selection(())
        return Selection((), "no_identifiers")
    if any(not 1 <= n <= num for n in numbers):
        return Selection((), "out_of_range")
    return Selection(tuple(dict.fromkeys(n - 1 for n in numbers)))


def parse_teacher_ranking(text: str, num: int, finish_reason: str | None = None) -> Ranking:
    """The engine's parser on a teacher answer; only a clean `ok` parse with a non-empty
    reasoning is usable (a repaired or truncated ranking is not a label)."""
    identity = tuple(range(num))
    if finish_reason == "length":
        return Ranking(identity, "", "truncated")
    parsed = parse_ranking(text, num, "strict")
    if parsed.status is not ParseStatus.OK:
        return Ranking(identity, "", parsed.status.value)
    reasoning = split_output(text)[0]  # reasoning_content comes back as a <think> block
    if not reasoning:
        return Ranking(identity, "", "empty_reasoning")
    return Ranking(tuple(parsed.order), reasoning)
