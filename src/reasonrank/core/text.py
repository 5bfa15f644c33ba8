"""Text cleaning exactly as the released code does it, made cheap.

`fix_text` returns what `ftfy.fix_text` returns. ftfy fixes text segment by segment (line by
line), and even a segment it leaves alone costs a full pass of its heuristics. `fix_text` first
tries to prove, with a few C-speed scans, that ftfy would leave a segment unchanged, and runs
ftfy (memoised) only where it cannot. One pass of `ftfy.fix_and_explain` changes nothing, and
so returns the segment as it is, when:
- HTML unescaping is off, or the segment has no "&";
- `fix_encoding` keeps it: it is ASCII, or ftfy's mojibake detector (`is_bad`) finds nothing;
- no character-level fixer has anything to do: none of the characters they map, replace or
  remove occurs (`_TOUCHED`, built from ftfy's own tables);
- it is already NFC.
`is_bad` is decided on the neighbourhoods of non-ASCII characters only: every alternative of
ftfy's `BADNESS_RE` needs a non-ASCII character and spans at most 8 characters.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import ftfy
from ftfy import chardata, fixes
from ftfy.badness import BADNESS_RE

_BRACKETED_NUMBER = re.compile(r"\[(\d+)\]")
_DEFAULT = ftfy.TextFixerConfig(explain=False)
_NO_HTML = _DEFAULT._replace(unescape_html=False)
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_BADNESS_REACH = 8  # no BADNESS_RE match is longer; each holds a non-ASCII character


def _touched_chars() -> re.Pattern[str]:
    """Characters that ftfy's character-level fixers (default configuration) act on."""
    chars = {"\x1b", "\r", "\u2028", "\u2029", "\x85"}  # terminal escapes, line breaks
    for table in (chardata.LIGATURES, chardata.WIDTH_MAP, chardata.CONTROL_CHARS):
        chars.update(map(chr, table))
    tables = "[" + "".join(re.escape(c) for c in sorted(chars)) + "]"
    regexes = (chardata.C1_CONTROL_RE, chardata.SINGLE_QUOTE_RE, chardata.DOUBLE_QUOTE_RE,
               fixes.SURROGATE_RE)
    return re.compile("|".join([tables, *(r.pattern for r in regexes)]))


_TOUCHED = _touched_chars()


def is_bad(text: str) -> bool:
    """`ftfy.badness.is_bad(text)`, searching only near non-ASCII characters."""
    return any(
        BADNESS_RE.search(text, max(run.start() - _BADNESS_REACH, 0), run.end() + _BADNESS_REACH)
        for run in _NON_ASCII.finditer(text)
    )


def segment_is_fixed(segment: str, unescape_html: bool) -> bool:
    """True if ftfy would return `segment` unchanged (False: unknown, run ftfy)."""
    if unescape_html and "&" in segment:
        return False
    if _TOUCHED.search(segment):
        return False
    if segment.isascii():
        return True
    return unicodedata.is_normalized("NFC", segment) and not is_bad(segment)


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
        out.append(segment if segment_is_fixed(segment, html) else _fix_segment(segment, html))
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
