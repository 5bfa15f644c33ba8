"""A deterministic fake teacher for `reasonrank synth`, and the small corpus it knows.

`make_corpus` writes eight "unusual colour" questions, each with a gold answer (a mineral):
three passages per question name the mineral (positives), four mention the place but not
the mineral (hard negatives), and 64 filler passages share only the generic words.

`FakeTeacher` is an `answer_request` for `FakeOpenAIServer`: it reads the request body (the
seed says which attempt it is), recognises the synth selection prompts and the engine's
ranking prompt, and answers in the requested format - or, for the (stage, qid, attempt)
listed in `faults`, with a malformed answer: garbage, an identifier out of range, an
unterminated `<answer>`, a ranking missing passages, or a reasoning so long that the server
cuts it at `max_tokens` (finish_reason "length").
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fake_openai_server import prompt_text_of
from reasonrank.synth.prompts import HARD_NEGATIVES, POSITIVES


@dataclass(frozen=True)
class Topic:
    qid: str
    subject: str
    answer: str

    @property
    def query(self) -> str:
        return f"Which substance explains the unusual colour of the {self.subject}?"


TOPICS = tuple(Topic(f"q{i}", subject, answer) for i, (subject, answer) in enumerate([
    ("Kivu crater", "malachite"), ("Tarnwick glacier", "cinnabar"),
    ("Ochrevale canyon", "azurite"), ("Velmora geyser", "realgar"),
    ("Ambrel lagoon", "orpiment"), ("Obsidra dune", "cobaltite"),
    ("Coralind grotto", "rhodochrosite"), ("Basaltor fjord", "vivianite"),
]))

_FILLER_WORDS = ("river", "market", "engine", "forest", "harbor", "violin", "ledger", "garden")


def make_corpus(root: Path, topics: tuple[Topic, ...] = TOPICS) -> tuple[Path, Path]:
    """Write `corpus.jsonl` and `queries.jsonl` (with answers) under `root`."""
    docs: list[dict[str, str]] = []
    for t in topics:
        n = t.qid
        docs += [
            {"_id": f"{n}-p0", "text": f"Samples from the {t.subject} contain {t.answer}, which "
                                      "explains its unusual colour."},
            {"_id": f"{n}-p1", "text": f"Chemists traced the tint of the {t.subject} to "
                                      f"{t.answer} deposits."},
            {"_id": f"{n}-p2", "title": t.subject,
             "text": f"{t.answer.capitalize()} gives the {t.subject} its colour, a survey "
                     "found [1]."},
            {"_id": f"{n}-h0", "text": f"The {t.subject} attracts many visitors because of its "
                                      "unusual colour."},
            {"_id": f"{n}-h1", "text": f"Photographs of the {t.subject} show how the colour "
                                      "changes with the seasons."},
            {"_id": f"{n}-h2", "text": f"Local legends say the {t.subject} was painted by a "
                                      "giant; its colour is unusual."},
            {"_id": f"{n}-h3", "text": f"The {t.subject} lies far from any road, and few have "
                                      "studied its colour."},
        ]
        for j, word in enumerate(_FILLER_WORDS):
            docs.append({"_id": f"{n}-f{j}",
                         "text": f"An unusual substance near the {word} {j} of district {n} "
                                 "changed colour after the rain."})
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    queries = root / "queries.jsonl"
    queries.write_text("".join(json.dumps({"id": t.qid, "text": t.query, "answer": t.answer})
                               + "\n" for t in topics), encoding="utf-8")
    return corpus, queries


_PASSAGE = re.compile(r"(?m)^\[(\d+)\] (.*)$")
_QUESTION = re.compile(r"(?m)^Question: (.*)$")
_SEARCH = re.compile(r"relevance to the search query: (.*?)\.\n")


@dataclass
class FakeTeacher:
    """`answer_request(body) -> text` for `FakeOpenAIServer`; see the module docstring."""

    base_seed: int
    faults: Mapping[tuple[str, str, int], str] = field(default_factory=dict)
    reversed_qids: frozenset[str] = frozenset()
    topics: tuple[Topic, ...] = TOPICS

    def stage_of(self, prompt: str) -> str:
        if POSITIVES.criterion.format(num=0)[:40] in prompt:
            return "positives"
        if HARD_NEGATIVES.criterion.format(num=0)[:40] in prompt:
            return "negatives"
        return "label"

    def topic_of(self, prompt: str) -> Topic:
        match = _QUESTION.search(prompt) or _SEARCH.search(prompt)
        line = match.group(1) if match else ""
        for topic in self.topics:
            if topic.subject in line:
                return topic
        raise AssertionError(f"the fake teacher does not know this query: {line!r}")

    def __call__(self, body: dict[str, Any]) -> str:
        prompt = prompt_text_of(body)
        stage = self.stage_of(prompt)
        topic = self.topic_of(prompt)
        attempt = int(body.get("seed", self.base_seed)) - self.base_seed
        passages = [(int(n), text.lower()) for n, text in _PASSAGE.findall(prompt)]
        fault = self.faults.get((stage, topic.qid, attempt))
        if fault is not None:
            return self.malformed(fault, stage, body, len(passages))
        answer, subject = topic.answer, topic.subject.lower()
        if stage == "positives":
            ids = [n for n, text in passages if answer in text]
            return self._selection(ids, f"{answer} answers the question")
        if stage == "negatives":
            ids = [n for n, text in passages if subject in text and answer not in text]
            return self._selection(ids, f"these mention the {subject} but not {answer}")
        scored = sorted(passages, key=lambda p: (-(2 * (answer in p[1]) + (subject in p[1])),
                                                 p[0]))
        order = [n for n, _ in scored]
        if topic.qid in self.reversed_qids:
            order.reverse()
        best = ", ".join(f"[{n}]" for n, text in scored if answer in text)
        reasoning = (f"The question asks what colours the {topic.subject}. Passages {best} "
                     f"name {answer}, the cause; passages about the place come next.")
        ranking = " > ".join(f"[{n}]" for n in order)
        return f"<think>{reasoning}</think>\n<answer>{ranking}</answer>"

    @staticmethod
    def _selection(ids: list[int], why: str) -> str:
        chosen = ", ".join(f"[{n}]" for n in ids) if ids else "none"
        return f"<think>Reading each passage: {why}.</think>\n<answer>{chosen}</answer>"

    @staticmethod
    def malformed(kind: str, stage: str, body: dict[str, Any], num: int) -> str:
        if kind == "garbage":
            return "I am not sure what you are asking me to do."
        if kind == "out_of_range":
            return f"<think>Checking.</think>\n<answer>[{num + 30}]</answer>"
        if kind == "unterminated":
            sep = ", " if stage != "label" else " > "
            return "<think>Checking.</think>\n<answer>" + sep.join(
                f"[{n}]" for n in range(1, num + 1))
        if kind == "partial":
            return "<think>Only two matter.</think>\n<answer>[2] > [1]</answer>"
        if kind == "truncated":
            words = int(body.get("max_tokens") or 100) + 20
            return "<think>" + " ".join(["hmm"] * words) + "</think>\n<answer>[1]</answer>"
        raise ValueError(f"unknown fault {kind!r}")


def main(argv: list[str] | None = None) -> int:
    """`python tests/fake_teacher.py DIR [--seed 42]`: write the toy corpus and queries under
    DIR, serve the fake teacher on 127.0.0.1 (a free port; the base URL is printed and written
    to DIR/api_base.txt) until Ctrl-C. For trying `reasonrank synth` without a model."""
    import argparse
    import sys
    import time

    from fake_openai_server import FakeOpenAIServer

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("data", type=Path, help="folder for corpus.jsonl and queries.jsonl")
    parser.add_argument("--seed", type=int, default=42, help="the synth `seed` setting")
    args = parser.parse_args(argv)
    args.data.mkdir(parents=True, exist_ok=True)
    make_corpus(args.data)
    with FakeOpenAIServer(answer_request=FakeTeacher(args.seed), reasoning_split=True) as server:
        (args.data / "api_base.txt").write_text(server.url + "\n", encoding="utf-8")
        print(f"fake teacher at {server.url} (corpus and queries in {args.data}); Ctrl-C stops",
              file=sys.stderr, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
