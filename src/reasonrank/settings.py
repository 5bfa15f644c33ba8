"""One settings mechanism for every command (TRL's `TrlParser` is the model).

A command's settings are dataclasses whose fields carry their help, choices, group, range and
flag in their metadata (`option(...)`). From them:

- `add_flags` builds the command's flags (`window_size` -> `--window-size`), each defaulting to
  "not given" so an omitted flag keeps the file's value or the field's default;
- `add_file_flags` adds `--config FILE.yaml` and `--set KEY=VALUE` (repeatable);
- `given_values` merges the file, then `--set`, then the flags given: explicit flags override
  the file, the file overrides the defaults;
- `build_settings` builds the dataclass from such a mapping, rejecting unknown keys with the
  list of valid ones and checking each value against its type; `check_fields` checks choices
  and ranges (`reasonrank.core.options`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from reasonrank.core.options import RULES, Range, check_range
from reasonrank.errors import ConfigError, require

__all__ = ["add_file_flags", "add_flags", "build_settings", "check_fields", "choices_of",
           "coerce_values", "file_values", "flag_dest", "given_values", "option",
           "parse_overrides", "read_yaml", "reject_unknown"]

T = TypeVar("T")
Choices = Sequence[str] | Callable[[], Sequence[str]]


def option(default: Any = dataclasses.MISSING, help: str = "", *, group: str | None = None,
           choices: Choices | None = None, range: Range | None = None,
           flag: str | None = None, cli: bool = True,
           default_factory: Any = dataclasses.MISSING, **extra: Any) -> Any:
    """A settings field: `help` (flag help, docs), `group` (flag group), `choices` (a sequence,
    or a function returning one), `range` (checked with the option rules), `flag` (the flag
    name without dashes, default: the field name with dashes), `cli=False` (no flag).
    `flag_choices=` (a function) limits the flag only (a registry the value is checked
    against elsewhere)."""
    metadata = {"help": help, "group": group, "choices": choices, "range": range,
                "flag": flag, "cli": cli, **extra}
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata=metadata)


def choices_of(f: dataclasses.Field[Any]) -> tuple[str, ...] | None:
    """The choices a field declares (evaluated when given as a function)."""
    choices = f.metadata.get("choices")
    if choices is None:
        return None
    return tuple(choices() if callable(choices) else choices)


def range_of(f: dataclasses.Field[Any]) -> Range | None:
    """The range a field declares, else the shared rule of its name (`core.options.RULES`)."""
    rule = f.metadata.get("range")
    return rule if rule is not None else RULES.get(f.name)


def check_fields(obj: Any) -> None:
    """Raise `ConfigError` when a field of the dataclass `obj` breaks its choices or range."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        choices = choices_of(f)
        if choices and isinstance(value, str) and value not in choices:
            raise ConfigError(f"{f.name} must be one of {', '.join(choices)}; got {value!r}")
        rule = range_of(f)
        if rule is not None:
            check_range(rule, value, f.name)


# --- building settings from mappings ---------------------------------------------------------


def reject_unknown(values: Iterable[str], valid: Iterable[str], source: str,
                   what: str = "") -> None:
    """Raise `ConfigError` naming the unknown keys of `values` and listing the valid ones."""
    known = set(valid)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}; valid settings"
                          f"{what}: {', '.join(sorted(known))}")


