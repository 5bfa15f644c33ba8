"""Listwise prompt templates as data: the built-ins in `core/templates/*.yaml`, user files alike.

A template file is castorini/rank_llm's listwise YAML: single-turn (`method: singleturn_listwise`,
`system_message`, `prefix`, `body`, `suffix`; the user message is `prefix + body per passage +
suffix`) or multi-turn (`method: multiturn_listwise`, `prefix_user`/`prefix_assistant`,
`body_user`/`body_assistant`, `suffix_user`: a conversation), rendered as rank_llm renders them,
plus two optional budget-forcing fields of reasonrank (`close_thought`, `open_answer`); rank_llm's
output regexes are accepted and ignored (reasonrank parses answers itself). docs/templates.md
describes every field.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from reasonrank.errors import ConfigError

BUILTIN_TEMPLATES: tuple[str, ...] = ("reasoning", "rankgpt", "qwen3")
"""The templates shipped in `core/templates/` (`<name>.yaml`), reasoning first (the default)."""

DEFAULT_BODY = "[{rank}] {candidate}\n"
SINGLE_TURN = "singleturn_listwise"
MULTI_TURN = "multiturn_listwise"
# YAML field -> dataclass field, per method (the fields reasonrank uses)
_COMMON = {"method": "", "system_message": "system", "close_thought": "close_thought",
           "open_answer": "open_answer"}
USED_FIELDS = {
    SINGLE_TURN: {**_COMMON, "prefix": "prefix", "body": "body", "suffix": "suffix"},
    MULTI_TURN: {**_COMMON, "prefix_user": "prefix", "prefix_assistant": "prefix_assistant",
                 "body_user": "body", "body_assistant": "body_assistant",
                 "suffix_user": "suffix"},
}
IGNORED_FIELDS = ("output_validation_regex", "output_extraction_regex")
REQUIRED_FIELDS = {SINGLE_TURN: ("body",), MULTI_TURN: ("body_user",)}
# dataclass field -> placeholders it may use
PLACEHOLDERS = {"prefix": ("num", "query"), "body": ("rank", "candidate"),
                "suffix": ("num", "query"), "prefix_assistant": ("num", "query"),
                "body_assistant": ("rank",)}
# rank_llm placeholders reasonrank does not fill, and why
_UNSUPPORTED = {
    "score": "rank_llm's first-stage score; reasonrank does not show scores to the model",
    "psg_ids": "rank_llm's RankLRL passage-id list; reasonrank parses [n] > [m] answers",
}
_METHODS_ELSEWHERE = {
    "pairwise": "pairwise prompts are not supported",
    "pointwise": "pointwise prompts are not supported",
    "rankfid": "RankFiD prompts are not supported",
}
_registered: dict[str, PromptTemplate] = {}


@dataclass(frozen=True)
class PromptTemplate:
    """A listwise prompt. Single-turn: a system message (none if empty) and a user message
    `prefix + body for each passage + suffix`. Multi-turn (`multiturn`, rank_llm's
    `multiturn_listwise`): the prefix as a user turn answered by `prefix_assistant`, each
    passage as a user turn answered by `body_assistant` (without `body_assistant`, the passages
    and the suffix are one user turn), then the suffix as a user turn.

    `prefix`, `suffix` and `prefix_assistant` are `str.format` templates over `{num}` and
    `{query}`, `body` over `{rank}` (1-based) and `{candidate}` (the prepared passage),
    `body_assistant` over `{rank}`. `close_thought` and `open_answer` are the tags budget forcing
    appends to a window that ran out of budget before answering (None: the template has no such
    tag; without `open_answer` an answer cannot be forced).
    """

    name: str
    system: str
    prefix: str
    body: str
    suffix: str
    close_thought: str | None = None
    open_answer: str | None = None
    multiturn: bool = False
    prefix_assistant: str | None = None
    body_assistant: str | None = None

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise ConfigError(f"template {self.name}: {problem}")

    def forced_answer_suffix(self, output: str) -> str | None:
        """What budget forcing appends to `output` so the model answers next: the closing of
        the thought and the opening of the answer, each unless already there (an answer left
        open just continues: ""); None where the template cannot force an answer."""
        if self.open_answer is None:
            return None
        if self.open_answer in output:
            return ""
        parts = [self.close_thought] if self.close_thought and self.close_thought not in output \
            else []
        return "\n".join([*parts, self.open_answer])

    def messages(self, query: str, passages: Sequence[str]) -> tuple[dict[str, str], ...]:
        """The chat messages of one window (`query` and `passages` prepared)."""
        out = [{"role": "system", "content": self.system}] if self.system else []
        if not self.multiturn:
            out.append({"role": "user", "content": self.user_message(query, passages)})
            return tuple(out)
        num = len(passages)
        prefix = self.prefix.format(num=num, query=query)
        suffix = self.suffix.format(num=num, query=query)
        if prefix:
            answer = (self.prefix_assistant or "").format(num=num, query=query)
            out += [{"role": "user", "content": prefix}, {"role": "assistant", "content": answer}]
        if self.body_assistant is None:
            out.append({"role": "user", "content": self._lines(passages) + suffix})
            return tuple(out)
        for i, passage in enumerate(passages, start=1):
            out += [{"role": "user", "content": self.body.format(rank=i, candidate=passage)},
                    {"role": "assistant", "content": self.body_assistant.format(rank=i)}]
        if suffix:
            out.append({"role": "user", "content": suffix})
        return tuple(out)

    def user_message(self, query: str, passages: Sequence[str]) -> str:
        """The single-turn user message."""
        num = len(passages)
        return (
            self.prefix.format(num=num, query=query) + self._lines(passages)
            + self.suffix.format(num=num, query=query)
        )

    def _lines(self, passages: Sequence[str]) -> str:
        if self.body == DEFAULT_BODY:
            return "".join(f"[{i}] {p}\n" for i, p in enumerate(passages, start=1))
        body = self.body
        return "".join(body.format(rank=i, candidate=p) for i, p in enumerate(passages, start=1))


def _problem(t: PromptTemplate) -> str | None:
    """What is wrong with a template's parts (None: nothing), named as in the YAML file."""
    yaml_name = {attr: key for key, attr in
                 USED_FIELDS[MULTI_TURN if t.multiturn else SINGLE_TURN].items()}
    used: set[str] = set()
    for part, allowed in PLACEHOLDERS.items():
        text, name = getattr(t, part), yaml_name.get(part, part)
        if text is None:
            continue
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
        except ValueError as exc:  # a lone "{" or "}"
            return (f"{name} is not a valid format string ({exc}); write a literal brace as "
                    "{{ or }}")
        unknown = sorted(fields - set(allowed))
        if unknown:
            why = "; ".join(f"{{{f}}} is {_UNSUPPORTED[f]}" for f in unknown if f in _UNSUPPORTED)
            names = ", ".join("{" + f + "}" for f in unknown)
            return (f"{name} uses unknown placeholder(s) {names}; allowed in {name}: "
                    f"{', '.join('{' + f + '}' for f in allowed)}" + (f" ({why})" if why else ""))
        if part == "body":
            missing = [f for f in allowed if f not in fields]
            if missing:
                return f"{name} must show {' and '.join('{' + f + '}' for f in missing)}"
        used |= fields
    if "query" not in used:
        return "no part shows the query ({query})"
    if t.multiturn:
        if t.prefix_assistant is None and t.body_assistant is None:
            return "a multi-turn template needs prefix_assistant or body_assistant"
        if t.prefix_assistant is not None and not t.prefix:
            return "prefix_assistant answers prefix_user, which is missing"
        if t.body_assistant is not None and t.prefix and t.prefix_assistant is None:
            return "with prefix_user and body_assistant, prefix_assistant is needed too"
    elif t.prefix_assistant is not None or t.body_assistant is not None:
        return "prefix_assistant and body_assistant need method: multiturn_listwise"
    return None


