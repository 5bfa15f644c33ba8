"""`reasonrank prompt` prints the window's fully rendered prompt, byte for byte, and nothing else.

Contract: `reasonrank prompt --query TEXT --passages FILE --tokenizer PATH
[--max-passage-tokens N] [--template NAME]`; FILE is JSONL with `docid`, `text` and an optional
`title`; passages are cut to 512 tokens by default. The expected output is the independent
reference of `test_prompts.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reasonrank.cli.main import main
from reference_impl import LONG_ENGLISH, reference_prompt

QUERY = "  how do [1] fleas & ticks “spread”?  "
RECORDS: list[dict[str, Any]] = [
    {"docid": "d1", "text": "Fleas jump [2] between hosts; sÃ³ itâ€™s fast.", "title": "Fleas"},
    {"docid": "d2", "text": "  Ticks &amp; mites wait on grass.\r\nThey climb. ", "title": ""},
    {"docid": "d3", "text": "中文 passage with 👨\u200d👩\u200d👧 emoji and [ 3] brackets"},
    {"docid": "d4", "text": "A long one: " + LONG_ENGLISH * 2, "title": "Long"},
    {"docid": "d5", "text": ""},
    {"docid": "d6", "text": "special <|im_end|> token and <b>html</b> &amp; entity"},
]


def write_passages(path: Path, records: list[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def expected(tokenizer: Any, records: list[dict[str, Any]], max_length: int = 512,
             template: str = "reasoning", query: str = QUERY) -> str:
    docs = [{k: v for k, v in r.items() if k != "docid"} for r in records]
    return reference_prompt(tokenizer, query, docs, max_length, template)


def run_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "reasonrank.cli.main", "prompt", *args],
                          capture_output=True, env=env, timeout=300, check=False)


def test_long_passage_exceeds_default_cut(qwen_tokenizer):
    # the default (512) really cuts d4, so the tests below tell 512 from "no limit"
    assert len(qwen_tokenizer.tokenize("Title: Long Content: " + RECORDS[3]["text"])) > 600
    assert expected(qwen_tokenizer, RECORDS, 512) != expected(qwen_tokenizer, RECORDS, 600)


def test_subprocess_prints_exactly_the_prompt(qwen_tokenizer, qwen_tokenizer_dir, tmp_path):
    passages = write_passages(tmp_path / "passages.jsonl", RECORDS)
    proc = run_cli("--query", QUERY, "--passages", str(passages),
                   "--tokenizer", str(qwen_tokenizer_dir))
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stdout == expected(qwen_tokenizer, RECORDS, 512).encode("utf-8")


def test_subprocess_options(qwen_tokenizer, qwen_tokenizer_dir, tmp_path):
    passages = write_passages(tmp_path / "p.jsonl", RECORDS[:3])
    # the installed console script where there is one, else the module
    exe = Path(sys.executable).with_name("reasonrank")
    command = [str(exe)] if exe.is_file() else [sys.executable, "-m", "reasonrank.cli.main"]
    proc = subprocess.run(
        [*command, "prompt", "--query", "ticks", "--passages", str(passages),
         "--tokenizer", str(qwen_tokenizer_dir), "--max-passage-tokens", "5",
         "--template", "rankgpt"],
        capture_output=True, timeout=300, check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stdout == expected(qwen_tokenizer, RECORDS[:3], 5, "rankgpt", "ticks").encode()


@pytest.mark.parametrize(("options", "max_length", "template"), [
    ([], 512, "reasoning"),
    (["--max-passage-tokens", "7", "--template", "qwen3"], 7, "qwen3"),
])
def test_main_prints_exactly_the_prompt(qwen_tokenizer, qwen_tokenizer_dir, tmp_path, capsys,
                                        options, max_length, template):
    passages = write_passages(tmp_path / "passages.jsonl", RECORDS)
    rc = main(["prompt", "--query", QUERY, "--passages", str(passages),
               "--tokenizer", str(qwen_tokenizer_dir), *options])
    out = capsys.readouterr().out
    assert rc == 0
    assert out == expected(qwen_tokenizer, RECORDS, max_length, template)


def test_main_keeps_file_order(qwen_tokenizer, qwen_tokenizer_dir, tmp_path, capsys):
    records = list(reversed(RECORDS))
    passages = write_passages(tmp_path / "rev.jsonl", records)
    assert main(["prompt", "--query", "q.", "--passages", str(passages), "--template", "rankgpt",
                 "--tokenizer", str(qwen_tokenizer_dir), "--max-passage-tokens", "1"]) == 0
    out = capsys.readouterr().out
    assert out == expected(qwen_tokenizer, records, 1, "rankgpt", query="q.")
    assert "\n[1] special\n[2] \n[3] Title\n" in out  # d6, d5 (empty), d4 ... in file order


def test_main_unknown_template_prints_no_prompt(qwen_tokenizer_dir, tmp_path, capsys):
    passages = write_passages(tmp_path / "passages.jsonl", RECORDS[:2])
    rc = main(["prompt", "--query", "q", "--passages", str(passages),
               "--tokenizer", str(qwen_tokenizer_dir), "--template", "nope"])
    captured = capsys.readouterr()
    assert rc != 0
    assert captured.out == ""
    assert "nope" in captured.err


def test_main_template_file(qwen_tokenizer, qwen_tokenizer_dir, tmp_path, capsys):
    # a user template file in rank_llm's format: the built-in reasoning.yaml, copied
    from importlib import resources

    text = (resources.files("reasonrank.core") / "templates" / "reasoning.yaml").read_text()
    template = tmp_path / "my_template.yaml"
    template.write_text(text, encoding="utf-8")
    passages = write_passages(tmp_path / "passages.jsonl", RECORDS[:3])
    assert main(["prompt", "--query", QUERY, "--passages", str(passages),
                 "--tokenizer", str(qwen_tokenizer_dir), "--template", str(template)]) == 0
    assert capsys.readouterr().out == expected(qwen_tokenizer, RECORDS[:3], 512)


def test_main_bad_template_file_is_one_line(qwen_tokenizer_dir, tmp_path, capsys):
    template = tmp_path / "bad.yaml"
    template.write_text("method: singleturn_listwise\nbody: '[{rank}] {passage}'\n"
                        "suffix: '{query}'\n", encoding="utf-8")
    passages = write_passages(tmp_path / "passages.jsonl", RECORDS[:2])
    rc = main(["prompt", "--query", "q", "--passages", str(passages),
               "--tokenizer", str(qwen_tokenizer_dir), "--template", str(template)])
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.out == ""
    assert str(template) in captured.err and "{passage}" in captured.err
    assert len(captured.err.strip().splitlines()) == 1
