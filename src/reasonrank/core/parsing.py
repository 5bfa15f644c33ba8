"""Read a model's output: its reasoning and answer blocks (`split_output`), and the answer as a
permutation of the window, never raising (`parse_ranking`, reference section 3).

Policies:
- "reproduce" (default): the released code's behaviour. With no <answer> at all, the numbers
  anywhere in the response (the reasoning) are read as the ranking.
- "strict": as "reproduce", except that a window with no answer keeps its input order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reasonrank.types import ParseStatus

POLICIES = ("reproduce", "strict")

_THINK_ANSWER = re.compile(r"<think>.*?</think>\s*<answer>(.*?)</answer>", re.DOTALL)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ParsedRanking:
    order: list[int]  # 0-based: order[r] is the window position that moves to rank r
    status: ParseStatus


def split_output(output: str) -> tuple[str | None, str | None]:
    """The reasoning (inside `<think>...</think>`) and the answer (inside `<answer>...</answer>`)
    of an output, stripped; None where absent. Tags match in any case. A `</think>` without its
    `<think>` (opened by the chat template) closes a reasoning that starts the output; an
    unterminated block runs to the end (the reasoning up to an `<answer>`)."""
    reasoning = None
    close = _THINK_CLOSE.search(output)
    if close is not None:
        reasoning = _THINK_OPEN.split(output[:close.start()])[-1].strip()
    elif (opened := _THINK_OPEN.search(output)) is not None:
        reasoning = _ANSWER_OPEN.split(output[opened.end():], maxsplit=1)[0].strip()
    answer = _ANSWER.search(output)
    return reasoning, answer.group(1).strip() if answer is not None else None


def extract_answer(response: str) -> tuple[str | None, ParseStatus]:
    """The part of `response` the ids are read from, and what was found (steps 1-3).

    The released code's rule, kept exactly (unlike `split_output`): the text is lowercased,
    and without a complete think-then-answer pair the last `<answer>` starts the body."""
    match = _THINK_ANSWER.search(response.lower())
    if match:
        return match.group(1).strip(), ParseStatus.OK
    if "<answer>" in response:
        tail = response.split("<answer>")[-1]
        return tail, ParseStatus.MALFORMED if "</answer>" in tail else ParseStatus.UNTERMINATED
    return None, ParseStatus.NO_ANSWER


def digit_runs(text: str) -> list[str]:
    # The released code keeps characters for which str.isdigit() holds (superscripts included)
    # and replaces every other character by a space.
    return "".join(c if c.isdigit() else " " for c in text).split()


def parse_ranking(response: str, num: int, policy: str = "reproduce") -> ParsedRanking:
    """Parse one window's response into a 0-based permutation of `range(num)` and a status."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    identity = list(range(num))
    body, status = extract_answer(response)
    if body is None:
        if policy == "strict":
            return ParsedRanking(identity, status)
        body = response
    try:
        ids = [int(run) - 1 for run in digit_runs(body)]
    except ValueError:  # a "digit" such as "²" that int() rejects: the window is left unchanged
        return ParsedRanking(identity, ParseStatus.INVALID_DIGITS)
    seen: set[int] = set()
    order: list[int] = []
    for i in ids:
        if 0 <= i < num and i not in seen:
            seen.add(i)
            order.append(i)
    complete = len(order) == num and len(ids) == num
    order.extend(i for i in identity if i not in seen)
    if status is ParseStatus.OK and not complete:
        status = ParseStatus.REPAIRED
    return ParsedRanking(order, status)

