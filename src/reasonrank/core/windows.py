"""Sliding windows, back to front (reference section 4), as a pure function."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def sliding_windows(
    num_candidates: int,
    window_size: int = 20,
    step: int = 10,
    rank_start: int = 0,
    top_k: int = 100,
) -> list[tuple[int, int]]:
    """The `[start, end)` windows of one pass in the order they run, exactly as the released
    code walks them.

    100 candidates give [80,100), [70,90), ..., [0,20); 45 give [25,45), [15,35), [5,25), [0,15).
    `pass_windows` gives the windows of several passes.
    """
    return [(start, end) for _, start, end in pass_windows(
        num_candidates, window_size, step, rank_start, top_k)]


def pass_windows(
    num_candidates: int,
    window_size: int = 20,
    step: int = 10,
    rank_start: int = 0,
    top_k: int = 100,
    num_passes: int = 1,
) -> list[tuple[int, int, int]]:
    """`(pass, start, end)` of every window, in the order they run (see `sliding_windows`).

    Pass p (0-based) is the same loop from `rank_start + step * p`, as `run_rank_llm.py` calls
    each pass (`rank_start=step_size * pass_ct`).
    """
    if window_size < 1 or step < 1 or num_passes < 0 or rank_start < 0:
        raise ValueError("window_size and step must be >= 1; rank_start, num_passes >= 0")
    rank_end = min(top_k, num_candidates)
    window = min(window_size, num_candidates)
    out: list[tuple[int, int, int]] = []
    for pass_index in range(num_passes):
        first = rank_start + step * pass_index
        end = rank_end
        start = end - window
        while end > first and start + step != first:
            start = max(start, first)
            out.append((pass_index, start, end))
            end -= step
            start -= step
    return out


def permute_window(items: Sequence[T], start: int, end: int, order: Sequence[int]) -> list[T]:
    """`items` with `items[start:end]` reordered by `order` (0-based, relative to the window).

    Only items move: callers that keep scores by position (scores stay monotone in rank)
    keep a separate score list and do not permute it.
    """
    window = items[start:end]
    if sorted(order) != list(range(len(window))):
        raise ValueError(f"order {list(order)} is not a permutation of range({len(window)})")
    return [*items[:start], *(window[i] for i in order), *items[end:]]
