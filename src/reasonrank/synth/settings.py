"""`SynthSettings`: every setting of `reasonrank synth`, defined once (YAML + `--set`).

A setting whose field metadata names a `stage` changes that stage's output (and so every
later stage's); the others (server address, concurrency, budget, prices, export) can change
between runs of the same workdir.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonrank.config import ENDPOINTS
from reasonrank.errors import ConfigError
from reasonrank.settings import build_settings, option, parse_overrides, read_yaml
from reasonrank.synth.assembly import MAX_LIST_SIZE, ListSpec

STAGES = ("candidates", "positives", "negatives", "assemble", "label", "export")
"""The stages, in order; `reasonrank synth all` runs them all."""
TEACHER_STAGES = ("positives", "negatives", "label")
RETRIEVERS = ("bm25", "dense", "rrf")
RESERVED_BODY_KEYS = frozenset({"model", "prompt", "messages", "max_tokens", "temperature",
                                "top_p", "seed", "stream"})
"""Request body keys `extra_body` may not override."""


def _f(default: Any, help: str, stage: str | None = None, **extra: Any) -> Any:
    return option(default, help, stage=stage, **extra)


@dataclass
class SynthSettings:
    """Settings of a synthesis run. `corpus`, `queries`, `teacher_model` and `tokenizer` are
    required; paths in a config file are relative to that file."""

    # inputs
    corpus: str = _f("", "corpus JSONL/TSV (_id/id/docid, title, text)", "candidates", path=True)
    queries: str = _f("", "queries JSONL (id, text, optional answer/gold_answer/answers), or "
                      "TSV without answers", "candidates", path=True)
    dataset: str = _f("synth", "domain name written in every exported record")
    # stage 1: candidate pools
    retriever: str = _f("bm25", "first-stage retriever: bm25, dense or rrf (both, fused)",
                        "candidates", choices=RETRIEVERS)
    pool_depth: int = _f(50, "candidates retrieved per query", "candidates")
    index: str | None = _f(None, "prebuilt index (`reasonrank index`) for bm25/dense instead of "
                           "indexing the corpus", "candidates", path=True)
    dense_model: str = _f("all-MiniLM-L6-v2", "sentence-transformers model (dense, rrf)",
                          "candidates")
    run: str | None = _f(None, "a first-stage run (TREC or JSON) used as the pools instead of "
                         "retrieval", "candidates", path=True)
    # the teacher
    teacher_model: str = _f("", "teacher model name on the server (e.g. deepseek-reasoner)",
                            "positives")
    api_base: str = _f("http://127.0.0.1:8000/v1", "OpenAI-compatible base URL")
    api_key_env: str | None = _f("OPENAI_API_KEY", "environment variable holding the API key")
    endpoint: str = _f("chat", "chat (server applies its template) or completions (rendered "
                       "client-side with `tokenizer`)", "positives", choices=ENDPOINTS)
    concurrency: int = _f(8, "teacher requests in flight at once")
    request_timeout: float = _f(600.0, "seconds before a request times out (then retried)")
    http_retries: int = _f(6, "retries of a request on 429/5xx/timeouts")
    max_new_tokens: int = _f(8192, "new tokens per teacher answer (reasoning included)",
                             "positives")
    temperature: float = _f(0.6, "teacher sampling temperature", "positives")
    top_p: float = _f(1.0, "teacher nucleus sampling", "positives")
    extra_body: dict[str, Any] | None = _f(  # noqa: RUF009 (a field specifier)
        None, "server-specific options merged into every teacher request body (llama.cpp: "
        "{grammar: ...}; vLLM: {structured_outputs: {grammar: ...}}); part of the cache key",
        "positives")
    max_model_len: int | None = _f(None, "the teacher server's context length in tokens: "
                                   "warn before sending when a prompt may not fit")
    malformed_retries: int = _f(2, "retries of a malformed answer (each with another seed) "
                                "before the window is dropped", "positives")
    seed: int = _f(42, "seed of the list shuffles; teacher requests use seed + attempt",
                   "positives")
    # prompts
    tokenizer: str = _f("", "tokenizer id or path (chat template, passage truncation)",
                        "positives", path=True)
    max_passage_tokens: int = _f(512, "truncate passages to N tokens, as at inference",
                                 "positives")
    selection_window: int = _f(20, "candidates shown per selection request", "positives")
    # stage 4: lists
    list_size: int = _f(MAX_LIST_SIZE, f"passages per list (at most {MAX_LIST_SIZE})",
                        "assemble")
    max_positives: int = _f(5, "positives per list, at most", "assemble")
    hard_negatives: int = _f(8, "hard negatives per list, at most", "assemble")
    sampled_negatives: int = _f(7, "negatives sampled from the rest of the pool, at most",
                                "assemble")
    # budget and accounting
    max_cost_usd: float | None = _f(None, "stop sending once this many USD are spent (needs "
                                    "prices)")
    max_total_tokens: int | None = _f(None, "stop sending once this many tokens are spent")
    price_input: float = _f(0.0, "USD per million prompt tokens")
    price_output: float = _f(0.0, "USD per million completion tokens")
    # stage 6: export
    threshold: float = _f(0.4, "self-consistency filter: keep lists with NDCG@10 >= this")
    min_records: int = _f(1, "fail (exit 2, naming the causes) when the export keeps fewer "
                          "records than this")
    export_dir: str = _f("export", "13k-layout output folder (relative to the workdir)")
    sft_path: str | None = _f("export/sft.jsonl", "SFT examples (.jsonl/.parquet; relative to "
                              "the workdir; null: none)")
    rl_path: str | None = _f("export/rl.jsonl", "RL examples (.jsonl/.parquet; relative to the "
                             "workdir; null: none)")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(choices)}; got "
                                  f"{getattr(self, f.name)!r}")
        for name in ("pool_depth", "concurrency", "max_new_tokens", "max_passage_tokens",
                     "selection_window"):
            _at_least(name, getattr(self, name), 1)
        for name in ("malformed_retries", "http_retries", "min_records"):
            _at_least(name, getattr(self, name), 0)
        self.list_spec()  # validates the list settings
        if self.request_timeout <= 0:
            raise ConfigError(f"request_timeout must be > 0, got {self.request_timeout}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError("temperature must be >= 0 and top_p in (0, 1]")
        if not 0 <= self.threshold <= 1:
            raise ConfigError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.price_input < 0 or self.price_output < 0:
            raise ConfigError("price_input and price_output must be >= 0")
        if self.max_cost_usd is not None:
            if self.max_cost_usd <= 0:
                raise ConfigError(f"max_cost_usd must be > 0, got {self.max_cost_usd}")
            if self.price_input == 0 and self.price_output == 0:
                raise ConfigError("max_cost_usd needs prices: set price_input and price_output "
                                  "(USD per million tokens)")
        if self.max_total_tokens is not None:
            _at_least("max_total_tokens", self.max_total_tokens, 1)
        if self.max_model_len is not None:
            _at_least("max_model_len", self.max_model_len, 1)
        clash = sorted(set(self.extra_body or {}) & RESERVED_BODY_KEYS)
        if clash:
            raise ConfigError(f"extra_body cannot set {', '.join(clash)}: the synth settings "
                              "decide those (model, prompt, max_new_tokens, temperature, "
                              "top_p, seed)")

    def list_spec(self) -> ListSpec:
        return ListSpec(self.list_size, self.max_positives, self.hard_negatives,
                        self.sampled_negatives)

    def check_required(self, stage: str) -> None:
        """Raise `ConfigError` naming the settings `stage` needs and lacks."""
        needed = ["corpus"]
        if stage == "candidates":
            needed.append("queries")
        if stage in TEACHER_STAGES:
            needed.append("teacher_model")
        if stage in (*TEACHER_STAGES, "export"):
            needed.append("tokenizer")
        missing = [n for n in needed if not getattr(self, n)]
        if missing:
            raise ConfigError(f"stage {stage!r} needs the setting(s) {', '.join(missing)} (set "
                              "them in the --config file or with --set key=value)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")


def setting_stage(name: str) -> str | None:
    """The first stage whose output setting `name` changes (None: no output changes)."""
    return {f.name: f.metadata.get("stage") for f in dataclasses.fields(SynthSettings)}[name]


def _resolve_paths(values: dict[str, Any], base: Path) -> dict[str, Any]:
    """Path settings made absolute against `base` (a tokenizer hub id is left alone)."""
    paths = {f.name for f in dataclasses.fields(SynthSettings) if f.metadata.get("path")}
    out = dict(values)
    for name in paths & set(values):
        value = values[name]
        if isinstance(value, str) and value:
            candidate = (base / value).expanduser()
            if name != "tokenizer" or candidate.exists():
                out[name] = str(candidate.resolve())
    return out


def merge_settings(saved: Mapping[str, Any] | None, config: str | Path | None,
                   overrides: Sequence[str],
                   flags: Mapping[str, Any] | None = None) -> SynthSettings:
    """Saved settings, then the YAML `config` (paths relative to it), then `key=value`
    overrides (values read as YAML), then the command-line `flags` given (paths of both
    relative to the working directory)."""
    values: dict[str, Any] = dict(saved or {})
    if config is not None:
        path = Path(config)
        values.update(_resolve_paths(read_yaml(path, "synth"), path.resolve().parent))
    values.update(_resolve_paths(parse_overrides(overrides, "synth"), Path.cwd()))
    values.update(_resolve_paths(dict(flags or {}), Path.cwd()))
    source = str(config) if config is not None else "settings"
    return build_settings(SynthSettings, values, source=source)


def output_conflicts(saved: SynthSettings, new: SynthSettings,
                     stages_with_output: Sequence[str]) -> list[tuple[str, str]]:
    """`(setting, stage)` for each changed setting that would change a stage already run."""
    conflicts = []
    for f in dataclasses.fields(SynthSettings):
        stage = f.metadata.get("stage")
        if stage is None or getattr(saved, f.name) == getattr(new, f.name):
            continue
        later = STAGES[STAGES.index(stage):]
        hit = next((s for s in later if s in stages_with_output), None)
        if hit is not None:
            conflicts.append((f.name, hit))
    return conflicts
