"""One definition of every reranking option, shared by the Python API, the CLI and the server.

`RerankConfig` holds the backend-independent options; each backend declares its own options
dataclass (a `BackendOptions`, the backend class's `Options`) in its module, and the config
carries the selected backend's as `backend_options`. Keyword options of the backend are routed
there: `RerankConfig(backend="hf", device="cpu")` sets `backend_options.device`. Each field's
metadata carries its help text, choices and group; the CLI builds its flags from it
(`--window-size` for `window_size`), so a new option is added here once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from reasonrank.core.parsing import POLICIES
from reasonrank.errors import ConfigError
from reasonrank.settings import check_fields, choices_of, coerce_values, option

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
DEFAULT_CONCURRENCY = 32
"""--concurrency of a backend whose options say nothing else."""
ENDPOINTS = ("completions", "chat")
OUTPUT_SCORES = ("rank", "reference")

_O = TypeVar("_O", bound="BackendOptions")


def _opt(default: Any, help: str, group: str = "rerank", **extra: Any) -> Any:
    return option(default, help, group=group, **extra)


def _method_names() -> list[str]:
    from reasonrank.core.methods import method_names

    return method_names()


def _backend_names() -> list[str]:
    from reasonrank.backends.registry import backend_names

    return backend_names()


@dataclass
class BackendOptions:
    """The options of one backend. Each backend subclasses it in its own module (fields made
    with `reasonrank.settings.option`, whose metadata builds its CLI flag group) and names the
    subclass as its class's `Options`. This base has no options."""

    def __post_init__(self) -> None:
        check_fields(self)

    def default_concurrency(self) -> int:
        """--concurrency when it is not given (the generations this backend keeps busy)."""
        return DEFAULT_CONCURRENCY

    def check(self, config: RerankConfig) -> None:
        """Raise `ConfigError` when these options cannot serve `config` (cross-checks)."""

    def raw_prompt_problem(self) -> str | None:
        """Why this backend cannot continue a rendered prompt as it is (budget forcing and the
        rank1 method need that), with what to do instead; None when it can."""
        return None

    @classmethod
    def of(cls: type[_O], config: RerankConfig) -> _O:
        """`config.backend_options`, checked to be this class (a backend's `from_config`)."""
        if not isinstance(config.backend_options, cls):
            raise ConfigError(f"backend {config.backend!r} needs {cls.__name__}, got "
                              f"{type(config.backend_options).__name__}")
        return config.backend_options


