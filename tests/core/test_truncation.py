"""`Truncator`'s paths ("tiktoken", "hf-fast", "reference") all equal the released truncation.

`reference` below is the released code's truncation, spelled out here. The real Qwen2.5 tokenizer
takes the tiktoken path; the hf-fast path is the same tokenizer with `tiktoken` made unimportable.
Small hand-built byte-level BPE tokenizers cover overlapping added tokens, a GPT-2-style
pre-tokenizer, and merges that tiktoken cannot reproduce.
"""

from __future__ import annotations

import gzip
import json
import random
import sys
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reasonrank.core.bpe import bpe_split, bytes_to_unicode
from reasonrank.core.truncation import Truncator, reference_truncate
from reasonrank.offline import QWEN_PATTERN

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
N_VALUES = (1, 5, 17, 100, 512)
BYTE_CHARS = bytes_to_unicode()


def reference(tokenizer: Any, text: str, n: int) -> str:
    return tokenizer.convert_tokens_to_string(tokenizer.tokenize(text)[:n])


def without_tiktoken(tokenizer: Any, n: int) -> Truncator:
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "tiktoken", None)
        return Truncator(tokenizer, n)


@pytest.fixture(scope="module")
def qwen_paths(qwen_tokenizer: Any) -> dict[str, Any]:
    """`paths[name](n)`: a cached Truncator of the Qwen2.5 tokenizer on the "tiktoken" or the
    "hf-fast" path."""
    cache: dict[tuple[str, int], Truncator] = {}

    def getter(name: str) -> Any:
        def get(n: int) -> Truncator:
            if (name, n) not in cache:
                make = Truncator if name == "tiktoken" else without_tiktoken
                cache[name, n] = make(qwen_tokenizer, n)
                assert cache[name, n].path == name
            return cache[name, n]

        return get

    return {"tiktoken": getter("tiktoken"), "hf-fast": getter("hf-fast")}


def check(tokenizer: Any, paths: dict[str, Any], text: str, n: int) -> str:
    expected = reference(tokenizer, text, n)
    for name, get in paths.items():
        assert get(n)(text) == expected, (name, n, text)
    return expected


@pytest.fixture(scope="module")
def dl19_texts(shared_data: Any) -> list[str]:
    with gzip.open(shared_data / "trec_dl/bm25_top100_dl19.json.gz", "rt") as handle:
        passages = [hit["content"] for row in json.load(handle) for hit in row["hits"]]
    singles = passages[::37]
    joined, buf = [], ""
    for p in passages[5::11]:
        buf = f"{buf} {p}" if buf else p
        if len(buf) >= 2000:
            joined.append(buf[: random.Random(len(joined)).randint(2000, 3000)])
            buf = ""
            if len(joined) == 120:
                break
    return singles + joined


# --- path selection --------------------------------------------------------------------------


def test_qwen_takes_the_tiktoken_path(qwen_tokenizer):
    truncator = Truncator(qwen_tokenizer, 100)
    assert truncator.path == "tiktoken"
    assert truncator.tokenizer is qwen_tokenizer and truncator.max_tokens == 100
    with pytest.raises(AttributeError):
        truncator.path = "reference"  # type: ignore[misc]
    assert truncator.truncate_all(["a b c", ""]) == [
        reference(qwen_tokenizer, "a b c", 100),
        "",
    ]


def test_eligibility_is_cached(qwen_tokenizer):
    Truncator(qwen_tokenizer, 3)
    start = time.perf_counter()
    truncator = Truncator(qwen_tokenizer, 7)
    assert time.perf_counter() - start < 0.05
    assert truncator.path == "tiktoken"


def test_without_tiktoken_the_hf_path_is_used(qwen_tokenizer, dl19_texts):
    truncator = without_tiktoken(qwen_tokenizer, 17)
    assert truncator.path == "hf-fast"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "tiktoken", None)
        for text in [*dl19_texts[::5], "", "e\u0301", "a <|im_end|> b", " \n    \n x"]:
            assert truncator(text) == reference(qwen_tokenizer, text, 17)


