"""The CLI's shared terminal output: consoles, the progress bar, quiet libraries."""

from __future__ import annotations

import logging

import pytest

from reasonrank.cli.console import (
    TABLE_WIDTH,
    console,
    counter,
    progress_bar,
    quiet_libraries,
    say,
    track,
)


def test_consoles_write_to_their_stream(capsys: pytest.CaptureFixture) -> None:
    console().print("to stdout")
    console(stderr=True).print("to stderr")
    console(stderr=True, quiet=True).print("nothing")
    say("[bold]plain[/] line")
    out, err = capsys.readouterr()
    assert out == "to stdout\n"
    assert err == "to stderr\n[bold]plain[/] line\n"


def test_a_console_off_a_terminal_is_wide_enough_for_tables() -> None:
    assert console().width == TABLE_WIDTH
    assert console(stderr=True).width == TABLE_WIDTH


def test_track_yields_every_item_and_quiet_draws_nothing(capsys: pytest.CaptureFixture) -> None:
    assert list(track(iter(range(5)), 5, "items", quiet=True)) == [0, 1, 2, 3, 4]
    assert capsys.readouterr() == ("", "")


def test_counter_advances_its_task() -> None:
    bar = progress_bar(quiet=True)
    advance = counter(bar, "indexing", 10)
    advance(3)
    advance(4)
    (task,) = bar.tasks
    assert (task.description, task.completed, task.total) == ("indexing", 7, 10)


def test_quiet_libraries_silences_transformers() -> None:
    transformers_logging = pytest.importorskip("transformers.utils.logging")
    verbosity = transformers_logging.get_verbosity()
    try:
        transformers_logging.set_verbosity_info()
        quiet_libraries()
        assert transformers_logging.get_verbosity() == logging.ERROR
        assert not transformers_logging.is_progress_bar_enabled()
        assert logging.getLogger("sentence_transformers").level == logging.ERROR
    finally:
        transformers_logging.set_verbosity(verbosity)
        transformers_logging.enable_progress_bar()
