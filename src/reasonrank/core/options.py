"""The value rules of every numeric option, in one place.

A rule is keyed by the option's name (the `RerankConfig` field, the argparse `dest`, the
settings-file key), so `--temperature`, `RerankConfig(temperature=...)`, a server request and
a YAML `temperature:` all meet the same check. Floats must be finite; integers and floats must
lie in their range. `check_option` raises `ConfigError` naming the option and the range.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reasonrank.errors import ConfigError

MAX_CONCURRENCY = 100_000
"""The most generations a run may keep in flight (runs also cap it at their query count)."""
MAX_WINDOW = 100_000
"""The most passages one window (`parse --num`) may hold: memory grows with it."""
MAX_CUTOFF = 1_000_000
"""The largest metric cut-off (`ndcg@k`): deeper than any run we read."""
_SEED = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Range:
    """`low <= value <= high` (`low < value` when `low_open`); None leaves a side open."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def holds(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        if self.low is not None and self.high is not None and not self.low_open:
            return f"between {_num(self.low)} and {_num(self.high)}"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {_num(self.low)}")
        if self.high is not None:
            parts.append(f"<= {_num(self.high)}")
        return " and ".join(parts) or "finite"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


AT_LEAST_1 = Range(1)
NON_NEGATIVE = Range(0)
POSITIVE = Range(0, low_open=True)
UNIT = Range(0, 1)

RULES: dict[str, Range] = {
    # RerankConfig (the rerank/serve/bright flags, the server, the Python API)
    "window_size": AT_LEAST_1, "step": AT_LEAST_1, "top_k": AT_LEAST_1,
    "num_passes": AT_LEAST_1, "max_new_tokens": AT_LEAST_1, "max_passage_tokens": AT_LEAST_1,
    "rank_start": NON_NEGATIVE, "force_answer_tokens": NON_NEGATIVE,
    "concurrency": Range(1, MAX_CONCURRENCY), "temperature": NON_NEGATIVE,
    "seed": Range(*_SEED),
    # parse, evaluate, data, retrieval, serve, Ray (a backend's options declare their own
    # ranges in their field metadata: `reasonrank.settings.option(range=...)`)
    "batch_size": AT_LEAST_1,
    "num": Range(0, MAX_WINDOW), "permutations": Range(1, 10_000_000),
    "threshold": UNIT, "fraction": UNIT, "window": AT_LEAST_1,
    "k": AT_LEAST_1, "depth": AT_LEAST_1, "threads": Range(1, 1024), "rrf_k": NON_NEGATIVE,
    "k1": NON_NEGATIVE, "b": UNIT, "weights": Range(),
    "port": Range(0, 65535), "max_documents": AT_LEAST_1, "max_document_chars": AT_LEAST_1,
    "max_query_chars": AT_LEAST_1, "max_body_bytes": AT_LEAST_1, "server_timeout": POSITIVE,
    "replicas": Range(1, 10_000), "gpus_per_replica": NON_NEGATIVE, "cpus_per_replica": POSITIVE,
}


def check_option(name: str, value: Any, flag: str | None = None) -> None:
    """Raise `ConfigError` if `value` breaks the rule of option `name` (None always passes;
    a list is checked item by item). `flag` is how the message names it (default: `name`)."""
    rule = RULES.get(name)
    if rule is not None:
        check_range(rule, value, flag or name)


def check_range(rule: Range, value: Any, label: str) -> None:
    """Raise `ConfigError` naming `label` if a number in `value` breaks `rule`."""
    if value is None or isinstance(value, bool | str):
        return
    for item in value if isinstance(value, list | tuple) else (value,):
        if not isinstance(item, int | float) or isinstance(item, bool):
            continue
        finite = not isinstance(item, float) or math.isfinite(item)
        if not finite or not rule.holds(item):
            kind = "a finite number" if isinstance(item, float) else "an integer"
            what = rule.describe()
            range_text = "" if what == "finite" else f" {what}"
            raise ConfigError(f"{label} must be {kind}{range_text}, got {item!r}")


def check_options(values: Mapping[str, Any] | Iterable[tuple[str, Any]],
                  flags: bool = False) -> None:
    """`check_option` for each `(name, value)`; `flags` names them as `--name-with-dashes`."""
    items = values.items() if isinstance(values, Mapping) else values
    for name, value in items:
        check_option(name, value, "--" + name.replace("_", "-") if flags else None)
