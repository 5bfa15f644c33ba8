"""The GRPO multi-view ranking reward (reference section 8): hand-computed values, the format and
id checks, RBO, the reward's range, a pytrec_eval cross-check and the torch-free import."""

from __future__ import annotations

import math
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonrank.errors import ConfigError
from reasonrank.training.rewards import (
    FORMAT_PATTERN,
    RewardBreakdown,
    RewardWeights,
    answer_ids,
    ndcg_at_k,
    ranking_reward,
    rbo,
    recall_at_k,
    score_response,
)

LOG3 = math.log2(3)
IDEAL_2 = 1 + 1 / LOG3  # ideal DCG of two relevant passages: 1/log2(2) + 1/log2(3) = 1.63093


def respond(answer: str, think: str = "some reasoning") -> str:
    return f"<think>{think}</think>\n<answer>{answer}</answer>"


def chain(numbers: list[int]) -> str:
    return " > ".join(f"[{n}]" for n in numbers)


# ---------------------------------------------------------------- NDCG@10 and Recall@10


TWELVE = [f"p{i}" for i in range(1, 13)]  # p1 at rank 1, ..., p12 at rank 12


@pytest.mark.parametrize(
    ("relevant", "exact", "approx"),
    [
        # The paper's example: hits at ranks 1 and 11; rank 11 is past the cutoff.
        # DCG = 1/log2(2) = 1; IDCG = 1 + 1/log2(3) = 1.63093; NDCG = 1/1.63093 = 0.613
        ({"p1", "p11"}, 1 / (1 + 1 / LOG3), 0.613),
        # Hits at ranks 9 and 10: DCG = 1/log2(10) + 1/log2(11) = 0.30103 + 0.28906 = 0.59009;
        # NDCG = 0.59009 / 1.63093 = 0.362
        ({"p9", "p10"}, (1 / math.log2(10) + 1 / math.log2(11)) / IDEAL_2, 0.362),
        # Both at the top: DCG = IDCG
        ({"p1", "p2"}, 1.0, 1.0),
        # Only past the cutoff
        ({"p11", "p12"}, 0.0, 0.0),
        # 12 relevant: the ideal DCG stops at k = 10 hits, and so does the DCG of this order
        (set(TWELVE), 1.0, 1.0),
        # A relevant id that is not in the ranking still counts in the ideal DCG:
        # DCG = 1, IDCG = 1 + 1/log2(3)
        ({"p1", "elsewhere"}, 1 / IDEAL_2, 0.613),
        # No relevant id: 0.0 by convention
        (set(), 0.0, 0.0),
    ],
)
def test_ndcg_at_10_hand_computed(relevant: set[str], exact: float, approx: float) -> None:
    value = ndcg_at_k(TWELVE, relevant, 10)
    assert value == pytest.approx(exact, abs=1e-12)
    assert value == pytest.approx(approx, abs=1e-3)


@pytest.mark.parametrize(
    ("relevant", "k", "expected"),
    [
        ({"p1", "p11"}, 10, 0.5),  # p11 is past the cutoff: 1 of 2
        ({"p1", "p11"}, 11, 1.0),  # 2 of 2
        ({"p9", "p10", "elsewhere"}, 10, 2 / 3),
        ({"p12"}, 10, 0.0),
        (set(), 10, 0.0),
        ({"p1", "p2", "p3"}, 1, 1 / 3),
    ],
)
def test_recall_at_k_hand_computed(relevant: set[str], k: int, expected: float) -> None:
    assert recall_at_k(TWELVE, relevant, k) == pytest.approx(expected, abs=1e-12)


def test_ndcg_counts_a_repeated_id_once() -> None:
    # "a" at ranks 1 and 2 gains only at rank 1: DCG = 1 = IDCG of one relevant id
    assert ndcg_at_k(["a", "a", "b"], {"a"}) == 1.0
    assert ndcg_at_k(["b", "a", "a"], {"a"}) == pytest.approx(1 / LOG3, abs=1e-12)