def test_slow_tokenizer_uses_the_reference():
    class Slow:
        def tokenize(self, text: str) -> list[str]:
            return text.split()

        def convert_tokens_to_string(self, tokens: list[str]) -> str:
            return " ".join(tokens)

    truncator = Truncator(Slow(), 2)
    assert truncator.path == "reference"
    assert truncator("a b  c") == "a b"


# --- exactness on the Qwen2.5 tokenizer ----------------------------------------------------------


def test_dl19_passages(qwen_tokenizer, qwen_paths, dl19_texts):
    assert len(dl19_texts) > 150
    for i, text in enumerate(dl19_texts):
        for n in N_VALUES:
            paths = qwen_paths if i % 6 == 0 else {"tiktoken": qwen_paths["tiktoken"]}
            check(qwen_tokenizer, paths, text, n)


def test_tiktoken_tokens_equal_hf_tokens(qwen_tokenizer, qwen_paths, dl19_texts):
    # stronger than equal truncations: the whole token sequences agree
    truncator = qwen_paths["tiktoken"](1)
    rng = random.Random(0)
    sample = rng.sample(range(0x110000), 30_000)
    code_points = "".join(
        f"a{c}b {c}1{c}\n{c}'{c} {c}{c}|"
        for c in map(chr, sample)
        if not 0xD800 <= ord(c) < 0xE000
    )
    for text in [*dl19_texts[::4], code_points]:
        hf = qwen_tokenizer.tokenize(text)
        ids, _more = truncator._first_ids(truncator._normalize(text), 10**9)
        mine = ["".join(BYTE_CHARS[b] for b in truncator._token_bytes[i]) for i in ids]
        assert mine == hf


@settings(SETTINGS, max_examples=300)
@given(text=st.text(max_size=300), n=st.sampled_from([1, 2, 5, 17]))
def test_any_text(qwen_tokenizer, qwen_paths, text, n):
    check(qwen_tokenizer, qwen_paths, text, n)


FRAGMENTS = [
    "the", " the", "word", " Word", "don't", "we'll", "'s", "'LL", "'", " ", "  ", "\t", "\n",
    "\n\n", " \n", "\n ", "\r\n", ".", ", ", "!?", "1", "12345", "3.14", "(", ")", "é",
    "e\u0301", "\u0301", "中文", "龘", "𝔘𝔫𝔦", "🤗", "👨\u200d👩\u200d👧", "\xa0", "\u3000",
    "\u2028", "<|im_end|>", "<|im_start|><|im_end|>", "<tool_call>", "<|x|>", "a" * 30,
]


@settings(SETTINGS, max_examples=250)
@given(
    words=st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=40).map("".join),
    repeat=st.integers(1, 30),
    n=st.sampled_from([1, 2, 5, 17, 100]),
)
def test_long_texts(qwen_tokenizer, qwen_paths, words, repeat, n):
    # texts longer than the 6 n characters of the first prefix guess
    text = " ".join([words] * repeat)
    check(qwen_tokenizer, qwen_paths, text, n)


@pytest.mark.parametrize(
    ("text", "n"),
    [
        # the rule "all pre-tokens of a prefix but the last are the text's" fails on these:
        # `\s*[\r\n]+` joins the prefix's "\n" + " " with the text's next "\n"
        (" \n    \n", 1),
        ("aaaaaaaa \n  \n", 2),
        ("\n\n    \n 12 x the", 1),
        ("word " * 3 + " \n  \n  \n" + "word " * 20, 4),
    ],
)
def test_whitespace_after_the_prefix_cut(qwen_tokenizer, qwen_paths, text, n):
    check(qwen_tokenizer, qwen_paths, text, n)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 17, 100])
