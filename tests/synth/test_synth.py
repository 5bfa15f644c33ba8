"""`reasonrank synth`: the whole pipeline against a local fake teacher, kills, budgets, and the
pure parts (selection parsing, assembly, cache keys, durable logs, accounting, settings)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fake_openai_server import FakeOpenAIServer, Fault, prompt_text_of
from fake_teacher import TOPICS, FakeTeacher, make_corpus
from reasonrank.backends.base import Backend
from reasonrank.cli.main import main as cli_main
from reasonrank.errors import ConfigError, InputFormatError
from reasonrank.synth import (
    AnswerCache,
    Budget,
    BudgetExceeded,
    CachedAnswer,
    Ledger,
    ListSpec,
    Prices,
    TeacherClient,
    Workdir,
    assemble_list,
    list_seed,
    parse_selection,
    parse_teacher_ranking,
    request_key,
    synthesize,
)
from reasonrank.synth.settings import merge_settings
from reasonrank.synth.store import JsonlLog
from reasonrank.training.examples import read_examples
from reasonrank.training.records import ensure_valid, read_records, read_training_set
from reasonrank.types import Generation, Prompt, SamplingParams

SEED = 7
FAULTS = {
    ("positives", "q1", 0): "garbage",        # both windows of q1, then fine
    ("positives", "q2", 0): "out_of_range",
    ("negatives", "q3", 0): "unterminated",
    ("label", "q4", 0): "truncated",          # cut at max_tokens: finish_reason "length"
    ("label", "q0", 0): "partial",            # a ranking missing passages: "repaired"
    ("label", "q5", 0): "garbage",            # every attempt fails: the list is dropped
    ("label", "q5", 1): "garbage",
    ("label", "q5", 2): "garbage",
}
REVERSED = frozenset({"q6"})  # the teacher ranks q6's positives last: the filter drops it
CLEAN_REQUESTS = 50  # 16 + 4 positives windows, 16 + 2 negatives, 8 + 4 labels


def fake_teacher() -> FakeTeacher:
    return FakeTeacher(SEED, FAULTS, REVERSED)


@dataclass(frozen=True)
class Inputs:
    root: Path
    tokenizer: Path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, qwen_tokenizer_dir: Path) -> Inputs:
    root = tmp_path_factory.mktemp("synth_inputs")
    make_corpus(root)
    return Inputs(root, qwen_tokenizer_dir)


def write_config(path: Path, inputs: Inputs, api_base: str, **extra: Any) -> Path:
    settings = {
        "corpus": str(inputs.root / "corpus.jsonl"), "queries": str(inputs.root / "queries.jsonl"),
        "dataset": "minerals", "pool_depth": 20, "teacher_model": "fake-r1",
        "api_base": api_base, "api_key_env": None, "endpoint": "chat", "concurrency": 4,
        "max_new_tokens": 300, "temperature": 0.0, "malformed_retries": 2, "http_retries": 2,
        "tokenizer": str(inputs.tokenizer), "max_passage_tokens": 128, "selection_window": 10,
        "list_size": 20, "max_positives": 5, "hard_negatives": 6, "sampled_negatives": 13,
        "seed": SEED, "price_input": 1.0, "price_output": 2.0, **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items()),
                    encoding="utf-8")
    return path


def run_cli(*args: str) -> tuple[int, str, str]:
    """`reasonrank synth ...` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main(["synth", *args])
    return rc, out.getvalue(), err.getvalue()


def cli_command() -> list[str]:
    """The `reasonrank synth` command line for a subprocess."""
    return [sys.executable, "-m", "reasonrank.cli.main", "synth"]


def summary_counts(stdout: str) -> dict[str, dict[str, float]]:
    """The `stage: key=value ...` lines of the printed summary."""
    out: dict[str, dict[str, float]] = {}
    for line in stdout.splitlines():
        match = re.match(r"^(teacher \w+|\w+): (\w+=\S+(?: \w+=\S+)*)$", line)
        if match:
            out[match.group(1)] = {k: float(v) for k, v in
                                   (p.split("=") for p in match.group(2).split())}
    return out


def bodies_key(body: Any) -> str:
    return json.dumps(body, sort_keys=True)


def export_files(workdir: Path) -> dict[str, bytes]:
    root = workdir / "export"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def stage_records(workdir: Path, name: str) -> dict[str, dict[str, Any]]:
    return {r["qid"]: r for r in JsonlLog(workdir / name).records()}


@dataclass
class Run:
    workdir: Path
    rc: int
    stdout: str
    stderr: str
    bodies: list[dict[str, Any]]


