"""`reasonrank bright --rerank --method rank1`: Rank1's per-task instruction reaches every prompt,
the run is scored, and our row is printed right after the paper's Rank1-7B row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reasonrank.backends.fake import FakeBackend
from reasonrank.cli.main import main
from reasonrank.core.methods.rank1 import instruction_for
from reasonrank.datasets import bright
from reasonrank.types import Generation, Prompt, SamplingParams

TOP_K = 5


def test_bright_rank1_row_beside_the_published_one(
    shared_data: Path, tmp_path: Path, qwen_tokenizer_dir: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = shared_data / "bright"
    corpora = tmp_path / "corpora"
    tasks = ("pony", "biology")
    for task in tasks:
        run = bright.load_run(data / bright.DEFAULT_RUNS, task)
        docs = sorted({d for ranked in run.values() for d, _ in ranked[:TOP_K]})
        bright.save_corpus({d: f"{task} page {d} about the question" for d in docs},
                           corpora / f"{task}.jsonl.gz")
    prompts: list[str] = []
    original = FakeBackend.generate

    async def spy(self: FakeBackend, prompt: Prompt, params: SamplingParams) -> Generation:
        prompts.append(prompt.text)
        return await original(self, prompt, params)

    monkeypatch.setattr(FakeBackend, "generate", spy)
    out = tmp_path / "out"
    code = main(["bright", "--data", str(data), "--tasks", *tasks, "--out", str(out),
                 "--rerank", "--corpus-dir", str(corpora), "--backend", "fake", "--model",
                 str(qwen_tokenizer_dir), "--method", "rank1", "--top-k", str(TOP_K),
                 "--no-plots"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report: dict[str, Any] = json.loads((out / "bright.json").read_text())
    assert report["config"]["method"] == "rank1"
    assert report["published_row"]["system"] == "Rank1-7B (pointwise)"
    n_queries = {t: report["tasks"][t]["reranked"]["queries"] for t in tasks}
    assert len(prompts) == TOP_K * sum(n_queries.values())  # one prompt per (query, doc)
    for task in tasks:
        head = instruction_for(f"bright/{task}").split("FILL_QUERY_HERE")[0]  # type: ignore[union-attr]
        assert sum(f"Query: {head}" in p for p in prompts) == TOP_K * n_queries[task]
        statuses = report["tasks"][task]["rerank"]["statuses"]
        assert statuses == {"scored": TOP_K * n_queries[task]}
    lines = [line for line in captured.out.splitlines() if "│" in line or "|" in line]
    names = [line.split("│")[1].strip() if "│" in line else line for line in lines]
    published = next(i for i, n in enumerate(names) if n.startswith("Rank1-7B"))
    assert names[published + 1].startswith("ours:") and "(rank1)" in names[published + 1]