def test_whitespace_runs_around_the_cut(qwen_tokenizer, qwen_paths, n):
    body = "alpha beta, gamma's 12 delta. " * (n // 3 + 8)
    for ws in [" ", "  ", "   ", "\n", "\n\n", " \n", "\n ", " \n \n", "\t \n", "\r\n", "\u3000 "]:
        for at in range(max(1, 6 * n - 8), 6 * n + 9):
            check(qwen_tokenizer, qwen_paths, body[:at] + ws + body[at:], n)


MULTIBYTE = [
    "龘龘龘 dragon",
    "𪚥 and 𠀀 rare CJK",
    "family 👨\u200d👩\u200d👧\u200d👦 photo",
    "ok 🤗🤗🤗 🧑\u200d🔬 scientist",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝔱𝔢𝔵𝔱",
    "[٣] arabic digit",
    "Ünïcödé façade naïve",
    "中文字符测试，还有标点。" * 3,
    "é" * 40,
]


@pytest.mark.parametrize("text", MULTIBYTE)
def test_cuts_inside_multibyte_characters(qwen_tokenizer, qwen_paths, text):
    outputs = [
        check(qwen_tokenizer, qwen_paths, text, n)
        for n in range(1, len(qwen_tokenizer.tokenize(text)) + 2)
    ]
    if not text.startswith(("Ü", "中", "é")):
        assert any("\ufffd" in out for out in outputs)  # a cut inside a character happened


def test_byte_level_decoding_is_lossy_utf8(qwen_tokenizer):
    # the ByteLevel decoder's `String::from_utf8_lossy` == Python's "replace" error handler
    decoder = qwen_tokenizer.backend_tokenizer.decoder
    rng = random.Random(1)
    edges = [0x00, 0x41, 0x7F, 0x80, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4,
             0xF5, 0xFF, 0x8F, 0x90, 0x9F, 0xA0]
    for _ in range(5000):
        data = bytes(rng.choice(edges) for _ in range(rng.randint(1, 8)))
        cut = rng.randint(0, len(data))
        tokens = ["".join(BYTE_CHARS[b] for b in part) for part in (data[:cut], data[cut:])]
        assert decoder.decode(tokens) == data.decode("utf-8", "replace")


@pytest.mark.parametrize(
    "text",
    [
        "<|im_end|>",
        "<|im_start|><|im_end|>",
        "x<|im_start|><|im_end|>y",
        "before <tool_call>\n{\"name\": \"f\"}\n</tool_call> after <|endoftext|>",
        "e\u0301<|im_end|>\u0301 done",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nhi<|im_end|>",
        "龘<|im_end|>龘 <|fim_prefix|><|fim_pad|>",
        "words " * 30 + "<|im_end|>" + " more words" * 30,
        "<|im_end" + "|> <|im_end|" + "<|x|>",
    ],
)
def test_added_tokens(qwen_tokenizer, qwen_paths, text):
    for n in (*range(1, 15), 17, 100):
        check(qwen_tokenizer, qwen_paths, text, n)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "e\u0301",
        "Cafe\u0301 cre\u0300me bru\u0302le\u0301e " * 30,
        "o\u0301\u0301\u031b " * 50,
        "Vie\u0323\u0302t Nam " * 40,
        "\u1100\u1161\u11a8 " * 40,
        # Python's NFC (Unicode 14+) reorders U+0898 (new) before U+0316; the Rust normalizer
        # (older tables) does not: the tokenizer's own normalizer must decide
        "a\u0898\u0316 b " * 40,
    ],
)
def test_unnormalized_text(qwen_tokenizer, qwen_paths, text):
    for n in (1, 2, 3, 5, 17, 100, 512):
        check(qwen_tokenizer, qwen_paths, text, n)


