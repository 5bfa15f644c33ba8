"""The files a command reads and writes, declared once per command and checked before any work.

A command declares `set_defaults(paths=CommandPaths(...))`; the CLI's error boundary then
checks, before the handler runs, that each input is a readable file, that each output file or
folder can be written, and that no output is an input or another output (paths derived from
the arguments, such as the default traces file, included).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reasonrank.io.outputs import PathArg

Derived = Callable[[argparse.Namespace], Mapping[str, PathArg]]


def _none(_args: argparse.Namespace) -> Mapping[str, PathArg]:
    return {}


@dataclass(frozen=True)
class CommandPaths:
    """Argparse dests of the files a command touches.

    `inputs`: files read (must exist); `outputs`: files written; `output_dirs`: folders
    written; `read`: other things read (folders, files a command checks itself) that no output
    may replace; `derived_outputs` / `derived_inputs`: more paths computed from the arguments,
    by the name errors give them. `positional` dests are named in upper case, others as flags.
    """

    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    output_dirs: tuple[str, ...] = ()
    read: tuple[str, ...] = ()
    positional: tuple[str, ...] = ()
    derived_outputs: Derived = _none
    derived_inputs: Derived = _none

    def label(self, dest: str) -> str:
        return dest.upper() if dest in self.positional else "--" + dest.replace("_", "-")

    def check(self, args: argparse.Namespace) -> None:
        """Raise `InputPathError` / `OutputPathError` / `ConfigError` for a path that would
        fail or destroy an input."""
        from reasonrank.io.outputs import check_outputs
        from reasonrank.io.paths import check_input_file, check_output_dir, check_output_file

        checks: tuple[tuple[tuple[str, ...], Callable[[Any, str], None]], ...] = (
            (self.inputs, check_input_file), (self.outputs, check_output_file),
            (self.output_dirs, check_output_dir))
        for dests, check in checks:
            for dest in dests:
                for path in _listed(getattr(args, dest, None)):
                    check(path, self.label(dest))
        outs = {self.label(d): getattr(args, d, None) for d in (*self.outputs, *self.output_dirs)}
        ins = {self.label(d): getattr(args, d, None) for d in (*self.inputs, *self.read)}
        if not any(outs.values()) and not self.derived_outputs(args):
            return
        check_outputs({**outs, **self.derived_outputs(args)},
                      {**ins, **self.derived_inputs(args)})


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return [v for v in value if v is not None] if isinstance(value, list | tuple) else [value]


def check_paths(args: argparse.Namespace) -> None:
    """Check the paths the parsed command declares (`set_defaults(paths=...)`), if any."""
    paths = getattr(args, "paths", None)
    if isinstance(paths, CommandPaths):
        paths.check(args)