def test_ndcg_and_recall_match_pytrec_eval() -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = random.Random(20240807)
    for case in range(200):
        pool = [f"d{i}" for i in range(rng.randint(1, 30))]
        ranking = rng.sample(pool, rng.randint(1, len(pool)))
        relevant = set(rng.sample(pool, rng.randint(1, len(pool))))
        if rng.random() < 0.3:
            relevant.add("not-retrieved")
        qrels = {"q": {d: 1 for d in relevant}}
        # distinct scores: pytrec_eval breaks ties by doc id
        run = {"q": {d: float(1000 - r) for r, d in enumerate(ranking, start=1)}}
        expected = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.10"}).evaluate(
            run
        )["q"]
        assert ndcg_at_k(ranking, relevant, 10) == pytest.approx(
            expected["ndcg_cut_10"], abs=1e-9
        ), case
        assert recall_at_k(ranking, relevant, 10) == pytest.approx(
            expected["recall_10"], abs=1e-9
        ), case


# ---------------------------------------------------------------- RBO


@pytest.mark.parametrize(
    ("ranking", "reference", "p", "expected"),
    [
        # A_1 = 0, A_2 = 0, A_3 = |{b,d,a} & {c,a,d}| / 3 = 2/3, A_4 = 1; mean = (5/3) / 4 = 5/12
        (["b", "d", "a", "c"], ["c", "a", "d", "b"], 1.0, 5 / 12),
        # A_1 = 1, A_2 = 1/2, A_3 = 2/3, A_4 = 1; mean = (19/6) / 4 = 19/24
        (["c", "b", "a", "d"], ["c", "a", "d", "b"], 1.0, 19 / 24),
        # A_1 = 0, A_2 = 1, A_3 = 1; mean = 2/3
        (["x", "y", "z"], ["y", "x", "z"], 1.0, 2 / 3),
        # p = 0.5, weights 1, 1/2, 1/4: (0 + 1/2 + 1/4) / (7/4) = 3/7
        (["x", "y", "z"], ["y", "x", "z"], 0.5, 3 / 7),
        # p = 0.5, A = 1, 1/2, 1: (1 + 1/4 + 1/4) / (7/4) = 6/7
        (["x", "y", "z"], ["x", "z", "y"], 0.5, 6 / 7),
        # unequal lengths, depth 3: A_1 = 1, A_2 = 1/2 ({x,y} & {x,z}), A_3 = 1/3; mean = 11/18
        (["x", "y"], ["x", "z", "w"], 1.0, 11 / 18),
        # disjoint
        (["a", "b", "c"], ["x", "y", "z"], 1.0, 0.0),
        (["a", "b", "c"], ["x", "y", "z"], 0.3, 0.0),
        # empty
        ([], [], 1.0, 0.0),
    ],
)
def test_rbo_hand_computed(
    ranking: list[str], reference: list[str], p: float, expected: float
) -> None:
    assert rbo(ranking, reference, p) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("p", [0.1, 0.9, 1.0])
@pytest.mark.parametrize("items", [["a"], ["a", "b", "c"], [f"d{i}" for i in range(20)]])
def test_rbo_of_identical_lists_is_one(items: list[str], p: float) -> None:
    assert rbo(items, list(items), p) == pytest.approx(1.0, abs=1e-12)


def _rbo_by_definition(a: list[str], b: list[str], p: float) -> float:
    depth = max(len(a), len(b))
    agreements = [len(set(a[:d]) & set(b[:d])) / d for d in range(1, depth + 1)]
    weights = [p ** (d - 1) for d in range(1, depth + 1)]
    return sum(w * x for w, x in zip(weights, agreements, strict=True)) / sum(weights)


@settings(max_examples=200, deadline=None)
@given(
    a=st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=12),
    b=st.lists(st.sampled_from("abcdefgh"), min_size=0, max_size=12),
    p=st.floats(min_value=0.01, max_value=1.0),
)
def test_rbo_matches_its_definition(a: list[str], b: list[str], p: float) -> None:
    # repeats and unequal lengths included; symmetric; within [0, 1]
    value = rbo(a, b, p)
    assert value == pytest.approx(_rbo_by_definition(a, b, p), abs=1e-9)
    assert value == pytest.approx(rbo(b, a, p), abs=1e-12)
    assert 0.0 <= value <= 1.0 + 1e-12


# ---------------------------------------------------------------- full rewards

INITIAL4 = ["d1", "d2", "d3", "d4"]
FINAL4 = ["d3", "d1", "d4", "d2"]  # the teacher's order
RELEVANT4 = {"d3", "d1"}


