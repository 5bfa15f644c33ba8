"""Training data: the 13k layout reader, checks, the self-consistency filter, SFT/RL examples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from reasonrank.cli.main import main
from reasonrank.core.prompts import PromptBuilder
from reasonrank.errors import ConfigError, InputFormatError
from reasonrank.io import read_id_texts
from reasonrank.training.examples import (
    DEFAULT_TARGET,
    answer_text,
    read_examples,
    rl_examples,
    rl_release_examples,
    sft_examples,
    sft_release_examples,
    write_examples,
)
from reasonrank.training.records import (
    TrainingDataError,
    check_training_set,
    ensure_valid,
    read_records,
    read_training_set,
    self_consistency_filter,
    split_records,
    write_training_set,
)
from training_fixture import LAYOUT, expected_ndcg, record_dicts, write_fixture


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    return write_fixture(tmp_path / "13k")


def _rewrite_records(root: Path, edit: Any) -> None:
    records = record_dicts()
    edit(records)
    (root / "training_data_all.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


# --- reading --------------------------------------------------------------------------------


def test_reads_layout_with_both_table_forms(data_dir: Path) -> None:
    data = read_training_set(data_dir)
    assert [r.qid for r in data.records] == [f"q{n}" for n in range(len(LAYOUT))]
    first = data.records[0]
    assert first.line == 1 and first.dataset == "biology"
    assert data.query_text(first).startswith("What explains [1] effect number q0")
    # biology passages come from id_doc/biology.jsonl ("contents"), the others from docs.jsonl
    assert data.doc_texts(first)[0] == "Passage bio0d0 about biology topic 0: cells & caf\u00e9."
    assert data.doc_texts(data.records[4])[3].startswith("Passage mat4d3 about math-qa")
    assert check_training_set(data) == []


def test_id_text_tables(tmp_path: Path) -> None:
    obj = tmp_path / "a.json"
    obj.write_text('{"d1": "one", "d2": "two"}', encoding="utf-8")
    lines = tmp_path / "b.jsonl"
    lines.write_text('{"id": "d1", "contents": "one"}\n{"docid": 7, "text": "seven"}\n',
                     encoding="utf-8")
    assert read_id_texts(obj) == {"d1": "one", "d2": "two"}
    assert read_id_texts(lines) == {"d1": "one", "7": "seven"}
    dup = tmp_path / "c.jsonl"
    dup.write_text('{"id": "d1", "text": "x"}\n{"id": "d1", "text": "y"}\n', encoding="utf-8")
    with pytest.raises(InputFormatError, match=r"c.jsonl:2: duplicate text id 'd1'"):
        read_id_texts(dup)
    bad = tmp_path / "d.json"
    bad.write_text('{"d1": 3}', encoding="utf-8")
    with pytest.raises(InputFormatError, match="not a string"):
        read_id_texts(bad)


def test_malformed_record_names_the_line(data_dir: Path) -> None:
    path = data_dir / "training_data_all.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2][:-5]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputFormatError, match=r"training_data_all.jsonl:3: invalid JSON"):
        read_records(path)
    lines[2] = json.dumps({"dataset": "x", "qid": "q", "initial_list": "d1 d2"})
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputFormatError, match=r":3: missing field\(s\) final_list"):
        read_records(path)


def test_missing_layout_is_explained(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match=r"no training_data_all\.jsonl here"):
        read_training_set(tmp_path)


# --- checks ---------------------------------------------------------------------------------


def _problems(root: Path) -> list[tuple[str, int | None]]:
    return [(p.kind, p.line) for p in check_training_set(read_training_set(root))]


def test_checks_find_each_problem(data_dir: Path) -> None:
    def edit(records: list[dict]) -> None:
        records[0]["initial_list"][1] = "ghost"            # not in id_doc/, and final != initial
        records[1]["initial_list"].append(records[1]["initial_list"][0])   # duplicate id
        records[2]["reasoning"] = "  \n"                   # empty reasoning
        big = records[8]
        big["initial_list"] = big["initial_list"] + ["msm8d0x"]  # 21 > window 20
        records[3]["relevant_docids"] = ["elsewhere"]
        records[5]["qid"] = "nobody"                        # query missing from id_query/
        records.append(dict(records[4]))                    # duplicate record

    _rewrite_records(data_dir, edit)
    found = _problems(data_dir)
    for expected in [("missing passage", 1), ("list mismatch", 1), ("duplicate ids", 2),
                     ("empty reasoning", 3), ("unknown relevant id", 4), ("missing query", 6),
                     ("list too long", 9), ("duplicate record", 11)]:
        assert expected in found, (expected, found)
    with pytest.raises(TrainingDataError) as info:
        ensure_valid(read_training_set(data_dir))
    message = str(info.value)
    assert "training_data_all.jsonl:1: missing passage: biology/q0: passage 'ghost'" in message
    assert "list too long" in message and "more than the window of 20" in message


def test_conflicting_texts_need_a_dataset_table(data_dir: Path) -> None:
    (data_dir / "id_doc" / "other.jsonl").write_text(
        json.dumps({"id": "mat4d0", "text": "a different text"}) + "\n"
        + json.dumps({"id": "bio0d0", "text": "biology has its own table"}) + "\n",
        encoding="utf-8")
    found = _problems(data_dir)
    # math-qa has no table of its own: its id is ambiguous; biology's own table wins
    assert found == [("ambiguous passage", 5)]


def test_cli_check(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", str(data_dir)]) == 0
    assert "10 records: no problems" in capsys.readouterr().out
    _rewrite_records(data_dir, lambda rs: rs[2].update(reasoning=""))
    assert main(["data", "check", str(data_dir)]) == 2
    assert "empty reasoning: biology/q2: reasoning is empty" in capsys.readouterr().err


# --- filter ---------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.0, 0.36, 0.4, 0.5, 0.62, 1.0])
def test_filter_counts_follow_the_rule(data_dir: Path, threshold: float) -> None:
    result = self_consistency_filter(read_training_set(data_dir).records, threshold)
    expected: dict[str, list[int]] = {}
    for dataset, ranks, _ in LAYOUT:
        keep = expected_ndcg(ranks) >= threshold - 1e-12
        counts = expected.setdefault(dataset, [0, 0])
        counts[0 if keep else 1] += 1
    got = {row["dataset"]: [row["kept"], row["dropped"]] for row in result.report()}
    assert got.pop("all") == [sum(c[0] for c in expected.values()),
                              sum(c[1] for c in expected.values())]
    assert got == expected


def test_filter_default_threshold_per_domain(data_dir: Path) -> None:
    result = self_consistency_filter(read_training_set(data_dir).records)
    assert {k: (c.kept, c.dropped) for k, c in result.domains.items()} == {
        "biology": (3, 1), "math-qa": (2, 2), "msmarco": (1, 1)}
    assert [r.qid for r in result.dropped] == ["q2", "q5", "q6", "q9"]


def test_cli_filter_writes_kept_records_unchanged(data_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    source = data_dir / "training_data_all.jsonl"
    # unusual but valid JSON spacing and key order must survive byte for byte
    lines = source.read_text(encoding="utf-8").splitlines()
    lines[0] = json.dumps(json.loads(lines[0]), indent=None, separators=(" ,", ":  "),
                          sort_keys=True)
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    kept, dropped = tmp_path / "kept.jsonl", tmp_path / "dropped.jsonl"
    assert main(["data", "filter", str(data_dir), "--threshold", "0.4", "--output", str(kept),
                 "--dropped", str(dropped)]) == 0
    table = capsys.readouterr().out
    for row in ("biology", "math-qa", "msmarco", "all"):
        assert row in table
    kept_lines = kept.read_text(encoding="utf-8").splitlines()
    assert kept_lines == [lines[i] for i in (0, 1, 3, 4, 7, 8)]
    assert len(dropped.read_text(encoding="utf-8").splitlines()) == 4
    assert main(["data", "filter", str(data_dir), "--output", str(kept), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["threshold"] == 0.4
    assert report["domains"][-1] == {"dataset": "all", "total": 10, "kept": 6, "dropped": 4,
                                     "kept_fraction": 0.6}


def test_write_training_set_round_trips(data_dir: Path, tmp_path: Path) -> None:
    data = read_training_set(data_dir)
    queries = {r.qid: data.query_text(r) for r in data.records}
    docs = {d: t for r in data.records for d, t in zip(r.initial_list, data.doc_texts(r),
                                                      strict=True)}
    out = write_training_set(tmp_path / "copy", data.records[:4], queries, docs)
    copy = read_training_set(out)
    assert copy.records == data.records[:4]
    assert [copy.doc_texts(r) for r in copy.records] == [data.doc_texts(r)
                                                          for r in data.records[:4]]
    assert ensure_valid(copy) is copy


def test_split_halves_each_domain(data_dir: Path, tmp_path: Path) -> None:
    records = read_training_set(data_dir).records
    first, second = split_records(records, 0.5, seed=7)
    assert sorted(r.qid for r in first + second) == sorted(r.qid for r in records)
    assert not {r.qid for r in first} & {r.qid for r in second}
    for part in (first, second):  # 4 biology, 4 math-qa, 2 msmarco -> 2, 2, 1 each
        assert sorted(r.dataset for r in part) == ["biology"] * 2 + ["math-qa"] * 2 + ["msmarco"]
        assert part == sorted(part, key=records.index)  # input order kept
    assert split_records(records, 0.5, seed=7) == (first, second)
    assert split_records(records, 0.5, seed=8) != (first, second)
    assert split_records(records, 1.0)[1] == [] and split_records(records, 0.0)[0] == []
    a, b = data_dir / "sft_part.jsonl", data_dir / "rl_part.jsonl"
    assert main(["data", "split", str(data_dir), "--seed", "7", "--output", str(a), str(b),
                 "-q"]) == 0
    lines = (data_dir / "training_data_all.jsonl").read_text(encoding="utf-8").splitlines()
    assert a.read_text(encoding="utf-8").splitlines() == [lines[r.line - 1] for r in first]
    assert len(read_training_set(b).records) == len(second)  # its tables are beside it
    assert main(["data", "split", str(data_dir), "--fraction", "1.5", "--output", str(a),
                 str(b)]) == 2


# --- SFT and RL examples --------------------------------------------------------------------


def test_answer_maps_final_list_to_prompt_identifiers(data_dir: Path) -> None:
    record = read_training_set(data_dir).records[0]  # final = initial[2:] + initial[:2]
    assert answer_text(record) == "[3] > [4] > [5] > [1] > [2]"


def test_sft_prompt_is_what_reasonrank_prompt_prints(
        data_dir: Path, tmp_path: Path, qwen_tokenizer: Any, qwen_tokenizer_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    data = read_training_set(data_dir)
    rows = list(sft_examples(data, PromptBuilder(qwen_tokenizer)))
    assert len(rows) == len(data.records)
    for record, row in zip(data.records[:3] + data.records[8:9], rows[:3] + rows[8:9],
                           strict=True):
        passages = tmp_path / f"{record.qid}.jsonl"
        passages.write_text("".join(json.dumps({"docid": d, "text": t}) + "\n" for d, t in
                                    zip(record.initial_list, data.doc_texts(record),
                                        strict=True)), encoding="utf-8")
        assert main(["prompt", "--query", data.query_text(record), "--passages", str(passages),
                     "--tokenizer", str(qwen_tokenizer_dir)]) == 0
        assert row["prompt"] == capsys.readouterr().out
        assert f"Rank the {len(record.initial_list)} passages above" in row["prompt"]
    first = rows[0]
    assert first["completion"] == (
        "<think> Passage [1] answers the question best; the others only share words with it. "
        "</think> <answer> [3] > [4] > [5] > [1] > [2] </answer><|im_end|>")
    assert first["completion"].count("<|im_end|>") == 1
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
    # prompt + completion is the chat template's rendering of the whole conversation
    whole = qwen_tokenizer.apply_chat_template(first["messages"], tokenize=False)
    assert whole.startswith(first["prompt"] + first["completion"])


def test_target_template_is_validated(data_dir: Path, qwen_tokenizer: Any) -> None:
    data = read_training_set(data_dir)
    with pytest.raises(ConfigError, match=r"must contain \{answer\}"):
        next(sft_examples(data, PromptBuilder(qwen_tokenizer), "<think>{reasoning}</think>"))
    row = next(sft_examples(data, PromptBuilder(qwen_tokenizer),
                            "<think>\n{reasoning}\n</think>\n<answer>{answer}</answer>"))
    assert row["completion"].startswith("<think>\nPassage [1]")
    assert DEFAULT_TARGET.count("{") == 2


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_rl_examples_round_trip(data_dir: Path, tmp_path: Path, qwen_tokenizer: Any,
                                suffix: str) -> None:
    data = read_training_set(data_dir)
    rows = list(rl_examples(data, PromptBuilder(qwen_tokenizer, max_passage_tokens=8)))
    path = tmp_path / f"rl{suffix}"
    assert write_examples(rows, path) == len(rows)
    back = read_examples(path, ("prompt", "initial_list", "final_list", "relevant_docids"))
    assert back == rows
    assert back[6]["relevant_docids"] == [data.records[6].final_list[8],
                                          data.records[6].final_list[9]]
    with pytest.raises(InputFormatError, match="missing completion"):
        read_examples(path, ("prompt", "completion"))


def test_cli_builds_examples_with_filter(data_dir: Path, tmp_path: Path,
                                         qwen_tokenizer_dir: Path) -> None:
    sft, rl = tmp_path / "sft.jsonl", tmp_path / "rl.parquet"
    assert main(["data", "sft", str(data_dir), "--tokenizer", str(qwen_tokenizer_dir),
                 "--output", str(sft), "--threshold", "0.4", "-q"]) == 0
    assert [r["qid"] for r in read_examples(sft)] == ["q0", "q1", "q3", "q4", "q7", "q8"]
    assert main(["data", "rl", str(data_dir), "--tokenizer", str(qwen_tokenizer_dir),
                 "--output", str(rl), "-q"]) == 0
    assert len(read_examples(rl)) == 10
    _rewrite_records(data_dir, lambda rs: rs[4]["initial_list"].append("ghost"))
    assert main(["data", "sft", str(data_dir), "--tokenizer", str(qwen_tokenizer_dir),
                 "--output", str(tmp_path / "bad.jsonl"), "-q"]) == 2
    assert not (tmp_path / "bad.jsonl").exists()


def test_released_sft_and_rl_files(tmp_path: Path, qwen_tokenizer: Any) -> None:
    alpaca = tmp_path / "sft.json"
    system = "You are RankLLM."
    alpaca.write_text(json.dumps([{"system": system, "instruction": "Rank [1] and [2].",
                                   "input": "", "output": "<think> x </think> <answer> [2] > [1]"
                                   " </answer>"}]), encoding="utf-8")
    (row,) = sft_release_examples(alpaca, qwen_tokenizer)
    assert row["prompt"] == ("<|im_start|>system\nYou are RankLLM.<|im_end|>\n<|im_start|>user\n"
                             "Rank [1] and [2].<|im_end|>\n<|im_start|>assistant\n")
    assert row["completion"] == "<think> x </think> <answer> [2] > [1] </answer><|im_end|>"

    pytest.importorskip("pyarrow")
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Rank."}]
    parquet = tmp_path / "rl.parquet"
    write_examples([
        {"data_source": "biology", "prompt": messages,
         "reward_model": {"style": "rule", "ground_truth": json.dumps(
             {"initial_list": ["a", "b", "c"], "final_list": ["c", "a", "b"],
              "relevant_docids": ["c"]})}},
        {"data_source": "leetcode", "prompt": messages, "initial_list": ["a", "b", "c"],
         "label": "[2] > [3] > [1]", "relevant_docids": ["b"]},
    ], parquet)
    first, second = rl_release_examples(parquet, qwen_tokenizer)
    assert first["dataset"] == "biology" and first["final_list"] == ["c", "a", "b"]
    assert first["prompt"].endswith("Rank.<|im_end|>\n<|im_start|>assistant\n")
    assert second["final_list"] == ["b", "c", "a"] and second["relevant_docids"] == ["b"]
    write_examples([{"prompt": messages, "initial_list": ["a"]}], parquet)
    with pytest.raises(InputFormatError, match="row 0: no final_list list"):
        list(rl_release_examples(parquet, qwen_tokenizer))


def test_fixture_copy_is_independent(data_dir: Path, tmp_path: Path) -> None:
    # the CLI reads a records file given directly, with its tables beside it
    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    assert len(read_training_set(copy / "training_data_all.jsonl").records) == len(LAYOUT)


def test_cpu_training_configs_load() -> None:
    """The CPU walk-through's configs (docs/training.md): valid settings, GRPO without vLLM."""
    from reasonrank.training.settings import load_settings

    repo = Path(__file__).resolve().parents[2]
    sft = load_settings(repo / "configs/train/sft-cpu.yaml", "sft")
    grpo = load_settings(repo / "configs/train/grpo-cpu.yaml", "grpo")
    assert sft.use_cpu and grpo.use_cpu and not grpo.use_vllm
    assert grpo.gradient_accumulation(1) == 2 and grpo.updates_per_step == 1
    assert grpo.model == sft.output_dir + "/final"


