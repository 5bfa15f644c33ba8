"""CPU-side throughput of the reranking pipeline, with a zero-latency fake backend.

Prompt building (real Qwen2.5 tokenizer, 512-token truncation, chat template, ftfy), window
scheduling and parsing on 100 queries x 100 BRIGHT-sized passages (2-3 KB), pinned to one core.
The same run measures a naive path that re-cleans and re-truncates every passage in every window,
as the authors' code does, and checks that both paths send identical prompts.

    python benchmarks/bench_pipeline.py [--queries 100] [--passages 100]

The candidate lists are the real ReasonIR top-100 lists of BRIGHT biology (so documents recur
across queries as they do in BRIGHT); passage texts are built from real MS MARCO passages of the
TREC DL19 file (BRIGHT's own texts are not available offline), repaired with ftfy first since
BRIGHT's texts are clean UTF-8 while MS MARCO's are full of mojibake (`--raw-msmarco` keeps the
mojibake, which makes every path slower). The last line reads `windows/s: X (naive: Y)`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

import ftfy

from reasonrank.backends.fake import FakeBackend
from reasonrank.config import RerankConfig
from reasonrank.core.prompts import PreparedRequest, PromptBuilder
from reasonrank.core.scheduler import Scheduler
from reasonrank.core.text import clean_query, replace_number
from reasonrank.core.truncation import reference_truncate
from reasonrank.io import read_requests, read_trec_run
from reasonrank.types import Candidate, Generation, Prompt, Query, Request

NUM = re.compile(r"I will provide you with (\d+) passages")
SHARED = Path(os.environ.get("REASONRANK_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))


def build_requests(n_queries: int, n_passages: int, raw: bool = False) -> list[Request]:
    dl19 = read_requests(SHARED / "trec_dl/bm25_top100_dl19.json.gz")
    pool = [c.text if raw else ftfy.fix_text(c.text) for r in dl19 for c in r.candidates]
    run = read_trec_run(SHARED / "bright/runs_reasonir_gpt4cot_top100/biology.txt.gz")
    texts: dict[str, str] = {}

    def text_of(docid: str) -> str:
        if docid not in texts:
            rng = random.Random(int(hashlib.md5(docid.encode()).hexdigest(), 16))
            target, parts = rng.randint(2000, 3000), []
            while sum(map(len, parts)) < target:
                parts.append(rng.choice(pool))
            texts[docid] = " ".join(parts)[:target]
        return texts[docid]

    queries = [q for q in run if len(run[q]) >= n_passages][:n_queries]
    if len(queries) < n_queries:  # more queries than BRIGHT biology has: reuse lists
        queries = [queries[i % len(queries)] for i in range(n_queries)]
    return [
        Request(Query(f"What explains the biology question {i} about {pool[i][:60]}?", f"q{i}"),
                [Candidate(d, text_of(d), s) for d, s in run[qid][:n_passages]])
        for i, qid in enumerate(queries)
    ]


class NaiveBuilder(PromptBuilder):
    """The authors' path: every window cleans and truncates its passages again."""

    def prepare(self, request: Request) -> PreparedRequest:
        raw = [(c.text, c.title) for c in request.candidates]
        return PreparedRequest(request, request.query.text, raw)  # type: ignore[arg-type]

    def render(self, query: str, passages) -> Prompt:  # type: ignore[override]
        n = self.truncator.max_tokens
        cleaned = []
        for text, title in passages:
            content = "Title: " + title + " Content: " + text if title else text
            content = ftfy.fix_text(content.strip())
            cleaned.append(replace_number(reference_truncate(self.tokenizer, content, n)))
        messages = self.messages(clean_query(query), cleaned)
        text = self.tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                  add_generation_prompt=True)
        return Prompt(ftfy.fix_text(text), messages)


class RecordingBackend(FakeBackend):
    """Zero latency: answers a fixed interleaving of the window's ids and hashes every prompt."""

    def __init__(self, tokenizer) -> None:
        super().__init__(tokenizer)
        self.digest = hashlib.sha256()

    async def generate(self, prompt, params):
        self.calls += 1
        self.digest.update(prompt.text.encode())
        num = int(NUM.search(prompt.text).group(1))
        ids = [*range(num, 0, -2), *range(num - 1, 0, -2)]
        answer = "<think>fixed</think> <answer>" + " > ".join(f"[{i}]" for i in ids) + "</answer>"
        return Generation(answer, None, len(ids) * 4, "stop")


def measure(builder_cls, tokenizer, requests) -> tuple[float, int, str]:
    backend = RecordingBackend(tokenizer)
    config = RerankConfig(backend="fake", concurrency=1)  # one query at a time: fixed prompt order
    scheduler = Scheduler(backend, builder_cls(tokenizer, "reasoning", 512), config)
    began = time.perf_counter()
    asyncio.run(scheduler.rerank_all(requests))
    elapsed = time.perf_counter() - began
    return backend.calls / elapsed, backend.calls, backend.digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--passages", type=int, default=100)
    parser.add_argument("--tokenizer", help="tokenizer dir (default: Qwen2.5 rebuilt offline)")
    parser.add_argument("--raw-msmarco", action="store_true", help="keep MS MARCO's mojibake")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    from transformers import AutoTokenizer

    tok_dir = args.tokenizer
    if tok_dir is None:
        from reasonrank.offline import build_qwen25_tokenizer

        tok_dir = build_qwen25_tokenizer(Path(tempfile.gettempdir()) / "reasonrank-qwen25-tok")
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    requests = build_requests(args.queries, args.passages, raw=args.raw_msmarco)
    sizes = [len(c.text) for r in requests for c in r.candidates]
    unique = len({c.docid for r in requests for c in r.candidates})
    print(f"{len(requests)} queries x {args.passages} passages, {min(sizes)}-{max(sizes)} chars "
          f"(mean {sum(sizes) / len(sizes):.0f}), {unique} distinct documents; 1 core; "
          f"truncation path: {PromptBuilder(tokenizer).truncator.path}")
    fast, windows, digest = measure(PromptBuilder, tokenizer, requests)
    print(f"reasonrank: {windows} windows, {fast:.1f} windows/s")
    naive, naive_windows, naive_digest = measure(NaiveBuilder, tokenizer, requests)
    print(f"naive:      {naive_windows} windows, {naive:.1f} windows/s")
    if (windows, digest) != (naive_windows, naive_digest):
        print("ERROR: the two paths sent different prompts", file=sys.stderr)
        return 1
    print(f"identical prompts (sha256 {digest[:16]}); speed-up x{fast / naive:.2f}")
    print(f"windows/s: {fast:.1f} (naive: {naive:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
