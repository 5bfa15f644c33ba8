"""CLI: `reasonrank synth STAGE --workdir DIR`, teacher-labelled listwise training data.

    reasonrank synth all --workdir runs/bio --config synth.yaml
    reasonrank synth label --workdir runs/bio --set concurrency=32 --set max_cost_usd=20

Settings come from the workdir (saved at the first run), then `--config`, then `--set`, then
the flags given (`--concurrency 32`).
A progress bar per stage goes to stderr; the counts per stage and the teacher's traffic go to
stdout (`--json` for JSON). A reached budget exits with status 2, saying how to continue;
so does an export with fewer records than `min_records` (default 1), naming the causes.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: Any) -> None:  # argparse's subparsers action
    """Add `synth` to the `reasonrank` parser."""
    from reasonrank.cli.paths import CommandPaths
    from reasonrank.settings import add_file_flags, add_flags
    from reasonrank.synth.settings import STAGES, SynthSettings

    p = sub.add_parser(
        "synth", help="synthesize teacher-labelled listwise training data from a corpus",
        description="Stages: candidates (first-stage pools), positives and negatives (teacher "
        "selection), assemble (lists of <= 20), label (teacher ranking with reasoning), export "
        "(self-consistency filter, 13k layout, SFT/RL examples); `all` runs what is left. "
        "Every stage resumes where it stopped; cached teacher answers are never paid twice.")
    p.add_argument("stage", choices=(*STAGES, "all"), help="stage to run")
    p.add_argument("--workdir", required=True, help="folder holding the stages' files")
    add_file_flags(p, "synth settings (see docs/synth.md)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    add_flags(p, SynthSettings, title="synth settings (saved in the workdir)")
    p.set_defaults(handler="reasonrank.cli.synth:cmd_synth",
                   paths=CommandPaths(inputs=("config",)))


class _Bars:
    """A rich progress bar per stage on stderr; callable as the pipeline's progress hook."""

    def __init__(self, quiet: bool) -> None:
        from reasonrank.cli.console import progress_bar

        self.bar = progress_bar(quiet, description="{task.description:<10}")
        self.tasks: dict[str, Any] = {}

    def __call__(self, stage: str, completed: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total)
        self.bar.update(self.tasks[stage], completed=completed, total=total)

    def __enter__(self) -> _Bars:
        self.bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.bar.stop()


def _print_summary(synth: Any, as_json: bool) -> None:
    from reasonrank.synth import format_summary

    usage = synth.ledger.to_dict()
    if as_json:
        sys.stdout.write(json.dumps({"stages": synth.counts, "usage": usage}) + "\n")
        return
    sys.stdout.write(f"synth summary ({synth.workdir.root})\n")
    for line in format_summary(synth.counts, usage,
                               failures_path=str(synth.workdir.failures_path),
                               max_new_tokens=synth.settings.max_new_tokens):
        sys.stdout.write(line + "\n")
    sys.stdout.flush()


def cmd_synth(args: argparse.Namespace) -> int:
    from reasonrank.cli.console import say
    from reasonrank.synth import BudgetExceeded, Synthesizer, TooFewRecords, open_workdir

    _check_new_workdir(args)
    workdir, settings = open_workdir(args.workdir, args.config, args.overrides, _flags(args))
    with Synthesizer(workdir, settings) as synth:
        try:
            synth.preflight(args.stage)  # warnings before the progress bars start
            with _Bars(args.quiet) as bars:
                synth.progress = bars
                if args.stage == "all":
                    synth.run_all()
                else:
                    synth.run(args.stage)
        except (BudgetExceeded, TooFewRecords):
            if not args.quiet or args.json:
                _print_summary(synth, args.json)
            raise
        except KeyboardInterrupt:
            say("interrupted; finished queries and every teacher answer received are saved: "
                "rerun the same command to continue")
            return 130
        if not args.quiet or args.json:
            _print_summary(synth, args.json)
    return 0


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    """The synth settings given as flags, by name."""
    from reasonrank.settings import given_values
    from reasonrank.synth.settings import SynthSettings

    return given_values(args, SynthSettings)


def _check_new_workdir(args: argparse.Namespace) -> None:
    """A run that would fail at once creates no workdir: its path, its settings and the first
    stage are checked before `open_workdir` makes the folder."""
    from pathlib import Path

    if Path(args.workdir).exists():
        return
    from reasonrank.errors import ConfigError
    from reasonrank.io.paths import check_output_dir
    from reasonrank.synth.settings import STAGES, merge_settings

    check_output_dir(args.workdir, "--workdir")
    settings = merge_settings(None, args.config, list(args.overrides), _flags(args))
    first = STAGES[0] if args.stage == "all" else args.stage
    if first != STAGES[0]:
        raise ConfigError(f"--workdir {args.workdir} does not exist, so stage {first!r} has no "
                          f"input: run `reasonrank synth {STAGES[0]}` (or `all`) first")
    settings.check_required(first)
