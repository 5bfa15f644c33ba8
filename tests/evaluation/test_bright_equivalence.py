"""`reasonrank rerank --run --corpus --queries` on all twelve released ReasonIR BRIGHT runs
sends the reference's prompts in the reference's order and writes the reference's rankings.

The reference side is transcribed here from the authors' `run_rank_llm.py` and `rerank/`:
reading a TREC run line by line (lines that do not split into 6 fields are skipped, the first
`retrieval_num` = 100 lines of a query kept), the window loop (`tests/core/test_windows.py`:
`_ref_sliding`, `_ref_receive`) and the prompt (`tests/core/test_prompts.py`: `reference_prompt`).
BRIGHT's corpora are not shipped, so each doc id gets a synthesised passage text; the model is
a deterministic function of the prompt text, so any difference in a prompt changes the
answers and, from there, the rankings. The three stackoverflow queries whose doc ids contain
spaces are the one documented difference: the reference drops those lines, reasonrank keeps
them; for them the reference loop is run on the list with the spaced ids kept.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any, ClassVar

import ftfy

from reasonrank.backends.base import register_backend
from reasonrank.backends.fake import FakeBackend
from reasonrank.cli.main import main
from reasonrank.evaluation.metrics import trec_order
from reasonrank.types import Generation
from reference_impl import TEXT_FIELDS, _ref_sliding, ref_messages_from_passages, ref_passage

TASKS = ("biology", "earth_science", "economics", "psychology", "robotics", "stackoverflow",
         "sustainable_living", "leetcode", "pony", "aops", "theoremqa_questions",
         "theoremqa_theorems")
RETRIEVAL_NUM = 100
_NUM = re.compile(r"I will provide you with (\d+) passages")
_WORDS = ("light", "heat", "cell", "enzyme", "market", "proof", "graph", "[2]", "café", "x²",
          "<b>", "&amp;", "ﬁne", "  spaced  ", "robot", "pony", "Σ", "\u00a0nbsp")


def answer(prompt_text: str) -> str:
    """The deterministic model: a ranking (or a malformed answer) drawn from the prompt."""
    digest = hashlib.sha256(prompt_text.encode("utf-8")).digest()
    rng = random.Random(digest)
    num = int(_NUM.search(prompt_text).group(1))  # type: ignore[union-attr]
    ids = list(range(1, num + 1))
    rng.shuffle(ids)
    kind = digest[0] % 8
    if kind == 0:  # drops, repeats and an id out of range
        ids = ids[: num // 2] + ids[:3] + [num + 5]
    body = " > ".join(f"[{i}]" for i in ids)
    if kind == 1:
        return f"<think>I compare [{ids[0]}] with [{ids[-1]}] and run out of budget"
    if kind == 2:
        return f"<think>ok</think> <answer>{body}"  # unterminated answer
    if kind == 3:
        return f"<answer>{body}</answer>"  # no think block
    return f"<think>passage [{ids[0]}] looks best</think>\n<answer>{body}</answer>"


class PromptHashBackend(FakeBackend):
    """`answer()` of each prompt; records the sha1 of every prompt in call order."""

    name = "prompt-hash"
    seen: ClassVar[list[str]] = []

    async def generate(self, prompt: Any, params: Any) -> Generation:
        PromptHashBackend.seen.append(hashlib.sha1(prompt.text.encode("utf-8")).hexdigest())
        return Generation(answer(prompt.text), 10, 10, "stop")


def passage_text(docid: str) -> str:
    rng = random.Random(docid)
    return f"{docid}: " + " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12)))


# --- the reference's reading, transcribed -----------------------------------------------------


def ref_read_run(lines: list[str], keep_spaces: bool = False) -> list[tuple[str, list[str]]]:
    """`run_rank_llm.py`: per query (consecutive lines), docids in line order; a line that
    does not split into 6 fields is skipped; the first `retrieval_num` kept."""
    out: list[tuple[str, list[str]]] = []
    current_qid, ranking = None, []
    for line in lines:
        fields = line.strip().split()
        if len(fields) != 6:
            if not keep_spaces:
                continue
            qid, _q0, rest = line.strip().split(" ", 2)
            docid = rest.rsplit(" ", 3)[0]
        else:
            qid, _q0, docid, _rank, _score, _tag = fields
        if qid != current_qid:
            if current_qid is not None:
                out.append((current_qid, ranking[:RETRIEVAL_NUM]))
            ranking, current_qid = [], qid
        ranking.append(docid)
    out.append((current_qid, ranking[:RETRIEVAL_NUM]))  # type: ignore[arg-type]
    return out


def ref_rerank(tokenizer: Any, query: str, docids: list[str], prompts: list[str],
               passages: dict[str, str]) -> list[str]:
    """The reference's window loop over `docids`; `passages` caches each doc's preprocessed
    text (`ref_passage` depends on the doc alone), so each window only renders its prompt."""
    cands = list(docids)

    def model(window: list[str]) -> str:
        for d in window:
            if d not in passages:
                passages[d] = ref_passage(tokenizer, {"contents": passage_text(d)}, 512)
        messages = ref_messages_from_passages(query, [passages[d] for d in window])
        text = ftfy.fix_text(tokenizer.apply_chat_template(messages, tokenize=False,
                                                           add_generation_prompt=True))
        prompts.append(hashlib.sha1(text.encode("utf-8")).hexdigest())
        return answer(text)

    _ref_sliding(cands, 0, RETRIEVAL_NUM, 20, 10, model)
    return cands


# --- the test -----------------------------------------------------------------------------------


def _inputs(shared: Path, task: str, tmp: Path) -> tuple[list[str], dict[str, str], Path, Path,
                                                         Path]:
    bright = shared / "bright"
    run = bright / "runs_reasonir_gpt4cot_top100" / f"{task}.txt.gz"
    lines = gzip.decompress(run.read_bytes()).decode("utf-8").splitlines()
    queries = {}
    with gzip.open(bright / "examples" / f"{task}.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            queries[str(record["id"])] = record["query"]
    qpath, cpath = tmp / f"{task}.queries.jsonl", tmp / f"{task}.corpus.jsonl"
    with qpath.open("w", encoding="utf-8") as fh:
        for qid, text in queries.items():
            fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
    docids = dict.fromkeys(line.split(" ", 2)[2].rsplit(" ", 3)[0] for line in lines)
    with cpath.open("w", encoding="utf-8") as fh:
        for docid in docids:
            fh.write(json.dumps({"_id": docid, TEXT_FIELDS[2]: passage_text(docid)}) + "\n")
    return lines, queries, run, cpath, qpath


def test_cli_run_path_equals_the_reference_on_all_bright_runs(shared_data, qwen_tokenizer,
                                                              qwen_tokenizer_dir, tmp_path,
                                                              monkeypatch):
    from reasonrank.backends import base

    register_backend("prompt-hash", "test_bright_equivalence:PromptHashBackend")
    monkeypatch.setattr(base, "load_tokenizer", lambda *a, **k: qwen_tokenizer)
    total = spaced = 0
    for task in TASKS:
        lines, queries, run, corpus, qpath = _inputs(shared_data, task, tmp_path)
        out = tmp_path / f"{task}.trec"
        PromptHashBackend.seen = []
        assert main(["rerank", "--backend", "prompt-hash", "--model", str(qwen_tokenizer_dir),
                     "--run", str(run), "--corpus", str(corpus), "--queries", str(qpath),
                     "--output", str(out), "--concurrency", "1", "--quiet"]) == 0
        ours_prompts = PromptHashBackend.seen
        written = [line.split(" ") for line in out.read_text(encoding="utf-8").splitlines()]
        by_qid: dict[str, list[tuple[str, float]]] = {}
        for fields in written:
            by_qid.setdefault(fields[0], []).append((" ".join(fields[2:-3]), float(fields[-2])))

        ref_prompts: list[str] = []
        ref_passages: dict[str, str] = {}
        ref_lists = ref_read_run(lines)
        with_spaces = dict(ref_read_run(lines, keep_spaces=True))
        assert [q for q, _ in ref_lists] == list(by_qid)  # same queries, same order
        for qid, docids in ref_lists:
            if len(docids) < len(with_spaces[qid]):  # the documented difference
                spaced += 1
                assert task == "stackoverflow" and any(" " in d for d in with_spaces[qid])
                docids = with_spaces[qid]
            expected = ref_rerank(qwen_tokenizer, queries[qid], docids, ref_prompts,
                                  ref_passages)
            ours = by_qid[qid]
            assert [d for d, _ in ours] == expected, (task, qid)
            # evaluators (score descending, ties by docid descending) see the same order
            assert trec_order(dict(ours)) == expected, (task, qid)
        assert ours_prompts == ref_prompts, task  # every prompt, in the reference's order
        total += len(ref_lists)
    assert total == 1384 and spaced == 3
