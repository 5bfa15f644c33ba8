"""Passage truncation with the model's own tokenizer (reference section 1, step 4).

The reference is `tokenizer.convert_tokens_to_string(tokenizer.tokenize(text)[:n])`, which can
cut inside a word. `Truncator` returns exactly that. With a Hugging Face fast tokenizer it works
on the Rust tokenizer directly and tokenizes only a prefix of long texts: every pre-token
(word) of a prefix but the last is a pre-token of the whole text, so when the first `n` tokens
end before the prefix's last word they are the whole text's first `n` tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_CHARS_PER_TOKEN_GUESS = 6


def reference_truncate(tokenizer: Any, text: str, max_tokens: int) -> str:
    """The released code's truncation, verbatim (slow; the definition `Truncator` matches)."""
    return tokenizer.convert_tokens_to_string(tokenizer.tokenize(text)[:max_tokens])


class Truncator:
    """Cut texts to at most `max_tokens` tokens of `tokenizer`, as `reference_truncate` does."""

    def __init__(self, tokenizer: Any, max_tokens: int) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._fast = backend if _is_exact_fast_path(tokenizer, backend) else None
        added = sorted(_added_token_strings(tokenizer), key=len, reverse=True)
        self._added = re.compile("|".join(map(re.escape, added))) if added else None

    def __call__(self, text: str) -> str:
        if self._fast is None:
            return reference_truncate(self.tokenizer, text, self.max_tokens)
        return self._fast_truncate(text)

    def truncate_all(self, texts: Sequence[str]) -> list[str]:
        return [self(t) for t in texts]

    def _fast_truncate(self, text: str) -> str:
        n = self.max_tokens
        fast = self._fast
        limit = n * _CHARS_PER_TOKEN_GUESS
        # A prefix is safe only if no added (special) token can straddle its end.
        if self._added is not None and self._added.search(text):
            limit = len(text)
        while True:
            if limit >= len(text):
                return fast.decoder.decode(fast.encode(text, add_special_tokens=False).tokens[:n])
            enc = fast.encode(text[:limit], add_special_tokens=False)
            words = enc.word_ids
            last, cut = (words[-1], words[n - 1]) if len(words) > n else (None, None)
            if last is not None and cut is not None and cut < last:
                return fast.decoder.decode(enc.tokens[:n])
            limit *= 2


def _added_token_strings(tokenizer: Any) -> list[str]:
    get = getattr(tokenizer, "get_added_vocab", None)
    return [t for t in (get() if get else {}) if t]


def _is_exact_fast_path(tokenizer: Any, backend: Any) -> bool:
    """Use the Rust tokenizer only where `tokenize`/`convert_tokens_to_string` are thin wrappers
    of it; checked on a probe so a tokenizer that adds Python-side behaviour falls back."""
    if backend is None or getattr(backend, "decoder", None) is None:
        return False
    probe = "Title: Probe Content: a [1] b,  c\n\té ü ∑ 中文 <|x|> 12345 don't"
    try:
        fast = backend.encode(probe, add_special_tokens=False).tokens
        return fast == tokenizer.tokenize(probe) and backend.decoder.decode(
            fast[:7]
        ) == tokenizer.convert_tokens_to_string(fast[:7])
    except Exception:  # any mismatch in capabilities means: use the reference
        return False