@pytest.mark.parametrize(
    ("numbers", "ndcg", "recall", "overlap"),
    [
        # Perfect: prediction = teacher list, both relevant at the top -> 1 + 0.2 + 0.1
        ([3, 1, 4, 2], 1.0, 1.0, 1.0),
        # Reversed: d2 d4 d1 d3; hits at ranks 3, 4: DCG = 1/2 + 1/log2(5) = 0.93068,
        # NDCG = 0.93068 / 1.63093 = 0.57064; RBO = 5/12 (see the RBO table): 0.81231
        ([2, 4, 1, 3], (0.5 + 1 / math.log2(5)) / IDEAL_2, 1.0, 5 / 12),
        # Partial: d3 d2 d1 d4; hits at ranks 1, 3: DCG = 1.5, NDCG = 0.91972; RBO = 19/24
        ([3, 2, 1, 4], 1.5 / IDEAL_2, 1.0, 19 / 24),
    ],
)
def test_full_reward_hand_computed(
    numbers: list[int], ndcg: float, recall: float, overlap: float
) -> None:
    result = score_response(respond(chain(numbers)), INITIAL4, FINAL4, RELEVANT4)
    assert result.format_ok and result.ids_ok
    assert result.ranking == tuple(INITIAL4[n - 1] for n in numbers)
    assert result.ndcg == pytest.approx(ndcg, abs=1e-12)
    assert result.recall == pytest.approx(recall, abs=1e-12)
    assert result.rbo == pytest.approx(overlap, abs=1e-12)
    expected = ndcg + 0.2 * recall + 0.1 * overlap
    assert result.reward == pytest.approx(expected, abs=1e-12)
    assert ranking_reward(respond(chain(numbers)), INITIAL4, FINAL4, RELEVANT4) == result.reward


def test_full_reward_values() -> None:
    perfect = ranking_reward(respond("[3] > [1] > [4] > [2]"), INITIAL4, FINAL4, RELEVANT4)
    assert perfect == 1.3
    reversed_ = ranking_reward(respond("[2] > [4] > [1] > [3]"), INITIAL4, FINAL4, RELEVANT4)
    assert reversed_ == pytest.approx(0.81231, abs=1e-5)  # 0.57064 + 0.2 + 0.04167
    partial = ranking_reward(respond("[3] > [2] > [1] > [4]"), INITIAL4, FINAL4, RELEVANT4)
    assert partial == pytest.approx(1.19889, abs=1e-5)  # 0.91972 + 0.2 + 0.07917


def test_full_reward_of_the_paper_example() -> None:
    # 12 passages in window order, teacher keeps that order, relevant at ranks 1 and 11:
    # NDCG = 0.61315, Recall@10 = 1/2, RBO = 1 -> 0.61315 + 0.1 + 0.1 = 0.81315
    result = score_response(respond(chain(list(range(1, 13)))), TWELVE, TWELVE, {"p1", "p11"})
    assert result.ndcg == pytest.approx(1 / IDEAL_2, abs=1e-12)
    assert result.recall == 0.5
    assert result.rbo == 1.0
    assert result.reward == pytest.approx(1 / IDEAL_2 + 0.2, abs=1e-12)


def test_answer_ids_map_window_numbers_to_doc_ids() -> None:
    assert answer_ids("[3] > [1] > [4] > [2]", INITIAL4) == ["d3", "d1", "d4", "d2"]
    assert answer_ids("[2] > [2]", INITIAL4) == ["d2", "d2"]  # repeats kept
    assert answer_ids("3, 1;4 2", INITIAL4) == ["d3", "d1", "d4", "d2"]  # any separator
    assert answer_ids("", INITIAL4) == []
    assert answer_ids("[5]", INITIAL4) is None
    assert answer_ids("[0]", INITIAL4) is None
    assert answer_ids("[²]", INITIAL4) is None
    # Unicode decimal digits are digits that int() reads, as in the released code
    assert answer_ids("[３] > [１]", INITIAL4) == ["d3", "d1"]


# ---------------------------------------------------------------- format failures: -1

