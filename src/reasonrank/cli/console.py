"""The CLI's terminal output, one place for every command: rich consoles (results on stdout,
notes and progress on stderr), the progress bar, and `--quiet` for the model libraries."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

T = TypeVar("T")
TABLE_WIDTH = 160  # columns when the stream is not a terminal (rich's 80 squeezes tables)


def console(*, stderr: bool = False, quiet: bool = False) -> Console:
    """A rich console on stdout (results, tables) or stderr (notes, summaries); `quiet`
    prints nothing. Not on a terminal, it is `TABLE_WIDTH` columns wide."""
    from rich.console import Console

    out = Console(stderr=stderr, quiet=quiet)
    return out if out.is_terminal else Console(stderr=stderr, quiet=quiet, width=TABLE_WIDTH)


def say(message: str) -> None:
    """One plain line on stderr (no markup, no wrapping)."""
    sys.stderr.write(message + "\n")


def progress_bar(quiet: bool, transient: bool = False,
                 description: str = "{task.description}") -> Progress:
    """The CLI's progress bar on stderr: description, bar, done/total, elapsed time; nothing
    with `quiet`."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True), disable=quiet,
                    transient=transient)


def track(items: Iterable[T], total: int | None, description: str, quiet: bool) -> Iterator[T]:
    """`items`, with a progress bar advancing as each is consumed."""
    with progress_bar(quiet) as bar:
        yield from bar.track(items, total=total, description=description)


def counter(bar: Progress, description: str, total: int) -> Callable[[int], None]:
    """A task of `bar` and a callback advancing it by n (a library's progress hook)."""
    task = bar.add_task(description, total=total)
    return lambda n: bar.advance(task, n)


def quiet_libraries() -> None:
    """Silence the model libraries for `--quiet`: the progress bars, info logs and
    FutureWarnings of transformers, the hub, sentence-transformers and (once imported)
    datasets."""
    import logging
    import os
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in ("sentence_transformers", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        pass
    else:
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    datasets: Any = sys.modules.get("datasets")  # imported by `train`; too slow to import here
    if datasets is not None:
        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
