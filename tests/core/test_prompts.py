"""The rendered prompt equals, character for character, an independent reference implementation.

`reference_prompt` below is written from the reference document (section 1) and the authors'
released code only: it uses `ftfy`, `re` and the tokenizer directly and never calls
`reasonrank`'s prompt, text or truncation helpers. Every test then compares `reasonrank`'s
`PromptBuilder` output with it.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ftfy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reasonrank.backends.fake import FakeBackend
from reasonrank.config import RerankConfig
from reasonrank.core.prompts import PromptBuilder
from reasonrank.core.scheduler import Scheduler
from reasonrank.core.truncation import Truncator
from reasonrank.types import Prompt
from reference_impl import (
    LONG_ENGLISH,
    POST_HEAD,
    POST_RANKGPT,
    POST_REASONING,
    PREFIX,
    REF_TEMPLATES,
    SPEC,
    SYSTEM_REASONING,
    SYSTEM_SHORT,
    assert_same,
    ref_messages_from_passages,
    ref_passage,
    ref_query,
    ref_windows,
    reference_messages,
    reference_prompt,
    to_request,
)

# --- the spec strings ------------------------------------------------------------------------


def test_reference_strings_are_the_spec_verbatim():
    if not SPEC.is_file():
        pytest.skip(f"{SPEC} is missing")
    spec = SPEC.read_text(encoding="utf-8")
    assert "\n" + SYSTEM_REASONING + "\n" in spec
    for part in (PREFIX, POST_REASONING):
        assert "`" + part.replace("\n", "\\n") + "`" in spec
    assert "`" + SYSTEM_SHORT + "`" in spec
    assert ("`" + POST_RANKGPT[len(POST_HEAD):] + "`") in spec


def test_template_wording(qwen_tokenizer):
    docs = [{"text": "alpha"}, {"text": "beta", "title": "B"}, {"text": "gamma"}]
    for name, (system, post) in REF_TEMPLATES.items():
        builder = PromptBuilder(qwen_tokenizer, name, 512)
        prompt = builder.render_request(to_request("which letter?", docs))
        assert_same(prompt, reference_prompt(qwen_tokenizer, "which letter?", docs, 512, name),
                    reference_messages(qwen_tokenizer, "which letter?", docs, 512, name))
        assert prompt.messages[0]["content"] == system
        assert prompt.messages[1]["content"].endswith(post.format(num=3, query="which letter?"))
        assert prompt.text.startswith("<|im_start|>system\n" + system + "<|im_end|>\n")
        assert prompt.text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    default = PromptBuilder(qwen_tokenizer).render_request(to_request("which letter?", docs))
    assert default.text == reference_prompt(qwen_tokenizer, "which letter?", docs, 512)


def test_user_message_layout(qwen_tokenizer):
    builder = PromptBuilder(qwen_tokenizer, "reasoning", 512)
    user = builder.render_request(to_request("q", [{"text": "a"}, {"text": "b"}])).messages[1]
    assert user["content"] == (
        "I will provide you with 2 passages, each indicated by a numerical identifier []. Rank "
        "the passages based on their relevance to the search query: q.\n\n[1] a\n[2] b\n"
        "Search Query: q.\nRank the 2 passages above based on their relevance to the search "
        "query. All the passages should be included and listed using identifiers, in descending "
        "order of relevance. The format of the answer should be [] > [], e.g., [2] > [1]."
    )


# --- DL19: every query, the windows the reranker runs ------------------------------------------


@pytest.fixture(scope="module")
def dl19(shared_data: Path) -> list[dict[str, Any]]:
    path = shared_data / "trec_dl" / "bm25_top100_dl19.json.gz"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        data = json.load(f)
    assert len(data) == 43
    return data


def dl19_docs(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"text": h["content"]} for h in entry["hits"]]


@pytest.mark.parametrize("max_length", [100, 512])
def test_dl19_windows_match_reference(qwen_tokenizer, dl19, max_length):
    builder = PromptBuilder(qwen_tokenizer, "reasoning", max_length)
    windows = ref_windows(100)
    assert windows[0] == (80, 100) and windows[-1] == (0, 20) and len(windows) == 9
    truncated = 0
    for entry in dl19:
        docs = dl19_docs(entry)
        request = to_request(entry["query"], docs)
        prepared = builder.prepare(request)
        ref_passages = [ref_passage(qwen_tokenizer, d, max_length) for d in docs]
        assert prepared.query == ref_query(entry["query"])
        assert prepared.passages == ref_passages
        truncated += sum(p != ftfy.fix_text(d["text"].strip())
                         for p, d in zip(ref_passages, docs, strict=True))
        for start, end in windows:
            messages = ref_messages_from_passages(entry["query"], ref_passages[start:end])
            expected = ftfy.fix_text(qwen_tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True))
            assert_same(builder.render(prepared.query, prepared.passages[start:end]),
                        expected, messages)
        # the raw-request path, for one window per query
        start, end = windows[len(windows) // 2]
        assert_same(builder.render_request(request, start, end),
                    reference_prompt(qwen_tokenizer, entry["query"], docs[start:end], max_length))
    # the comparison exercised truncation (at 100 tokens most passages are cut)
    assert truncated > (1000 if max_length == 100 else 0)


def test_dl19_windows_of_45_candidates(qwen_tokenizer, dl19):
    builder = PromptBuilder(qwen_tokenizer, "reasoning", 100)
    entry = dl19[0]
    docs = dl19_docs(entry)[:45]
    request = to_request(entry["query"], docs)
    assert ref_windows(45) == [(25, 45), (15, 35), (5, 25), (0, 15)]
    for start, end in ref_windows(45):
        assert_same(builder.render_request(request, start, end),
                    reference_prompt(qwen_tokenizer, entry["query"], docs[start:end], 100))


# --- crafted hard cases ------------------------------------------------------------------------



def _check(tokenizer: Any, query: str, docs: Sequence[Mapping[str, Any]], max_length: int,
           template: str = "reasoning") -> Prompt:
    builder = PromptBuilder(tokenizer, template, max_length)
    request = to_request(query, docs)
    expected = reference_prompt(tokenizer, query, docs, max_length, template)
    messages = reference_messages(tokenizer, query, docs, max_length, template)
    prompt = builder.render_request(request)
    assert_same(prompt, expected, messages)
    prepared = builder.prepare(request)
    assert_same(builder.render(prepared.query, prepared.passages), expected, messages)
    return prompt


def _passages(prompt: Prompt) -> str:
    """The passage block of the user message."""
    user = prompt.messages[1]["content"]
    return user[user.index(".\n\n[1] ") + 3:user.rindex("\nSearch Query: ") + 1]


@pytest.mark.parametrize("n", [1, 2, 7, 50, 100, 333])
def test_truncation_keeps_exactly_n_tokens(qwen_tokenizer, n):
    builder = PromptBuilder(qwen_tokenizer, "reasoning", n)
    tokens = qwen_tokenizer.tokenize(LONG_ENGLISH.strip())
    assert len(tokens) > n
    out = builder.prepare_passage(LONG_ENGLISH)
    assert out == ref_passage(qwen_tokenizer, {"text": LONG_ENGLISH}, n)
    assert qwen_tokenizer.tokenize(out) == tokens[:n]
    assert len(qwen_tokenizer.tokenize(out)) == n
    prompt = _check(qwen_tokenizer, "software", [{"text": LONG_ENGLISH}], n)
    assert _passages(prompt) == f"[1] {out}\n"


@pytest.mark.parametrize("n", [1, 9, 10, 64])
def test_truncation_token_boundaries(qwen_tokenizer, n):
    # " the" is one token: texts of exactly n - 1, n and n + 1 tokens
    texts = {k: "the" + " the" * (k - 1) for k in (n - 1, n, n + 1) if k > 0}
    for k, text in texts.items():
        assert len(qwen_tokenizer.tokenize(text)) == k
        out = PromptBuilder(qwen_tokenizer, "reasoning", n).prepare_passage(text)
        assert out == ref_passage(qwen_tokenizer, {"text": text}, n)
        assert out == (text if k <= n else texts[n])
        _check(qwen_tokenizer, "the", [{"text": text}], n)


def test_truncation_cuts_inside_a_word(qwen_tokenizer):
    text = "supercalifragilisticexpialidocious words"
    tokens = qwen_tokenizer.tokenize(text)
    assert len(tokens) > 4 and not tokens[3].startswith("Ġ") and not tokens[4].startswith("Ġ")
    builder = PromptBuilder(qwen_tokenizer, "reasoning", 4)
    out = builder.prepare_passage(text)
    assert out == qwen_tokenizer.convert_tokens_to_string(tokens[:4])
    assert "supercalifragilisticexpialidocious".startswith(out)
    assert len(out) < len("supercalifragilisticexpialidocious")
    _check(qwen_tokenizer, "a word", [{"text": text}], 4)


@pytest.mark.parametrize(("text", "n", "mid_character"), [
    ("family 👨\u200d👩\u200d👧\u200d👦 photo", 2, True),  # inside the emoji's bytes
    ("family 👨\u200d👩\u200d👧\u200d👦 photo", 3, False),
    ("family 👨\u200d👩\u200d👧\u200d👦 photo", 4, True),  # inside the ZWJ's bytes
    ("龘龘龘 dragon", 1, True),  # a CJK character split over two byte-level tokens
    ("龘龘龘 dragon", 2, False),
    ("龘龘龘 dragon", 3, True),
    ("𪚥 and 𠀀 rare CJK", 2, True),
    ("ok 🤗🤗🤗", 3, True),
    ("[٣] arabic digit", 2, True),
])
def test_truncation_cuts_inside_a_multibyte_character(qwen_tokenizer, text, n, mid_character):
    out = PromptBuilder(qwen_tokenizer, "reasoning", n).prepare_passage(text)
    assert out == ref_passage(qwen_tokenizer, {"text": text}, n)
    assert ("\ufffd" in out) is mid_character
    assert len(qwen_tokenizer.tokenize(text)) > n
    _check(qwen_tokenizer, "family", [{"text": text}, {"text": text + " again"}], n)


def test_multibyte_cut_gives_a_replacement_character(qwen_tokenizer):
    out = PromptBuilder(qwen_tokenizer, "reasoning", 1).prepare_passage("龘龘")
    assert out == "\ufffd" == ref_passage(qwen_tokenizer, {"text": "龘龘"}, 1)
    prompt = _check(qwen_tokenizer, "dragon", [{"text": "龘龘"}], 1)
    assert "[1] \ufffd\n" in prompt.text


@pytest.mark.parametrize("title", ["A Title", "", None, "  spaced  ", "[7] titled &amp; co"])
def test_titles(qwen_tokenizer, title):
    docs = [{"text": "body text [2] here", "title": title}, {"text": "no title at all"}]
    prompt = _check(qwen_tokenizer, "titles", docs, 512)
    block = _passages(prompt)
    if title:
        assert block.startswith("[1] Title: ")
        assert " Content: body text (2) here\n" in block
    else:
        assert block.startswith("[1] body text (2) here\n")
    assert "[2] no title at all\n" in block
    # the title counts against the token budget
    _check(qwen_tokenizer, "titles", docs, 3)


def test_bracketed_numbers(qwen_tokenizer):
    query = "  what do [1], [23] and [ 3] or [x] cite?  "
    docs = [
        {"text": "See [12] and [ 3] and [4 ] and [a1] and [007] and [[5]]."},
        {"text": "[1][2][3] adjacent"},
        {"text": "fullwidth ［12］ and [１２] become [12] after ftfy"},
        {"text": "arabic-indic [٣] digit"},
    ]
    prompt = _check(qwen_tokenizer, query, docs, 512)
    user = prompt.messages[1]["content"]
    assert "search query: what do (1), (23) and [ 3] or [x] cite?.\n" in user
    assert "Search Query: what do (1), (23) and [ 3] or [x] cite?.\n" in user
    block = _passages(prompt)
    assert "[1] See (12) and [ 3] and [4 ] and [a1] and (007) and [(5)].\n" in block
    assert "[2] (1)(2)(3) adjacent\n" in block
    assert "[3] fullwidth (12) and (12) become (12) after ftfy\n" in block
    assert "[4] arabic-indic (٣) digit\n" in block


def test_fullwidth_brackets_in_query_are_not_replaced(qwen_tokenizer):
    # the query is not run through ftfy before `[n]` -> `(n)`; only the whole prompt is, after
    prompt = _check(qwen_tokenizer, "cite ［12］ now", [{"text": "x"}], 512)
    assert "search query: cite [12] now.\n" in prompt.text


def test_bracket_cut_by_truncation(qwen_tokenizer):
    text = "ref [12345] end"
    tokens = qwen_tokenizer.tokenize(text)
    for n in range(1, len(tokens) + 1):
        prompt = _check(qwen_tokenizer, "ref", [{"text": text}], n)
        out = qwen_tokenizer.convert_tokens_to_string(tokens[:n])
        expected = out.replace("[12345]", "(12345)")
        assert _passages(prompt) == f"[1] {expected}\n"
    # a cut inside the brackets leaves an unclosed "[": no replacement
    assert any("[" in qwen_tokenizer.convert_tokens_to_string(tokens[:n])
               and "]" not in qwen_tokenizer.convert_tokens_to_string(tokens[:n])
               for n in range(1, len(tokens)))


@pytest.mark.parametrize(("query", "shown"), [
    ("what is a flea.", "what is a flea.."),
    ("what is a flea", "what is a flea."),
    ("  \t what is a flea? \n", "what is a flea?."),
    ("flea [2].", "flea (2).."),
    ("Tom &amp; Jerry", "Tom &amp; Jerry."),  # the whole prompt has "<": no HTML unescape
    ("“curly” ‘quotes’", "\"curly\" 'quotes'."),
    ("sÃ³ mojibake", "só mojibake."),
])
def test_query_preprocessing(qwen_tokenizer, query, shown):
    prompt = _check(qwen_tokenizer, query, [{"text": "a"}, {"text": "b"}], 512)
    assert f"search query: {shown}\n" in prompt.text
    assert f"Search Query: {shown}\nRank the 2 passages" in prompt.text


@pytest.mark.parametrize(("text", "shown"), [
    ("   padded passage \n\t ", "padded passage"),
    ("sÃ³ and itâ€™s mojibake", "só and it's mojibake"),
    ("Tom &amp; Jerry &lt;3", "Tom & Jerry <3"),
    ("&amp; stays when the passage has a <tag>", "&amp; stays when the passage has a <tag>"),
    ("line one &amp;\n<b>line two &amp;</b>", "line one &\n<b>line two &amp;</b>"),
    ("“curly” ‘quotes’ and ﬁ ligature and ＦＵＬＬ", "\"curly\" 'quotes' and fi ligature and FULL"),
    ("windows\r\nline\rendings", "windows\nline\nendings"),
    ("ctrl\x00\x07chars \x1b[31mred\x1b[0m\x7f", "ctrlchars red"),
    ("a\x85b and c\u2028d", "a…b and c\nd"),
    ("decomposed cafe\u0301", "decomposed caf\u00e9"),
    ("special <|im_end|> and <|endoftext|> tokens <think>", None),
    ("", ""),
    ("   ", ""),
])
def test_passage_cleaning(qwen_tokenizer, text, shown):
    docs = [{"text": text}, {"text": "next"}]
    prompt = _check(qwen_tokenizer, "clean", docs, 512)
    if shown is not None:
        assert _passages(prompt) == f"[1] {shown}\n[2] next\n"
    _check(qwen_tokenizer, "clean", docs, 3)


def test_special_tokens_count_as_one_token(qwen_tokenizer):
    text = "x <|im_end|> y <|im_start|>user z"
    tokens = qwen_tokenizer.tokenize(text)
    assert "<|im_end|>" in tokens
    for n in range(1, len(tokens) + 1):
        out = PromptBuilder(qwen_tokenizer, "reasoning", n).prepare_passage(text)
        assert out == ref_passage(qwen_tokenizer, {"text": text}, n)
        _check(qwen_tokenizer, "special", [{"text": text}], n)


def test_html_unescape_is_per_passage_not_per_prompt(qwen_tokenizer):
    # "&amp;" in a passage is unescaped by step 3 (the passage has no "<"), but the prompt-wide
    # ftfy never unescapes (the chat template puts "<" on the first line)
    prompt = _check(qwen_tokenizer, "a &amp; b", [{"text": "c &amp; d"}], 512)
    assert "[1] c & d\n" in prompt.text
    assert "search query: a &amp; b.\n" in prompt.text
    # ftfy unescapes to a fixed point ...
    prompt = _check(qwen_tokenizer, "x", [{"text": "c &amp;amp; d"}], 3)
    assert "[1] c & d\n" in prompt.text
    # ... unless the passage has a "<"; a truncation that leaves a bare "&amp" keeps it
    prompt = _check(qwen_tokenizer, "x", [{"text": "c &amp; d <e>"}], 3)
    assert "[1] c &amp\n" in prompt.text


@pytest.mark.parametrize("num", [1, 2, 20])
def test_window_sizes(qwen_tokenizer, num):
    docs = [{"text": f"passage {i} " + LONG_ENGLISH[: 50 * i], "title": f"T{i}" if i % 2 else None}
            for i in range(num)]
    prompt = _check(qwen_tokenizer, "size", docs, 30)
    assert f"I will provide you with {num} passages" in prompt.text
    assert f"Rank the {num} passages above" in prompt.text
    assert f"\n[{num}] " in prompt.text and f"\n[{num + 1}] " not in prompt.text


FRAGMENTS = st.sampled_from([
    "a", "B", " ", "  ", "word", "Hello", ".", ",", "'s", "\n", "\t", "\r\n", "\r", "[1]", "[12]",
    "[ 3]", "[", "]", "7", "&amp;", "&lt;", "<", ">", "<b>", "Ã©", "sÃ³", "â€™", "“", "”", "‘",
    "’", "ﬁ", "Ａ", "１", "e\u0301", "\u0301", "中文", "龘", "🤗", "👨\u200d👩", "\x00", "\x07",
    "\x1b[31m", "\x85", "\u2028", "\xa0", "<|im_end|>", "<|endoftext|>", "{num}", "{query}",
])
TEXTS = st.lists(FRAGMENTS, max_size=40).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=TEXTS,
       docs=st.lists(st.tuples(TEXTS, st.one_of(st.none(), TEXTS)), min_size=1, max_size=4),
       n=st.sampled_from([1, 3, 8, 64]),
       template=st.sampled_from(list(REF_TEMPLATES)))
def test_property_prompt_matches_reference(qwen_tokenizer, query, docs, n, template):
    _check(qwen_tokenizer, query, [{"text": t, "title": ti} for t, ti in docs], n, template)


# --- each passage is cleaned and truncated once per query ---------------------------------------


@pytest.fixture
def truncation_calls(monkeypatch) -> Counter[str]:
    """Counts every `Truncator` call, by text."""
    calls: Counter[str] = Counter()
    original = Truncator.__call__

    def counting(self: Truncator, text: str) -> str:
        calls[text] += 1
        return original(self, text)

    monkeypatch.setattr(Truncator, "__call__", counting)
    return calls


def test_prepare_once_then_render_every_window(qwen_tokenizer, dl19, truncation_calls):
    calls = truncation_calls
    builder = PromptBuilder(qwen_tokenizer, "reasoning", 100)
    entry = dl19[1]
    docs = dl19_docs(entry)
    prepared = builder.prepare(to_request(entry["query"], docs))
    assert sum(calls.values()) == 100
    for start, end in ref_windows(100):
        assert_same(builder.render(prepared.query, prepared.passages[start:end]),
                    reference_prompt(qwen_tokenizer, entry["query"], docs[start:end], 100))
    assert sum(calls.values()) == 100  # render never truncates


def test_scheduler_truncates_each_passage_once(qwen_tokenizer, dl19, truncation_calls):
    calls = truncation_calls
    prompts: list[str] = []

    class RecordingBackend(FakeBackend):
        async def generate(self, prompt, params):
            prompts.append(prompt.text)
            return await super().generate(prompt, params)

    # append a title to some passages so the counted texts include the title prefix
    entry = dl19[2]
    docs = [{"text": h["content"], "title": f"Doc {i}" if i % 3 == 0 else None}
            for i, h in enumerate(entry["hits"])]
    request = to_request(entry["query"], docs)
    config = RerankConfig(backend="fake", max_passage_tokens=100)
    builder = PromptBuilder(qwen_tokenizer, config.template, config.passage_tokens)
    scheduler = Scheduler(RecordingBackend(qwen_tokenizer, "overlap"), builder, config)
    result = asyncio.run(scheduler.rerank(request))

    assert len(result.windows) == len(prompts) == 9
    assert sum(calls.values()) == 100
    expected_inputs = Counter(
        ftfy.fix_text(("Title: " + d["title"] + " Content: " + d["text"] if d["title"]
                       else d["text"]).strip())
        for d in docs
    )
    assert calls == expected_inputs
    # the prompts are the reference's for the windows as they were, after earlier reorderings
    items = list(range(100))
    for (start, end), window, text in zip(ref_windows(100), result.windows, prompts, strict=True):
        assert (window.start, window.end) == (start, end)
        expected = reference_prompt(qwen_tokenizer, entry["query"],
                                    [docs[i] for i in items[start:end]], 100)
        assert_same(Prompt(text, ()), expected)
        items[start:end] = [items[start:end][j] for j in window.order]
    assert [d.docid for d in result.docs] == [str(i) for i in items]
    assert items != list(range(100))  # the fake really reordered, so later windows were permuted
