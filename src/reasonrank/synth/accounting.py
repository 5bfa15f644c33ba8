"""Token and cost accounting of teacher calls, and the budget that stops a run (pure).

Sent requests are counted from the answer cache (every answer is cached the moment it
arrives), so the spend survives kills exactly; cache hits cost nothing and are counted apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reasonrank.errors import ReasonRankError


class BudgetExceeded(ReasonRankError):  # noqa: N818 - the name the issue gives it
    """The teacher budget is spent; the run stopped cleanly and can be continued."""

    def __init__(self, message: str, *, spent_usd: float, spent_tokens: int,
                 max_cost_usd: float | None, max_total_tokens: int | None) -> None:
        super().__init__(message)
        self.spent_usd = spent_usd
        self.spent_tokens = spent_tokens
        self.max_cost_usd = max_cost_usd
        self.max_total_tokens = max_total_tokens


@dataclass(frozen=True)
class Prices:
    """USD per million prompt (input) and completion (output) tokens."""

    input_per_million: float = 0.0
    output_per_million: float = 0.0

    def cost(self, prompt_tokens: int, output_tokens: int) -> float:
        return (prompt_tokens * self.input_per_million
                + output_tokens * self.output_per_million) / 1e6


@dataclass
class StageUsage:
    """Teacher traffic of one stage: requests sent (all runs) and answered from the cache."""

    sent: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    estimated: int = 0  # answers whose token counts were estimated (no `usage` from the server)
    run_sent: int = 0  # this process only
    run_cached: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens


@dataclass
class Ledger:
    """Per-stage usage and the spend so far."""

    prices: Prices = field(default_factory=Prices)
    stages: dict[str, StageUsage] = field(default_factory=dict)

    def stage(self, name: str) -> StageUsage:
        return self.stages.setdefault(name, StageUsage())

    def add_sent(self, stage: str, prompt_tokens: int, output_tokens: int, *,
                 estimated: bool = False, this_run: bool = True) -> None:
        usage = self.stage(stage)
        usage.sent += 1
        usage.prompt_tokens += prompt_tokens
        usage.output_tokens += output_tokens
        usage.estimated += int(estimated)
        usage.run_sent += int(this_run)

    def add_cached(self, stage: str) -> None:
        usage = self.stage(stage)
        usage.cached += 1
        usage.run_cached += 1

    @property
    def spent_tokens(self) -> int:
        return sum(u.tokens for u in self.stages.values())

    @property
    def spent_usd(self) -> float:
        return sum(self.prices.cost(u.prompt_tokens, u.output_tokens)
                   for u in self.stages.values())

    def load_cached_counts(self, saved: Mapping[str, Any] | None) -> None:
        """Take the cumulative cache-hit counts from a saved `to_dict()`."""
        for name, row in ((saved or {}).get("stages") or {}).items():
            if isinstance(row, dict) and isinstance(row.get("cached"), int):
                self.stage(name).cached = row["cached"]

    def to_dict(self) -> dict[str, Any]:
        def row(u: StageUsage) -> dict[str, Any]:
            return {"sent": u.sent, "cached": u.cached, "prompt_tokens": u.prompt_tokens,
                    "output_tokens": u.output_tokens, "estimated": u.estimated,
                    "cost_usd": round(self.prices.cost(u.prompt_tokens, u.output_tokens), 6),
                    "run_sent": u.run_sent, "run_cached": u.run_cached}

        total = StageUsage()
        for u in self.stages.values():
            for name in ("sent", "cached", "prompt_tokens", "output_tokens", "estimated",
                         "run_sent", "run_cached"):
                setattr(total, name, getattr(total, name) + getattr(u, name))
        return {"prices": {"input_per_million": self.prices.input_per_million,
                           "output_per_million": self.prices.output_per_million},
                "stages": {name: row(u) for name, u in sorted(self.stages.items())},
                "total": row(total)}


@dataclass(frozen=True)
class Budget:
    """Limits on the teacher spend of a workdir (all runs together); None: no limit."""

    max_cost_usd: float | None = None
    max_total_tokens: int | None = None

    def reached(self, ledger: Ledger) -> bool:
        return ((self.max_cost_usd is not None and ledger.spent_usd >= self.max_cost_usd)
                or (self.max_total_tokens is not None
                    and ledger.spent_tokens >= self.max_total_tokens))

    def exceeded(self, ledger: Ledger, hint: str = "") -> BudgetExceeded:
        """The error that reports the spend against the limits, with `hint` appended."""
        parts = []
        if self.max_cost_usd is not None:
            parts.append(f"${ledger.spent_usd:.4f} spent of the max_cost_usd limit "
                         f"${self.max_cost_usd:g}")
        if self.max_total_tokens is not None:
            parts.append(f"{ledger.spent_tokens:,} tokens spent of the max_total_tokens limit "
                         f"{self.max_total_tokens:,}")
        message = "teacher budget reached: " + "; ".join(parts) + ". " + hint
        return BudgetExceeded(message.strip(), spent_usd=ledger.spent_usd,
                              spent_tokens=ledger.spent_tokens,
                              max_cost_usd=self.max_cost_usd,
                              max_total_tokens=self.max_total_tokens)