def test_python_nfc_check_agrees_with_the_rust_normalizer(qwen_tokenizer):
    # the fast paths skip the Rust normalizer when Python says a text is NFC: it must then leave
    # the text unchanged (checked on every character with a decomposition or combining class)
    normalize = qwen_tokenizer.backend_tokenizer.normalizer.normalize_str
    chars = [
        chr(c)
        for c in range(0x110000)
        if not 0xD800 <= c < 0xE000
        and (unicodedata.combining(chr(c)) or unicodedata.decomposition(chr(c)))
    ]
    checked = 0
    for template in ("{c}", "a{c}", "{c}\u0301", "a\u0316{c}", "e{c}\u0301", "\u1100{c}"):
        text = "|".join(template.format(c=c) for c in chars)
        if unicodedata.is_normalized("NFC", text):
            assert normalize(text) == text
        for c in chars:
            piece = template.format(c=c)
            if unicodedata.is_normalized("NFC", piece):
                checked += 1
                assert normalize(piece) == piece, hex(ord(c))
    assert checked > 10_000


def test_zero_and_huge_budgets(qwen_tokenizer, qwen_paths):
    for text in ("", "a b c", "龘", "<|im_end|>"):
        check(qwen_tokenizer, qwen_paths, text, 0)
        check(qwen_tokenizer, qwen_paths, text, 10**6)


def test_surrogates_fail_like_the_reference(qwen_tokenizer):
    text = "bad \ud800 surrogate"
    with pytest.raises(Exception) as expected:
        reference(qwen_tokenizer, text, 3)
    with pytest.raises(type(expected.value)):
        Truncator(qwen_tokenizer, 3)(text)


# --- hand-built byte-level BPE tokenizers --------------------------------------------------------


def byte_level_tokenizer(
    vocab: dict[str, int],
    merges: list[tuple[str, str]],
    *,
    gpt2: bool = False,
    special: tuple[str, ...] = (),
    plain: tuple[str, ...] = (),
) -> Any:
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    if gpt2:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in plain])
    return PreTrainedTokenizerFast(tokenizer_object=tok)


@pytest.fixture(scope="module")
def small_qwen_bpe(qwen_tokenizer_dir: Any) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The first 5,000 ranks of Qwen's BPE (tiktoken-consistent by construction)."""
    from reasonrank.offline.artefacts import _vocab_and_merges, load_qwen_tiktoken_ranks

    ranks = {t: r for t, r in load_qwen_tiktoken_ranks().items() if r < 5000}
    return _vocab_and_merges(ranks)


def paths_of(tokenizer: Any) -> dict[str, Any]:
    cache: dict[tuple[str, int], Truncator] = {}

    def getter(name: str) -> Any:
        def get(n: int) -> Truncator:
            if (name, n) not in cache:
                make = Truncator if name == "tiktoken" else without_tiktoken
                cache[name, n] = make(tokenizer, n)
                assert cache[name, n].path == name
            return cache[name, n]

        return get

    return {"tiktoken": getter("tiktoken"), "hf-fast": getter("hf-fast")}


OVERLAP_ALPHABET = ["<", ">", "a", "b", "c", " ", "é", "\n", "x", "y", "e\u0301", "<a>", "<b>",
                    "é<x>", "<a><b>"]


@pytest.fixture(scope="module")
def overlapping(small_qwen_bpe: Any) -> tuple[Any, dict[str, Any]]:
    vocab, merges = small_qwen_bpe
    tokenizer = byte_level_tokenizer(
        vocab,
        merges,
        special=("<a>", "<a><b>", "b><", "é<x>"),
        plain=("a><b", "<b>", "ab", "\n<y>", "<a><b>c"),
    )
    return tokenizer, paths_of(tokenizer)


@settings(SETTINGS, max_examples=300)
@given(
    text=st.lists(st.sampled_from(OVERLAP_ALPHABET), max_size=25).map("".join),
    n=st.sampled_from([1, 2, 3, 5, 8, 13]),
)
def test_overlapping_added_tokens(overlapping, text, n):
    # Hugging Face matches added tokens leftmost-longest, special or not; an added token whose
    # characters are all in the byte map decodes through it ("é<x>" -> "\ufffd<x>")
    tokenizer, paths = overlapping
    check(tokenizer, paths, text, n)