INITIAL3 = ["a", "b", "c"]
FINAL3 = ["c", "a", "b"]
RELEVANT3 = {"c"}
GOOD3 = "[3] > [1] > [2]"


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(f"<answer>{GOOD3}</answer>", id="no-think"),
        pytest.param("<think>reasoning</think>", id="no-answer"),
        pytest.param(f"<think>reasoning</think> {GOOD3}", id="no-answer-tags"),
        pytest.param(f"<answer>{GOOD3}</answer><think>reasoning</think>", id="answer-first"),
        pytest.param(f"<think>reasoning</think><answer>{GOOD3}", id="unterminated-answer"),
        pytest.param(f"<think>reasoning<answer>{GOOD3}</answer>", id="unterminated-think"),
        pytest.param(f"<THINK>reasoning</THINK><answer>{GOOD3}</answer>", id="upper-think"),
        pytest.param(f"<think>reasoning</think><ANSWER>{GOOD3}</ANSWER>", id="upper-answer"),
        pytest.param(f"<think>reasoning</think> so <answer>{GOOD3}</answer>", id="text-between"),
        pytest.param("", id="empty"),
    ],
)
def test_format_failures_score_minus_one(response: str) -> None:
    result = score_response(response, INITIAL3, FINAL3, RELEVANT3)
    assert result == RewardBreakdown(-1.0, False, False, 0.0, 0.0, 0.0, ())
    assert ranking_reward(response, INITIAL3, FINAL3, RELEVANT3) == -1.0


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(f"<think>r</think><answer>{GOOD3}</answer>", id="adjacent"),
        pytest.param(f"<think>r</think> \n\t\n <answer>{GOOD3}</answer>", id="whitespace"),
        pytest.param(
            f"<think>line 1\nline 2\n[1] > [2]\n</think>\n<answer>\n{GOOD3}\n</answer>",
            id="multi-line",
        ),
        pytest.param(f"<think></think><answer>{GOOD3}</answer>", id="empty-think"),
        pytest.param(f"preamble <think>r</think><answer>{GOOD3}</answer> trailing", id="search"),
    ],
)
def test_well_formed_responses_are_scored(response: str) -> None:
    assert FORMAT_PATTERN.search(response) is not None
    # prediction = teacher list with the relevant id on top: 1 + 0.2 + 0.1
    assert ranking_reward(response, INITIAL3, FINAL3, RELEVANT3) == 1.3


# ---------------------------------------------------------------- id-count failures: 0


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param("[3] > [1]", id="fewer"),
        pytest.param("[3] > [1] > [2] > [1]", id="more"),
        pytest.param("[1] > [1] > [2]", id="duplicate"),
        pytest.param("[4] > [1] > [2]", id="out-of-range"),
        pytest.param("[0] > [1] > [2]", id="zero"),
        pytest.param("[²] > [1] > [2]", id="superscript"),
        pytest.param("I cannot rank these", id="no-digits"),
        pytest.param("", id="empty"),
        pytest.param("3 passages: [3] > [1] > [2]", id="extra-number"),
    ],
)
def test_wrong_id_counts_score_zero(answer: str) -> None:
    result = score_response(respond(answer), INITIAL3, FINAL3, RELEVANT3)
    assert result.format_ok and not result.ids_ok
    assert (result.reward, result.ndcg, result.recall, result.rbo) == (0.0, 0.0, 0.0, 0.0)
    assert ranking_reward(respond(answer), INITIAL3, FINAL3, RELEVANT3) == 0.0


# ---------------------------------------------------------------- weights


