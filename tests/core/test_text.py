"""`reasonrank.core.text.fix_text` is `ftfy.fix_text`, and `Truncator` is the released truncation.

Both are claimed equal to the slow reference for every input; these property tests compare them
on arbitrary text, on text built to hit the fast paths' edges, and on the DL19 passages.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import ftfy
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reasonrank.core.text import clean_query, fix_text, passage_content, replace_number
from reasonrank.core.truncation import Truncator, reference_truncate

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference_truncation(tokenizer: Any, text: str, n: int) -> str:
    """The released code's step 4, spelled out here (not `reasonrank`'s copy of it)."""
    return tokenizer.convert_tokens_to_string(tokenizer.tokenize(text)[:n])


# --- fix_text ----------------------------------------------------------------------------------

FIX_FRAGMENTS = [
    "a", "Z", "plain ascii words", " ", "\t", "\n", "\n\n", "\r", "\r\n", "&amp;", "&lt;", "&gt;",
    "&#x2019;", "&hellip;", "&", "<", ">", "<b>", "\x1b[31m", "\x1b[0m", "\x00", "\x07", "\x0b",
    "\x7f", "\x80", "\x85", "\x9d", "Ã©", "Ã", "Â", "â€™", "â€œ", "â€", "sÃ³", "ã\x83\x84",
    "\u201c", "\u201d", "\u2018", "\u2019", "ＡＢ", "１", "　", "ﬁ", "ﬂ", "e\u0301", "\u0301",
    "\u0308", "\u2028", "\u2029", "\ufeff", "\u200b", "\xa0", "中文", "🤗", "é", "ü", "[1]",
    ";", "#", "x" * 30,
]
FIX_TEXTS = st.lists(st.sampled_from(FIX_FRAGMENTS), max_size=60).map("".join)


@settings(SETTINGS, max_examples=1000)
@given(st.text(max_size=300))
def test_fix_text_equals_ftfy_on_any_text(text):
    assert fix_text(text) == ftfy.fix_text(text)


@settings(SETTINGS, max_examples=1500)
@given(FIX_TEXTS)
@example("a &amp; b\n<c>\nd &amp; e")  # HTML unescaping stops at the first line with "<"
@example("<\na &amp; b")
@example("a &amp; b\r\n&lt;x&gt;\n")
@example("plain\nsÃ³\nplain &amp;\n")
@example("\x1b[31mred\x1b[0m\n")
def test_fix_text_equals_ftfy_on_tricky_text(text):
    assert fix_text(text) == ftfy.fix_text(text)


def test_fix_text_html_switch_is_per_call():
    # the same line is unescaped or not depending on an earlier "<" in the same text
    line = "Tom &amp; Jerry\n"
    for text in (line, "<x>\n" + line, line, line + "<x>\n" + line, "a\n" + line):
        assert fix_text(text) == ftfy.fix_text(text)
    assert fix_text("<x>\n" + line) == "<x>\n" + line
    assert fix_text(line) == "Tom & Jerry\n"


def test_fix_text_long_segment_split():
    # ftfy cuts lines longer than max_decode_length; an entity across the cut stays escaped
    limit = ftfy.TextFixerConfig().max_decode_length
    text = "a" * (limit - 3) + "&amp; sÃ³\nnext &amp;"
    assert fix_text(text) == ftfy.fix_text(text)


@pytest.fixture(scope="module")
def dl19_passages(shared_data: Path) -> list[str]:
    path = shared_data / "trec_dl" / "bm25_top100_dl19.json.gz"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [h["content"] for entry in json.load(f) for h in entry["hits"]]


def test_fix_text_on_dl19(dl19_passages):
    assert len(dl19_passages) == 4300
    changed = 0
    for text in dl19_passages:
        expected = ftfy.fix_text(text)
        assert fix_text(text) == expected
        changed += expected != text
    assert changed > 100  # mojibake and entities: the slow path was exercised
    # many passages as one text: lines with "<" switch HTML unescaping off for the rest
    joined = "\n".join(dl19_passages[:800])
    assert fix_text(joined) == ftfy.fix_text(joined)
    assert fix_text(joined.replace("\n", " ")) == ftfy.fix_text(joined.replace("\n", " "))


# --- the small helpers -------------------------------------------------------------------------


@settings(SETTINGS, max_examples=200)
@given(FIX_TEXTS, st.one_of(st.none(), st.text(max_size=20)))
def test_helpers_match_the_spec(text, title):
    import re

    assert replace_number(text) == re.sub(r"\[(\d+)\]", r"(\1)", text)
    assert clean_query(text) == re.sub(r"\[(\d+)\]", r"(\1)", text).strip()
    content = "Title: " + title + " " + "Content: " + text if title else text
    assert passage_content(text, title) == ftfy.fix_text(content.strip())


# --- Truncator -----------------------------------------------------------------------------------

TRUNC_FRAGMENTS = [
    "a", "the", " the", "word", "Hello", " World", "supercalifragilistic", "'s", "'LL", "don't",
    " ", "  ", "    ", "\t", "\n", "\n\n", " \n", "\r\n", "\r", ".", ",", "!?", "...", "--", "1",
    "12345", "3.14", "(", ")", "[1]", "{", "é", "e\u0301", "\u0301", "\u0323", "Ｗ", "中文",
    "龘", "𪚥", "日本語", "한국어", "🤗", "👍🏽", "👨\u200d👩", "\u200b", "\xa0", "\u3000",
    "\u2028",
    "<|im_end|>", "<|im_start|>", "<|endoftext|>", "<tool_call>", "<think>", "<|x|>", "&amp;",
    "\x00", "\x1b[31m", "\u031b", "\u0301\u0301", "\ud7ff", "\U0001f600",
]
TRUNC_TEXTS = st.lists(st.sampled_from(TRUNC_FRAGMENTS), max_size=120).map("".join)
N = st.sampled_from([1, 2, 5, 17, 100])


@pytest.fixture(scope="module")
def truncators(qwen_tokenizer):
    cache: dict[int, Truncator] = {}

    def get(n: int) -> Truncator:
        if n not in cache:
            cache[n] = Truncator(qwen_tokenizer, n)
        return cache[n]

    return get


LONG_PLAIN = "Plain words, numbers 1234 and punctuation (here!) " * 60


def test_truncator_does_not_just_call_the_reference(qwen_tokenizer, monkeypatch):
    # otherwise the property tests below would only compare the reference with itself
    truncator = Truncator(qwen_tokenizer, 5)

    def forbidden(*args: Any) -> str:
        raise AssertionError("the slow reference was used for plain text")

    monkeypatch.setattr("reasonrank.core.truncation.reference_truncate", forbidden)
    text = "word " * 200
    assert truncator(text) == "word " * 4 + "word"
    assert Truncator(qwen_tokenizer, 100)(LONG_PLAIN) == reference_truncation(
        qwen_tokenizer, LONG_PLAIN, 100)


@pytest.mark.parametrize(("text", "n"), [
    # NFC is not local: marks after a prefix cut can be reordered before marks inside it and
    # change how the first letter composes (o + U+031B horn + acute -> U+1EDB, not o-acute)
    ("o\u0301\u0301\u0301\u0301\u0301\u031b", 1),
    ("e\u0301\u0301\u0301\u0301\u0301\u0323", 1),
    ("Ho" + "\u0301" * 11 + "\u031b", 2),
    ("word " * 3 + "o" + "\u0301" * 40 + "\u031b tail", 4),
    ("a" * 597 + "o\u0301\u0301\u031b and more words after it", 100),
    ("Vietnamese NFD: Vie\u0323\u0302t Nam " * 30, 17),
    ("Hangul jamo \u1100\u1161\u11a8 " * 40, 5),
    ("x" + "\u0301" * 100, 5),
])
def test_truncator_combining_marks_across_the_prefix_cut(qwen_tokenizer, text, n):
    expected = reference_truncation(qwen_tokenizer, text, n)
    assert Truncator(qwen_tokenizer, n)(text) == expected


MARKS = ["\u0301", "\u0300", "\u0302", "\u0303", "\u0308", "\u0309", "\u031b", "\u0323",
         "\u0325", "\u0327", "\u0338", "\u035c", "\u3099", "\u0bbe", "\u1161", "\u11a8"]


@settings(SETTINGS, max_examples=300)
@given(
    text=st.lists(
        st.one_of(
            st.sampled_from(["o", "e", "a", "A", "H", "=", " ", "  ", "word", " x", "'", "1",
                             "\u1100", "\u0bc6", "\n"]),
            st.lists(st.sampled_from(MARKS), min_size=1, max_size=8).map("".join),
            # a letter, a run of one mark, then another mark: composition depends on the last
            st.tuples(st.sampled_from("oeauiOEAUI"), st.sampled_from(MARKS), st.integers(1, 20),
                      st.sampled_from(MARKS)).map(lambda t: t[0] + t[1] * t[2] + t[3]),
        ),
        min_size=1, max_size=80,
    ).map("".join),
    n=st.sampled_from([1, 2, 3, 5, 17]),
)
def test_truncator_equals_reference_on_combining_marks(qwen_tokenizer, truncators, text, n):
    assert truncators(n)(text) == reference_truncation(qwen_tokenizer, text, n)


@settings(SETTINGS, max_examples=800)
@given(text=TRUNC_TEXTS, n=N)
def test_truncator_equals_reference_on_tricky_text(qwen_tokenizer, truncators, text, n):
    expected = reference_truncation(qwen_tokenizer, text, n)
    assert truncators(n)(text) == expected
    assert reference_truncate(qwen_tokenizer, text, n) == expected


@settings(SETTINGS, max_examples=500)
@given(text=st.text(max_size=400), n=N)
def test_truncator_equals_reference_on_any_text(qwen_tokenizer, truncators, text, n):
    assert truncators(n)(text) == reference_truncation(qwen_tokenizer, text, n)


@settings(SETTINGS, max_examples=400)
@given(
    words=st.lists(st.sampled_from(TRUNC_FRAGMENTS), min_size=1, max_size=20).map("".join),
    repeat=st.integers(8, 40),
    cut=st.sampled_from(
        ["", " ", "   ", "\n", " \n ", "\t\t", "\u3000", "\u0301", "'", "<|im_end|>"]
    ),
    n=st.sampled_from([5, 17, 100]),
)
def test_truncator_long_texts(qwen_tokenizer, truncators, words, repeat, cut, n):
    # long texts (> 6 n characters) take the prefix path; whitespace runs, combining marks and
    # special tokens are placed around the prefix's first guess (6 n characters)
    body = (words + " ") * repeat
    for at in (6 * n - 2, 6 * n - 1, 6 * n, 6 * n + 1, 12 * n):
        text = body[:at] + cut + body[at:] + body
        if len(text) <= 6 * n:
            continue
        assert truncators(n)(text) == reference_truncation(qwen_tokenizer, text, n)


def test_truncator_on_dl19_passages(qwen_tokenizer, truncators, dl19_passages):
    # passages concatenated to 2-3 KB, cut at DL19's and BRIGHT's lengths and small ones
    texts, buf = [], ""
    for p in dl19_passages[::7]:
        buf = (buf + " " + p) if buf else p
        if len(buf) >= 2000:
            texts.append(buf[:3000])
            buf = ""
    assert len(texts) > 100
    for i, text in enumerate(texts):
        for n in (5, 17, 100, 512) if i % 4 == 0 else (100, 512):
            assert truncators(n)(text) == reference_truncation(qwen_tokenizer, text, n)
    for p in dl19_passages[::3]:
        assert truncators(100)(p) == reference_truncation(qwen_tokenizer, p, 100)
