"""Text cleaning exactly as the released code does it, made cheap.

`fix_text` returns what `ftfy.fix_text` returns. ftfy fixes text line by line; a line made only
of printable ASCII, tabs and newlines (and, while HTML unescaping is on, without "&") is a
fixed point of every ftfy step, so it is passed through without running them. The other lines go
through ftfy itself, memoised, since the same lines recur from window to window.
"""

from __future__ import annotations

import re
from functools import lru_cache

import ftfy

_NOT_PLAIN = re.compile(r"[^\t\n\x20-\x7e]")
_BRACKETED_NUMBER = re.compile(r"\[(\d+)\]")
_DEFAULT = ftfy.TextFixerConfig(explain=False)
_NO_HTML = _DEFAULT._replace(unescape_html=False)


@lru_cache(maxsize=65536)
def _fix_segment(segment: str, unescape_html: bool) -> str:
    return ftfy.fix_and_explain(segment, _DEFAULT if unescape_html else _NO_HTML).text


def fix_text(text: str) -> str:
    """`ftfy.fix_text(text)` with the default configuration, segment by segment."""
    out: list[str] = []
    html = True  # ftfy's "auto": on until a segment contains "<", then off for the rest
    max_len = _DEFAULT.max_decode_length
    pos = 0
    n = len(text)
    while pos < n:
        brk = text.find("\n", pos) + 1 or n
        if brk - pos > max_len:
            brk = pos + max_len
        segment = text[pos:brk]
        if html and "<" in segment:
            html = False
        if _NOT_PLAIN.search(segment) is None and not (html and "&" in segment):
            out.append(segment)
        else:
            out.append(_fix_segment(segment, html))
        pos = brk
    return "".join(out)


def replace_number(text: str) -> str:
    """`[12]` -> `(12)`, so passages and queries cannot be mistaken for window identifiers."""
    return _BRACKETED_NUMBER.sub(r"(\1)", text)


def clean_query(query: str) -> str:
    """Query preprocessing of the reference: `[digits]` -> `(digits)`, then strip."""
    return replace_number(query).strip()


def passage_content(text: str, title: str | None = None) -> str:
    """Steps 2-3 of passage preprocessing: title prefix, strip, ftfy (before truncation)."""
    if title:
        text = "Title: " + title + " " + "Content: " + text
    return fix_text(text.strip())