@pytest.fixture(scope="module")
def clean_run(inputs: Inputs, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One uninterrupted `synth all` (chat endpoint, reasoning split out by the server)."""
    root = tmp_path_factory.mktemp("clean")
    with FakeOpenAIServer(answer_request=fake_teacher(), reasoning_split=True) as server:
        config = write_config(root / "synth.yaml", inputs, server.url)
        rc, out, err = run_cli("all", "--workdir", str(root / "wd"), "--config", str(config))
    return Run(root / "wd", rc, out, err, [r.body for r in server.requests])


# --- the whole pipeline -----------------------------------------------------------------------


def test_all_stages_end_to_end(clean_run: Run) -> None:
    assert clean_run.rc == 0, clean_run.stderr
    counts = summary_counts(clean_run.stdout)
    assert counts["candidates"] == {"queries": 8, "with_answer": 8, "pools": 8,
                                    "empty_pools": 0, "pool_passages": 160}
    assert counts["positives"] == {"queries": 8, "skipped": 0, "windows": 16,
                                   "with_positives": 8, "positives": 24, "malformed": 4,
                                   "retried": 4, "dropped_windows": 0, "rejected": 0}
    assert counts["negatives"] == {"queries": 8, "skipped": 0, "windows": 16,
                                   "with_hard_negatives": 8, "hard_negatives": 32,
                                   "malformed": 2, "retried": 2, "dropped_windows": 0,
                                   "rejected": 0}
    assert counts["assemble"] == {"lists": 8, "skipped": 0, "passages": 160, "positives": 24,
                                  "hard_negatives": 32, "sampled": 104, "largest": 20}
    assert counts["label"] == {"lists": 8, "labelled": 7, "dropped": 1, "malformed": 5,
                               "retried": 4, "rejected": 0}
    assert counts["export"] == {"records": 7, "kept": 6, "filtered_out": 1,
                                "sft_examples": 6, "rl_examples": 6}
    assert ("self-consistency filter, dataset minerals: total=7 kept=6 dropped=1"
            in clean_run.stdout)
    assert "filter all" not in clean_run.stdout  # one domain: no "all" row
    # malformed answers by cause, with each cause's fix and where the raw answers are
    assert ("label malformed or rejected answers by cause: truncated=1 no_answer=3 bad_ids=1"
            in clean_run.stdout)
    assert "  truncated=1: the answer hit max_new_tokens (300): raise it" in clean_run.stdout
    assert f"with its raw text: {clean_run.workdir / 'failures.jsonl'}" in clean_run.stdout
    total = counts["teacher total"]
    assert total["sent"] == len(clean_run.bodies) == CLEAN_REQUESTS and total["cached"] == 0
    assert counts["teacher positives"]["sent"] == 20 and counts["teacher label"]["sent"] == 12

    # the output loads with the training reader and passes its checks
    data = ensure_valid(read_training_set(clean_run.workdir / "export"))
    assert [r.qid for r in data.records] == ["q0", "q1", "q2", "q3", "q4", "q7"]
    lists = stage_records(clean_run.workdir, "lists.jsonl")
    for record in data.records:
        topic = TOPICS[int(record.qid[1:])]
        assert record.dataset == "minerals"
        assert record.initial_list == tuple(lists[record.qid]["docids"])
        assert set(record.relevant_docids) == {f"{record.qid}-p{i}" for i in range(3)}
        assert set(record.final_list[:3]) == set(record.relevant_docids)
        assert topic.answer in record.reasoning  # reasoning_content, put back by the backend
        assert record.consistency == 1.0
    dropped = read_records(clean_run.workdir / "export" / "filtered_out.jsonl")
    assert [r.qid for r in dropped] == ["q6"] and dropped[0].consistency < 0.4
    # the passage with a title and "[1]" in its text is stored as the engine shows it
    docs = data.docs
    assert docs.get("q0-p2") == ("Title: Kivu crater Content: Malachite gives the Kivu crater "
                                 "its colour, a survey found [1].")

    # SFT and RL examples load; their prompt is exactly the one the teacher labelled
    sft = read_examples(clean_run.workdir / "export" / "sft.jsonl", ("prompt", "completion"))
    rl = read_examples(clean_run.workdir / "export" / "rl.jsonl",
                       ("prompt", "initial_list", "final_list", "relevant_docids"))
    assert len(sft) == len(rl) == 6
    label_messages = [b["messages"] for b in clean_run.bodies
                      if "Rank the passages" in prompt_text_of(b)]
    for row in sft:
        assert row["messages"][:2] in label_messages
        assert "<answer>" in row["completion"] and "<think>" in row["completion"]
    assert all(r["relevant_docids"] for r in rl)


def test_malformed_answers_are_logged_and_retried(clean_run: Run) -> None:
    failures = JsonlLog(clean_run.workdir / "failures.jsonl").records()
    problems = Counter((f["stage"], f["qid"], f["problem"]) for f in failures)
    assert problems == {("positives", "q1", "no_answer"): 2,
                        ("positives", "q2", "out_of_range"): 2,
                        ("negatives", "q3", "unterminated"): 2,
                        ("label", "q4", "truncated"): 1, ("label", "q0", "repaired"): 1,
                        ("label", "q5", "no_answer"): 3}
    truncated = next(f for f in failures if f["problem"] == "truncated")
    assert truncated["finish_reason"] == "length" and truncated["text"].startswith("<think>")
    # each retry was a different request: the seed is the attempt's
    seeds = Counter(b["seed"] for b in clean_run.bodies)
    assert seeds == {SEED: 40, SEED + 1: 9, SEED + 2: 1}  # 40 windows, 10 retries
    labels = stage_records(clean_run.workdir, "labels.jsonl")
    assert labels["q5"]["status"] == "dropped" and labels["q5"]["malformed"] == 3
    assert labels["q4"]["status"] == "ok" and labels["q4"]["retried"] == 1


def test_accounting_matches_the_server(clean_run: Run) -> None:
    usage = json.loads((clean_run.workdir / "usage.json").read_text())
    total = usage["total"]
    assert total["sent"] == CLEAN_REQUESTS and total["cached"] == 0
    assert total["prompt_tokens"] == sum(len(prompt_text_of(b).split())
                                         for b in clean_run.bodies)
    expected = (total["prompt_tokens"] * 1.0 + total["output_tokens"] * 2.0) / 1e6
    assert total["cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert set(usage["stages"]) == {"positives", "negatives", "label"}


def test_lists_are_reproducible(clean_run: Run) -> None:
    lists = stage_records(clean_run.workdir, "lists.jsonl")
    for qid, record in lists.items():
        assert record["seed"] == list_seed(SEED, qid)
        assert len(record["docids"]) <= 20 and len(set(record["docids"])) == len(
            record["docids"])
        again = assemble_list(qid, record["docids"], record["positives"],
                              record["hard_negatives"], ListSpec(20, 5, 6, 13), SEED)
        assert set(again.docids) == set(record["docids"])


def test_too_few_records_fail_with_the_causes(clean_run: Run, inputs: Inputs,
                                              tmp_path: Path) -> None:
    # min_records above what the export keeps: exit 2, one line saying where records went
    workdir = tmp_path / "copy"
    shutil.copytree(clean_run.workdir, workdir)
    rc, out, err = run_cli("export", "--workdir", str(workdir), "--set", "min_records=7", "-q",
                           "--json")
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert "synth exported only 6 record(s), fewer than min_records=7" in err
    assert "1 records were dropped by the self-consistency filter" in err
    assert "1 lists got no usable ranking" in err
    assert json.loads(out)["stages"]["export"]["kept"] == 6  # the summary is printed first
    # a teacher whose every ranking is cut or unreadable: nothing exported, exit 2
    topics = TOPICS[:2]
    root = tmp_path / "in"
    root.mkdir()
    make_corpus(root, topics)
    faults = {("label", t.qid, a): kind for t, kind in zip(topics, ("truncated", "garbage"),
                                                           strict=True) for a in range(3)}
    with FakeOpenAIServer(answer_request=FakeTeacher(SEED, faults, topics=topics)) as server:
        config = write_config(tmp_path / "synth.yaml", Inputs(root, inputs.tokenizer),
                              server.url)
        rc, out, err = run_cli("all", "--workdir", str(tmp_path / "wd"), "--config",
                               str(config))
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert rc == 2 and len(errors) == 1, err
    assert "synth exported no records, fewer than min_records=1: 2 lists got no usable" in err
    assert "truncated=3 (the answer hit max_new_tokens (300)" in err
    assert "no_answer=3 (no complete <think>" in err
    assert str(tmp_path / "wd" / "failures.jsonl") in err
    assert (tmp_path / "wd" / "export" / "sft.jsonl").read_text() == ""
    assert "label malformed or rejected answers by cause: truncated=3 no_answer=3" in out


def test_rerun_sends_nothing(clean_run: Run, tmp_path: Path) -> None:
    workdir = tmp_path / "wd"
    shutil.copytree(clean_run.workdir, workdir)
    with FakeOpenAIServer(answer_request=fake_teacher()) as server:
        rc, out, err = run_cli("all", "--workdir", str(workdir), "--set",
                               f"api_base={server.url}", "--set", "concurrency=2")
        assert rc == 0, err
        # the library API, with a progress hook
        ticks: list[tuple[str, int, int]] = []
        counts = synthesize(str(workdir), "label", progress=lambda *t: ticks.append(t))
    assert server.requests == []
    assert summary_counts(out)["teacher total"]["sent_this_run"] == 0
    assert export_files(workdir) == export_files(clean_run.workdir)
    assert ticks == [("label", 8, 8)] and counts["label"]["labelled"] == 7
    # the progress bars of the clean run went to stderr
    assert re.search(r"label\s.*8/8", clean_run.stderr)


def test_one_run_per_workdir(tmp_path: Path) -> None:
    workdir = Workdir(tmp_path)
    held = workdir.lock()
    with pytest.raises(ConfigError, match="another `reasonrank synth` run is using"):
        workdir.lock()
    held.close()
    workdir.lock().close()


def test_data_sft_defaults_to_the_teachers_prompts(inputs: Inputs, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """`synth all` with short passages, then `data sft|rl EXPORT` with no option: each prompt
    is byte for byte the labelling prompt the server received (completions endpoint: the
    rendered text)."""
    topics = TOPICS[:2]
    root = tmp_path / "in"
    root.mkdir()
    make_corpus(root, topics)
    teacher = FakeTeacher(SEED, topics=topics)
    with FakeOpenAIServer(answer_request=teacher) as server:
        config = write_config(tmp_path / "synth.yaml", Inputs(root, inputs.tokenizer),
                              server.url, endpoint="completions", max_passage_tokens=12)
        rc, _, err = run_cli("all", "--workdir", str(tmp_path / "wd"), "--config",
                             str(config), "-q")
    assert rc == 0, err
    labelled = {b["prompt"] for b in (r.body for r in server.requests)
                if teacher.stage_of(b["prompt"]) == "label"}
    export = tmp_path / "wd" / "export"
    recorded = json.loads((export / "prompt_settings.json").read_text())
    assert recorded["max_passage_tokens"] == 12 and recorded["template"] == "reasoning"
    assert recorded["tokenizer"] == str(inputs.tokenizer)
    # id_doc/ keeps the full passages: the recorded length is what reproduces the prompts
    data = read_training_set(export)
    assert any("after the rain" in t for r in data.records for t in data.doc_texts(r))
    assert all("after the rain" not in p for p in labelled)
    for kind in ("sft", "rl"):
        output = tmp_path / f"{kind}.jsonl"
        assert cli_main(["data", kind, str(export), "--output", str(output), "-q"]) == 0
        rows = read_examples(output)
        assert len(rows) == len(data.records) == len(labelled) == 2
        assert {row["prompt"] for row in rows} == labelled
        assert rows == read_examples(export / f"{kind}.jsonl")  # what synth exported
        assert rows[0]["prompt_format"] == recorded
    # another length renders other prompts, and says so
    caplog.clear()
    longer = tmp_path / "longer.jsonl"
    assert cli_main(["data", "sft", str(export), "--max-passage-tokens", "512", "--output",
                     str(longer), "-q"]) == 0
    assert not {row["prompt"] for row in read_examples(longer)} & labelled
    assert "max_passage_tokens 12 -> 512" in caplog.text


# --- interruptions ----------------------------------------------------------------------------


class HoldingTeacher:
    """The fake teacher, holding every request after the first `hold_after` until released."""

    def __init__(self, hold_after: int) -> None:
        self.teacher = fake_teacher()
        self.hold_after: int | None = hold_after
        self.count = 0
        self.held: list[str] = []
        self.lock = threading.Lock()
        self.release = threading.Event()

    def __call__(self, body: dict[str, Any]) -> str:
        with self.lock:
            self.count += 1
            hold = self.hold_after is not None and self.count > self.hold_after
            if hold:
                self.held.append(bodies_key(body))
        if hold:
            self.release.wait(30)
        return self.teacher(body)


def start_until_held(command: list[str], teacher: HoldingTeacher,
                     **popen: Any) -> subprocess.Popen:
    """Start the run; return once two requests (the concurrency) are held by the teacher."""
    proc = subprocess.Popen(command, **popen)
    deadline = time.monotonic() + 120
    while len(teacher.held) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def test_kill_midway_and_resume(clean_run: Run, inputs: Inputs, tmp_path: Path) -> None:
    teacher = HoldingTeacher(hold_after=25)
    workdir = tmp_path / "wd"
    with FakeOpenAIServer(answer_request=teacher, answer_delay=0.01) as server:
        config = write_config(tmp_path / "synth.yaml", inputs, server.url, concurrency=2)
        command = [*cli_command(), "all", "--workdir", str(workdir), "--config", str(config),
                   "-q"]
        with open(tmp_path / "first.log", "wb") as log:
            proc = start_until_held(command, teacher, stdout=log, stderr=subprocess.STDOUT)
            # both request slots wait on held requests: every answer sent is cached (a slot is
            # freed only after its answer is written)
            time.sleep(0.2)
            assert proc.poll() is None, (tmp_path / "first.log").read_text()
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        assert not (workdir / "export").exists()
        with teacher.lock:
            teacher.hold_after = None
            held = set(teacher.held)
        teacher.release.set()
        first_run = len(server.requests)
        second = subprocess.run(command, capture_output=True, text=True, timeout=180)
        assert second.returncode == 0, second.stdout + second.stderr
    bodies = Counter(bodies_key(r.body) for r in server.requests)
    twice = {body for body, n in bodies.items() if n > 1}
    # only requests that were in flight at the kill (never answered) were sent again
    assert twice <= held and all(bodies[b] == 2 for b in twice) and len(held) <= 2
    assert 25 < first_run < CLEAN_REQUESTS
    assert len(bodies) == CLEAN_REQUESTS
    assert export_files(workdir) == export_files(clean_run.workdir)
    for name in ("candidates.jsonl", "positives.jsonl", "negatives.jsonl", "lists.jsonl",
                 "labels.jsonl"):
        assert stage_records(workdir, name) == stage_records(clean_run.workdir, name)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_waits_for_answers_in_flight(clean_run: Run, inputs: Inputs,
                                                 tmp_path: Path, sig: int) -> None:
    """SIGTERM/SIGINT: no new request, the ones in flight are answered and cached, exit 130;
    the rerun then sends no request twice at all."""
    teacher = HoldingTeacher(hold_after=25)
    workdir = tmp_path / "wd"
    with FakeOpenAIServer(answer_request=teacher, answer_delay=0.01) as server:
        config = write_config(tmp_path / "synth.yaml", inputs, server.url, concurrency=2)
        command = [*cli_command(), "all", "--workdir", str(workdir), "--config", str(config),
                   "-q"]
        proc = start_until_held(command, teacher, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.poll() is None
        proc.send_signal(sig)
        time.sleep(0.5)  # the signal is handled while both requests are still held
        with teacher.lock:
            teacher.hold_after = None
        teacher.release.set()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "rerun the same command to continue" in err
        first_run = len(server.requests)
        assert first_run == 27  # 25 answered, 2 held and then answered; none started after
        second = subprocess.run(command, capture_output=True, text=True, timeout=180)
        assert second.returncode == 0, second.stdout + second.stderr
    bodies = Counter(bodies_key(r.body) for r in server.requests)
    assert max(bodies.values()) == 1 and len(bodies) == CLEAN_REQUESTS
    assert export_files(workdir) == export_files(clean_run.workdir)


def test_budget_stops_cleanly_and_resumes(clean_run: Run, inputs: Inputs,
                                          tmp_path: Path) -> None:
    workdir = tmp_path / "wd"
    with FakeOpenAIServer(answer_request=fake_teacher()) as server:
        config = write_config(tmp_path / "synth.yaml", inputs, server.url,
                              max_total_tokens=2000)
        rc, out, err = run_cli("all", "--workdir", str(workdir), "--config", str(config))
        assert rc == 2
        assert "teacher budget reached" in err and "max_total_tokens limit 2,000" in err
        assert "rerun the same command" in err and str(workdir) in err
        stopped = len(server.requests)
        assert 0 < stopped < 20  # stopped during positive mining
        usage = json.loads((workdir / "usage.json").read_text())
        assert usage["total"]["sent"] == stopped  # every answer in flight was kept
        assert summary_counts(out)["candidates"]["queries"] == 8
        # a later stage cannot run before the stopped one is finished
        rc, _, err = run_cli("label", "--workdir", str(workdir))
        assert rc == 2 and "stage 'positives' is not finished" in err
        # the cost limit works the same way
        rc, _, err = run_cli("positives", "--workdir", str(workdir), "--set",
                             "max_total_tokens=null", "--set", "max_cost_usd=0.0001")
        assert rc == 2 and "max_cost_usd limit $0.0001" in err
        assert len(server.requests) == stopped
        rc, out, err = run_cli("all", "--workdir", str(workdir), "--set",
                               "max_total_tokens=null", "--set", "max_cost_usd=null")
        assert rc == 0, err
    bodies = Counter(bodies_key(r.body) for r in server.requests)
    assert len(bodies) == sum(bodies.values()) == CLEAN_REQUESTS  # nothing sent twice
    assert summary_counts(out)["teacher total"]["sent"] == CLEAN_REQUESTS
    assert export_files(workdir) == export_files(clean_run.workdir)


# --- settings, endpoints, HTTP faults ---------------------------------------------------------


def test_settings_conflicts_and_order(inputs: Inputs, tmp_path: Path) -> None:
    workdir = str(tmp_path / "wd")
    config = write_config(tmp_path / "synth.yaml", inputs, "http://127.0.0.1:9/v1")
    rc, out, err = run_cli("candidates", "--workdir", workdir, "--config", str(config))
    assert rc == 0, err
    assert summary_counts(out)["candidates"]["pool_passages"] == 160
    saved = json.loads((tmp_path / "wd" / "settings.json").read_text())
    assert saved["pool_depth"] == 20 and saved["corpus"] == str(inputs.root / "corpus.jsonl")
    rc, _, err = run_cli("candidates", "--workdir", workdir, "--set", "pool_depth=10")
    assert rc == 2 and "pool_depth (20 -> 10, used by stage 'candidates')" in err
    rc, _, err = run_cli("label", "--workdir", workdir, "--set", "concurrency=3", "-q")
    assert rc == 2 and "stage 'positives' is not finished (8 queries left)" in err
    rc, out, _ = run_cli("candidates", "--workdir", workdir, "--json", "-q")
    summary = json.loads(out)
    assert rc == 0 and summary["stages"]["candidates"]["queries"] == 8
    assert summary["usage"]["total"]["sent"] == 0
    # settings of stages not run yet, and free settings, may change
    rc, _, err = run_cli("candidates", "--workdir", workdir, "--set", "list_size=10",
                         "--set", "concurrency=3", "-q")
    assert rc == 0, err
    saved = json.loads((tmp_path / "wd" / "settings.json").read_text())
    assert saved["list_size"] == 10 and saved["concurrency"] == 3
    rc, _, err = run_cli("candidates", "--workdir", workdir, "--set", "list_size=21")
    assert rc == 2 and "list_size must be in 1..20" in err
    rc, _, err = run_cli("candidates", "--workdir", workdir, "--set", "pool_deep=3")
    assert rc == 2 and "unknown setting(s) pool_deep" in err


def test_completions_endpoint_rejections_and_server_errors(inputs: Inputs,
                                                          tmp_path: Path) -> None:
    faults = [Fault.server_error(503), Fault.bad_request()]
    with FakeOpenAIServer(answer_request=fake_teacher(), faults=faults) as server:
        config = write_config(tmp_path / "synth.yaml", inputs, server.url,
                              endpoint="completions", concurrency=1)
        rc, out, err = run_cli("candidates", "--workdir", str(tmp_path / "wd"), "--config",
                               str(config), "-q")
        assert rc == 0, err
        rc, out, err = run_cli("positives", "--workdir", str(tmp_path / "wd"))
        assert rc == 0, err
    first = server.requests[0].body
    assert first["prompt"].startswith("<|im_start|>system\nYou are a careful relevance")
    assert "messages" not in first and first["seed"] == SEED
    # the 503 was retried by the backend; the 400 dropped one window and the run went on
    assert server.statuses()[:3] == [503, 400, 200]
    counts = summary_counts(out)["positives"]
    assert counts["rejected"] == 1 and counts["dropped_windows"] == 0
    failures = JsonlLog(tmp_path / "wd" / "failures.jsonl").records()
    assert [f["problem"] for f in failures if f["problem"].startswith("rejected")] == [
        "rejected: HTTP 400"]
    positives = stage_records(tmp_path / "wd", "positives.jsonl")
    assert sum(len(r["unjudged"]) for r in positives.values()) == 10  # one window unjudged


def test_extra_body_is_sent_and_keys_the_cache(inputs: Inputs, tmp_path: Path) -> None:
    topics = TOPICS[:2]
    root = tmp_path / "in"
    root.mkdir()
    make_corpus(root, topics)
    workdir = tmp_path / "wd"
    grammar = {"grammar": 'root ::= "<think>" [^<]+ "</think>"'}
    with FakeOpenAIServer(answer_request=FakeTeacher(SEED, topics=topics)) as server:
        config = write_config(tmp_path / "synth.yaml", Inputs(root, inputs.tokenizer),
                              server.url, extra_body=grammar)
        for stage in ("candidates", "positives"):
            rc, _, err = run_cli(stage, "--workdir", str(workdir), "--config", str(config),
                                 "-q")
            assert rc == 0, err
        first = len(server.requests)
        assert first == 4 and all(r.body["grammar"] == grammar["grammar"]
                                  for r in server.requests)
        # another grammar is another request: refused while positives.jsonl holds answers
        # given under the old one, then sent again (not answered from the cache) once it is
        # deleted
        other = "--set", "extra_body={grammar: 'root ::= \"x\"'}"
        rc, _, err = run_cli("positives", "--workdir", str(workdir), *other, "-q")
        assert rc == 2 and "extra_body" in err and "positives.jsonl" in err
        (workdir / "positives.jsonl").unlink()
        rc, _, err = run_cli("positives", "--workdir", str(workdir), *other, "-q")
        assert rc == 0, err
        assert len(server.requests) == 2 * first
        assert {r.body["grammar"] for r in server.requests[first:]} == {'root ::= "x"'}
        # and back to the first grammar: every answer comes from the cache
        (workdir / "positives.jsonl").unlink()
        rc, _, err = run_cli("positives", "--workdir", str(workdir), "--set",
                             f"extra_body={json.dumps(grammar)}", "-q")
        assert rc == 0, err
        assert len(server.requests) == 2 * first
    rc, _, err = run_cli("candidates", "--workdir", str(tmp_path / "wd2"), "--config",
                         str(config), "--set", "extra_body={seed: 1}")
    assert rc == 2 and "extra_body cannot set seed" in err


def test_warnings_before_work_starts(inputs: Inputs, tmp_path: Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    """An 8k-context server with the default window and budget, and lists too short for the
    filter: both said before any request (the server here is down, so the run then fails)."""
    config = write_config(tmp_path / "synth.yaml", inputs, "http://127.0.0.1:9/v1",
                          http_retries=0)
    defaults = ["--set", "max_new_tokens=8192", "--set", "max_passage_tokens=512",
                "--set", "selection_window=20", "--set", "max_model_len=8192"]
    rc, _, err = run_cli("all", "--workdir", str(tmp_path / "wd"), "--config", str(config),
                         *defaults, "-q")
    assert rc == 2 and "error:" in err  # no server: the positives stage fails
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    label = next(w for w in warnings if w.startswith("label prompts"))
    assert "20 passages x max_passage_tokens 512" in label and "max_model_len 8,192" in label
    assert "Lower max_passage_tokens, list_size or max_new_tokens" in label
    assert any(w.startswith("selection prompts") and "selection_window" in w
               for w in warnings)
    assert not any("cannot drop" in w for w in warnings)  # 20-passage lists can be dropped
    # lists of 4: NDCG@10 >= 0.43 whatever the ranking, so threshold 0.4 drops nothing
    caplog.clear()
    rc, _, err = run_cli("candidates", "--workdir", str(tmp_path / "wd3"), "--config",
                         str(config), "--set", "list_size=4", "--set", "max_positives=1")
    assert rc == 0, err
    rc, _, err = run_cli("export", "--workdir", str(tmp_path / "wd3"), "-q")
    assert rc == 2  # the earlier stages have not run
    assert "score NDCG@10 >= 0.43 however the teacher ranks them" in caplog.text
    assert "raise threshold above 0.43" in caplog.text
    caplog.clear()
    rc, _, _ = run_cli("candidates", "--workdir", str(tmp_path / "wd4"), "--config",
                       str(config), "--set", "list_size=4", "--set", "max_positives=4", "--set",
                       "threshold=0.5", "-q")
    assert rc == 0 and "cannot drop" not in caplog.text


GRAMMAR_GOOD = ["<think>x</think>\n<answer>[2] > [1] > [3]</answer>",
                "<think>a b.</think> <answer>none</answer>",
                "<think>r</think><answer>[3], [1]</answer>"]
GRAMMAR_BAD = ["<answer>[1]</answer>", "<think>x</think><answer>[0]</answer>",
               "<think>x</think><answer>[1] [2]</answer>", "<think></think><answer>[1]</answer>",
               "<think>x</think><answer>[1]</answer> more"]


def docs_grammar() -> str:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "synth.md").read_text()
    match = re.search(r"```gbnf\n(.*?)```", doc, re.DOTALL)
    assert match, "docs/synth.md has no gbnf block"
    import yaml

    # the llama.cpp YAML example carries the same grammar
    example = re.search(r"extra_body:\n  grammar: \|\n((?:    .*\n)+)", doc)
    assert example and yaml.safe_load("g: |\n" + example.group(1))["g"] == match.group(1)
    return match.group(1)


def test_docs_grammar_fits_the_parsers() -> None:
    """What the shipped grammar admits, the answer parsers accept (both stages)."""
    docs_grammar()
    for text in GRAMMAR_GOOD:
        assert parse_selection(text, 3).problem is None
        if "] > [" in text:  # a full ranking of the window
            assert parse_teacher_ranking(text, 3).problem is None


def test_docs_grammar_with_xgrammar() -> None:
    """The grammar parses as GBNF in xgrammar (vLLM's structured-output backend) and admits
    exactly the answer format. Runs where xgrammar is installed (it comes with vLLM)."""
    xgr = pytest.importorskip("xgrammar")
    from xgrammar.testing import _is_grammar_accept_string

    grammar = xgr.Grammar.from_ebnf(docs_grammar())
    assert all(_is_grammar_accept_string(grammar, text) for text in GRAMMAR_GOOD)
    assert not any(_is_grammar_accept_string(grammar, text) for text in GRAMMAR_BAD)


# --- pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "finish", "ids", "problem"), [
    ("<think>x</think> <answer>[3], [1]</answer>", "stop", (2, 0), None),
    ("<think>x</think><answer>[2] [2] 4</answer>", None, (1, 3), None),
    ("<answer>[5]</answer> trailing words", "stop", (4,), None),  # no <think>: accepted
    ("<think>x</think><answer>none</answer>", "stop", (), None),
    ("<think>x</think><answer>None of them.</answer>", "stop", (), None),
    ("<think>x</think><answer></answer>", "stop", (), None),
    ("<think>x</think><answer>[0]</answer>", "stop", (), "out_of_range"),
    ("<think>x</think><answer>[6]</answer>", "stop", (), "out_of_range"),
    ("<think>x</think><answer>the first two</answer>", "stop", (), "no_identifiers"),
    ("<think>x</think><answer>[1], [2]", "stop", (), "unterminated"),
    ("I cannot answer that.", "stop", (), "no_answer"),
    ("<think>[1] and [2]</think>", "stop", (), "no_answer"),
    ("<think>x</think><answer>[1]</answer>", "length", (), "truncated"),
    ("<think>x</think><answer>[\u00b2]</answer>", "stop", (), "invalid_digits"),
])
def test_parse_selection(text: str, finish: str | None, ids: tuple[int, ...],
                         problem: str | None) -> None:
    selection = parse_selection(text, 5, finish)
    assert (selection.ids, selection.problem) == (ids, problem)


def test_parse_teacher_ranking() -> None:
    good = parse_teacher_ranking("<think> why </think>\n<answer>[2] > [3] > [1]</answer>", 3)
    assert good.order == (1, 2, 0) and good.reasoning == "why" and good.problem is None
    cases = {
        "<think>a</think><answer>[2] > [1]</answer>": "repaired",
        "<answer>[2] > [1] > [3]</answer>": "answer_malformed",
        "<think>a</think><answer>[2] > [1] > [3]": "answer_unterminated",
        "no tags at all": "no_answer",
        "<think> </think><answer>[2] > [1] > [3]</answer>": "empty_reasoning",
    }
    for text, problem in cases.items():
        assert parse_teacher_ranking(text, 3).problem == problem, text
    cut = parse_teacher_ranking("<think>a</think><answer>[2] > [1] > [3]</answer>", 3, "length")
    assert cut.problem == "truncated"


def test_assembly_counts_and_reproducibility() -> None:
    pool = [f"d{i}" for i in range(40)]
    positives = ["d3", "d1", "d7", "d9", "d11", "d13", "d15"]
    hard = ["d2", "d4", "d6", "d8", "d3"]  # d3 is a positive: never a negative too
    spec = ListSpec(size=12, max_positives=4, hard_negatives=3, sampled_negatives=10)
    built = assemble_list("q1", pool, positives, hard, spec, seed=5, exclude=["d0", "d5"])
    assert len(built.docids) == 12 and len(set(built.docids)) == 12
    assert len(built.positives) == 4 and set(built.positives) <= set(positives)
    assert len(built.hard_negatives) == 3 and set(built.hard_negatives) <= {"d2", "d4", "d6",
                                                                            "d8"}
    assert len(built.sampled) == 5
    assert not set(built.sampled) & {*positives, *hard, "d0", "d5"}
    assert set(built.docids) == {*built.positives, *built.hard_negatives, *built.sampled}
    assert built.seed == list_seed(5, "q1")
    assert assemble_list("q1", pool, positives, hard, spec, seed=5, exclude=["d0", "d5"]) \
        == built
    assert assemble_list("q1", pool, positives, hard, spec, seed=6).docids != built.docids
    # a small pool: every passage is used, nothing more
    small = assemble_list("q2", ["a", "b", "c"], ["b"], [], ListSpec(), seed=1)
    assert sorted(small.docids) == ["a", "b", "c"] and small.sampled == ("a", "c")
    # the dict round trip keeps everything
    assert type(built).from_dict(built.to_dict()) == built
    with pytest.raises(ConfigError, match="list_size"):
        ListSpec(size=21)
    with pytest.raises(ConfigError, match="max_positives"):
        ListSpec(size=3, max_positives=4)


def test_request_key_is_stable() -> None:
    messages = ({"role": "system", "content": "s"}, {"role": "user", "content": "u"})
    prompt = Prompt("rendered", messages)
    params = SamplingParams(max_new_tokens=10, temperature=0.0, top_p=1.0, seed=1)
    key = request_key("m", "chat", prompt, params)
    canonical = ('{"endpoint":"chat","max_tokens":10,"messages":[{"content":"s","role":"system"},'
                 '{"content":"u","role":"user"}],"model":"m","seed":1,"temperature":0.0,'
                 '"top_p":1.0}')
    assert key == hashlib.sha256(canonical.encode()).hexdigest()
    assert key == "913db30c28288719b1d3c4195fea18fa99217464e59e9dd359c7a5290e18b69a"
    assert request_key("m", "chat", Prompt("other text", messages), params) == key
    assert request_key("m", "completions", prompt, params) != key
    assert request_key("m2", "chat", prompt, params) != key
    assert request_key("m", "chat", prompt, SamplingParams(10, 0.0, 1.0, 2)) != key
    # server options are part of the request: another grammar, another answer
    assert request_key("m", "chat", prompt, params, {}) == key
    with_grammar = request_key("m", "chat", prompt, params, {"grammar": "root ::= \"a\""})
    assert with_grammar != key
    assert request_key("m", "chat", prompt, params, {"grammar": "root ::= \"b\""}) \
        != with_grammar


def test_jsonl_log_survives_torn_lines(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"qid": "a"}\n{"qid": "b"}\n{"qid": "c", "te')
    log = JsonlLog(path)
    assert [r["qid"] for r in log.records()] == ["a", "b"]
    offset = log.append({"qid": "d"})
    assert log.read_at(offset) == {"qid": "d"}
    log.close()
    assert path.read_bytes() == b'{"qid": "a"}\n{"qid": "b"}\n{"qid": "d"}\n'
    path.write_bytes(b'{"qid": "a"}\n{"qid": \n')  # a torn line that still ends in \n
    assert [r["qid"] for r in JsonlLog(path).records()] == ["a"]
    path.write_bytes(b'{"qid": "a"}\nnot json\n{"qid": "c"}\n')
    with pytest.raises(InputFormatError, match=":2: corrupt record"):
        JsonlLog(path).records()


def test_answer_cache_round_trip(tmp_path: Path) -> None:
    cache = AnswerCache(tmp_path / "cache.jsonl")
    answer = CachedAnswer("k1", "label", "<think>x</think>", "stop", 10, 3)
    cache.put(answer)
    assert cache.get("k1") == answer and "k1" in cache and cache.get("k2") is None
    cache.close()
    again = AnswerCache(tmp_path / "cache.jsonl")
    assert again.get("k1") == answer and len(again) == 1
    assert [e.prompt_tokens for e in again.entries()] == [10]


def test_ledger_and_budget() -> None:
    ledger = Ledger(Prices(input_per_million=2.0, output_per_million=8.0))
    ledger.add_sent("positives", 1_000_000, 0)
    ledger.add_sent("label", 0, 500_000)
    ledger.add_cached("label")
    assert ledger.spent_usd == pytest.approx(6.0) and ledger.spent_tokens == 1_500_000
    assert not Budget(max_cost_usd=6.5).reached(ledger)
    assert Budget(max_cost_usd=6.0).reached(ledger)
    assert Budget(max_total_tokens=1_500_000).reached(ledger)
    error = Budget(max_cost_usd=6.0).exceeded(ledger, "rerun.")
    assert isinstance(error, BudgetExceeded)
    assert str(error) == ("teacher budget reached: $6.0000 spent of the max_cost_usd limit $6. "
                          "rerun.")
    data = ledger.to_dict()
    assert data["total"]["sent"] == 2 and data["stages"]["label"]["cached"] == 1
    fresh = Ledger()
    fresh.load_cached_counts(data)
    assert fresh.stage("label").cached == 1 and fresh.stage("label").run_cached == 0


class _SlowBackend(Backend):
    name = "slow"

    def __init__(self) -> None:
        self.calls = 0

    @property
    def tokenizer(self) -> Any:  # pragma: no cover - unused
        return None

    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        self.calls += 1
        await asyncio.sleep(0.02)
        return Generation(f"answer to {prompt.text}", None, None, "stop")

    @classmethod
    def from_config(cls, config: Any) -> Backend:  # pragma: no cover - unused
        return cls()


def test_teacher_client_caches_shares_and_stops(tmp_path: Path) -> None:
    backend = _SlowBackend()
    cache = AnswerCache(tmp_path / "cache.jsonl")
    ledger = Ledger()
    client = TeacherClient(backend, cache, ledger, Budget(max_total_tokens=30), model="m",
                           endpoint="completions", concurrency=2,
                           count_tokens=lambda text: len(text.split()), budget_hint="hint")
    params = SamplingParams(max_new_tokens=5)

    async def scenario() -> list[Any]:
        same = [client.ask(Prompt("p one", ()), params, "label") for _ in range(3)]
        first = await asyncio.gather(*same)  # identical requests in flight: one call
        await client.ask(Prompt("p one", ()), params, "label")  # from the cache
        others = [client.ask(Prompt(f"p {i}", ()), params, "label") for i in range(10)]
        return [*first, *await asyncio.gather(*others, return_exceptions=True)]

    results = asyncio.run(scenario())
    assert [r.cached for r in results[:3]] == [False, True, True]
    stopped = [r for r in results[3:] if isinstance(r, BudgetExceeded)]
    answered = [r for r in results[3:] if not isinstance(r, BaseException)]
    assert stopped and answered and "hint" in str(stopped[0])
    assert backend.calls == 1 + len(answered) == ledger.stage("label").sent == len(cache)
    assert ledger.stage("label").cached == 3 and ledger.stage("label").estimated == backend.calls
    assert ledger.spent_tokens >= 30


def test_examples_checked_against_the_models_chat_template(qwen_tokenizer: Any) -> None:
    from reasonrank.training.prompt_format import (
        PromptFormat,
        chat_template_digest,
        check_examples,
    )

    ours = PromptFormat("reasoning", 512, "tok", chat_template_digest(qwen_tokenizer))
    rows = [{"prompt": "p", "prompt_format": ours.to_dict()}, {"prompt": "q"}]
    assert check_examples(rows, qwen_tokenizer, "m", "f.jsonl") == []

    class Other:
        chat_template = "{{ messages }}"

    warnings = check_examples(rows, Other(), "other-model", "f.jsonl")
    assert len(warnings) == 1 and "not other-model's" in warnings[0]
    assert "--tokenizer other-model" in warnings[0]
    short = [{"prompt_format": {**ours.to_dict(), "max_passage_tokens": 48}}]
    assert "--max-passage-tokens 48" in check_examples(short, qwen_tokenizer, "m", "f")[0]
    assert ours.differences(PromptFormat("rankgpt", 48, "x", "other")) == [
        "template reasoning -> rankgpt", "max_passage_tokens 512 -> 48",
        "chat template of tok -> that of x"]


def test_settings_from_yaml_paths_and_types(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    config = tmp_path / "conf" / "synth.yaml"
    config.write_text("corpus: data/corpus.jsonl\ntokenizer: Qwen/Qwen2.5-7B-Instruct\n"
                      "price_input: 5e-1\nmax_total_tokens: 1000\n", encoding="utf-8")
    settings = merge_settings(None, config, ["queries=q.jsonl", "temperature=0"])
    assert settings.corpus == str((tmp_path / "conf" / "data" / "corpus.jsonl").resolve())
    assert settings.queries == str(Path.cwd() / "q.jsonl")
    assert settings.tokenizer == "Qwen/Qwen2.5-7B-Instruct"  # a hub id stays as it is
    assert settings.price_input == 0.5 and settings.temperature == 0.0
    with pytest.raises(ConfigError, match="max_cost_usd needs prices"):
        merge_settings(None, None, ["max_cost_usd=1"])
    with pytest.raises(ConfigError, match="setting pool_depth must be int"):
        merge_settings(None, None, ["pool_depth=many"])
    with pytest.raises(ConfigError, match="retriever must be one of bm25, dense, rrf"):
        merge_settings(None, None, ["retriever=splade"])
    with pytest.raises(ConfigError, match="needs the setting"):
        merge_settings(None, None, []).check_required("label")


def test_exported_examples_train_and_rerank(clean_run: Run, tiny_qwen_dir: Path,
                                            tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """The model builder's whole path: synthesised SFT examples train a model (one step) that
    the reranker then loads."""
    pytest.importorskip("trl")
    from reasonrank.reranker import Reranker
    from reasonrank.training.settings import SFTSettings
    from reasonrank.training.sft import train_sft

    result = train_sft(SFTSettings(
        model=str(tiny_qwen_dir), train_file=str(clean_run.workdir / "export" / "sft.jsonl"),
        output_dir=str(tmp_path / "sft"), max_steps=1, gradient_accumulation=1,
        precision="fp32", use_cpu=True, gradient_checkpointing=False, progress="none",
        warmup_ratio=0.0, logging_steps=1))
    assert result.global_step == 1 and result.last("loss") is not None
    # the examples say how their prompts were rendered: the same chat template as the
    # model's (no warning about it), passages cut to 128 tokens (the rerank flag is named)
    assert "--max-passage-tokens 128" in caplog.text and "chat template" not in caplog.text
    data = read_training_set(clean_run.workdir / "export")
    record = data.records[0]
    with Reranker(str(result.final_checkpoint), backend="hf", max_new_tokens=4,
                  max_passage_tokens=16, device="cpu") as rr:
        ranked = rr.rerank(data.query_text(record), data.doc_texts(record))
    assert len(ranked) == len(record.initial_list)