def test_filter_warns_when_its_threshold_cannot_drop(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    from reasonrank.training.records import (
        TrainingRecord,
        consistency_floor,
        filter_is_vacuous,
        write_records,
    )

    assert round(consistency_floor(4, 1), 2) == 0.43 and consistency_floor(11, 1) == 0.0
    assert filter_is_vacuous(0.4, [(4, 1), (3, 2)]) == pytest.approx(consistency_floor(4, 1))
    assert filter_is_vacuous(0.5, [(4, 1)]) is None and filter_is_vacuous(0.4, []) is None

    def record(qid: str, size: int) -> TrainingRecord:
        ids = tuple(f"{qid}-{i}" for i in range(size))
        return TrainingRecord("d", qid, ids, ids[::-1], "why", ids[:1])

    short = tmp_path / "short.jsonl"
    write_records([record("a", 4), record("b", 3)], short)
    assert main(["data", "filter", str(short), "--output", str(tmp_path / "k.jsonl"), "-q"]) == 0
    assert "threshold 0.4 cannot drop a record (raise it above 0.43" in caplog.text
    caplog.clear()
    mixed = tmp_path / "mixed.jsonl"
    write_records([record("a", 4), record("c", 20)], mixed)
    assert main(["data", "filter", str(mixed), "--output", str(tmp_path / "k.jsonl"), "-q"]) == 0
    assert "cannot drop" not in caplog.text