def test_added_token_decoding_quirk(overlapping):
    tokenizer, paths = overlapping
    assert check(tokenizer, paths, "é<x> tail", 1) == "\ufffd<x>"
    assert check(tokenizer, paths, "\n<y>", 1) == "\n<y>"
    assert check(tokenizer, paths, "<a><b>c<a><b>", 2) == "<a><b>c<a><b>"


def test_gpt2_pretokenizer(small_qwen_bpe):
    vocab, merges = small_qwen_bpe
    tokenizer = byte_level_tokenizer(vocab, merges, gpt2=True)
    paths = paths_of(tokenizer)
    # GPT-2's `'ll` absorbs a prefix's trailing "'": " something" is one token, and a prefix cut
    # after "'l" would wrongly end the second token at "'"
    assert check(tokenizer, paths, " something'll go", 2) == " something'll"
    rng = random.Random(3)
    for _ in range(300):
        text = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 60)))
        for n in (1, 2, 5, 17):
            check(tokenizer, paths, text, n)


def tiny_vocab(*extra: str) -> dict[str, int]:
    chars = [BYTE_CHARS[b] for b in range(256)]
    return {token: i for i, token in enumerate([*chars, *extra])}


def test_merges_that_are_not_the_lower_rank_split_fall_back():
    # "abc" is merged as a + bc, but byte-pair encoding with the lower ranks gives ab + c
    # (ab ranks below bc): HF never forms "abc", tiktoken's rank BPE would
    vocab = tiny_vocab("ab", "bc", "abc")
    tokenizer = byte_level_tokenizer(vocab, [("a", "b"), ("b", "c"), ("a", "bc")])
    assert tokenizer.tokenize("abc") == ["ab", "c"]
    truncator = Truncator(tokenizer, 1)
    assert truncator.path == "hf-fast"
    for text in ("abc", "abc abcabc bc", "xabcab " * 20, ""):
        for n in (1, 2, 3, 7):
            assert Truncator(tokenizer, n)(text) == reference(tokenizer, text, n)


def test_consistent_hand_built_merges_take_the_tiktoken_path():
    vocab = tiny_vocab("bc", "ab", "abc")
    tokenizer = byte_level_tokenizer(vocab, [("b", "c"), ("a", "b"), ("a", "bc")])
    assert Truncator(tokenizer, 1).path == "tiktoken"
    for text in ("abc", "abc abcabc bc", "xabcab " * 20, "é<"):
        for n in (1, 2, 3, 7):
            assert Truncator(tokenizer, n)(text) == reference(tokenizer, text, n)


def test_unreachable_vocab_token_falls_back():
    vocab = tiny_vocab("ab", "zz")  # no merge makes "zz"
    tokenizer = byte_level_tokenizer(vocab, [("a", "b")])
    assert Truncator(tokenizer, 1).path == "hf-fast"
    assert Truncator(tokenizer, 2)("zz ab") == reference(tokenizer, "zz ab", 2)


def test_bpe_split_helper():
    ranks = {bytes([b]): b for b in range(256)} | {b"ab": 256, b"bc": 257, b"abc": 258}
    assert bpe_split(ranks, b"abc", 258) == [b"ab", b"c"]
    assert bpe_split(ranks, b"abc", 259) == [b"abc"]
    assert bpe_split(ranks, b"xabcab", 257) == [b"x", b"ab", b"c", b"ab"]


def test_reference_truncate_is_the_released_code(qwen_tokenizer):
    for text in ("a b c d", "龘龘", "<|im_end|> x"):
        assert reference_truncate(qwen_tokenizer, text, 2) == reference(qwen_tokenizer, text, 2)


# --- the verified plan, cached on disk ------------------------------------------------------------

CONSISTENT = (tiny_vocab("bc", "ab", "abc"), [("b", "c"), ("a", "b"), ("a", "bc")])
TEXTS = ("abc", "abc abcabc bc", "xabcab " * 20, "é< ab", "")


