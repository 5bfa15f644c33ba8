"""Published numbers to compare against (ReasonRank, arXiv 2508.07050; reference doc section 5).

All values are NDCG@10 x100. The BRIGHT rows rerank the ReasonIR-8B (GPT-4 reasoning queries)
top 100 with the original queries; the first-stage row scores those runs themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

BRIGHT_TASKS: tuple[str, ...] = (
    "economics", "earth_science", "robotics", "biology", "psychology", "stackoverflow",
    "sustainable_living", "leetcode", "pony", "aops", "theoremqa_questions", "theoremqa_theorems",
)
"""Column order of the paper's BRIGHT table (same as `reasonrank.datasets.bright.TASKS`)."""


@dataclass(frozen=True)
class ReferenceRow:
    """One published row: a system's NDCG@10 (x100) per BRIGHT task and its reported average."""

    system: str
    scores: MappingProxyType[str, float]
    avg: float
    note: str = ""

    def __getitem__(self, task: str) -> float:
        return self.scores[task]

    def values(self) -> list[float]:
        """Per-task scores in table order."""
        return [self.scores[t] for t in BRIGHT_TASKS]

    def to_dict(self) -> dict[str, Any]:
        return {"system": self.system, "scores": dict(self.scores), "avg": self.avg,
                "note": self.note}


def _row(system: str, values: tuple[float, ...], avg: float, note: str = "") -> ReferenceRow:
    return ReferenceRow(system, MappingProxyType(dict(zip(BRIGHT_TASKS, values, strict=True))),
                        avg, note)


FIRST_STAGE = _row(
    "ReasonIR first stage",
    (32.65, 43.00, 20.82, 43.49, 39.57, 30.96, 27.34, 31.69, 19.55, 7.37, 33.93, 36.68), 30.59,
    "ReasonIR-8B, GPT-4 reasoning queries, top 100",
)
RANK1_7B = _row(
    "Rank1-7B (pointwise)",
    (25.34, 38.91, 16.77, 39.91, 35.32, 24.81, 33.47, 12.71, 28.14, 2.58, 30.67, 38.18), 27.23,
)
REASONRANK_7B = _row(
    "ReasonRank-7B",
    (35.05, 47.75, 31.22, 56.70, 47.77, 32.47, 40.87, 23.17, 24.95, 7.68, 39.49, 41.80), 35.74,
    "liuwenhan/reasonrank-7B, window 20 / step 10",
)
REASONRANK_32B = _row(
    "ReasonRank-32B",
    (36.64, 48.90, 33.88, 58.17, 53.27, 38.68, 45.97, 25.78, 20.93, 9.41, 38.46, 46.28), 38.03,
    "liuwenhan/reasonrank-32B, window 20 / step 10",
)

BRIGHT_NDCG10: tuple[ReferenceRow, ...] = (FIRST_STAGE, RANK1_7B, REASONRANK_7B, REASONRANK_32B)
"""The paper's BRIGHT table, in its row order."""

OTHER_AVERAGES: MappingProxyType[str, MappingProxyType[str, float]] = MappingProxyType({
    "r2med": MappingProxyType({"ReasonRank-7B": 39.53, "ReasonRank-32B": 42.85}),
    "beir7": MappingProxyType({"ReasonRank-7B": 54.35, "ReasonRank-32B": 55.44}),
    "bright_radar_bm25_hybrid_w10s5": MappingProxyType({"ReasonRank-32B": 40.80}),
    "bright_independent_rerun": MappingProxyType({"ReasonRank-7B": 35.26}),
})
"""Other published averages (NDCG@10 x100): R2MED over E5-Mistral top 100; BEIR's 7 sets over
BM25 top 100 with 100-token passages; BRIGHT with a RaDeR+BM25 hybrid first stage and window
10 / step 5; an independent rerun of the 7B on BRIGHT."""

KNOWN_FIRST_STAGE: MappingProxyType[str, float] = MappingProxyType({
    "trec_dl19_bm25": 50.58,
    "scifact_bm25": 66.5,
})
"""First-stage NDCG@10 x100 of the shared data (`../shared/data/README.md`; SciFact: BEIR)."""


def bright_row(system: str) -> ReferenceRow:
    """The published BRIGHT row of `system` (case-insensitive, e.g. "ReasonRank-7B")."""
    for row in BRIGHT_NDCG10:
        if row.system.lower() == system.lower():
            return row
    raise KeyError(f"no published BRIGHT row {system!r}; rows: "
                   + ", ".join(r.system for r in BRIGHT_NDCG10))