# -- lookup -----------------------------------------------------------------------------------


def register_template(template: PromptTemplate) -> PromptTemplate:
    """Make `template` available by its name (to `get_template` and `--template`)."""
    _registered[template.name] = template
    return template


def get_template(name: str) -> PromptTemplate:
    """A registered or built-in template by name, or a template file by path (`.yaml`/`.yml`,
    or any existing file)."""
    if name in _registered:
        return _registered[name]
    if name in BUILTIN_TEMPLATES:
        return _builtin(name)
    path = Path(name)
    if name.endswith((".yaml", ".yml")) or "/" in name or path.is_file():
        return load_template(path, name=name)
    raise ConfigError(
        f"unknown template {name!r}; choose one of: {', '.join(template_names())}, or give "
        "the path of a YAML template file (docs/templates.md)"
    )


def template_names() -> list[str]:
    """Built-in and registered template names."""
    return [*BUILTIN_TEMPLATES, *(n for n in _registered if n not in BUILTIN_TEMPLATES)]


@cache
def _builtin(name: str) -> PromptTemplate:
    text = (resources.files("reasonrank.core") / "templates" / f"{name}.yaml").read_text("utf-8")
    return parse_template(text, name=name, source=f"built-in template {name}.yaml")


def load_template(path: str | Path, name: str | None = None) -> PromptTemplate:
    """Read a YAML template file (rank_llm's single-turn listwise format; docs/templates.md).
    Its name is `name`, else the path as given."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"template file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"template file {path} is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"template file {path} cannot be read: {exc}") from None
    return parse_template(text, name=name or str(path), source=str(path))


def parse_template(text: str, name: str, source: str) -> PromptTemplate:
    """A template from YAML text; every problem is one ConfigError that names `source`."""
    data = _parse_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a template is a YAML mapping of fields (method, "
                          f"system_message, prefix, body, suffix, ...); got {type(data).__name__}")
    if "method" not in data:
        raise ConfigError(f"{source}: missing field method ({SINGLE_TURN} or {MULTI_TURN})")
    method = data["method"]
    if method not in USED_FIELDS:
        why = _METHODS_ELSEWHERE.get(str(method), "unknown method")
        raise ConfigError(f"{source}: method {method!r}: {why}; reasonrank renders listwise "
                          f"templates: method {SINGLE_TURN} or {MULTI_TURN}")
    used = USED_FIELDS[method]
    unknown = sorted(str(k) for k in data if k not in used and k not in IGNORED_FIELDS)
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}; fields used "
                          f"with method {method}: {', '.join(used)}; accepted and ignored: "
                          f"{', '.join(IGNORED_FIELDS)}")
    missing = [f for f in REQUIRED_FIELDS[method] if f not in data]
    if missing:
        raise ConfigError(f"{source}: missing field(s) {', '.join(missing)} (each passage's "
                          f"text, such as {DEFAULT_BODY!r})")
    for key, value in data.items():
        optional = key in ("close_thought", "open_answer") or key in IGNORED_FIELDS
        if not isinstance(value, str) and not (optional and value is None):
            raise ConfigError(f"{source}: field {key} must be a string, got "
                              f"{type(value).__name__} ({value!r})")
    fields: dict[str, Any] = {attr: data[key] for key, attr in used.items()
                              if attr and key in data}
    for attr in ("system", "prefix", "suffix"):
        fields.setdefault(attr, "")
    for tag in ("close_thought", "open_answer"):
        if fields.get(tag) == "":
            fields[tag] = None
    try:
        return PromptTemplate(name=name, multiturn=method == MULTI_TURN, **fields)
    except ConfigError as exc:
        problem = str(exc).removeprefix(f"template {name}: ")
        raise ConfigError(f"{source}: {problem}") from None


def _parse_yaml(text: str, source: str) -> Any:
    try:
        import yaml
    except ImportError:  # a base dependency; only a broken install lacks it
        raise ConfigError(f"{source}: reading templates needs pyyaml (pip install pyyaml)") \
            from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and start is not None and (mark is None or start.line != mark.line):
            problem += f" ({context} that starts at line {start.line + 1})"
        raise ConfigError(f"{source}: YAML syntax error{where}: {problem}") from None
