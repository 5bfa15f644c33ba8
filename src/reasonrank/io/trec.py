"""TREC run lines: the ids a run can carry and the parsing of one line, shared by the readers
and the writers (a resumed run's lines are read back with the readers' rules)."""

from __future__ import annotations

import math
import re

from reasonrank.io._files import excerpt

SEPARATOR = re.compile(r"[ \t]+")
"""What separates the fields of a TREC line: runs of spaces and tabs."""


class RecordError(Exception):
    """A record-level problem; the caller adds the file and line."""


def qid_problem(qid: str) -> str | None:
    """Why `qid` cannot be a query id of a TREC run (None if it can): it must be non-empty
    and hold no whitespace at all (no space, tab, no-break space, line break...)."""
    if not qid:
        return "is empty"
    if any(c.isspace() for c in qid):
        return "holds whitespace"
    return None


def docid_problem(docid: str) -> str | None:
    """Why `docid` cannot be a doc id of a TREC run (None if it can): non-empty, no tab or
    line break, no whitespace at either end. Inner spaces are fine (BRIGHT has such ids)."""
    if not docid:
        return "is empty"
    if any(c in docid for c in "\t\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"):
        return "holds a tab or a line break"
    if docid != docid.strip():
        return "starts or ends with whitespace"
    return None


def split_ends(line: str, head: int, tail: int) -> tuple[list[str], str, list[str]] | None:
    """Split `head` leading and `tail` trailing fields (spaces/tabs) off `line`.

    The middle is returned verbatim, internal whitespace included; None if there are fewer
    than `head + tail + 1` fields.
    """
    first = SEPARATOR.split(line.strip(" \t"), maxsplit=head)
    if len(first) <= head:
        return None
    last = SEPARATOR.split(first[head][::-1], maxsplit=tail)  # a right split on the reversed rest
    if len(last) <= tail:
        return None
    return first[:head], last[tail][::-1], [field[::-1] for field in reversed(last[:tail])]


def parse_float(text: str, what: str) -> float:
    """`text` as a number (not NaN), else `RecordError` naming `what`."""
    try:
        value = float(text)
    except ValueError:
        raise RecordError(f"{what} {excerpt(text)} is not a number") from None
    if math.isnan(value):
        raise RecordError(f"{what} is NaN")
    return value


def parse_int(text: str, what: str) -> int:
    """`text` as an integer, else `RecordError` naming `what`."""
    try:
        return int(text)
    except ValueError:
        raise RecordError(f"{what} {excerpt(text)} is not an integer") from None


def parse_run_line(line: str) -> tuple[str, str, int, float, str]:
    """`qid Q0 docid rank score tag` -> (qid, docid, rank, score, tag); see `read_trec_run`."""
    fields = line.strip(" ").split(" ")
    if len(fields) == 6 and "" not in fields and "\t" not in line:  # fast path: single spaces
        qid, _q0, docid, rank, score, tag = fields
        return qid, docid, parse_int(rank, "rank"), parse_float(score, "score"), tag
    parts = split_ends(line, 2, 3)
    if parts is None:
        raise RecordError(f"expected 6 fields 'qid Q0 docid rank score tag', got {excerpt(line)}")
    (qid, _q0), docid, (rank, score, tag) = parts
    return qid, docid, parse_int(rank, "rank"), parse_float(score, "score"), tag
