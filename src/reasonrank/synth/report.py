"""Counts per stage, computed from the stage files (so a resumed run reports what a clean one
does), and the text summary the CLI prints. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

_TALLY = ("malformed", "retried", "dropped", "rejected")


def _sum(records: Iterable[Mapping[str, Any]], name: str) -> int:
    return sum(int(r.get(name, 0)) for r in records)


def candidates_counts(records: list[dict[str, Any]]) -> dict[str, int]:
    pools = [len(r["pool"]) for r in records]
    return {"queries": len(records),
            "with_answer": sum(1 for r in records if r.get("answer")),
            "pools": sum(1 for n in pools if n), "empty_pools": sum(1 for n in pools if not n),
            "pool_passages": sum(pools)}


def _selection_counts(records: list[dict[str, Any]], found: str) -> dict[str, int]:
    judged = [r for r in records if not r.get("skipped")]
    return {"queries": len(records), "skipped": len(records) - len(judged),
            "windows": _sum(judged, "windows"),
            f"with_{found}": sum(1 for r in judged if r[found]),
            found: sum(len(r[found]) for r in judged),
            "malformed": _sum(judged, "malformed"), "retried": _sum(judged, "retried"),
            "dropped_windows": _sum(judged, "dropped"), "rejected": _sum(judged, "rejected")}


def positives_counts(records: list[dict[str, Any]]) -> dict[str, int]:
    return _selection_counts(records, "positives")


def negatives_counts(records: list[dict[str, Any]]) -> dict[str, int]:
    return _selection_counts(records, "hard_negatives")


def assemble_counts(records: list[dict[str, Any]]) -> dict[str, int]:
    lists = [r for r in records if not r.get("skipped")]
    return {"lists": len(lists), "skipped": len(records) - len(lists),
            "passages": sum(len(r["docids"]) for r in lists),
            "positives": sum(len(r["positives"]) for r in lists),
            "hard_negatives": sum(len(r["hard_negatives"]) for r in lists),
            "sampled": sum(len(r["sampled"]) for r in lists),
            "largest": max((len(r["docids"]) for r in lists), default=0)}


def label_counts(records: list[dict[str, Any]]) -> dict[str, int]:
    return {"lists": len(records),
            "labelled": sum(1 for r in records if r["status"] == "ok"),
            "dropped": sum(1 for r in records if r["status"] != "ok"),
            "malformed": _sum(records, "malformed"), "retried": _sum(records, "retried"),
            "rejected": _sum(records, "rejected")}


COUNTERS = {"candidates": candidates_counts, "positives": positives_counts,
            "negatives": negatives_counts, "assemble": assemble_counts, "label": label_counts}


def _line(counts: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in counts.items() if not isinstance(v, list | dict))


def format_summary(counts: Mapping[str, Mapping[str, Any]],
                   usage: Mapping[str, Any] | None = None) -> list[str]:
    """One line per stage (`stage: key=value ...`), the filter per domain, then the teacher's
    traffic per stage and in total."""
    from reasonrank.synth.settings import STAGES

    lines = []
    for stage in STAGES:
        if stage in counts:
            lines.append(f"{stage}: {_line(counts[stage])}")
            for row in counts[stage].get("domains", []) if stage == "export" else []:
                lines.append(f"  filter {row['dataset']}: total={row['total']} "
                             f"kept={row['kept']} dropped={row['dropped']}")
    if usage:
        stages = dict(usage.get("stages") or {})
        order = sorted(stages, key=lambda s: (STAGES.index(s) if s in STAGES else len(STAGES), s))
        rows = {name: stages[name] for name in order}
        rows["total"] = usage.get("total") or {}
        for name, row in rows.items():
            if not row:
                continue
            lines.append(
                f"teacher {name}: sent={row['sent']} cached={row['cached']} "
                f"sent_this_run={row['run_sent']} cached_this_run={row['run_cached']} "
                f"prompt_tokens={row['prompt_tokens']} output_tokens={row['output_tokens']} "
                f"cost_usd={row['cost_usd']:.6f}")
    return lines
