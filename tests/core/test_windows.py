"""Sliding windows, back to front (reference section 4), and applying a window's permutation."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonrank.backends.fake import FakeBackend
from reasonrank.config import RerankConfig
from reasonrank.core.parsing import parse_ranking
from reasonrank.core.prompts import PromptBuilder
from reasonrank.core.scheduler import Scheduler
from reasonrank.core.windows import pass_windows, permute_window, sliding_windows
from reasonrank.types import Candidate, Generation, Query, Request
from reference_impl import _ref_passes


def spec_windows(
    n: int, window: int = 20, step: int = 10, rank_start: int = 0, top_k: int = 100,
    num_passes: int = 1,
) -> list[tuple[int, int]]:
    """A literal transcription of the loop in reference section 4, pass p from
    `rank_start + step * p` (section 4b: "pass p (0-based) runs the window loop with
    rank_start = step * p")."""
    windows = []
    for p in range(num_passes):
        first = rank_start + step * p
        rank_end = min(top_k, n)  # "rank_end is min(top-k, n)"
        size = min(window, n)  # "and the window is min(window, n)"
        end = rank_end  # "Start at end = rank_end,"
        start = end - size  # "start = end - window;"
        while end > first and start + step != first:  # "loop while ..."
            start = max(start, first)  # "first clamp start = max(start, rank_start),"
            windows.append((start, end))  # "process [start, end),"
            end = end - step  # "then move both (the clamped start included) back by step."
            start = start - step
    return windows


def windows_of(*args: int, **kwargs: int) -> list[tuple[int, int]]:
    """The `[start, end)` windows of every pass, in the order they run."""
    return [(start, end) for _, start, end in pass_windows(*args, **kwargs)]


SPEC_100 = [(80, 100), (70, 90), (60, 80), (50, 70), (40, 60), (30, 50), (20, 40), (10, 30),
            (0, 20)]
SPEC_45 = [(25, 45), (15, 35), (5, 25), (0, 15)]


def test_spec_example_100_candidates() -> None:
    assert sliding_windows(100) == SPEC_100
    assert len(SPEC_100) == 9
    assert sliding_windows(100, window_size=20, step=10, rank_start=0, top_k=100) == SPEC_100
    assert windows_of(100, num_passes=1) == SPEC_100


def test_spec_example_45_candidates() -> None:
    assert sliding_windows(45) == SPEC_45


def test_transcription_reproduces_the_spec_examples() -> None:
    assert spec_windows(100) == SPEC_100
    assert spec_windows(45) == SPEC_45


# (id, kwargs, expected)
TABLE = [
    ("n0", dict(num_candidates=0), []),
    ("n1", dict(num_candidates=1), [(0, 1)]),
    ("n10", dict(num_candidates=10), [(0, 10)]),
    ("n19", dict(num_candidates=19), [(0, 19)]),
    ("n20", dict(num_candidates=20), [(0, 20)]),
    ("n21", dict(num_candidates=21), [(1, 21), (0, 11)]),
    ("n30", dict(num_candidates=30), [(10, 30), (0, 20)]),
    ("n45", dict(num_candidates=45), SPEC_45),
    ("n100", dict(num_candidates=100), SPEC_100),
    ("n101-top100", dict(num_candidates=101, top_k=100), SPEC_100),
    ("n1000-top100", dict(num_candidates=1000, top_k=100), SPEC_100),
    ("window10-step5-n100", dict(num_candidates=100, window_size=10, step=5),
     [(e - 10, e) for e in range(100, 5, -5)]),
    ("step-eq-window-n100", dict(num_candidates=100, window_size=20, step=20),
     [(80, 100), (60, 80), (40, 60), (20, 40), (0, 20)]),
    ("step-eq-window-n45", dict(num_candidates=45, window_size=20, step=20),
     [(25, 45), (5, 25), (0, 5)]),
    ("rank-start-5", dict(num_candidates=100, rank_start=5),
     [*SPEC_100[:-1], (5, 20)]),
    ("rank-start-10", dict(num_candidates=100, rank_start=10), SPEC_100[:-1]),
    ("rank-start-50", dict(num_candidates=100, rank_start=50),
     [(80, 100), (70, 90), (60, 80), (50, 70)]),
    ("rank-start-95", dict(num_candidates=100, rank_start=95), [(95, 100)]),
    ("rank-start-100", dict(num_candidates=100, rank_start=100), []),
    ("rank-start-5-step-eq-window", dict(num_candidates=100, step=20, rank_start=5),
     [(80, 100), (60, 80), (40, 60), (20, 40), (5, 20)]),
    # pass p starts at step * p: the second pass of 100 stops before [0, 20), as the
    # reference's `rank_start=args.step_size * pass_ct` makes it
    ("two-passes-n45", dict(num_candidates=45, num_passes=2),
     [*SPEC_45, (25, 45), (15, 35), (10, 25)]),
    ("two-passes-n100", dict(num_candidates=100, num_passes=2), SPEC_100 + SPEC_100[:-1]),
    ("three-passes-n100", dict(num_candidates=100, num_passes=3),
     SPEC_100 + SPEC_100[:-1] + SPEC_100[:-2]),
    ("three-passes-n1", dict(num_candidates=1, num_passes=3), [(0, 1)]),
    ("two-passes-n0", dict(num_candidates=0, num_passes=2), []),
    ("top50-n100", dict(num_candidates=100, top_k=50), [(30, 50), (20, 40), (10, 30), (0, 20)]),
    ("top30-n45", dict(num_candidates=45, top_k=30), [(10, 30), (0, 20)]),
    ("top25-n100", dict(num_candidates=100, top_k=25), [(5, 25), (0, 15)]),
    ("top20-n100", dict(num_candidates=100, top_k=20), [(0, 20)]),
    ("top15-n100", dict(num_candidates=100, top_k=15), [(0, 15)]),
    ("top5-n100", dict(num_candidates=100, top_k=5), [(0, 5)]),
]


@pytest.mark.parametrize(("kwargs", "expected"), [pytest.param(k, e, id=i) for i, k, e in TABLE])
def test_sliding_windows_table(kwargs: dict, expected: list[tuple[int, int]]) -> None:
    assert windows_of(**kwargs) == expected
    if kwargs.get("num_passes", 1) == 1:
        assert sliding_windows(**kwargs) == expected
    kwargs = dict(kwargs)
    n = kwargs.pop("num_candidates")
    assert spec_windows(n, **{"window" if k == "window_size" else k: v
                              for k, v in kwargs.items()}) == expected


def test_window_10_step_5_has_19_windows() -> None:
    windows = sliding_windows(100, window_size=10, step=5)
    assert len(windows) == 19
    assert windows[0] == (90, 100) and windows[1] == (85, 95) and windows[-1] == (0, 10)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param(dict(num_candidates=100, top_k=10), id="top10-window20-step10"),
        pytest.param(dict(num_candidates=15, rank_start=10), id="n15-rank-start-10"),
        pytest.param(dict(num_candidates=100, top_k=30, window_size=40, step=10),
                     id="top30-window40-step10"),
    ],
)
def test_degenerate_first_window_runs_nothing(kwargs: dict) -> None:
    # Spec-exact quirk: when rank_end - min(window, n) + step == rank_start the loop condition
    # `start + step != rank_start` is false before the first window, so nothing is reranked
    # although [rank_start, rank_end) is not empty (e.g. top_k=10 with window 20 / step 10).
    assert sliding_windows(**kwargs) == []
    kwargs = dict(kwargs)
    n = kwargs.pop("num_candidates")
    assert spec_windows(n, **{"window" if k == "window_size" else k: v
                              for k, v in kwargs.items()}) == []