@dataclass
class PlanDir:
    folder: Path
    verifications: list[int]


@pytest.fixture
def plan_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PlanDir:
    """An empty plan cache; `verifications` counts the merge-by-merge checks."""
    from reasonrank.core import truncation

    folder = tmp_path / "cache"
    monkeypatch.setenv("REASONRANK_CACHE_DIR", str(folder))
    calls: list[int] = []
    verify = truncation._consistent_ranks

    def counted(*args: Any) -> Any:
        calls.append(1)
        return verify(*args)

    monkeypatch.setattr(truncation, "_consistent_ranks", counted)
    return PlanDir(folder, calls)


def plan_files(plan_dir: PlanDir) -> list[Path]:
    return sorted((plan_dir.folder / "tiktoken-plans").glob("*.bin"))


def assert_exact(tokenizer: Any, path: str = "tiktoken") -> None:
    for n in (1, 2, 3, 7):
        truncator = Truncator(tokenizer, n)
        assert truncator.path == path
        for text in TEXTS:
            assert truncator(text) == reference(tokenizer, text, n), (text, n)


def test_plan_cache_hit_skips_the_verification(plan_dir):
    first = byte_level_tokenizer(*CONSISTENT)
    assert_exact(first)
    assert len(plan_dir.verifications) == 1 and len(plan_files(plan_dir)) == 1
    # the same content in a new tokenizer object (as in a new process): read from disk
    second = byte_level_tokenizer(*CONSISTENT)
    assert second.backend_tokenizer is not first.backend_tokenizer
    assert_exact(second)
    assert len(plan_dir.verifications) == 1 and len(plan_files(plan_dir)) == 1


@pytest.mark.parametrize("change", ["merges", "added token", "pre-tokenizer"])
def test_changed_tokenizer_misses_the_cache(plan_dir, change):
    assert_exact(byte_level_tokenizer(*CONSISTENT))
    vocab, merges = CONSISTENT
    changed = {
        "merges": lambda: byte_level_tokenizer(tiny_vocab("bc", "ab"), [("b", "c"), ("a", "b")]),
        "added token": lambda: byte_level_tokenizer(vocab, merges, special=("<x>",)),
        "pre-tokenizer": lambda: byte_level_tokenizer(vocab, merges, gpt2=True),
    }[change]()
    assert_exact(changed)
    assert len(plan_dir.verifications) == 2 and len(plan_files(plan_dir)) == 2


def test_not_eligible_verdict_is_cached(plan_dir):
    vocab = tiny_vocab("ab", "bc", "abc")  # "abc" = a + bc is not the lower-rank split
    merges = [("a", "b"), ("b", "c"), ("a", "bc")]
    assert_exact(byte_level_tokenizer(vocab, merges), "hf-fast")
    assert_exact(byte_level_tokenizer(vocab, merges), "hf-fast")
    assert len(plan_dir.verifications) == 1 and len(plan_files(plan_dir)) == 1


def corruptions(good: bytes, foreign: bytes) -> dict[str, bytes]:
    head, payload = good.split(b"}\n", 1)
    flipped = bytearray(good)
    flipped[-1] ^= 0x01
    return {
        "empty": b"",
        "garbage": b"\x00\xff not a plan",
        "truncated": good[: len(good) - 40],
        "payload altered": bytes(flipped),
        "payload appended": good + b"x",
        "foreign": foreign,  # a valid plan of another tokenizer under this one's name
        "bad header": head.replace(b'"format": 1', b'"format": "1"') + b"}\n" + payload,
    }