def coerce_values(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` (all fields of `cls`) checked against their field types, converting what
    YAML and flags leave ambiguous (`5e-6` read as a string, a list for a tuple)."""
    hints = typing.get_type_hints(cls)
    return {name: _coerce(name, value, hints[name]) for name, value in values.items()}


def build_settings(cls: type[T], values: Mapping[str, Any],
                   source: str = "settings") -> T:
    """`cls(**values)` with unknown keys rejected and each value checked against its type."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    reject_unknown(values, names, source, f" for {cls.__name__}")
    coerced = coerce_values(cls, values)
    from reasonrank.core.options import check_options

    check_options(coerced)
    return cls(**coerced)


def _yaml(extra: str | None) -> Any:
    return require("yaml", extra or "", "reading YAML settings",
                   None if extra else "pip install pyyaml")


def read_yaml(path: Path, extra: str | None = None) -> dict[str, Any]:
    """A YAML mapping of settings (`extra` names the extra that installs pyyaml)."""
    yaml = _yaml(extra)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory; give a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    from reasonrank.io._files import read_text

    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return {str(k): v for k, v in data.items()}


def parse_overrides(overrides: Sequence[str], extra: str | None = None) -> dict[str, Any]:
    """`key=value` overrides as a mapping, each value read as YAML (`lora=true`,
    `learning_rate=1e-4`); `extra` names the extra that installs pyyaml."""
    yaml = _yaml(extra)
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise ConfigError(f"override {key.strip()}={raw!r}: not a valid value") from None
    return out


# --- flags -----------------------------------------------------------------------------------


def flag_dest(f: dataclasses.Field[Any]) -> str:
    """The argparse dest of a field's flag (its `flag` name with underscores)."""
    return str(f.metadata.get("flag") or f.name).replace("-", "_")


def add_flags(parser: argparse.ArgumentParser, cls: type, *, title: str = "options",
              only: Iterable[str] | None = None, exclude: Iterable[str] = (),
              required: Iterable[str] = (),
              shared: dict[str, argparse.Action] | None = None,
              owner: str | None = None,
              keep_defaults: bool = False) -> dict[str, argparse.Action]:
    """Add a flag for each field of the dataclass `cls` (`only` those, less `exclude`;
    `required` ones must be given). A field's `group` metadata names its argument group
    ("{group} options"), else `title`. Flags default to "not given" (`argparse.SUPPRESS`),
    or with `keep_defaults` to the field's default (a command that reads no settings file).

    `shared` maps dests already added by another class (two backends with a `dtype`): such a
    field adds no second flag; the first one's help then names `owner` too. Returns `shared`
    updated with this class's flags."""
    shared = {} if shared is None else shared
    wanted = None if only is None else set(only)
    skip, must = set(exclude), set(required)
    hints = typing.get_type_hints(cls)
    groups: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True) or f.name in skip:
            continue
        if wanted is not None and f.name not in wanted:
            continue
        dest = flag_dest(f)
        if dest in shared:
            if owner:
                action = shared[dest]
                action.help = f"{action.help} [also {owner}]"
            continue
        name = (f.metadata.get("group") and f"{f.metadata['group']} options") or title
        if name not in groups:
            groups[name] = _group(parser, name)
        kwargs = _flag_kwargs(f, hints[f.name])
        if f.name in must:
            kwargs["required"] = True
        elif keep_defaults and f.default is not dataclasses.MISSING:
            kwargs["default"] = f.default
        shared[dest] = groups[name].add_argument("--" + dest.replace("_", "-"), dest=dest,
                                                 **kwargs)
    return shared


def _group(parser: argparse.ArgumentParser, title: str) -> Any:
    """The parser's argument group called `title` (made on first use)."""
    for group in parser._action_groups:
        if group.title == title:
            return group
    return parser.add_argument_group(title)


def add_file_flags(parser: argparse.ArgumentParser, what: str = "settings") -> None:
    """`--config FILE.yaml` and `--set KEY=VALUE` (repeatable): the file's keys are the
    command's settings; flags given on the command line override both."""
    group = _group(parser, "settings file")
    group.add_argument("--config", metavar="FILE", default=None,
                       help=f"YAML mapping of {what} (flag names with underscores); "
                            "explicit flags override it")
    group.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                       dest="overrides", help="override one setting of the file (value read "
                       "as YAML; repeatable), e.g. --set max_new_tokens=2048")


def file_values(args: argparse.Namespace,
                extra: str | None = None) -> tuple[dict[str, Any], str]:
    """The `--config` file's settings then the `--set` overrides, and a name for errors."""
    values: dict[str, Any] = {}
    config = getattr(args, "config", None)
    if config is not None:
        values.update(read_yaml(Path(config), extra))
    overrides = getattr(args, "overrides", None) or []
    values.update(parse_overrides(overrides, extra))
    source = str(config) if config is not None else "--set" if overrides else "flags"
    return values, source


def given_values(args: argparse.Namespace, *classes: type) -> dict[str, Any]:
    """The fields of `classes` whose flags were given, by field name."""
    given = vars(args)
    out: dict[str, Any] = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            dest = flag_dest(f)
            if f.metadata.get("cli", True) and dest in given:
                out[f.name] = given[dest]
    return out


def _json_object(text: str) -> dict[str, Any]:
    """A `dict` option given as JSON on the command line (`--extra-body '{"a": 1}'`)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


_json_object.__name__ = "JSON object"  # argparse names the type in its error


def _yaml_value(text: str) -> Any:
    """A flag value of a mixed type (`bool | str`), read as YAML when pyyaml is present."""
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is a dependency
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


_yaml_value.__name__ = "value"


def _ranged(convert: Callable[[str], Any], rule: Range) -> Callable[[str], Any]:
    def checked(text: str) -> Any:
        value = convert(text)
        try:
            check_range(rule, value, "")
        except ConfigError as exc:  # argparse names the flag: "argument --x: must be ..."
            raise argparse.ArgumentTypeError(str(exc).strip()) from None
        return value

    checked.__name__ = convert.__name__
    return checked


def _flag_kwargs(f: dataclasses.Field[Any], tp: Any) -> dict[str, Any]:
    options = [t for t in (typing.get_args(tp) if _is_union(tp) else (tp,))
               if t is not type(None)]
    help_text = str(f.metadata.get("help", "")).replace("%", "%%")
    default = f.default
    if default is not dataclasses.MISSING and default not in (None, "", ()) \
            and options != [bool]:
        help_text += f" (default: {default})".replace("%", "%%")
    kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text}
    metavar = flag_dest(f).upper()
    if options == [bool]:
        kwargs["action"] = argparse.BooleanOptionalAction
        if default is not dataclasses.MISSING:
            kwargs["help"] += f" (default: {'on' if default else 'off'})"
        return kwargs
    kind = options[0] if len(options) == 1 else None
    origin = typing.get_origin(kind)
    if kind is dict or origin is dict:
        kwargs.update(type=_json_object, metavar="JSON")
    elif kind in (tuple, list) or origin in (tuple, list):
        kwargs.update(action="append", type=str, metavar=metavar)
    elif kind in (int, float, str):
        convert: Callable[[str], Any] = kind
        rule = f.metadata.get("range")  # the shared rules are checked by the CLI
        if rule is not None and kind is not str:
            convert = _ranged(kind, rule)
        kwargs["type"] = convert
        choices = choices_of(f)
        if not choices and callable(f.metadata.get("flag_choices")):
            choices = tuple(f.metadata["flag_choices"]())
        if choices:
            kwargs["choices"] = choices
        else:
            kwargs["metavar"] = metavar
    else:
        kwargs.update(type=_yaml_value, metavar=metavar)
    return kwargs


# --- values against types --------------------------------------------------------------------


def _is_union(tp: Any) -> bool:
    return isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union


def _type_name(tp: Any) -> str:
    args = typing.get_args(tp)
    if args and _is_union(tp):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    origin = typing.get_origin(tp)
    if origin is not None:
        return "a list" if origin in (tuple, list) else getattr(origin, "__name__", str(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Check `value` against the field type `tp`, converting what YAML leaves ambiguous
    (a `5e-6` YAML 1.1 reads as a string; an integer where a float is expected)."""
    options = typing.get_args(tp) if _is_union(tp) else (tp,)
    if value is None and type(None) in options:
        return None
    for option_type in options:
        converted = _convert(value, option_type)
        if converted is not _FAIL:
            return converted
    raise ConfigError(f"setting {name} must be {_type_name(tp)}, got {value!r}")


_FAIL = object()


def _convert(value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if tp is dict or origin is dict:
        return dict(value) if isinstance(value, dict) else _FAIL
    if tp in (tuple, list) or origin in (tuple, list):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            return _FAIL
        return (tuple if (tp is tuple or origin is tuple) else list)(value)
    if tp is bool:
        return value if isinstance(value, bool) else _FAIL
    if isinstance(value, bool):
        return _FAIL
    if tp is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                return _FAIL
        return _FAIL
    if tp is float:
        if isinstance(value, int | float):
            result = float(value)
        elif isinstance(value, str):
            try:
                result = float(value)
            except ValueError:
                return _FAIL
        else:
            return _FAIL
        return result if math.isfinite(result) else _FAIL
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return _FAIL
    return _FAIL
