"""One definition of every reranking option, shared by the Python API, the CLI and the server.

Each field's metadata carries its help text and its group; the CLI builds its flags from it
(`--window-size` for `window_size`), so a new option is added here once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from reasonrank.errors import ConfigError
from reasonrank.parsing import POLICIES

# Passage truncation presets of the reference (section 1): tokens of the model's tokenizer.
PASSAGE_TOKEN_PRESETS: dict[str, int] = {
    "bright": 512,
    "r2med": 512,
    "math": 512,
    "beir": 100,
    "trec": 100,
    "msmarco": 100,
}
DEFAULT_PASSAGE_TOKENS = 512
ENDPOINTS = ("completions", "chat")


def _opt(default: Any, help: str, group: str = "rerank", **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, "group": group, **extra})


@dataclass
class RerankConfig:
    """Everything that decides how a reranking run behaves. Defaults reproduce ReasonRank."""

    model: str = _opt("liuwenhan/reasonrank-7B", "model id or path (a .gguf file works with hf)")
    backend: str = _opt("hf", "generation backend (hf, openai, vllm, fake)")
    tokenizer: str | None = _opt(None, "tokenizer id or path (default: the model's)")
    template: str = _opt("reasoning", "prompt template (reasoning, rankgpt, qwen3)")
    window_size: int = _opt(20, "passages per window")
    step: int = _opt(10, "window step, back to front")
    top_k: int = _opt(100, "rerank the first-stage top k (rank_end)")
    rank_start: int = _opt(0, "first position the windows may move")
    num_passes: int = _opt(1, "sliding-window passes")
    preset: str | None = _opt(
        None, "passage truncation preset", choices=tuple(PASSAGE_TOKEN_PRESETS)
    )
    max_passage_tokens: int | None = _opt(
        None, f"truncate passages to N tokens (default: preset, else {DEFAULT_PASSAGE_TOKENS})"
    )
    max_new_tokens: int = _opt(3172, "reasoning budget: new tokens per window")
    temperature: float = _opt(0.0, "sampling temperature (0 = greedy)")
    seed: int | None = _opt(None, "sampling seed")
    concurrency: int = _opt(32, "global cap on generations in flight")
    policy: str = _opt("reproduce", "parse policy for windows without an answer", choices=POLICIES)
    force_answer_tokens: int = _opt(
        0, "budget forcing: a window that spends its budget without an answer gets the "
        "template's answer opening (</think> <answer>) and N more tokens (0 = off, the reference)"
    )
    # hf
    device: str = _opt("auto", "torch device: auto, cpu, cuda, cuda:1, mps", group="hf")
    dtype: str = _opt("auto", "torch dtype: auto, bfloat16, float16, float32", group="hf")
    batch_size: int = _opt(8, "most windows decoding together", group="hf")
    hf_batching: str = _opt(
        "continuous", "continuous (a finished window's slot takes the next one) or lockstep "
        "(one generate() call per batch)", group="hf", choices=("continuous", "lockstep"),
    )
    attn_implementation: str = _opt(
        "sdpa", "attention kernel: sdpa, eager, flash_attention_2", group="hf",
        choices=("sdpa", "eager", "flash_attention_2"),
    )
    # openai
    api_base: str = _opt("http://127.0.0.1:8000/v1", "OpenAI-compatible base URL", group="openai")
    api_key_env: str = _opt(
        "OPENAI_API_KEY", "environment variable that holds the API key", group="openai"
    )
    endpoint: str = _opt(
        "completions", "completions (exact rendered prompt) or chat", group="openai",
        choices=ENDPOINTS,
    )
    request_timeout: float = _opt(600.0, "seconds before a request is retried", group="openai")
    max_retries: int = _opt(6, "retries on 429, 5xx and timeouts", group="openai")
    # vllm
    tensor_parallel_size: int = _opt(1, "GPUs per model replica", group="vllm")
    gpu_memory_utilization: float = _opt(0.9, "fraction of GPU memory vLLM may take", group="vllm")
    max_model_len: int | None = _opt(None, "context length (default: the model's)", group="vllm")
    enable_prefix_caching: bool = _opt(True, "reuse the KV cache of shared prefixes", group="vllm")

    def __post_init__(self) -> None:
        for name in ("window_size", "step", "top_k", "num_passes", "max_new_tokens",
                     "concurrency", "batch_size", "tensor_parallel_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.rank_start < 0:
            raise ConfigError(f"rank_start must be >= 0, got {self.rank_start}")
        if self.max_passage_tokens is not None and self.max_passage_tokens < 1:
            raise ConfigError(f"max_passage_tokens must be >= 1, got {self.max_passage_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.force_answer_tokens < 0:
            raise ConfigError(f"force_answer_tokens must be >= 0, got {self.force_answer_tokens}")
        for name in ("policy", "endpoint", "preset", "attn_implementation", "hf_batching"):
            choices = field_choices(name)
            value = getattr(self, name)
            if value is not None and choices and value not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
        from reasonrank.prompts import TEMPLATES

        if self.template not in TEMPLATES:
            raise ConfigError(
                f"unknown template {self.template!r}; choose one of: {', '.join(TEMPLATES)}"
            )
        if self.force_answer_tokens:
            if TEMPLATES[self.template].open_answer is None:
                raise ConfigError(f"template {self.template!r} has no answer tag to force "
                                  "(force_answer_tokens needs reasoning or qwen3)")
            if self.backend == "openai" and self.endpoint == "chat":
                raise ConfigError("force_answer_tokens continues the rendered prompt; use the "
                                  "completions endpoint (the chat endpoint re-renders it)")

    @property
    def passage_tokens(self) -> int:
        """The truncation length in force: explicit, else the preset's, else 512."""
        if self.max_passage_tokens is not None:
            return self.max_passage_tokens
        if self.preset is not None:
            return PASSAGE_TOKEN_PRESETS[self.preset]
        return DEFAULT_PASSAGE_TOKENS

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer or self.model

    @classmethod
    def from_options(cls, **options: Any) -> RerankConfig:
        """Build from keyword options, rejecting unknown names with the list of valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)}; valid options: {', '.join(sorted(names))}"
            )
        return cls(**options)

    def replace(self, **changes: Any) -> RerankConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def field_choices(name: str) -> tuple[str, ...] | None:
    for f in dataclasses.fields(RerankConfig):
        if f.name == name:
            return f.metadata.get("choices")
    raise KeyError(name)
