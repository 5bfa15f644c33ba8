"""The vllm backend where vllm is absent or too old, and the per-backend defaults.

Its behaviour against vLLM itself is tested with vLLM's real front end in
tests/backends/test_vllm_contract.py (run by .ci/run in .venv-vllm).
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from dataclasses import dataclass
from typing import Any

import pytest

from reasonrank.backends.base import backend_class
from reasonrank.backends.vllm import VLLMBackend
from reasonrank.config import RerankConfig
from reasonrank.errors import BackendError, ConfigError, MissingDependencyError


def engine_threads() -> int:
    return sum(t.name == "reasonrank-vllm" for t in threading.enumerate())


def test_module_imports_without_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    import reasonrank.backends

    monkeypatch.setitem(sys.modules, "vllm", None)  # any `import vllm` now fails
    # Import the module afresh; both references to the original come back afterwards.
    monkeypatch.setattr(reasonrank.backends, "vllm", sys.modules["reasonrank.backends.vllm"])
    monkeypatch.delitem(sys.modules, "reasonrank.backends.vllm")
    module = importlib.import_module("reasonrank.backends.vllm")
    assert module.VLLMBackend.name == "vllm"
    assert sys.modules["vllm"] is None


def test_missing_vllm_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    before = engine_threads()
    with pytest.raises(MissingDependencyError) as info:
        VLLMBackend("org/reranker-7B")
    assert "reasonrank[vllm]" in str(info.value)
    assert info.value.extra == "vllm"
    assert engine_threads() == before


def test_registered_as_vllm() -> None:
    assert backend_class("vllm") is VLLMBackend
    assert VLLMBackend.name == "vllm"


def _old_vllm() -> types.ModuleType:
    """A vLLM as old as 0.32: an engine without `renderer`. Records shutdown calls."""
    module = types.ModuleType("vllm")
    module.__version__ = "0.32.0"

    @dataclass
    class AsyncEngineArgs:
        model: str
        tokenizer: str
        tensor_parallel_size: int = 1
        gpu_memory_utilization: float = 0.92
        enable_prefix_caching: bool | None = None
        dtype: str = "auto"

    class Engine:
        shutdowns = 0

        def shutdown(self) -> None:
            Engine.shutdowns += 1

    module.AsyncEngineArgs = AsyncEngineArgs
    module.AsyncLLMEngine = types.SimpleNamespace(from_engine_args=lambda args: Engine())
    module.Engine = Engine
    return module


def test_a_vllm_without_renderer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    old = _old_vllm()
    monkeypatch.setitem(sys.modules, "vllm", old)
    before = engine_threads()
    with pytest.raises(BackendError, match=r"vLLM 0\.32\.0 has no renderer.*vllm>=0\.33"):
        VLLMBackend("org/reranker-7B")
    assert old.Engine.shutdowns == 1
    assert engine_threads() == before


def test_unknown_engine_keyword_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", _old_vllm())
    with pytest.raises(ConfigError, match="enforce_eagr"):
        VLLMBackend("org/reranker-7B", engine_kwargs={"enforce_eagr": True})


# --- throughput defaults ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"backend": "vllm"}, 256),
        ({"backend": "openai"}, 256),
        ({"backend": "hf"}, 32),  # 4 x --batch-size 8
        ({"backend": "hf", "batch_size": 2}, 8),
        ({"backend": "fake"}, 32),
        ({"backend": "vllm", "concurrency": 12}, 12),
    ],
)
def test_concurrency_default_per_backend(options: dict[str, Any], expected: int) -> None:
    assert RerankConfig(**options).concurrency == expected


def test_concurrency_default_follows_replace() -> None:
    assert RerankConfig(backend="hf").replace(backend="vllm").concurrency == 256
    assert RerankConfig(backend="hf", concurrency=5).replace(backend="vllm").concurrency == 5


@pytest.mark.parametrize("name", ["max_num_seqs", "max_num_batched_tokens"])
def test_engine_batch_settings_must_be_positive(name: str) -> None:
    assert getattr(RerankConfig(backend="vllm").backend_options, name) is None  # vLLM's own
    with pytest.raises(ConfigError, match=name):
        RerankConfig(backend="vllm", **{name: 0})
