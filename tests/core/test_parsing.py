"""Parsing a model's answer into a permutation (reference section 3), under both policies."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reasonrank.core.parsing import ParsedRanking, extract_answer, parse_ranking, split_output
from reasonrank.types import ParseStatus

OK = ParseStatus.OK
REP = ParseStatus.REPAIRED
UNT = ParseStatus.UNTERMINATED
NO = ParseStatus.NO_ANSWER
INV = ParseStatus.INVALID_DIGITS

POLICIES = ("reproduce", "strict")


def ident(n: int) -> list[int]:
    return list(range(n))


def ans(body: str, think: str = "reasoning") -> str:
    """A complete, well-formed response with `body` as the answer."""
    return f"<think>{think}</think>\n<answer>{body}</answer>"


# (id, response, num, reproduce (order, status), strict (order, status) or None = the same)
CASES: list[tuple[str, str, int, tuple[list[int], ParseStatus], tuple | None]] = [
    # -- step 1: a complete <think>..</think><answer>..</answer> --------------------------------
    ("complete", "<think>Passage 3 answers it best.</think>\n<answer>[3] > [1] > [2]</answer>",
     3, ([2, 0, 1], OK), None),
    ("complete-identity", ans("[1] > [2] > [3]"), 3, ([0, 1, 2], OK), None),
    ("upper-case-tags", "<THINK>x</THINK><ANSWER>[2] > [3] > [1]</ANSWER>",
     3, ([1, 2, 0], OK), None),
    ("mixed-case-tags", "<Think>x</tHiNk><AnSwEr>[2] > [3] > [1]</aNsWeR>",
     3, ([1, 2, 0], OK), None),
    ("newlines-between-think-and-answer",
     "<think>x</think>\n\n  \t\n<answer>[2] > [1] > [3]</answer>", 3, ([1, 0, 2], OK), None),
    ("no-space-between-think-and-answer", "<think>x</think><answer>[2]>[1]>[3]</answer>",
     3, ([1, 0, 2], OK), None),
    ("whitespace-inside-answer", "<think>x</think><answer>\n  [2] > [1] > [3]  \n</answer>",
     3, ([1, 0, 2], OK), None),
    ("text-after-answer", ans("[2] > [1] > [3]") + "\nI hope this helps: 9 8 7.",
     3, ([1, 0, 2], OK), None),
    ("digits-in-think-ignored", ans("[2] > [1]", think="[1] > [2] 42 passages"),
     2, ([1, 0], OK), None),
    # -- repaired: missing, duplicate, out-of-range ids ------------------------------------------
    ("missing-ids-appended-in-order", ans("[4] > [2]"), 5, ([3, 1, 0, 2, 4], REP), None),
    ("empty-answer", ans(""), 3, ([0, 1, 2], REP), None),
    ("answer-without-numbers", ans("none of them is relevant"), 3, ([0, 1, 2], REP), None),
    ("duplicate-first-kept", ans("[2] > [2] > [1] > [3]"), 3, ([1, 0, 2], REP), None),
    ("duplicate-later-dropped", ans("[3] > [1] > [3] > [2]"), 3, ([2, 0, 1], REP), None),
    ("out-of-range-0-N+1-999", ans("[0] > [4] > [2] > [999] > [1]"), 3, ([1, 0, 2], REP), None),
    ("only-out-of-range", ans("[0] > [4] > [999]"), 3, ([0, 1, 2], REP), None),
    # -- junk text and other spellings of the ranking ----------------------------------------------
    ("brackets-no-spaces", ans("[3]>[1]>[2]"), 3, ([2, 0, 1], OK), None),
    ("bare-numbers-partial", ans("3 > 1"), 3, ([2, 0, 1], REP), None),
    ("bare-numbers-full", ans("3 > 1 > 2"), 3, ([2, 0, 1], OK), None),
    ("prose-partial", ans("passage 3, then 1"), 3, ([2, 0, 1], REP), None),
    ("prose-full", ans("The ranking is: passage 3, then passage 1, then passage 2."),
     3, ([2, 0, 1], OK), None),
    ("junk-number-duplicates-an-id", ans("Top 3: [3] > [1] > [2]"), 3, ([2, 0, 1], REP), None),
    ("junk-number-out-of-range", ans("[3] > [1] > [2] (confidence: 90%)"),
     3, ([2, 0, 1], REP), None),
    ("glued-numbers", ans("[12][3]"), 12, ([11, 2, 0, 1, 3, 4, 5, 6, 7, 8, 9, 10], REP), None),
    ("minus-sign-is-not-a-digit", ans("[-1] > [2]"), 2, ([0, 1], OK), None),
    ("decimal-point-splits", ans("[1.5] > [2]"), 3, ([0, 1, 2], REP), None),
    # -- several blocks: the first match of the non-greedy regex -------------------------------
    ("two-think-answer-blocks-first-wins",
     "<think>a</think><answer>[2] > [1]</answer><think>b</think><answer>[1] > [2]</answer>",
     2, ([1, 0], OK), None),
    ("two-answers-first-wins", ans("[2] > [1]") + "\n<answer>[1] > [2]</answer>",
     2, ([1, 0], OK), None),
    ("think-not-followed-by-answer-then-second-think",
     "<think>a</think> hmm <think>b</think>\n<answer>[2] > [1]</answer>", 2, ([1, 0], OK), None),
    ("answer-inside-think",
     "<think>draft <answer>[1] > [2]</answer></think><answer>[2] > [1]</answer>",
     2, ([1, 0], OK), None),
    # The first block's answer is unterminated, so the non-greedy group runs to the first
    # </answer> (the second block's): body "[1] > [2]\n<think>b</think><answer>[2] > [1]".
    ("unterminated-first-block-spans-to-next-close",
     "<think>a</think><answer>[1] > [2]\n<think>b</think><answer>[2] > [1]</answer>",
     2, ([0, 1], REP), None),
    # -- step 2: <answer> without </answer> -> text after the LAST <answer> (case-sensitive) ------
    ("unterminated", "<think>r</think>\n<answer>[3] > [1] > [2]", 3, ([2, 0, 1], UNT), None),
    ("unterminated-partial-keeps-status", "<think>r</think>\n<answer>[3] > [1",
     3, ([2, 0, 1], UNT), None),
    ("unterminated-empty", "<think>r</think><answer>", 3, ([0, 1, 2], UNT), None),
    ("unterminated-after-last-answer", "<think>I will put <answer> 3 2 1 here\n<answer>[2] > [3]",
     3, ([1, 2, 0], UNT), None),
    ("unterminated-last-lowercase-answer-not-ANSWER",
     "<answer>[2] > [1] > [3]\n<ANSWER>[3] > [2] > [1]", 3, ([1, 0, 2], UNT), None),
    # -- upper-case <ANSWER> alone does not count in step 2 -> step 3 -----------------------------
    ("upper-case-unterminated-is-no-answer", "<THINK>passage 3 looks best</THINK><ANSWER>[3] > [2]",
     3, ([2, 1, 0], NO), ([0, 1, 2], NO)),
    ("capitalised-answer-alone", "<Answer>[2] > [1]", 2, ([1, 0], NO), ([0, 1], NO)),
    ("closing-answer-only", "<think>x</think>[2] > [1]</answer>", 2, ([1, 0], NO), ([0, 1], NO)),
    # -- step 3: no answer at all -----------------------------------------------------------------
    ("reasoning-only", "<think>Passage [3] is the most relevant, then [1]",
     3, ([2, 0, 1], NO), ([0, 1, 2], NO)),
    ("think-block-without-answer", "<think>Passage 2 wins.</think>",
     3, ([1, 0, 2], NO), ([0, 1, 2], NO)),
    ("bare-ranking-without-tags", "[2] > [3] > [1]", 3, ([1, 2, 0], NO), ([0, 1, 2], NO)),
    ("no-digits", "I cannot decide.", 3, ([0, 1, 2], NO), None),
    ("empty-string", "", 3, ([0, 1, 2], NO), None),
    ("whitespace-only", " \n\t ", 3, ([0, 1, 2], NO), None),
    ("empty-string-window-20", "", 20, (ident(20), NO), None),
    # -- "digits" int() rejects: the window is left unchanged ------------------------------------
    ("superscript-three-in-answer", ans("[2] > [1] > [³]"), 3, ([0, 1, 2], INV), None),
    ("superscript-glued-to-digit", ans("[2]² > [1]"), 3, ([0, 1, 2], INV), None),
    ("superscript-two-alone", ans("²"), 3, ([0, 1, 2], INV), None),
    ("circled-digit", ans("[①] > [2]"), 3, ([0, 1, 2], INV), None),
    ("superscript-in-unterminated-answer", "<think>x</think><answer>[²] > [1]",
     3, ([0, 1, 2], INV), None),
    ("superscript-in-think-only-ignored", ans("[2] > [1]", think="x² + y³"),
     2, ([1, 0], OK), None),
    # no answer: reproduce reads the reasoning and hits the superscript; strict never reads it
    ("superscript-no-answer", "<think>since x² grows, passage 2 wins",
     3, ([0, 1, 2], INV), ([0, 1, 2], NO)),
    # -- other unicode digits: int() accepts them, so they are parsed as numbers ---------------
    ("arabic-indic-digits", ans("[٣] > [١] > [٢]"), 3, ([2, 0, 1], OK), None),
    ("fullwidth-digits", ans("[３] > [１] > [２]"), 3, ([2, 0, 1], OK), None),
    ("devanagari-digits", ans("[३] > [१] > [२]"), 3, ([2, 0, 1], OK), None),
    ("mixed-script-digit-run", ans("[1٢] > [1]"),
     12, ([11, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], REP), None),
    ("arabic-indic-no-answer", "passage ٢ is best", 3, ([1, 0, 2], NO), ([0, 1, 2], NO)),
    # -- a window of 1 ---------------------------------------------------------------------------
    ("window-1-ok", ans("[1]"), 1, ([0], OK), None),
    ("window-1-extra-id", ans("[2] > [1]"), 1, ([0], REP), None),
    ("window-1-empty-answer", ans(""), 1, ([0], REP), None),
    ("window-1-no-answer", "", 1, ([0], NO), None),
    ("window-1-unterminated", "<answer>[1]", 1, ([0], UNT), None),
    # -- a window of 20 --------------------------------------------------------------------------
    ("window-20-reversed", ans(" > ".join(f"[{i}]" for i in range(20, 0, -1))),
     20, (list(range(19, -1, -1)), OK), None),
    ("window-20-missing", ans("[4] > [2] > [20] > [1] > [3]"),
     20, ([3, 1, 19, 0, 2, *range(4, 19)], REP), None),
    ("window-20-dup-and-out-of-range", ans("[20] > [21] > [20] > [0] > [10]"),
     20, ([19, 9, *range(9), *range(10, 19)], REP), None),
    ("window-20-two-digit-ids-no-answer", "<think>[12] beats [20], and [3] is off topic",
     20, ([11, 19, 2, 0, 1, *range(3, 11), *range(12, 19)], NO), (ident(20), NO)),
    # -- N = 0 -----------------------------------------------------------------------------------
    ("n0-empty", "", 0, ([], NO), None),
    ("n0-empty-answer-is-ok", ans(""), 0, ([], OK), None),
    ("n0-any-id-is-out-of-range", ans("[1]"), 0, ([], REP), None),
    ("n0-unterminated", "<answer>[1]", 0, ([], UNT), None),
    ("n0-no-answer", "passage 1", 0, ([], NO), None),
    ("n0-superscript", ans("[²]"), 0, ([], INV), None),
]


def _params() -> list:
    params = []
    for case_id, response, num, reproduce, strict in CASES:
        params.append(pytest.param(response, num, "reproduce", reproduce,
                                   id=f"{case_id}-reproduce"))
        params.append(pytest.param(response, num, "strict", strict or reproduce,
                                   id=f"{case_id}-strict"))
    return params


@pytest.mark.parametrize(("response", "num", "policy", "expected"), _params())
def test_parse_ranking_table(
    response: str, num: int, policy: str, expected: tuple[list[int], ParseStatus]
) -> None:
    parsed = parse_ranking(response, num, policy)
    assert isinstance(parsed, ParsedRanking)
    assert (parsed.order, parsed.status) == expected
    assert sorted(parsed.order) == list(range(num))


def test_default_policy_is_reproduce() -> None:
    response = "<think>Passage 2 wins.</think>"
    assert parse_ranking(response, 3) == parse_ranking(response, 3, "reproduce")
    assert parse_ranking(response, 3).order == [1, 0, 2]


@pytest.mark.parametrize(
    ("response", "body", "status"),
    [
        pytest.param(ans("  [2] > [1]  "), "[2] > [1]", OK, id="complete-stripped"),
        pytest.param("<THINK>X</THINK><ANSWER> [2] Y </ANSWER>", "[2] y", OK,
                     id="body-comes-from-the-lower-cased-response"),
        pytest.param("<answer>a<answer> b ", " b ", UNT, id="after-last-answer-not-stripped"),
        pytest.param("<ANSWER>[1]", None, NO, id="upper-case-answer-alone"),
        pytest.param("", None, NO, id="empty"),
    ],
)
def test_extract_answer(response: str, body: str | None, status: ParseStatus) -> None:
    assert extract_answer(response) == (body, status)


@pytest.mark.parametrize(
    ("output", "reasoning", "answer"),
    [
        pytest.param("<think>why</think> <answer>[2] > [1]</answer>", "why", "[2] > [1]",
                     id="complete"),
        pytest.param("because</think><answer>[1]", "because", "[1]",
                     id="think-opened-by-the-template-answer-unterminated"),
        pytest.param("<think>still thinking", "still thinking", None, id="think-unterminated"),
        pytest.param("<think>a <answer>[1]", "a", "[1]", id="unterminated-think-ends-at-answer"),
        pytest.param("x<think>a<think> b </think>", "b", None, id="last-think-before-close"),
        pytest.param("<THINK>Why</THINK><Answer> [1] </ANSWER>", "Why", "[1]",
                     id="tags-in-any-case-text-kept"),
        pytest.param("[1] > [2]", None, None, id="neither"),
    ],
)
def test_split_output(output: str, reasoning: str | None, answer: str | None) -> None:
    assert split_output(output) == (reasoning, answer)


@pytest.mark.parametrize("policy", POLICIES)
def test_answer_without_think_block_reads_after_last_answer(policy: str) -> None:
    # Step 1 needs a <think> block; without one, step 2 takes the text after the last <answer>
    # (here "[2] > [1]</answer>"). The order is spec-exact; the status says the answer block
    # was terminated but not preceded by a think block.
    for response in ("<answer>[2] > [1]</answer>",
                     "<think>x</think> Final: <answer>[2] > [1]</answer>"):
        parsed = parse_ranking(response, 2, policy)
        assert parsed.order == [1, 0]
        assert parsed.status is ParseStatus.MALFORMED


@pytest.mark.parametrize("policy", POLICIES)
def test_digit_run_longer_than_int_limit_never_raises(policy: str) -> None:
    # int() rejects a run of more than sys.get_int_max_str_digits() digits (4300 by default).
    parsed = parse_ranking(ans("1" * 5000 + " > [2]"), 3, policy)
    assert sorted(parsed.order) == [0, 1, 2]
    assert isinstance(parsed.status, ParseStatus)


# -- an independent transcription of section 3, and property tests ------------------------------

_REGEX = re.compile(r"<think>.*?</think>\s*<answer>(.*?)</answer>", re.DOTALL)


def reference_parse(response: str, num: int, policy: str) -> tuple[list[int], ParseStatus]:
    identity = list(range(num))
    m = _REGEX.search(response.lower())
    if m:  # step 1
        body, status = m.group(1).strip(), OK
    elif "<answer>" in response:  # step 2
        body = response[response.rindex("<answer>") + len("<answer>"):]
        status = ParseStatus.MALFORMED if "</answer>" in body else UNT
    else:  # step 3
        if policy == "strict":
            return identity, NO
        body, status = response, NO
    # step 4
    runs, current = [], ""
    for ch in body:
        if ch.isdigit():
            current += ch
        elif current:
            runs.append(current)
            current = ""
    if current:
        runs.append(current)
    try:
        ids = [int(r) - 1 for r in runs]
    except ValueError:
        return identity, INV
    order: list[int] = []
    for i in ids:
        if i in range(num) and i not in order:
            order.append(i)
    if status is OK and ids != order:
        status = REP  # something was dropped, repeated or out of range
    if status is OK and len(order) != num:
        status = REP  # something was missing
    order += [i for i in identity if i not in order]
    return order, status


FRAGMENTS = [
    "<think>", "</think>", "<answer>", "</answer>", "<THINK>", "</THINK>", "<ANSWER>",
    "</ANSWER>", "<Answer>", "[", "]", " > ", ">", " ", "\n", ", ", "²", "³", "①", "٣", "３",
    "passage", "then", "rank", "-", ".", "0",
]
fragment_text = st.lists(
    st.one_of(
        st.sampled_from(FRAGMENTS),
        st.integers(0, 30).map(str),
        st.integers(0, 30).map(lambda i: f"[{i}]"),
        st.text(max_size=4),
        st.from_regex(r"[a-zA-Z]{1,8}", fullmatch=True),
    ),
    max_size=40,
).map("".join)
answer_body = st.lists(
    st.one_of(
        st.integers(0, 30).map(lambda i: f"[{i}]"),
        st.sampled_from([" > ", ">", " ", "\n", ", ", "then", "²", "٣", "３", "[", "]"]),
    ),
    max_size=30,
).map("".join)
structured_text = st.tuples(
    st.sampled_from(["<think>", "<THINK>", "<Think>", "", "x"]),
    fragment_text,
    st.sampled_from(["</think>", "</THINK>", "", "</think>junk<think>y</think>"]),
    st.sampled_from(["", " ", "\n\n", " junk "]),
    st.sampled_from(["<answer>", "<ANSWER>", "<Answer>", "", "<answer>[1]<answer>"]),
    answer_body,
    st.sampled_from(["</answer>", "</ANSWER>", "", "</answer><answer>[1]</answer>"]),
    st.one_of(st.just(""), fragment_text),
).map("".join)
any_text = st.one_of(st.text(max_size=200), fragment_text, structured_text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(response=any_text, num=st.integers(0, 25))
def test_parse_never_raises_and_returns_a_permutation(response: str, num: int) -> None:
    results = {policy: parse_ranking(response, num, policy) for policy in POLICIES}
    for policy, parsed in results.items():
        assert isinstance(parsed.status, ParseStatus)
        assert sorted(parsed.order) == list(range(num))
        assert all(type(i) is int for i in parsed.order)
        assert (parsed.order, parsed.status) == reference_parse(response, num, policy)
    reproduce, strict = results["reproduce"], results["strict"]
    if strict.status is not NO:
        assert strict == reproduce
    if reproduce.status is not NO:
        assert strict.order == reproduce.order
    if strict.status is NO:
        assert strict.order == list(range(num))


@settings(max_examples=200, deadline=None)
@given(perm=st.integers(1, 25).flatmap(lambda n: st.permutations(list(range(n)))),
       policy=st.sampled_from(POLICIES))
def test_well_formed_answer_round_trips(perm: list[int], policy: str) -> None:
    response = ans(" > ".join(f"[{i + 1}]" for i in perm), think="thinking about [1] and 2")
    assert parse_ranking(response, len(perm), policy) == ParsedRanking(list(perm), OK)


# -- the CLI: `reasonrank parse --num N [--policy ...]` -----------------------------------------


def run_parse(stdin: bytes, *args: str, env: dict[str, str] | None = None):
    exe = Path(sys.executable).with_name("reasonrank")
    cmd = [str(exe)] if exe.exists() else [
        sys.executable, "-c", "import sys; from reasonrank.cli.main import main; sys.exit(main())"]
    return subprocess.run([*cmd, "parse", *args], input=stdin, capture_output=True,
                          timeout=60, env=env)


def _one_json_line(stdout: bytes) -> dict:
    text = stdout.decode("utf-8")
    assert text.endswith("\n") and text.count("\n") == 1, text
    obj = json.loads(text)
    assert set(obj) == {"order", "status"}
    return obj


@pytest.mark.parametrize(
    ("stdin", "policy", "order", "status"),
    [
        pytest.param(ans("[3] > [1] > [2]"), "reproduce", [2, 0, 1], "ok", id="ok-reproduce"),
        pytest.param(ans("[3] > [1] > [2]"), "strict", [2, 0, 1], "ok", id="ok-strict"),
        pytest.param("<think>passage 2 is best", "reproduce", [1, 0, 2], "no_answer",
                     id="no-answer-reproduce"),
        pytest.param("<think>passage 2 is best", "strict", [0, 1, 2], "no_answer",
                     id="no-answer-strict"),
        pytest.param("<think>x</think><answer>[3] > [1", None, [2, 0, 1], "answer_unterminated",
                     id="unterminated-default-policy"),
        pytest.param(ans("[３] > [²]"), "strict", [0, 1, 2], "invalid_digits",
                     id="invalid-digits-strict"),
    ],
)
def test_cli_parse(stdin: str, policy: str | None, order: list[int], status: str) -> None:
    args = ["--num", "3"] + (["--policy", policy] if policy else [])
    proc = run_parse(stdin.encode("utf-8"), *args)
    assert proc.returncode == 0, proc.stderr.decode()
    assert _one_json_line(proc.stdout) == {"order": order, "status": status}


@pytest.mark.parametrize("policy", POLICIES)
def test_cli_parse_garbage_yields_a_permutation(policy: str) -> None:
    garbage = "\x00<answer><<>>[[]]² ³ ① ٣ ３ 99 -1 \u202e\ud7ff 🙂\n</think>\r\n" * 3
    proc = run_parse(garbage.encode("utf-8"), "--num", "3", "--policy", policy)
    assert proc.returncode == 0, proc.stderr.decode()
    obj = _one_json_line(proc.stdout)
    assert sorted(obj["order"]) == [0, 1, 2]
    assert obj["status"] in {s.value for s in ParseStatus}


def test_cli_parse_num_zero_and_twenty() -> None:
    proc = run_parse(b"", "--num", "0")
    assert _one_json_line(proc.stdout) == {"order": [], "status": "no_answer"}
    proc = run_parse(ans("[20] > [1]").encode(), "--num", "20")
    assert _one_json_line(proc.stdout) == {"order": [19, 0, *range(1, 19)], "status": "repaired"}


def test_cli_parse_rejects_bad_arguments() -> None:
    assert run_parse(b"", "--num", "3", "--policy", "lenient").returncode == 2
    proc = run_parse(b"", "--num", "-1")
    assert proc.returncode == 2
    assert proc.stdout == b""


def test_cli_parse_undecodable_bytes_yield_a_permutation() -> None:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}  # what a UTF-8 locale such as en_US gives
    proc = run_parse(b"\xff\xfe<think>x</think><answer>[2] > [1]\x80</answer>", "--num", "2",
                     env=env)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    obj = _one_json_line(proc.stdout)
    assert sorted(obj["order"]) == [0, 1]
