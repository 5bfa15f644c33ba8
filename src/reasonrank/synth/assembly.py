"""Stage 4: lists of at most `size` passages mixing positives, hard negatives and sampled
negatives, shuffled with a per-query seed that is recorded. Pure and reproducible: the same
inputs and seed give the same list, whatever order the queries are processed in."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from reasonrank.errors import ConfigError

MAX_LIST_SIZE = 20
"""The engine's window: a list the reranker sees at once."""


@dataclass(frozen=True)
class ListSpec:
    """How many passages of each kind a list holds, at most."""

    size: int = MAX_LIST_SIZE
    max_positives: int = 5
    hard_negatives: int = 8
    sampled_negatives: int = 7

    def __post_init__(self) -> None:
        if not 1 <= self.size <= MAX_LIST_SIZE:
            raise ConfigError(f"list_size must be in 1..{MAX_LIST_SIZE} (the engine's window), "
                              f"got {self.size}")
        if not 1 <= self.max_positives <= self.size:
            raise ConfigError(f"max_positives must be in 1..list_size ({self.size}), got "
                              f"{self.max_positives}")
        if self.hard_negatives < 0 or self.sampled_negatives < 0:
            raise ConfigError("hard_negatives and sampled_negatives must be >= 0")


@dataclass(frozen=True)
class AssembledList:
    """One list: `docids` in the shuffled order the teacher will see, and its parts."""

    qid: str
    docids: tuple[str, ...]
    positives: tuple[str, ...]
    hard_negatives: tuple[str, ...]
    sampled: tuple[str, ...]
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {"qid": self.qid, "docids": list(self.docids), "positives": list(self.positives),
                "hard_negatives": list(self.hard_negatives), "sampled": list(self.sampled),
                "seed": self.seed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AssembledList:
        return cls(str(data["qid"]), tuple(data["docids"]), tuple(data["positives"]),
                   tuple(data["hard_negatives"]), tuple(data["sampled"]), int(data["seed"]))


def list_seed(seed: int, qid: str) -> int:
    """A query's own seed, from the run seed and its id (independent of processing order)."""
    digest = hashlib.sha256(f"{seed}:{qid}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _pick(rng: random.Random, items: Sequence[str], k: int) -> list[str]:
    """`k` of `items` at random, kept in their given order (all of them when k >= len)."""
    if k >= len(items):
        return list(items)
    chosen = set(rng.sample(range(len(items)), max(k, 0)))
    return [item for i, item in enumerate(items) if i in chosen]


def assemble_list(qid: str, pool: Sequence[str], positives: Iterable[str],
                  hard_negatives: Iterable[str], spec: ListSpec, seed: int,
                  exclude: Iterable[str] = ()) -> AssembledList:
    """Positives (at most `max_positives`), then hard negatives, then negatives sampled from
    the rest of `pool` (minus `exclude`: passages the teacher never judged), up to `size`,
    shuffled. Kinds never overlap and no passage repeats."""
    rng = random.Random(list_seed(seed, qid))
    all_pos = list(dict.fromkeys(positives))
    all_hard = [d for d in dict.fromkeys(hard_negatives) if d not in set(all_pos)]
    pos = _pick(rng, all_pos, spec.max_positives)
    hard = _pick(rng, all_hard, min(spec.hard_negatives, spec.size - len(pos)))
    # positives and hard negatives left out are never sampled as plain negatives
    taken = {*all_pos, *all_hard, *exclude}
    rest = [d for d in dict.fromkeys(pool) if d not in taken]
    sampled = _pick(rng, rest, min(spec.sampled_negatives, spec.size - len(pos) - len(hard)))
    docids = [*pos, *hard, *sampled]
    rng.shuffle(docids)
    return AssembledList(qid, tuple(docids), tuple(pos), tuple(hard), tuple(sampled),
                         list_seed(seed, qid))
