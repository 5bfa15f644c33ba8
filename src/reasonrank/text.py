"""Text cleaning exactly as the released code does it, made cheap.

`fix_text` returns what `ftfy.fix_text` returns. ftfy fixes text line by line (segments), and a
segment it leaves unchanged costs a full pass of its mojibake heuristics. Two exact shortcuts
avoid most passes:
- a segment made only of printable ASCII, tabs and newlines (and, while HTML unescaping is on,
  without "&") is a fixed point of every ftfy step;
- a prompt line `[i] <passage>` is a fixed point when the passage is one on its own, once the
  few mojibake patterns that could start in the ASCII prefix `[i] ` are ruled out (see
  `_numbered_line_is_fixed`). The passage's verdict is cached, so a passage that appears in
  several windows, under different numbers, is examined once.
Every other segment goes through ftfy itself (memoised).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import ftfy
from ftfy import fixes
from ftfy.badness import BADNESS_RE

_NOT_PLAIN = re.compile(r"[^\t\n\x20-\x7e]")
_BRACKETED_NUMBER = re.compile(r"\[(\d+)\]")
_NUMBERED = re.compile(r"\[\d+\] ")
_LONGEST_BADNESS_MATCH = 8  # no BADNESS_RE alternative spans more characters
# ftfy's character-level fixers (all on in the default configuration), applied after
# fix_encoding in each pass of `ftfy.fix_and_explain`.
_CHAR_FIXERS = (
    fixes.fix_c1_controls, fixes.fix_latin_ligatures, fixes.fix_character_width,
    fixes.uncurl_quotes, fixes.fix_line_breaks, fixes.fix_surrogates,
    fixes.remove_terminal_escapes, fixes.remove_control_chars,
)
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
        out.append(segment if _is_fixed(segment, html) else _fix_segment(segment, html))
        pos = brk
    return "".join(out)


def _is_fixed(segment: str, html: bool) -> bool:
    """Cheap, exact proofs that ftfy would return `segment` unchanged (False: run ftfy)."""
    if _NOT_PLAIN.search(segment) is None:
        return not (html and "&" in segment)
    return not html and _numbered_line_is_fixed(segment)


def _numbered_line_is_fixed(segment: str) -> bool:
    """True if `segment` = `[i] p` is a fixed point of ftfy (HTML unescaping off).

    ftfy's pass over `[i] p` changes nothing when (1) `is_bad` finds no mojibake pattern in it,
    (2) no character-level fixer changes it and (3) it is NFC. (2) and (3) hold for `[i] p` iff
    they hold for `p`: the prefix is plain ASCII ending in a space, which no fixer touches and
    which composes with nothing. For (1), a match starting at or after the prefix's space is a
    match in `" " + p` (no pattern looks behind; `^` cannot match a space there), and a match
    starting in `[i]` lies within the prefix plus `_LONGEST_BADNESS_MATCH` characters.
    """
    prefix = _NUMBERED.match(segment)
    if prefix is None:
        return False
    cut = prefix.end()
    if BADNESS_RE.search(segment, 0, cut + _LONGEST_BADNESS_MATCH):
        return False
    return _passage_is_fixed(segment[cut - 1 :])


@lru_cache(maxsize=65536)
def _passage_is_fixed(spaced: str) -> bool:
    """`spaced` = " " + p: no mojibake pattern, no character fix, already NFC."""
    if BADNESS_RE.search(spaced):
        return False
    if not unicodedata.is_normalized("NFC", spaced):
        return False
    return all(fixer(spaced) == spaced for fixer in _CHAR_FIXERS)


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
