"""Counts per stage, computed from the stage files (so a resumed run reports what a clean one
does), the text summary the CLI prints, and why a run exported too little. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

CAUSES = ("truncated", "no_answer", "bad_ids", "rejected")
"""What made a teacher answer unusable, coarsely (`cause_of` maps the parsers' problems)."""
_BAD_IDS = frozenset({"out_of_range", "repaired"})


def cause_of(problem: str) -> str:
    """The cause of an answer problem: truncated (cut at max_new_tokens), bad_ids
    (identifiers outside the window, or a ranking missing some), rejected (the server refused
    the request) or no_answer (no usable <think>/<answer> block)."""
    if problem == "truncated":
        return "truncated"
    if problem.startswith("rejected"):
        return "rejected"
    return "bad_ids" if problem in _BAD_IDS else "no_answer"


def cause_fixes(max_new_tokens: int | None = None) -> dict[str, str]:
    """The fix of each cause, one line each."""
    limit = f" ({max_new_tokens})" if max_new_tokens else ""
    return {
        "truncated": f"the answer hit max_new_tokens{limit}: raise it (--set "
                     "max_new_tokens=...)",
        "no_answer": "no complete <think>...</think> <answer>...</answer>: constrain the "
                     "teacher's output with a grammar (extra_body, see docs/synth.md) or use "
                     "a stronger teacher",
        "bad_ids": "identifiers outside the window or passages left out: a smaller window "
                   "(selection_window, list_size) or a grammar (extra_body)",
        "rejected": "the server refused the request (HTTP 400/413/422), usually a prompt "
                    "longer than its context: lower max_passage_tokens, selection_window or "
                    "list_size, or serve a longer context (set max_model_len to be warned "
                    "before the run)",
    }


def _sum(records: Iterable[Mapping[str, Any]], name: str) -> int:
    return sum(int(r.get(name, 0)) for r in records)


def _causes(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    out = dict.fromkeys(CAUSES, 0)
    for record in records:
        for cause, n in (record.get("causes") or {}).items():
            out[cause] = out.get(cause, 0) + int(n)
    return out


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
            "dropped_windows": _sum(judged, "dropped"), "rejected": _sum(judged, "rejected"),
            "causes": _causes(judged)}


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
            "rejected": _sum(records, "rejected"), "causes": _causes(records)}


COUNTERS = {"candidates": candidates_counts, "positives": positives_counts,
            "negatives": negatives_counts, "assemble": assemble_counts, "label": label_counts}


def _line(counts: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in counts.items() if not isinstance(v, list | dict))


def malformed_causes(counts: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Unusable teacher answers of every teacher stage, per cause."""
    out = dict.fromkeys(CAUSES, 0)
    for stage in ("positives", "negatives", "label"):
        for cause, n in (counts.get(stage, {}).get("causes") or {}).items():
            out[cause] = out.get(cause, 0) + int(n)
    return out


def format_summary(counts: Mapping[str, Mapping[str, Any]],
                   usage: Mapping[str, Any] | None = None, *,
                   failures_path: str | None = None,
                   max_new_tokens: int | None = None) -> list[str]:
    """One line per stage (`stage: key=value ...`), the malformed answers of each teacher
    stage by cause, the filter per domain, the teacher's traffic per stage and in total, and
    the fix of each cause that occurred with where the raw answers are."""
    from reasonrank.synth.settings import STAGES

    lines = []
    for stage in STAGES:
        if stage not in counts:
            continue
        lines.append(f"{stage}: {_line(counts[stage])}")
        causes = {k: v for k, v in (counts[stage].get("causes") or {}).items() if v}
        if causes:
            lines.append(f"  {stage} malformed or rejected answers by cause: "
                         + " ".join(f"{k}={v}" for k, v in causes.items()))
        if stage == "export":
            rows = counts[stage].get("domains", [])
            domains = [r for r in rows if r["dataset"] != "all"]
            shown = domains + ([r for r in rows if r["dataset"] == "all"]
                               if len(domains) > 1 else [])
            for row in shown:
                label = ("all datasets together" if row not in domains
                         else f"dataset {row['dataset']}")
                lines.append(f"  self-consistency filter, {label}: total={row['total']} "
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
    causes = {k: v for k, v in malformed_causes(counts).items() if v}
    if causes:
        fixes = cause_fixes(max_new_tokens)
        lines.append("unusable teacher answers, by cause:")
        lines += [f"  {cause}={n}: {fixes.get(cause, '')}" for cause, n in causes.items()]
        if failures_path:
            lines.append(f"  each one, with its raw text: {failures_path}")
    return lines


def shortfall(counts: Mapping[str, Mapping[str, Any]], min_records: int,
              max_new_tokens: int | None = None) -> str | None:
    """Why the export holds fewer than `min_records` records, in one line (None: it holds
    enough): where the queries were lost, largest loss first, and the main causes' fixes."""
    export = counts.get("export")
    if export is None or int(export.get("kept", 0)) >= min_records:
        return None
    losses: list[tuple[int, str]] = []
    candidates = counts.get("candidates", {})
    if candidates.get("empty_pools"):
        losses.append((candidates["empty_pools"], f"{candidates['empty_pools']} queries had "
                       "an empty candidate pool (check corpus, queries and retriever)"))
    assemble = counts.get("assemble", {})
    if assemble.get("skipped"):
        losses.append((assemble["skipped"], f"{assemble['skipped']} queries got no positive "
                       "from the teacher"))
    label = counts.get("label", {})
    if label.get("dropped"):
        losses.append((label["dropped"], f"{label['dropped']} lists got no usable ranking "
                       "from the teacher"))
    if export.get("filtered_out"):
        losses.append((export["filtered_out"], f"{export['filtered_out']} records were "
                       "dropped by the self-consistency filter (threshold)"))
    kept = int(export.get("kept", 0))
    what = "no records" if kept == 0 else f"only {kept} record(s)"
    parts = [text for _, text in sorted(losses, key=lambda x: -x[0])]
    causes = sorted(((n, c) for c, n in malformed_causes(counts).items() if n), reverse=True)
    fixes = cause_fixes(max_new_tokens)
    if causes:
        parts.append("unusable teacher answers: " + "; ".join(
            f"{c}={n} ({fixes[c]})" if c in fixes else f"{c}={n}" for n, c in causes[:2]))
    detail = "; ".join(parts) if parts else "no queries reached the export"
    return (f"synth exported {what}, fewer than min_records={min_records}: {detail}. The "
            "summary shows every stage's counts")
