"""One definition of every reranking option, shared by the Python API, the CLI and the server.

Each field's metadata carries its help text and its group; the CLI builds its flags from it
(`--window-size` for `window_size`), so a new option is added here once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from reasonrank.core.parsing import POLICIES
from reasonrank.errors import ConfigError

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
# --concurrency when it is not given: a vLLM engine or an OpenAI-compatible server keeps hundreds
# of sequences decoding at once; the hf backend batches --batch-size of them per step.
BACKEND_CONCURRENCY = {"vllm": 256, "openai": 256}
HF_CONCURRENCY_PER_BATCH = 4
ENDPOINTS = ("completions", "chat")
OUTPUT_SCORES = ("rank", "reference")


def _opt(default: Any, help: str, group: str = "rerank", **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, "group": group, **extra})


@dataclass
class RerankConfig:
    """Everything that decides how a reranking run behaves. Defaults reproduce ReasonRank."""

    model: str = _opt("liuwenhan/reasonrank-7B", "model id or path (a .gguf file works with hf)")
    backend: str = _opt("hf", "generation backend (hf, openai, vllm, fake)")
    tokenizer: str | None = _opt(None, "tokenizer id or path (default: the model's)")
    method: str = _opt(
        "listwise", "reranking method: listwise (ReasonRank's sliding windows) or rank1 "
        "(Rank1's pointwise reasoning: one prompt per document, scored from log-probabilities)"
    )
    template: str = _opt(
        "reasoning", "prompt template: reasoning, rankgpt, qwen3, or a YAML file in rank_llm's "
        "format (docs/templates.md)"
    )
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
    concurrency: int | None = _opt(
        None, "global cap on generations in flight (default: 256 for vllm and openai, "
        f"{HF_CONCURRENCY_PER_BATCH} x --batch-size for hf)",
    )
    policy: str = _opt("reproduce", "parse policy for windows without an answer", choices=POLICIES)
    output_scores: str = _opt(
        "rank", "scores of the reranked list: rank (n+1-rank, strictly decreasing, so every "
        "evaluator sees the reranked order) or reference (each position keeps its first-stage "
        "score, written with 6 decimals like the released code; ties then re-sort by doc id when "
        "scored)", choices=OUTPUT_SCORES,
    )
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
    extra_body: dict[str, Any] | None = _opt(  # noqa: RUF009 (default None)
        None, "JSON object merged into every request body, e.g. '{\"repeat_penalty\": 1.0}' "
        "for llama.cpp's server (whose default 1.1 changes greedy outputs)", group="openai",
    )
    # vllm
    tensor_parallel_size: int = _opt(1, "GPUs per model replica", group="vllm")
    gpu_memory_utilization: float = _opt(0.9, "fraction of GPU memory vLLM may take", group="vllm")
    max_model_len: int | None = _opt(None, "context length (default: the model's)", group="vllm")
    enable_prefix_caching: bool = _opt(True, "reuse the KV cache of shared prefixes", group="vllm")
    max_num_seqs: int | None = _opt(
        None, "sequences decoded at once (default: vLLM's)", group="vllm"
    )
    max_num_batched_tokens: int | None = _opt(
        None, "tokens per engine step (default: vLLM's)", group="vllm"
    )

    def __post_init__(self) -> None:
        from reasonrank.core.options import check_options

        # Not a field: whether concurrency was left to the backend's default (see `replace`).
        self._default_concurrency = self.concurrency is None
        if self.concurrency is None:
            self.concurrency = default_concurrency(self.backend, self.batch_size)
        check_options((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))
        if self.extra_body is not None and (
            not isinstance(self.extra_body, dict)
            or not all(isinstance(k, str) for k in self.extra_body)
        ):
            raise ConfigError(f"extra_body must be a JSON object, got {self.extra_body!r}")
        for name in ("policy", "endpoint", "preset", "attn_implementation", "output_scores",
                     "hf_batching"):
            choices = field_choices(name)
            value = getattr(self, name)
            if value is not None and choices and value not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
        from reasonrank.core.methods import check_method

        check_method(self.method, self.backend, self.endpoint)
        from reasonrank.core.prompt_template import get_template

        template = get_template(self.template)  # a name or a YAML file; ConfigError says why not
        if self.force_answer_tokens:
            if template.open_answer is None:
                raise ConfigError(f"template {self.template!r} has no answer tag to force "
                                  "(force_answer_tokens needs reasoning, qwen3 or a template "
                                  "file with open_answer)")
            if self.backend == "openai" and self.endpoint == "chat":
                raise ConfigError("force_answer_tokens continues the rendered prompt; use the "
                                  "completions endpoint (the chat endpoint re-renders it)")

    def warnings(self) -> list[str]:
        """What these settings do that a user probably did not mean (the CLI logs each)."""
        from reasonrank.core.windows import sliding_windows

        seen = [False] * self.top_k if self.top_k <= 100_000 else []
        for start, end in sliding_windows(len(seen), self.window_size, self.step,
                                          self.rank_start, self.top_k):
            seen[start:end] = [True] * (end - start)
        gaps = _gaps(seen, self.rank_start)
        if not gaps:
            return []
        shown = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in gaps[:3])
        more = ", ..." if len(gaps) > 3 else ""
        missed = sum(b - a + 1 for a, b in gaps)
        return [f"--window-size {self.window_size} with --step {self.step} never shows "
                f"{missed} of the top {self.top_k} positions to the model (0-based: "
                f"{shown}{more}); use a step no larger than the window"]

    @property
    def in_flight(self) -> int:
        """`concurrency` as resolved for the backend (set by `__post_init__` when not given)."""
        if self.concurrency is None:  # pragma: no cover - __post_init__ always sets it
            raise ConfigError("concurrency is not resolved")
        return self.concurrency

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
        if getattr(self, "_default_concurrency", False):
            changes.setdefault("concurrency", None)  # follow a changed backend or batch size
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _gaps(seen: list[bool], start: int) -> list[tuple[int, int]]:
    """The runs of False in `seen[start:]` as inclusive (first, last) positions."""
    gaps: list[tuple[int, int]] = []
    for i in range(start, len(seen)):
        if seen[i]:
            continue
        if gaps and gaps[-1][1] == i - 1:
            gaps[-1] = (gaps[-1][0], i)
        else:
            gaps.append((i, i))
    return gaps


def default_concurrency(backend: str, batch_size: int) -> int:
    """--concurrency when it is not given: 256 for vllm and openai, a few hf batches else."""
    return BACKEND_CONCURRENCY.get(backend, HF_CONCURRENCY_PER_BATCH * max(1, batch_size))


def field_choices(name: str) -> tuple[str, ...] | None:
    for f in dataclasses.fields(RerankConfig):
        if f.name == name:
            return f.metadata.get("choices")
    raise KeyError(name)