@dataclass(init=False)
class RerankConfig:
    """Everything that decides how a reranking run behaves. Defaults reproduce ReasonRank.

    Keywords that are not fields are options of the selected backend (`device`, `api_base`,
    `tensor_parallel_size`, ...): they go to `backend_options`, checked against its class.
    """

    model: str = _opt("liuwenhan/reasonrank-7B", "model id or path (a .gguf file works with hf)")
    backend: str = _opt("hf", "generation backend", flag_choices=_backend_names)
    tokenizer: str | None = _opt(None, "tokenizer id or path (default: the model's)")
    method: str = _opt(
        "listwise", "reranking method: listwise (ReasonRank's sliding windows) or rank1 "
        "(Rank1's pointwise reasoning: one prompt per document, scored from log-probabilities)",
        flag_choices=_method_names,
    )
    dataset: str | None = _opt(
        None, "the dataset the queries come from (bright/<task> such as bright/pony, or a BEIR "
        "name such as scifact): rank1 takes its per-dataset instruction from it; listwise "
        "ignores it"
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
        None, "global cap on generations in flight (default: the backend's: 256 for an "
        "engine or a server, a few batches for hf)",
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
    # the selected backend's options: its own dataclass, declared in its module
    backend_options: BackendOptions = option(  # noqa: RUF009 (a field specifier)
        default_factory=BackendOptions, help="the selected backend's options", cli=False)

    def __init__(self, *, backend_options: BackendOptions | Mapping[str, Any] | None = None,
                 **values: Any) -> None:
        for f in dataclasses.fields(RerankConfig):
            if f.name != "backend_options":
                setattr(self, f.name, values.pop(f.name) if f.name in values else f.default)
        self.backend_options = _backend_options(self.backend, backend_options, values)
        self.__post_init__()

    def __post_init__(self) -> None:
        # Not a field: whether concurrency was left to the backend's default (see `replace`).
        self._default_concurrency = self.concurrency is None
        if self.concurrency is None:
            self.concurrency = self.backend_options.default_concurrency()
        check_fields(self)
        from reasonrank.core.methods import method_class
        from reasonrank.core.prompt_template import get_template

        template = get_template(self.template)  # a name or a YAML file; ConfigError says why not
        if self.force_answer_tokens and template.open_answer is None:
            raise ConfigError(f"template {self.template!r} has no answer tag to force "
                              "(force_answer_tokens needs reasoning, qwen3 or a template "
                              "file with open_answer)")
        self.backend_options.check(self)
        method_class(self.method).check_settings(self)  # unknown, or not runnable here

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
    def from_options(cls, source: str = "options", **options: Any) -> RerankConfig:
        """Build from keyword options of any type YAML or flags give (checked and converted
        against the fields' types), rejecting unknown names with the list of valid ones;
        `source` names where they come from in errors."""
        common = {f.name for f in dataclasses.fields(cls)} - {"backend_options"}
        values = coerce_values(cls, {k: v for k, v in options.items() if k in common})
        rest = {k: v for k, v in options.items() if k not in common}
        given = rest.pop("backend_options", None)
        backend = values.get("backend", cls.backend)
        options_cls = _options_class(backend, given)
        _reject_foreign(backend, rest, {f.name for f in dataclasses.fields(options_cls)},
                        source)
        return cls(backend_options=given, **values, **coerce_values(options_cls, rest))

    def replace(self, **changes: Any) -> RerankConfig:
        """A copy with `changes` (backend options included); a changed backend starts from its
        own default options."""
        if getattr(self, "_default_concurrency", False):
            changes.setdefault("concurrency", None)  # follow a changed backend or batch size
        if changes.get("backend", self.backend) != self.backend:
            changes.setdefault("backend_options", None)
        return dataclasses.replace(self, **changes)

    def options_dict(self) -> dict[str, Any]:
        """The backend's options by name (as the CLI flags and YAML files give them)."""
        return dataclasses.asdict(self.backend_options)

    def to_dict(self) -> dict[str, Any]:
        """Every option by name, the backend's included, flat (the shape a YAML file has)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name != "backend_options"}
        return {**values, **self.options_dict()}


def _backend_options(backend: str, given: BackendOptions | Mapping[str, Any] | None,
                     keywords: dict[str, Any]) -> BackendOptions:
    """The options of `backend`: `given` (an instance or a mapping) updated with `keywords`,
    each checked to be an option of that backend."""
    options_cls = _options_class(backend, given)
    valid = {f.name for f in dataclasses.fields(options_cls)}
    if isinstance(given, BackendOptions):
        if not isinstance(given, options_cls):
            raise ConfigError(f"backend_options are {type(given).__name__}; backend "
                              f"{backend!r} takes {options_cls.__name__}")
        _reject_foreign(backend, keywords, valid, "options")
        return dataclasses.replace(given, **keywords) if keywords else given
    values = {**(given or {}), **keywords}
    _reject_foreign(backend, values, valid, "options")
    result: BackendOptions = options_cls(**values)
    return result


def _options_class(backend: str, given: Any) -> type[BackendOptions]:
    """The options class of `backend`: the registered one; for a backend object that is not
    registered (`Reranker(backend=MyBackend(...))`), the class of the options it brings."""
    from reasonrank.backends.registry import backend_names, options_class

    if isinstance(given, BackendOptions) and backend not in backend_names():
        return type(given)
    cls: type[BackendOptions] = options_class(backend)
    return cls


def _reject_foreign(backend: str, values: Mapping[str, Any], valid: set[str],
                    source: str) -> None:
    """Raise `ConfigError` for keys that are neither options nor `backend`'s options, naming
    the backend they belong to when another one has them."""
    unknown = sorted(set(values) - valid)
    if not unknown:
        return
    from reasonrank.backends.registry import backend_names, options_class

    owners: dict[str, list[str]] = {}
    for name in backend_names():
        if name == backend:
            continue
        try:
            names = {f.name for f in dataclasses.fields(options_class(name))}
        except Exception:  # a broken third-party backend owns nothing
            continue
        for key in unknown:
            if key in names:
                owners.setdefault(key, []).append(name)
    if owners:
        key, holders = next(iter(owners.items()))
        where = f"--{key.replace('_', '-')}" if source == "flags" else f"{source}: {key}"
        raise ConfigError(f"{where} is an option of backend {' and '.join(holders)}, "
                          f"not of {backend!r} (choose that backend, or drop the option); "
                          f"options of {backend!r}: {', '.join(sorted(valid)) or 'none'}")
    common = {f.name for f in dataclasses.fields(RerankConfig)} - {"backend_options"}
    raise ConfigError(f"{source}: unknown option(s) {', '.join(unknown)}; valid options with "
                      f"backend {backend!r}: {', '.join(sorted(common | valid))}")


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


def field_choices(name: str) -> tuple[str, ...] | None:
    """The choices of a `RerankConfig` field (None when it has none)."""
    for f in dataclasses.fields(RerankConfig):
        if f.name == name:
            return choices_of(f)
    raise KeyError(name)
