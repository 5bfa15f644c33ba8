"""Data synthesis: teacher-labelled, reasoning-intensive listwise training data from a corpus.

Stages (`reasonrank synth STAGE --workdir DIR`), each resumable, each reading the previous
stage's file in the workdir:

1. candidates: a first-stage pool per query (BM25, dense or fused; or a given run);
2. positives: the teacher selects the pool passages that help reach the gold answer;
3. negatives: the teacher selects hard negatives, passages that look relevant but do not help;
4. assemble: lists of at most 20 passages (positives, hard and sampled negatives), shuffled
   with a recorded seed;
5. label: the teacher ranks each list with the engine's reasoning prompt (no gold answer);
   its reasoning and ranking are kept;
6. export: the self-consistency filter, the 13k layout, SFT and RL examples.

Teacher calls go through the OpenAI-compatible backend behind an on-disk answer cache (a
rerun costs nothing), token/cost accounting and a budget. See docs/synth.md.
"""

from __future__ import annotations

from reasonrank.synth.accounting import Budget, BudgetExceeded, Ledger, Prices
from reasonrank.synth.answers import Ranking, Selection, parse_selection, parse_teacher_ranking
from reasonrank.synth.assembly import AssembledList, ListSpec, assemble_list, list_seed
from reasonrank.synth.cache import AnswerCache, CachedAnswer, request_key
from reasonrank.synth.pipeline import ProgressHook, Synthesizer, TooFewRecords
from reasonrank.synth.prompts import HARD_NEGATIVES, POSITIVES, SelectionTemplate
from reasonrank.synth.report import format_summary
from reasonrank.synth.settings import STAGES, SynthSettings
from reasonrank.synth.teacher import TeacherAnswer, TeacherClient
from reasonrank.synth.workdir import Workdir, open_workdir

__all__ = [
    "HARD_NEGATIVES",
    "POSITIVES",
    "STAGES",
    "AnswerCache",
    "AssembledList",
    "Budget",
    "BudgetExceeded",
    "CachedAnswer",
    "Ledger",
    "ListSpec",
    "Prices",
    "ProgressHook",
    "Ranking",
    "Selection",
    "SelectionTemplate",
    "SynthSettings",
    "Synthesizer",
    "TeacherAnswer",
    "TeacherClient",
    "TooFewRecords",
    "Workdir",
    "assemble_list",
    "format_summary",
    "list_seed",
    "open_workdir",
    "parse_selection",
    "parse_teacher_ranking",
    "request_key",
    "synthesize",
]


def synthesize(workdir: str, stage: str = "all", config: str | None = None,
               overrides: tuple[str, ...] | list[str] = (),
               progress: ProgressHook | None = None) -> dict:
    """Run `stage` (or `all`) in `workdir`; returns the counts of every stage run so far."""
    root, settings = open_workdir(workdir, config, overrides)
    with Synthesizer(root, settings, progress=progress) as synth:
        if stage == "all":
            synth.run_all()
        else:
            synth.run(stage)
        return dict(synth.counts)
