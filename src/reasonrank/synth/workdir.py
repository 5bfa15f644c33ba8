"""The synth workdir: one JSONL file per stage, the answer cache, settings and accounting.

    settings.json      the settings of the first run (later runs must agree, see below)
    candidates.jsonl   stage 1: qid, query, answer, pool [[docid, score], ...]
    positives.jsonl    stage 2: qid, positives, unjudged, windows, malformed, retried, ...
    negatives.jsonl    stage 3: qid, hard_negatives, ...
    lists.jsonl        stage 4: qid, docids (shuffled), positives, hard_negatives, sampled, seed
    labels.jsonl       stage 5: qid, status, final_list, reasoning, ...
    failures.jsonl     every malformed or rejected teacher answer, with its raw text
    cache/teacher.jsonl  the answer cache (one line per request ever answered)
    usage.json         tokens, cost, requests sent and answered from the cache, per stage
    summary.json       the counts of each stage's last run
    export/            stage 6: the 13k layout, SFT and RL examples

A rerun with settings that would change the output of a stage already run raises
`ConfigError`; other settings (server, concurrency, budget, prices, export) may change.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reasonrank.errors import ConfigError
from reasonrank.io._files import StrPath
from reasonrank.io.outputs import FileLock, hold_lock
from reasonrank.synth.settings import STAGES, SynthSettings, merge_settings, output_conflicts
from reasonrank.synth.store import read_json, write_json

STAGE_FILES = {"candidates": "candidates.jsonl", "positives": "positives.jsonl",
               "negatives": "negatives.jsonl", "assemble": "lists.jsonl",
               "label": "labels.jsonl"}


class Workdir:
    """Paths of a synth workdir."""

    def __init__(self, root: StrPath) -> None:
        self.root = Path(root)
        self.settings_path = self.root / "settings.json"
        self.usage_path = self.root / "usage.json"
        self.summary_path = self.root / "summary.json"
        self.failures_path = self.root / "failures.jsonl"
        self.cache_path = self.root / "cache" / "teacher.jsonl"

    def stage_path(self, stage: str) -> Path:
        return self.root / STAGE_FILES[stage]

    def has_output(self, stage: str) -> bool:
        """Whether `stage` wrote anything (export: the records file exists)."""
        if stage == "export":
            return False  # the export is rebuilt from the stage files on every run
        path = self.stage_path(stage)
        return path.exists() and path.stat().st_size > 0

    def stages_with_output(self) -> list[str]:
        return [s for s in STAGES if self.has_output(s)]

    def saved_settings(self) -> dict[str, Any] | None:
        data = read_json(self.settings_path)
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"{self.settings_path} is not a settings object")
        return data

    def save_settings(self, settings: SynthSettings) -> None:
        write_json(self.settings_path, settings.to_dict())

    def resolve(self, path: str) -> Path:
        """A workdir-relative path (absolute paths stay as they are)."""
        return self.root / path

    def lock(self) -> FileLock:
        """Hold the workdir's lock (released on `close()` of the returned lock, or when the
        process dies): two runs on one workdir would send the same requests twice."""
        return hold_lock(self.root / ".lock", f"another `reasonrank synth` run is using "
                         f"{self.root}; wait for it to finish (or stop it) first")


def open_workdir(root: StrPath, config: StrPath | None = None,
                 overrides: tuple[str, ...] | list[str] = (),
                 flags: Mapping[str, Any] | None = None) -> tuple[Workdir, SynthSettings]:
    """The workdir and its settings: the saved ones, updated by `config`, `overrides` and
    `flags` (the command-line flags given, by setting name).

    The first run saves its settings; a later one may change only settings that no stage
    already run depends on, else `ConfigError` names them and the stage.
    """
    workdir = Workdir(root)
    workdir.root.mkdir(parents=True, exist_ok=True)
    saved = workdir.saved_settings()
    settings = merge_settings(saved, config, list(overrides), flags)
    if saved is not None:
        before = merge_settings(saved, None, [])
        conflicts = output_conflicts(before, settings, workdir.stages_with_output())
        if conflicts:
            detail = ", ".join(f"{name} ({getattr(before, name)!r} -> "
                               f"{getattr(settings, name)!r}, used by stage {stage!r})"
                               for name, stage in conflicts)
            first = min((STAGES.index(s) for _, s in conflicts))
            files = [STAGE_FILES[s] for s in STAGES[first:] if s in STAGE_FILES]
            raise ConfigError(
                f"{workdir.root} was built with other settings: {detail}. Use a new --workdir, "
                f"or delete {', '.join(files)} from it to redo those stages (the answer cache "
                "keeps the teacher answers that stay valid)")
    workdir.save_settings(settings)
    return workdir, settings
