"""The documentation stays true to the code.

- Every command line in a fenced shell block of README.md or docs/*.md that runs `reasonrank`
  (`reasonrank ...`, `.venv/bin/reasonrank ...`, `python -m reasonrank.cli ...`, `accelerate
  launch ... -m reasonrank.cli ...`) parses with the real parser: its commands, flags, choices
  and value types exist. Required options may be left out (docs elide with `...`); nothing runs.
- Every `reasonrank.xxx.yyy` dotted name in backticks, and every `from reasonrank... import`
  in a fenced Python block, imports. A module whose import needs a missing optional extra is
  skipped; a missing reasonrank module or attribute fails.
- README.md stays under 150 lines, and its Python example runs on the fake backend.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reasonrank.cli.main import build_parser
from reasonrank.errors import MissingDependencyError

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
_FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
_COMMAND = re.compile(r"^(?:\$\s+)?(?:\S*/)?reasonrank\s+(.*)$")
_MODULE_CLI = re.compile(r"(?:^|\s)-m\s+reasonrank\.cli\s+(.*)$")
_SUBSTITUTION = re.compile(r"\$\([^()]*\)")
_STOP_TOKENS = {"|", "||", "&", "&&", ";", "<", ">", ">>", "2>", "(", ")"}
_INLINE_CODE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_DOTTED = re.compile(r"(?<![\w./-])reasonrank(?:\.[A-Za-z_]\w*)+")
_FROM_IMPORT = re.compile(r"^\s*from\s+(reasonrank[\w.]*)\s+import\s+\(?([\w\s,]+)\)?")
_IMPORT = re.compile(r"^\s*import\s+(reasonrank[\w.]*)")

@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the block's first content line
    lang: str
    lines: tuple[str, ...]

    def where(self, offset: int) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line + offset}"


def fenced_blocks(path: Path) -> Iterator[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, lang, start = match.group(2), match.group(3).lower(), i + 1
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            i += 1
        yield Block(path, start + 1, lang, tuple(lines[start:i]))
        i += 1


def shell_commands(block: Block) -> Iterator[tuple[str, str]]:
    """(`file:line`, the reasonrank arguments) of each command line in a shell block."""
    i = 0
    while i < len(block.lines):
        first = i
        text = block.lines[i].strip()
        while text.endswith("\\") and i + 1 < len(block.lines):
            i += 1
            text = text[:-1] + " " + block.lines[i].strip()
        i += 1
        match = _COMMAND.match(text) or _MODULE_CLI.search(text)
        if match:
            yield block.where(first), match.group(1)


def tokens(args: str) -> list[str]:
    lexer = shlex.shlex(_SUBSTITUTION.sub("SUBSTITUTED", args), posix=True,
                        punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    out: list[str] = []
    for token in lexer:
        if token in _STOP_TOKENS:
            break
        if token != "...":  # an elision in the docs
            out.append(token)
    return out


def all_commands() -> list[tuple[str, str]]:
    return [cmd for path in DOC_FILES for block in fenced_blocks(path)
            if block.lang in SHELL_LANGS for cmd in shell_commands(block)]


def _lenient(parser: argparse.ArgumentParser) -> None:
    """Documented commands may leave out required options; positionals stay required."""
    for action in parser._actions:
        if action.option_strings:
            action.required = False
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _lenient(sub)


def _subparser(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[str, Any]:
    """The command path (`data sft`) and the deepest subparser that `argv` selects."""
    names: list[str] = []
    for token in argv:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or token not in subs[0].choices:
            break
        names.append(token)
        parser = subs[0].choices[token]
    return " ".join(names), parser


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    parser = build_parser()
    _lenient(parser)
    return parser


COMMANDS = all_commands()


def test_docs_have_commands() -> None:
    assert len(COMMANDS) > 30, "the fenced-block scanner finds no commands any more"


@pytest.mark.parametrize(("where", "args"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_parses(parser: argparse.ArgumentParser, where: str,
                                   args: str) -> None:
    argv = tokens(args)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(argv)
            return
        except SystemExit as exc:
            if exc.code == 0:
                return
    message = err.getvalue().strip()
    pytest.fail(f"{where}: `reasonrank {args}` does not parse: {message}")


def _missing_extra(exc: ImportError) -> bool:
    name = getattr(exc, "name", None) or ""
    return isinstance(exc, ModuleNotFoundError) and bool(name) and \
        name.split(".")[0] != "reasonrank"


def resolve(dotted: str) -> str | None:
    """None when `dotted` imports; else why not. Skips (pytest) for a missing extra."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        module_name = ".".join(parts[:i])
        try:
            obj: Any = importlib.import_module(module_name)
        except MissingDependencyError as exc:
            pytest.skip(f"{dotted}: {exc}")
        except ModuleNotFoundError as exc:
            if _missing_extra(exc):
                pytest.skip(f"{dotted}: needs {exc.name} (an optional extra)")
            if exc.name is not None and module_name.startswith(exc.name):
                continue  # not a module: try the parent, then attributes
            return f"importing {module_name} fails: {exc}"
        except ImportError as exc:
            return f"importing {module_name} fails: {exc}"
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return f"{'.'.join(parts[:parts.index(attr)])} has no attribute {attr!r}"
            obj = getattr(obj, attr)
        return None
    return "no such module"


