"""Stage 6: labelled lists -> training records -> self-consistency filter -> the 13k layout,
checked with the training reader, and SFT/RL examples built from it (the training issue's code
throughout: `TrainingRecord`, `self_consistency_filter`, `write_training_set`, `ensure_valid`,
`sft_examples`, `rl_examples`, `write_examples`).

Records follow the order of the queries; `initial_list` is the shuffled list the teacher saw,
`final_list` its ranking and `relevant_docids` the mined positives of the list. `id_doc/`
holds the full passages (title folded in); `prompt_settings.json` records the template,
`max_passage_tokens` and tokenizer the teacher's prompts were rendered with, which
`reasonrank data sft|rl` use by default, so their prompts are the teacher's byte for byte.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from reasonrank.training.examples import (
    builder_format,
    rl_examples,
    sft_examples,
    write_examples,
)
from reasonrank.training.prompt_format import write_prompt_format
from reasonrank.training.records import (
    TrainingRecord,
    ensure_valid,
    read_training_set,
    self_consistency_filter,
    write_records,
    write_training_set,
)

if TYPE_CHECKING:
    from reasonrank.synth.settings import SynthSettings
    from reasonrank.synth.stages import StageContext
    from reasonrank.synth.workdir import Workdir


class ExportSource(Protocol):
    """What the export reads of a run (the `Synthesizer`): settings, stage records, progress."""

    settings: SynthSettings
    workdir: Workdir

    def records(self, stage: str) -> dict[str, dict[str, Any]]: ...

    def tick(self, stage: str, completed: int, total: int) -> None: ...

FILTERED_OUT = "filtered_out.jsonl"
"""Records the filter dropped, kept beside the layout for inspection."""


def training_records(dataset: str, candidates: dict[str, dict[str, Any]],
                     lists: dict[str, dict[str, Any]],
                     labels: dict[str, dict[str, Any]]) -> list[TrainingRecord]:
    """A record per successfully labelled list, in query order."""
    out = []
    for qid in candidates:
        label = labels.get(qid)
        if label is None or label["status"] != "ok":
            continue
        docids = lists[qid]["docids"]
        positives = set(lists[qid]["positives"])
        out.append(TrainingRecord(
            dataset=dataset, qid=qid, initial_list=tuple(docids),
            final_list=tuple(label["final_list"]), reasoning=label["reasoning"],
            relevant_docids=tuple(d for d in docids if d in positives)))
    return out


def export(synth: ExportSource, ctx: StageContext) -> dict[str, Any]:
    """Write the export; returns its counts (with the filter's report per domain)."""
    settings = synth.settings
    records = training_records(settings.dataset, dict(ctx.candidates),
                               synth.records("assemble"), synth.records("label"))
    synth.tick("export", 0, len(records))
    result = self_consistency_filter(records, settings.threshold)
    root = synth.workdir.resolve(settings.export_dir)
    queries = {r.qid: ctx.candidates[r.qid]["query"] for r in result.kept}
    docs = {d: ctx.text(d) for r in result.kept for d in r.initial_list}
    write_training_set(root, result.kept, queries, docs)
    write_records(result.dropped, root / FILTERED_OUT)
    fmt = builder_format(ctx.builder, settings.tokenizer)
    write_prompt_format(root, fmt)
    data = ensure_valid(read_training_set(root), settings.list_size)
    counts: dict[str, Any] = {"records": len(records), "kept": len(result.kept),
                              "filtered_out": len(result.dropped)}
    for name, path, build in (("sft_examples", settings.sft_path, sft_examples),
                              ("rl_examples", settings.rl_path, rl_examples)):
        if path:
            rows = build(data, ctx.builder, prompt_format=fmt)
            counts[name] = write_examples(rows, synth.workdir.resolve(path))
    counts["domains"] = result.report()
    synth.tick("export", len(records), len(records))
    return counts
