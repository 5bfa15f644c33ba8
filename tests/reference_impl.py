"""Independent transcriptions of the reference implementation (8421BCD/ReasonRank), shared by
the tests that compare reasonrank with it: the prompt (`reference_prompt`, written from the
reference document section 1 and the released code with `ftfy`, `re` and the tokenizer only) and
the window loop (`_ref_sliding`, `_ref_passes`: `run_rank_llm.py` / `rankllm.py`). Nothing here
calls reasonrank's prompt, text, truncation or window helpers."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ftfy

from reasonrank.types import Candidate, Prompt, Query, Request

SPEC = Path(__file__).resolve().parents[2] / "shared" / "docs" / "reasonrank-reference.md"

# --- the reference, copied from the spec (section 1) character for character -------------------

SYSTEM_REASONING = (
    "You are RankLLM, an intelligent assistant that can rank passages based on their relevance to "
    "the query. Given a query and a passage list, you first thinks about the reasoning process in "
    "the mind and then provides the answer (i.e., the reranked passage list). The reasoning "
    "process and answer are enclosed within <think> </think> and <answer> </answer> tags, "
    "respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>."
)
SYSTEM_SHORT = (
    "You are RankLLM, an intelligent assistant that can rank passages based on their relevance to "
    "the query."
)
PREFIX = (
    "I will provide you with {num} passages, each indicated by a numerical identifier []. Rank "
    "the passages based on their relevance to the search query: {query}.\n"
)
POST_HEAD = (
    "Search Query: {query}.\nRank the {num} passages above based on their relevance to the search "
    "query. All the passages should be included and listed using identifiers, in descending order "
    "of relevance. "
)
POST_REASONING = POST_HEAD + "The format of the answer should be [] > [], e.g., [2] > [1]."
POST_RANKGPT = POST_HEAD + (
    "The output format should be [] > [], e.g., [2] > [1]. Only respond with the ranking results, "
    "do not say any word or explain."
)
POST_QWEN3 = POST_HEAD + (
    "The final ranked list should be enclosed within <answer> </answer> tags, i.e., <answer> "
    "ranked list here </answer>. The format of ranked list should be [] > [], e.g., [2] > [1]. "
    "Only respond with the ranking results, do not say any word or explain."
)
REF_TEMPLATES = {
    "reasoning": (SYSTEM_REASONING, POST_REASONING),
    "rankgpt": (SYSTEM_SHORT, POST_RANKGPT),
    "qwen3": (SYSTEM_SHORT, POST_QWEN3),
}
TEXT_FIELDS = ("text", "segment", "contents", "body", "passage")


def ref_replace_number(s: str) -> str:
    return re.sub(r"\[(\d+)\]", r"(\1)", s)


def ref_query(query: str) -> str:
    return ref_replace_number(query).strip()


def ref_passage(tokenizer: Any, doc: Mapping[str, Any], max_length: int) -> str:
    """Passage preprocessing of the released code, steps 1-5, in order."""
    content = next(doc[f] for f in TEXT_FIELDS if f in doc)
    if doc.get("title"):
        content = "Title: " + doc["title"] + " " + "Content: " + content
    content = ftfy.fix_text(content.strip())
    content = tokenizer.convert_tokens_to_string(tokenizer.tokenize(content)[:max_length])
    return ref_replace_number(content)


def ref_messages_from_passages(
    query: str, passages: Sequence[str], template: str = "reasoning"
) -> list[dict[str, str]]:
    system, post = REF_TEMPLATES[template]
    query = ref_query(query)
    num = len(passages)
    input_context = PREFIX.format(num=num, query=query) + "\n"
    for rank, content in enumerate(passages, 1):
        input_context += f"[{rank}] {content}\n"
    input_context += post.format(num=num, query=query)
    return [{"role": "system", "content": system}, {"role": "user", "content": input_context}]


def reference_messages(
    tokenizer: Any, query: str, docs: Sequence[Mapping[str, Any]], max_length: int,
    template: str = "reasoning",
) -> list[dict[str, str]]:
    passages = [ref_passage(tokenizer, d, max_length) for d in docs]
    return ref_messages_from_passages(query, passages, template)


def reference_prompt(
    tokenizer: Any, query: str, docs: Sequence[Mapping[str, Any]], max_length: int = 512,
    template: str = "reasoning",
) -> str:
    """The released code's window prompt: chat template, generation prompt, then ftfy."""
    messages = reference_messages(tokenizer, query, docs, max_length, template)
    return ftfy.fix_text(
        tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    )