def test_weights_and_persistence_flow_through_ranking_reward() -> None:
    response = respond("[2] > [4] > [1] > [3]")  # d2 d4 d1 d3 against d3 d1 d4 d2
    for p in (0.3, 0.5, 1.0):
        only_rbo = ranking_reward(
            response, INITIAL4, FINAL4, RELEVANT4, ndcg=0, recall=0, rbo=1, rbo_p=p
        )
        assert only_rbo == pytest.approx(rbo(["d2", "d4", "d1", "d3"], FINAL4, p), abs=1e-12)
    # p = 0.5, A = 0, 0, 2/3, 1, weights 1, 1/2, 1/4, 1/8: (1/6 + 1/8) / (15/8) = 7/45
    assert ranking_reward(
        response, INITIAL4, FINAL4, RELEVANT4, ndcg=0, recall=0, rbo=1, rbo_p=0.5
    ) == pytest.approx(7 / 45, abs=1e-12)
    # NDCG only, with k = 3: the hit at rank 4 is cut; DCG = 1/log2(4) = 1/2, NDCG = 0.5/IDEAL_2
    assert ranking_reward(
        response, INITIAL4, FINAL4, RELEVANT4, recall=0, rbo=0, k=3
    ) == pytest.approx(0.5 / IDEAL_2, abs=1e-12)
    # Recall only, with k = 3: d1 in the top 3, d3 not -> 1/2
    assert (
        ranking_reward(response, INITIAL4, FINAL4, RELEVANT4, ndcg=0, rbo=0, recall=1, k=3) == 0.5
    )
    weights = RewardWeights(ndcg=0.0, recall=1.0, rbo=0.0, k=3)
    assert score_response(response, INITIAL4, FINAL4, RELEVANT4, weights).reward == 0.5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"k": 0},
        {"k": -1},
        {"k": 2.5},
        {"k": True},
        {"rbo_p": 0.0},
        {"rbo_p": -0.5},
        {"rbo_p": 1.5},
        {"rbo_p": float("nan")},
        {"ndcg": float("inf")},
        {"recall": float("nan")},
        {"rbo": float("-inf")},
        {"ndcg": "1"},
    ],
)
def test_invalid_weights_raise_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        RewardWeights(**kwargs)
    with pytest.raises(ConfigError):
        ranking_reward(respond(GOOD3), INITIAL3, FINAL3, RELEVANT3, **kwargs)


def test_default_weights_are_the_released_ones() -> None:
    assert RewardWeights() == RewardWeights(ndcg=1.0, recall=0.2, rbo=0.1, k=10, rbo_p=1.0)


# ---------------------------------------------------------------- properties


@st.composite
def windows(draw: st.DrawFn) -> tuple[list[str], list[str], set[str]]:
    n = draw(st.integers(min_value=1, max_value=20))
    initial = [f"doc{i}" for i in range(n)]
    final = draw(st.permutations(initial))
    relevant = set(draw(st.lists(st.sampled_from([*initial, "foreign"]), max_size=n)))
    return initial, final, relevant


@st.composite
def responses(draw: st.DrawFn, n: int) -> str:
    kind = draw(st.sampled_from(["permutation", "numbers", "garbage", "wrapped-garbage"]))
    if kind == "permutation":
        return respond(chain(draw(st.permutations(range(1, n + 1)))))
    if kind == "numbers":
        numbers = draw(st.lists(st.integers(min_value=0, max_value=n + 2), max_size=n + 2))
        return respond(chain(numbers), think=draw(st.text(max_size=20)))
    if kind == "garbage":
        return draw(st.text(max_size=60))
    return respond(draw(st.text(max_size=40)), think=draw(st.text(max_size=20)))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_reward_stays_in_range(data: st.DataObject) -> None:
    initial, final, relevant = data.draw(windows())
    response = data.draw(responses(len(initial)))
    result = score_response(response, initial, final, relevant)
    assert -1.0 <= result.reward <= 1.3
    assert result.format_ok == (FORMAT_PATTERN.search(response) is not None)
    if not result.format_ok:
        assert result.reward == -1.0
    elif not result.ids_ok:
        assert result.reward == 0.0
    else:
        assert result.reward >= 0.0
        assert sorted(result.ranking) == sorted(final)
        assert result.reward == result.ndcg + 0.2 * result.recall + 0.1 * result.rbo
    assert ranking_reward(response, initial, final, relevant) == result.reward


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_teacher_order_with_relevant_on_top_scores_the_maximum(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=1, max_value=20))
    initial = [f"doc{i}" for i in range(n)]
    final = data.draw(st.permutations(initial))
    top = data.draw(st.integers(min_value=1, max_value=min(n, 10)))
    numbers = [initial.index(d) + 1 for d in final]
    reward = ranking_reward(respond(chain(numbers)), initial, final, set(final[:top]))
    assert reward == 1.3


# ---------------------------------------------------------------- import hygiene


def test_import_pulls_in_neither_torch_nor_numpy() -> None:
    code = (
        "import sys, reasonrank.training.rewards; "
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, "
        "sorted(m for m in ('torch', 'numpy') if m in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
