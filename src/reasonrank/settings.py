"""Settings files: dataclasses from YAML mappings and `key=value` overrides, with unknown keys
rejected and every value checked against its field's type."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from reasonrank.errors import ConfigError, require

T = TypeVar("T")


def build_settings(cls: type[T], values: Mapping[str, Any],
                   source: str = "settings") -> T:
    """`cls(**values)` with unknown keys rejected and each value checked against its type."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}; valid settings "
                          f"for {cls.__name__}: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    coerced = {name: _coerce(name, value, hints[name]) for name, value in values.items()}
    from reasonrank.core.options import check_options

    check_options(coerced)
    return cls(**coerced)


def read_yaml(path: Path, extra: str) -> dict[str, Any]:
    """A YAML mapping of settings (`extra` names the extra that installs pyyaml)."""
    yaml = require("yaml", extra, "reading YAML settings")
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


def parse_overrides(overrides: Sequence[str], extra: str) -> dict[str, Any]:
    """`key=value` overrides as a mapping, each value read as YAML (`lora=true`,
    `learning_rate=1e-4`); `extra` names the extra that installs pyyaml."""
    yaml = require("yaml", extra, "reading YAML settings")
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


def _type_name(tp: Any) -> str:
    args = typing.get_args(tp)
    if args:
        return " or ".join("null" if a is type(None) else a.__name__ for a in args)
    return tp.__name__


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Check `value` against the field type `tp`, converting what YAML leaves ambiguous
    (a `5e-6` YAML 1.1 reads as a string; an integer where a float is expected)."""
    options = typing.get_args(tp) if isinstance(tp, types.UnionType) else (tp,)
    if value is None and type(None) in options:
        return None
    for option in options:
        converted = _convert(value, option)
        if converted is not _FAIL:
            return converted
    raise ConfigError(f"setting {name} must be {_type_name(tp)}, got {value!r}")


_FAIL = object()


def _convert(value: Any, tp: Any) -> Any:
    if tp is dict or typing.get_origin(tp) is dict:
        return dict(value) if isinstance(value, dict) else _FAIL
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