def ref_windows(n: int, window: int = 20, step: int = 10) -> list[tuple[int, int]]:
    """Section 4, written out: back to front, window 20, step 10, rank_start 0."""
    out, end = [], n
    start = end - min(window, n)
    while end > 0 and start + step != 0:
        start = max(start, 0)
        out.append((start, end))
        end -= step
        start -= step
    return out


def to_request(query: str, docs: Sequence[Mapping[str, Any]]) -> Request:
    cands = [
        Candidate(str(i), next(d[f] for f in TEXT_FIELDS if f in d), float(-i), d.get("title"))
        for i, d in enumerate(docs)
    ]
    return Request(Query(query, "q"), cands)


def assert_same(prompt: Prompt, expected_text: str,
                expected_messages: list[dict[str, str]] | None = None) -> None:
    if prompt.text != expected_text:
        # show the first difference, not two 10 KB strings
        i = next((k for k, (a, b) in enumerate(zip(prompt.text, expected_text, strict=False))
                  if a != b), min(len(prompt.text), len(expected_text)))
        raise AssertionError(
            f"prompt differs at char {i}: got {prompt.text[max(0, i - 60):i + 60]!r}, "
            f"expected {expected_text[max(0, i - 60):i + 60]!r}"
        )
    if expected_messages is not None:
        assert [dict(m) for m in prompt.messages] == expected_messages


LONG_ENGLISH = (
    "Internationalization and localization of supercalifragilisticexpialidocious software, "
    "seen in 1999 by the W3C, remain hard. "
) * 40


def _ref_clean(response: str) -> list[int]:
    """`_clean_response` + `receive_permutation`'s id handling (reasoning mode)."""
    match = re.search(r"<think>.*?</think>\s*<answer>(.*?)</answer>", response.lower(), re.DOTALL)
    if match:
        response = match.group(1).strip()
    elif "<answer>" in response:
        response = response.split("<answer>")[-1]
    digits = "".join(c if c.isdigit() else " " for c in response).strip()
    ids = [int(x) - 1 for x in digits.split()]
    return list(dict.fromkeys(ids))


def _ref_receive(cands: list[str], response: str, rank_start: int, rank_end: int) -> None:
    cut = list(cands[rank_start:rank_end])
    original = list(range(len(cut)))
    ids = [x for x in _ref_clean(response) if x in original]
    ids += [x for x in original if x not in ids]
    for j, x in enumerate(ids):
        cands[rank_start + j] = cut[x]


def _ref_sliding(cands: list[str], rank_start: int, rank_end: int, window_size: int, step: int,
                 answer) -> list[tuple[int, int]]:
    """`RankLLM.sliding_windows` with `Reranker.rerank_batch`'s clamping."""
    rank_start, rank_end = max(rank_start, 0), min(rank_end, len(cands))
    window_size = min(window_size, len(cands))
    end, start, ran = rank_end, rank_end - window_size, []
    while end > rank_start and start + step != rank_start:
        start = max(start, rank_start)
        _ref_receive(cands, answer(cands[start:end]), start, end)
        ran.append((start, end))
        end, start = end - step, start - step
    return ran


def _ref_passes(docids: list[str], answer, num_passes: int, window: int = 20, step: int = 10,
                retrieval_num: int = 100) -> tuple[list[str], list[tuple[int, int]]]:
    """`run_rank_llm.py`'s pass loop: pass p calls rerank_batch(rank_start=step * p, ...)
    on the previous pass's output."""
    cands, ran = list(docids[:retrieval_num]), []
    for pass_ct in range(num_passes):
        ran += _ref_sliding(cands, step * pass_ct, retrieval_num, min(window, len(cands)), step,
                            answer)
    return cands, ran