def test_corrupt_or_foreign_cache_file_is_rebuilt(plan_dir):
    other = byte_level_tokenizer(tiny_vocab("bc", "ab"), [("b", "c"), ("a", "b")])
    Truncator(other, 1)
    (foreign_file,) = plan_files(plan_dir)
    foreign = foreign_file.read_bytes()
    foreign_file.unlink()
    Truncator(byte_level_tokenizer(*CONSISTENT), 1)
    (file,) = plan_files(plan_dir)
    good = file.read_bytes()
    assert len(plan_dir.verifications) == 2
    for name, content in corruptions(good, foreign).items():
        file.write_bytes(content)
        before = len(plan_dir.verifications)
        assert_exact(byte_level_tokenizer(*CONSISTENT))
        assert len(plan_dir.verifications) == before + 1, name  # verified again, not trusted
        assert file.read_bytes() == good, name  # and the file rewritten
        assert_exact(byte_level_tokenizer(*CONSISTENT))
        assert len(plan_dir.verifications) == before + 1, name  # then a hit again


def test_unwritable_cache_dir_still_truncates(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("REASONRANK_CACHE_DIR", str(blocker / "cache"))
    assert_exact(byte_level_tokenizer(*CONSISTENT))


def test_cache_dir_location(tmp_path, monkeypatch):
    from reasonrank.core.plan_cache import cache_dir

    monkeypatch.setenv("REASONRANK_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.setenv("REASONRANK_CACHE_DIR", "")
    assert cache_dir() is None  # off
    monkeypatch.delenv("REASONRANK_CACHE_DIR")
    assert cache_dir() == tmp_path / "xdg" / "reasonrank"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "reasonrank"


def test_truncation_is_the_same_with_and_without_the_cache(plan_dir, small_qwen_bpe, dl19_texts,
                                                           monkeypatch):
    vocab, merges = small_qwen_bpe
    cold = byte_level_tokenizer(vocab, merges, special=("<|im_end|>",))
    warm = byte_level_tokenizer(vocab, merges, special=("<|im_end|>",))
    texts = [*dl19_texts[::4], "a <|im_end|> b", "e\u0301 \n  x", "中文 ü"]
    cold_out = {n: Truncator(cold, n).truncate_all(texts) for n in (1, 17, 100)}
    Truncator(warm, 1)
    assert len(plan_dir.verifications) == 1  # the warm tokenizer's plan came from the file
    monkeypatch.setenv("REASONRANK_CACHE_DIR", "")
    uncached = byte_level_tokenizer(vocab, merges, special=("<|im_end|>",))
    for n, expected in cold_out.items():
        assert Truncator(warm, n).truncate_all(texts) == expected
        assert Truncator(uncached, n).truncate_all(texts) == expected
        assert expected == [reference(cold, t, n) for t in texts]
    assert len(plan_dir.verifications) == 2 and len(plan_files(plan_dir)) == 1


def test_well_formed_but_wrong_cached_plan_is_rebuilt(plan_dir, small_qwen_bpe):
    # a file with the right key and checksum whose ranks are not this tokenizer's (a bug in an
    # older version, a hand edit): the cached plan must tokenize a probe text as the tokenizer
    # does, or it is verified and rewritten
    from reasonrank.core import plan_cache

    vocab, merges = small_qwen_bpe
    Truncator(byte_level_tokenizer(vocab, merges), 1)
    (file,) = plan_files(plan_dir)
    good = file.read_bytes()
    tokenizer = byte_level_tokenizer(vocab, merges)
    key = plan_cache.tokenizer_key(tokenizer.backend_tokenizer)
    tokens = plan_cache.read_plan(file, key).token_bytes
    assert tokens is not None and b" thx" not in tokens
    tokens[tokens.index(b" the")] = b" thx"
    plan_cache.write_plan(file, key, tokens)
    assert plan_cache.read_plan(file, key).token_bytes == tokens  # well-formed
    assert len(plan_dir.verifications) == 1
    for n in (1, 3, 17):
        truncator = Truncator(tokenizer, n)
        assert truncator.path == "tiktoken"
        assert truncator(" the end of the line") == reference(tokenizer, " the end of the line", n)
    assert len(plan_dir.verifications) == 2
    assert file.read_bytes() == good