# -- property tests ---------------------------------------------------------------------------

window_args = st.fixed_dictionaries({
    "num_candidates": st.integers(0, 250),
    "window_size": st.integers(1, 30),
    "step": st.integers(1, 30),
    "rank_start": st.integers(0, 60),
    "top_k": st.integers(1, 250),
    "num_passes": st.integers(1, 3),
})


@settings(max_examples=500, deadline=None)
@given(args=window_args)
def test_window_properties(args: dict) -> None:
    n, window_size, step = args["num_candidates"], args["window_size"], args["step"]
    rank_start, top_k, num_passes = args["rank_start"], args["top_k"], args["num_passes"]
    rank_end = min(top_k, n)
    window = min(window_size, n)
    windows = windows_of(**args)

    assert windows == spec_windows(n, window_size, step, rank_start, top_k, num_passes)
    one = sliding_windows(n, window_size, step, rank_start, top_k)
    assert windows[:len(one)] == one
    for p in range(1, num_passes):  # pass p is the loop from rank_start + step * p
        assert all(start >= rank_start + step * p for start, _ in
                   sliding_windows(n, window_size, step, rank_start + step * p, top_k))

    for start, end in one:
        assert rank_start <= start < end <= rank_end
        assert end - start <= window_size
    for i, (start, end) in enumerate(one):
        assert end == rank_end - i * step  # ends move back by exactly `step`
        assert start == max(rank_end - window - i * step, rank_start)  # starts too, then clamp
    for (s0, e0), (s1, e1) in itertools.pairwise(one):
        assert e0 - e1 == step
        assert s1 == max(s0 - step, rank_start)
        assert s0 > rank_start  # only the last window may sit at rank_start
    if one:
        assert one[0][1] == rank_end

    # Nothing runs exactly when the range is empty or the first window is the degenerate case.
    degenerate = rank_end - window + step == rank_start
    assert (not one) == (rank_end <= rank_start or degenerate)
    if step <= window_size and one:
        covered = set()
        for start, end in one:
            covered.update(range(start, end))
        assert covered == set(range(rank_start, rank_end))


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 400), top_k=st.integers(1, 400))
def test_default_windows_cover_the_top_k(n: int, top_k: int) -> None:
    windows = sliding_windows(n, top_k=top_k)
    rank_end = min(n, top_k)
    if rank_end > 0 and rank_end - min(20, n) + 10 == 0:  # the degenerate case
        assert windows == []  # e.g. n >= 20 with top_k = 10, or n = 15 with top_k = 5
        return
    covered = {i for start, end in windows for i in range(start, end)}
    assert covered == set(range(rank_end))