def dotted_names() -> list[tuple[str, str]]:
    found: dict[str, str] = {}
    for path in DOC_FILES:
        in_block = False
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _FENCE.match(line):
                in_block = not in_block
                continue
            where = f"{path.relative_to(ROOT)}:{n}"
            if in_block:
                names: list[str] = []
                if m := _FROM_IMPORT.match(line):
                    names = [f"{m.group(1)}.{name.strip()}" for name in m.group(2).split(",")
                             if name.strip()]
                elif m := _IMPORT.match(line):
                    names = [m.group(1)]
            else:
                names = [d for span in _INLINE_CODE.findall(line) for d in _DOTTED.findall(span)]
            for name in names:
                found.setdefault(name, where)
    return sorted((where, name) for name, where in found.items())


NAMES = dotted_names()


def test_docs_have_dotted_names() -> None:
    assert len(NAMES) > 20, "the dotted-name scanner finds no names any more"


@pytest.mark.parametrize(("where", "name"), NAMES, ids=[n for _, n in NAMES])
def test_documented_name_imports(where: str, name: str) -> None:
    problem = resolve(name)
    assert problem is None, f"{where}: `{name}`: {problem}"


def test_resolve_tells_a_missing_name_from_a_missing_extra() -> None:
    assert resolve("reasonrank.core.parsing") is None
    assert resolve("reasonrank.Reranker") is None
    assert "no attribute 'no_such_name'" in (resolve("reasonrank.core.no_such_name") or "")
    assert resolve("reasonrank.no_such_module.x") is not None


def test_resolve_skips_a_module_whose_extra_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """`reasonrank.integrations.langchain` without langchain-core: a skip, not a failure."""
    monkeypatch.setitem(sys.modules, "langchain_core", None)  # import raises ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "reasonrank.integrations.langchain", raising=False)
    with pytest.raises(pytest.skip.Exception, match="langchain"):
        resolve("reasonrank.integrations.langchain.ReasonRankCompressor")


def test_tokens_cut_shell_syntax_and_comments() -> None:
    assert tokens("parse --num 20 < out.txt") == ["parse", "--num", "20"]
    assert tokens("rerank ... --top-k 20 -q   # a comment") == ["rerank", "--top-k", "20", "-q"]
    assert tokens("synth all --set api_base=$(cat x.txt)") == [
        "synth", "all", "--set", "api_base=SUBSTITUTED"]
    assert tokens("rerank --extra-body '{\"repeat_penalty\": 1.0}'") == [
        "rerank", "--extra-body", '{"repeat_penalty": 1.0}']


def test_a_wrong_flag_is_caught(parser: argparse.ArgumentParser) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit):
        parser.parse_args(tokens("rerank --windowsize 20"))
    assert "--windowsize" in err.getvalue()


# Flags of other programs that the docs mention (accelerate, benchmarks/*.py is read below).
OTHER_FLAGS = {"--config_file"}
_FLAG = re.compile(r"(?<![\w-])--[a-z][\w-]*")
_ADD_ARGUMENT = re.compile(r"add_argument\(\s*(?:\"-\w\",\s*)?\"(--[\w-]+)\"")


def _all_flags(parser: argparse.ArgumentParser) -> set[str]:
    flags: set[str] = set()
    for action in parser._actions:
        flags.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= _all_flags(sub)
    return flags


def test_every_flag_mentioned_exists(parser: argparse.ArgumentParser) -> None:
    """Flags in prose and inline code too: each belongs to some reasonrank command, a
    benchmark script, or `OTHER_FLAGS`."""
    known = _all_flags(parser) | OTHER_FLAGS
    for script in (ROOT / "benchmarks").glob("*.py"):
        known |= set(_ADD_ARGUMENT.findall(script.read_text(encoding="utf-8")))
    unknown = [f"{path.relative_to(ROOT)}:{n}: {flag}" for path in DOC_FILES
               for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
               for flag in _FLAG.findall(line) if flag not in known]
    assert not unknown, "flags that no command has:\n" + "\n".join(unknown)


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 150, f"README.md has {len(lines)} lines; move details to docs/"


def test_readme_python_example_runs_on_the_fake_backend(
    qwen_tokenizer_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's first Python block, with `models/qwen25-tokenizer` the offline tokenizer."""
    blocks = [b for b in fenced_blocks(ROOT / "README.md") if b.lang == "python"]
    assert blocks, "README.md has no Python example"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "qwen25-tokenizer").symlink_to(qwen_tokenizer_dir)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile("\n".join(blocks[0].lines), blocks[0].where(0), "exec"), namespace)
    # the fake backend ranks by query-term overlap: d7 shares 4 terms, "1" 2, "0" 1
    assert namespace["result"].docids == ["d7", "1", "0"]
    assert "<answer>" in out.getvalue()
