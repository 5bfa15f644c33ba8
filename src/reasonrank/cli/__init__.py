"""The `reasonrank` command line: `main.py` builds the parser and the error boundary; each
command group lives in its own module (`rerank`, `evaluate`, `retrieval`, `data`, `train`,
`synth`, `serve`, `offline`, `demo`)."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `reasonrank` script (imports the parser only when called)."""
    from reasonrank.cli.main import main as _main

    return _main(argv)