# -- permute_window ---------------------------------------------------------------------------


def test_permute_window_reorders_only_the_window() -> None:
    items = list("abcdefg")
    assert permute_window(items, 2, 5, [2, 0, 1]) == list("abecdfg")
    assert items == list("abcdefg")  # the input is not modified
    assert permute_window(items, 0, 3, [2, 1, 0]) == list("cbadefg")
    assert permute_window(items, 4, 7, [1, 2, 0]) == list("abcdfge")
    assert permute_window(items, 0, 7, [6, 5, 4, 3, 2, 1, 0]) == list("gfedcba")


def test_permute_window_identity_and_empty() -> None:
    items = [10, 20, 30]
    out = permute_window(items, 0, 3, [0, 1, 2])
    assert out == items and out is not items
    assert permute_window(items, 1, 1, []) == items
    assert permute_window([], 0, 0, []) == []
    assert permute_window(("x", "y"), 0, 2, (1, 0)) == ["y", "x"]


@pytest.mark.parametrize(
    "order",
    [
        pytest.param([0, 0, 1], id="duplicate"),
        pytest.param([0, 1], id="too-short"),
        pytest.param([0, 1, 2, 3], id="too-long"),
        pytest.param([1, 2, 3], id="one-based"),
        pytest.param([-1, 0, 1], id="negative"),
        pytest.param([], id="empty"),
    ],
)
def test_permute_window_rejects_non_permutations(order: list[int]) -> None:
    with pytest.raises(ValueError, match="not a permutation"):
        permute_window(list("abcdef"), 1, 4, order)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), items=st.lists(st.integers(), max_size=40))
def test_permute_window_property(data: st.DataObject, items: list[int]) -> None:
    start = data.draw(st.integers(0, len(items)))
    end = data.draw(st.integers(start, len(items)))
    order = data.draw(st.permutations(list(range(end - start))))
    out = permute_window(items, start, end, order)
    assert len(out) == len(items)
    assert out[:start] == items[:start] and out[end:] == items[end:]
    assert [out[start + r] for r in range(end - start)] == [items[start + i] for i in order]
    assert sorted(out) == sorted(items)


# -- scores are held by position: docids move, scores stay monotone --------------------------


def _answer(order: list[int]) -> str:
    """A well-formed model output ranking the window as `order` (0-based)."""
    ids = " > ".join(f"[{i + 1}]" for i in order)
    return f"<think>ranking</think>\n<answer>{ids}</answer>"


def _simulate(n: int, choose_order, num_passes: int = 1, **kwargs):
    docids = [f"d{i}" for i in range(n)]
    scores = [1000.0 - 3.5 * i for i in range(n)]  # first-stage scores, held by position
    for start, end in windows_of(n, num_passes=num_passes, **kwargs):
        window = docids[start:end]
        parsed = parse_ranking(_answer(choose_order(window)), end - start)
        before_outside = docids[:start] + docids[end:]
        docids = permute_window(docids, start, end, parsed.order)
        assert docids[:start] + docids[end:] == before_outside
    return docids, scores


def _by_relevance(window: list[str]) -> list[int]:
    """An oracle: the larger the docid number, the more relevant."""
    return sorted(range(len(window)), key=lambda i: -int(window[i][1:]))


def test_oracle_pass_brings_the_best_ten_to_the_top_with_scores_by_position() -> None:
    docids, scores = _simulate(100, _by_relevance)  # first stage is worst-first
    assert docids[:10] == [f"d{i}" for i in range(99, 89, -1)]
    assert sorted(docids, key=lambda d: int(d[1:])) == [f"d{i}" for i in range(100)]
    assert scores == [1000.0 - 3.5 * i for i in range(100)]
    ranked = list(zip(docids, scores, strict=True))
    assert all(a[1] >= b[1] for a, b in itertools.pairwise(ranked))
    assert ranked[0] == ("d99", 1000.0)  # the best doc takes the top position's score
    assert dict(ranked)["d0"] != 1000.0  # the first-stage top lost its score with its position


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param(dict(n=100), id="n100"),
        pytest.param(dict(n=45, num_passes=2), id="n45-two-passes"),
        pytest.param(dict(n=100, window_size=10, step=5, rank_start=3), id="w10-s5-start3"),
    ],
)
def test_random_permutations_keep_scores_by_position(seed: int, kwargs: dict) -> None:
    rng = random.Random(seed)

    def shuffle(window: list[str]) -> list[int]:
        order = list(range(len(window)))
        rng.shuffle(order)
        return order

    kwargs = dict(kwargs)
    n = kwargs.pop("n")
    rank_start = kwargs.get("rank_start", 0)
    docids, scores = _simulate(n, shuffle, **kwargs)
    assert sorted(docids) == sorted(f"d{i}" for i in range(n))
    assert docids != [f"d{i}" for i in range(n)]  # documents moved
    assert all(a >= b for a, b in itertools.pairwise(scores))
    assert docids[:rank_start] == [f"d{i}" for i in range(rank_start)]  # never moved


def test_scheduler_result_scores_strictly_decrease_or_follow_positions() -> None:
    from reasonrank.core.methods.base import ranked_result
    from reasonrank.types import Candidate, Query, Request

    n = 45
    cands = [Candidate(f"d{i}", f"text {i}", score=50.0 - (i // 3) * 0.25) for i in range(n)]
    items = list(range(n))
    for start, end in sliding_windows(n):
        window = [f"d{i}" for i in items[start:end]]
        items = permute_window(items, start, end, parse_ranking(
            _answer(_by_relevance(window)), end - start).order)
    request = Request(Query("q", "1"), cands)
    result = ranked_result(request, items, [])
    assert [d.rank for d in result.docs] == list(range(1, n + 1))
    assert [d.docid for d in result.docs] == [f"d{i}" for i in items]
    assert [d.first_stage_rank for d in result.docs] == [i + 1 for i in items]
    # default: n + 1 - rank, strictly decreasing although the first-stage scores tie
    assert [d.score for d in result.docs] == [float(n - r) for r in range(n)]
    assert [d.first_stage_score for d in result.docs] == [cands[i].score for i in items]
    # the reference's writing: each rank keeps the first-stage score of its position
    reference = ranked_result(request, items, [], "reference")
    assert [d.score for d in reference.docs] == [c.score for c in cands]
    assert reference.docs[0].docid == "d44" and reference.docs[0].score == 50.0


# -- multi-pass against an independent transcription of `run_rank_llm.py` ----------------------


def _hash_answer(window: list[str]) -> str:
    """A deterministic model: ranks a window by a hash of its docids (some answers repeat or
    drop ids, or lose the answer block)."""
    keyed = sorted(range(len(window)), key=lambda i: hashlib.sha1(
        ("|".join(window) + window[i]).encode()).hexdigest())
    ids = [k + 1 for k in keyed]
    h = int(hashlib.sha1("|".join(window).encode()).hexdigest(), 16)
    if h % 5 == 0:
        ids = ids[: len(ids) // 2] + ids[:2] + [len(ids) + 3]  # repeats, drops, out of range
    body = " > ".join(f"[{i}]" for i in ids)
    if h % 7 == 0:
        return f"<think>numbers {body}"  # no answer: the reasoning's numbers are used
    return f"<think>r</think> <answer>{body}</answer>"


class _DocidBackend(FakeBackend):
    """Answers `_hash_answer` of the docids it reads back from the prompt."""

    async def generate(self, prompt, params):
        window = re.findall(r"^\[\d+\] doc (\S+)", prompt.text, re.MULTILINE)
        self.calls += 1
        return Generation(_hash_answer(window), 10, 10, "stop")


@pytest.mark.parametrize("num_passes", [1, 2, 3])
@pytest.mark.parametrize("n", [100, 99, 45, 37, 21, 19, 7, 1])
def test_multi_pass_matches_the_reference_pass_loop(qwen_tokenizer, n: int,
                                                    num_passes: int) -> None:
    docids = [f"x{i}" for i in range(n)]
    expected, ran = _ref_passes(docids, _hash_answer, num_passes)
    request = Request(Query("q", "1"), [Candidate(d, f"doc {d}", 0.0) for d in docids])
    config = RerankConfig(backend="fake", num_passes=num_passes)
    sched = Scheduler(_DocidBackend(qwen_tokenizer), PromptBuilder(qwen_tokenizer, "reasoning",
                                                                     16), config)
    result = asyncio.run(sched.rerank(request))
    assert [(w.start, w.end) for w in result.windows] == ran
    assert result.docids == expected
    assert [w.pass_index for w in result.windows] == [
        p for p, _, _ in pass_windows(n, num_passes=num_passes)]
    if num_passes > 1 and n >= 30:
        assert windows_of(n, num_passes=num_passes) != sliding_windows(n) * num_passes
