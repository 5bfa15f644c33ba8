r"""Passage truncation with the model's own tokenizer (reference section 1, step 4).

The reference is `tokenizer.convert_tokens_to_string(tokenizer.tokenize(text)[:n])`, which can
cut inside a word (or inside a UTF-8 character, which then decodes to U+FFFD). `Truncator` returns
exactly that, by the fastest of three paths (its `path` attribute says which):

* ``"tiktoken"``: for byte-level BPE tokenizers whose merges are tiktoken-consistent (Qwen2/2.5/3,
  Llama-3 and GPT-4-style vocabularies; checked once per tokenizer per machine, about 3 s for
  150k merges, then cached in memory and on disk by `core.plan_cache`), `tiktoken` runs the BPE
  on the token bytes. Added tokens are cut out first, as Hugging Face does (leftmost-longest, on
  the raw text); the NFC normaliser is applied to the rest (Python's `unicodedata` only where it
  leaves the text unchanged: its Unicode version differs from the Rust one on some newer
  combining marks); the first `n` tokens' bytes are decoded with invalid UTF-8 replaced, as the
  ByteLevel decoder (`String::from_utf8_lossy`) does.
* ``"hf-fast"``: a Hugging Face fast tokenizer's Rust tokenizer, called directly.
* ``"reference"``: `reference_truncate` itself.

Both fast paths tokenize only a prefix of a long text where that is provably the same. For the
GPT-2, GPT-4/Llama-3 and Qwen2 pre-tokenization patterns a pre-token starts at every ASCII space
that follows an ASCII letter or digit, and the pre-tokens before it do not depend on anything
after it; so the tokens of `text[:q]`, for such a position `q`, are the first tokens of `text`.
(The rule "all pre-tokens of a prefix but the last are the text's" is not exact: `\s*[\r\n]+`
joins a prefix's trailing `"\n"` + `" "` with a later `"\n"`, and GPT-2's `'ll` absorbs a
prefix's trailing `"'"`.)
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import unicodedata
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reasonrank.core import plan_cache
from reasonrank.core.bpe import bpe_split, bytes_to_unicode

logger = logging.getLogger(__name__)

_CHARS_PER_TOKEN_GUESS = 6

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
"""The pre-tokenization regex of `ByteLevel(use_regex=True)` (GPT-2)."""

_QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
_LLAMA3_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# Patterns for which the prefix rule of the module docstring has been checked (by hand, and by
# the tests): letter and digit runs, contractions and punctuation runs stop at an ASCII space, and
# whitespace runs cannot reach back past a letter or digit.
_PREFIX_SAFE_PATTERNS = frozenset({GPT2_PATTERN, _QWEN2_PATTERN, _LLAMA3_PATTERN})
_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_SURROGATE = re.compile("[\ud800-\udfff]")


def reference_truncate(tokenizer: Any, text: str, max_tokens: int) -> str:
    """The released code's truncation, verbatim (slow; the definition `Truncator` matches)."""
    return tokenizer.convert_tokens_to_string(tokenizer.tokenize(text)[:max_tokens])


@dataclass(frozen=True)
class _TiktokenPlan:
    """A tokenizer's byte-level BPE as a tiktoken `Encoding` (built once per tokenizer)."""

    encode: Any  # `tiktoken.Encoding.encode_ordinary`
    token_bytes: list[bytes]  # rank -> bytes
    prefix_safe: bool  # the pre-tokenization pattern admits the prefix rule


class Truncator:
    """Cut texts to at most `max_tokens` tokens of `tokenizer`, as `reference_truncate` does."""

    def __init__(self, tokenizer: Any, max_tokens: int) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._fast: Any = backend if _is_exact_fast_path(tokenizer, backend) else None
        self._plan: _TiktokenPlan | None = None
        self._encode: Any = None  # the plan's `encode_ordinary`
        self._token_bytes: list[bytes] = []  # the plan's rank -> bytes
        self._tiktoken_prefix = False  # the tiktoken path may tokenize a prefix
        self._hf_prefix = False  # the hf-fast path may tokenize a prefix
        self._nfc = False  # the normalizer is NFC
        # Added token -> the bytes the decoder gives it (None: some are matched other than as
        # plain strings); `_split` cuts them out as Hugging Face does.
        self._added_bytes: dict[str, bytes] | None = None
        self._split: re.Pattern[str] | None = None
        added = set(_added_token_strings(tokenizer))
        if self._fast is not None:
            added |= self._init_fast(self._fast)
        # Any added token in a text (the prefix rules and the tiktoken path need to know).
        self._added = _alternation(added)
        logger.debug("Truncator(%s, %d): %s path", type(tokenizer).__name__, max_tokens, self.path)

    @property
    def path(self) -> str:
        """The path in use: ``"tiktoken"``, ``"hf-fast"`` or ``"reference"``."""
        if self._fast is None:
            return "reference"
        return "tiktoken" if self._plan is not None else "hf-fast"

    def __call__(self, text: str) -> str:
        if self._fast is None or self.max_tokens <= 0:
            return reference_truncate(self.tokenizer, text, self.max_tokens)
        if self._plan is not None:
            return self._tiktoken_truncate(text)
        return self._hf_truncate(text)

    def truncate_all(self, texts: Sequence[str]) -> list[str]:
        return [self(t) for t in texts]

    # -- setup --------------------------------------------------------------------------------

    def _init_fast(self, backend: Any) -> set[str]:
        """Set up the fast paths; return the Rust tokenizer's added tokens (as matched)."""
        normalizer = _component_json(backend.normalizer)
        self._nfc = normalizer == {"type": "NFC"}
        pattern = _pretokenizer_pattern(_component_json(backend.pre_tokenizer))
        self._hf_prefix = (normalizer is None or self._nfc) and pattern in _PREFIX_SAFE_PATTERNS
        self._plan = _tiktoken_plan(backend)
        if self._plan is not None:
            self._encode = self._plan.encode
            self._token_bytes = self._plan.token_bytes
            self._tiktoken_prefix = self._plan.prefix_safe
        tokens = [t for t in backend.get_added_tokens_decoder().values() if t.content]
        if any(t.normalized or t.lstrip or t.rstrip or t.single_word for t in tokens):
            # Matched on normalized text or with stripping: texts with such a token (raw or
            # normalized) take the Hugging Face path, which tokenizes them whole.
            self._hf_prefix = False
            contents = {t.content for t in tokens}
            return contents | {unicodedata.normalize("NFC", c) for c in contents}
        self._added_bytes = {t.content: _decoded_bytes(t.content) for t in tokens}
        self._split = _alternation(self._added_bytes)
        return set(self._added_bytes)

    # -- tiktoken path ------------------------------------------------------------------------

    def _tiktoken_truncate(self, text: str) -> str:
        if not text.isascii() and _SURROGATE.search(text):
            return reference_truncate(self.tokenizer, text, self.max_tokens)
        if self._added is not None and self._added.search(text):
            return self._tiktoken_with_added(text)
        normalized = self._normalize(text)
        if self._added_bytes is None and self._added is not None and self._added.search(normalized):
            return self._hf_truncate(text)  # an added token may match the normalized text
        ids, cut = self._first_ids(normalized, self.max_tokens)
        if not cut:
            return normalized  # all of it: the tokens' bytes are the text's
        table = self._token_bytes
        return b"".join([table[i] for i in ids]).decode("utf-8", "replace")

    def _tiktoken_with_added(self, text: str) -> str:
        """Cut out the added tokens (leftmost-longest, before normalization, as Hugging Face
        does), then BPE the pieces between them."""
        added_bytes, split = self._added_bytes, self._split
        if added_bytes is None or getattr(self.tokenizer, "split_special_tokens", False):
            return self._hf_truncate(text)
        table = self._token_bytes
        budget = self.max_tokens
        out: list[bytes] = []
        pos = 0
        pieces: list[tuple[str, bool]] = []
        for match in split.finditer(text) if split is not None else ():
            pieces += [(text[pos : match.start()], False), (match.group(), True)]
            pos = match.end()
        pieces.append((text[pos:], False))
        for piece, is_added in pieces:
            if budget <= 0:
                break
            if is_added:
                out.append(added_bytes[piece])
                budget -= 1
            elif piece:
                ids, _more = self._first_ids(self._normalize(piece), budget)
                out += [table[i] for i in ids]
                budget -= len(ids)
        return b"".join(out).decode("utf-8", "replace")

    def _normalize(self, text: str) -> str:
        """The tokenizer's own NFC: Python's where the text is already NFC (unchanged), else the
        Rust normalizer (the two Unicode versions differ on some newer combining marks)."""
        if not self._nfc or text.isascii() or unicodedata.is_normalized("NFC", text):
            return text
        return self._fast.normalizer.normalize_str(text)

    def _first_ids(self, text: str, n: int) -> tuple[list[int], bool]:
        """The first `n` token ids of (normalized) `text`, and whether it has more than `n`."""
        encode = self._encode
        if self._tiktoken_prefix:
            limit = n * _CHARS_PER_TOKEN_GUESS
            while limit < len(text):
                cut = _safe_cut(text, limit)
                if cut:
                    ids = encode(text[:cut])
                    if len(ids) >= n:
                        return ids[:n], True
                limit *= 2
        ids = encode(text)
        return ids[:n], len(ids) > n

    # -- Hugging Face fast path ---------------------------------------------------------------

    def _hf_truncate(self, text: str) -> str:
        n = self.max_tokens
        fast = self._fast
        if fast.truncation is not None or fast.padding is not None:
            return reference_truncate(self.tokenizer, text, n)
        has_added = self._added is not None and self._added.search(text) is not None
        if has_added and fast.encode_special_tokens != bool(
            getattr(self.tokenizer, "split_special_tokens", False)
        ):
            return reference_truncate(self.tokenizer, text, n)
        if (
            self._hf_prefix
            and not has_added
            and (not self._nfc or text.isascii() or unicodedata.is_normalized("NFC", text))
        ):
            limit = n * _CHARS_PER_TOKEN_GUESS
            while limit < len(text):
                cut = _safe_cut(text, limit)
                if cut:
                    tokens = fast.encode(text[:cut], add_special_tokens=False).tokens
                    if len(tokens) >= n:
                        return fast.decoder.decode(tokens[:n])
                limit *= 2
        tokens = fast.encode(text, add_special_tokens=False).tokens
        return fast.decoder.decode(tokens[:n])


def _safe_cut(text: str, limit: int) -> int:
    """The last position `q < limit` with an ASCII space after an ASCII letter or digit (0: none).

    For the patterns of `_PREFIX_SAFE_PATTERNS` a pre-token starts at `q`, and the pre-tokens of
    `text[:q]` are those of `text` before `q`."""
    q = text.rfind(" ", 1, limit)
    while q > 0:
        if text[q - 1] in _ALNUM:
            return q
        q = text.rfind(" ", 1, q)
    return 0


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


def _component_json(component: Any) -> Any:
    """A tokenizers component (normalizer, pre-tokenizer, decoder) as JSON; None for none."""
    if component is None:
        return None
    try:
        return json.loads(component.__getstate__())
    except Exception:  # an unserialisable component: treat as unknown
        return {"type": "?"}


def _pretokenizer_pattern(pre_tokenizer: Any) -> str | None:
    """The split regex of a byte-level pre-tokenizer this module understands, else None:
    `Sequence[Split(Regex, isolated), ByteLevel(use_regex=False)]` or `ByteLevel(use_regex=True)`,
    both without a prefix space."""
    if not isinstance(pre_tokenizer, dict):
        return None
    if pre_tokenizer.get("type") == "ByteLevel":
        ok = pre_tokenizer.get("use_regex", True) and not pre_tokenizer.get("add_prefix_space")
        return GPT2_PATTERN if ok else None
    steps = pre_tokenizer.get("pretokenizers")
    if pre_tokenizer.get("type") != "Sequence" or not isinstance(steps, list) or len(steps) != 2:
        return None
    split, byte_level = steps
    if not isinstance(split, dict) or not isinstance(byte_level, dict):
        return None
    pattern = split.get("pattern")
    if (
        split.get("type") != "Split"
        or not isinstance(pattern, dict)
        or not isinstance(pattern.get("Regex"), str)
        or split.get("behavior") != "Isolated"
        or split.get("invert")
        or byte_level.get("type") != "ByteLevel"
        or byte_level.get("use_regex", True)
        or byte_level.get("add_prefix_space")
    ):
        return None
    return pattern["Regex"]


# -- tiktoken eligibility, built once per tokenizer ---------------------------------------------

_PLANS: dict[int, tuple[weakref.ref[Any], tuple[Any, ...], _TiktokenPlan | None]] = {}
_PLANS_LOCK = threading.Lock()


def _fingerprint(backend: Any) -> tuple[Any, ...]:
    parts: list[Any] = [
        type(backend.model).__name__,
        backend.get_vocab_size(with_added_tokens=False),
    ]
    for component in (backend.normalizer, backend.pre_tokenizer, backend.decoder):
        parts.append(None if component is None else component.__getstate__())
    return tuple(parts)


def _tiktoken_plan(backend: Any) -> _TiktokenPlan | None:
    """The cached tiktoken plan of a Rust tokenizer, or None where tiktoken is not exact."""
    try:
        import tiktoken
    except ImportError:
        logger.debug("tiktoken is not installed: no tiktoken truncation path")
        return None
    try:
        fingerprint = _fingerprint(backend)
    except Exception:
        return None
    key = id(backend)
    with _PLANS_LOCK:
        entry = _PLANS.get(key)
        if entry is not None and entry[0]() is backend and entry[1] == fingerprint:
            return entry[2]
        try:
            plan = _build_plan(tiktoken, backend)
        except Exception as exc:  # anything unexpected: not eligible
            logger.debug("tiktoken path not eligible: %r", exc)
            plan = None
        try:
            def forget(_ref: object, key: Any = key) -> None:
                _PLANS.pop(key, None)

            ref = weakref.ref(backend, forget)
        except TypeError:
            return plan
        _PLANS[key] = (ref, fingerprint, plan)
        return plan


def _build_plan(tiktoken: Any, backend: Any) -> _TiktokenPlan | None:
    """The plan of a tokenizer whose components tiktoken can follow: from the disk cache
    (`core.plan_cache`) if it tokenizes a probe as the tokenizer does, else verified merge by
    merge and then cached."""
    pattern = _eligible_pattern(backend)
    if pattern is None:
        return None
    key = plan_cache.tokenizer_key(backend)
    path = plan_cache.plan_path(key)
    cached = plan_cache.read_plan(path, key) if path is not None else None
    if cached is not None:
        if cached.token_bytes is None:
            logger.debug("tiktoken path not eligible (cached verdict %s)", path)
            return None
        plan = _make_plan(tiktoken, pattern, cached.token_bytes)
        if _agrees(backend, plan):
            logger.debug("tiktoken plan from the cache %s", path)
            return plan
        logger.info("the cached tiktoken plan %s does not tokenize as the tokenizer does; "
                    "rebuilding it", path)
    ranks = _verified_ranks(backend)
    token_bytes = None
    if ranks is not None:
        token_bytes = [b""] * len(ranks)
        for token, rank in ranks.items():
            token_bytes[rank] = token
    if path is not None:
        plan_cache.write_plan(path, key, token_bytes)
    return None if token_bytes is None else _make_plan(tiktoken, pattern, token_bytes)


def _eligible_pattern(backend: Any) -> str | None:
    """The pre-tokenization regex if the tokenizer's components allow the tiktoken path."""
    normalizer = _component_json(backend.normalizer)
    pattern = _pretokenizer_pattern(_component_json(backend.pre_tokenizer))
    decoder = _component_json(backend.decoder) or {}
    reasons = []
    if type(backend.model).__name__ != "BPE":
        reasons.append("model is not BPE")
    if normalizer is not None and normalizer != {"type": "NFC"}:
        reasons.append(f"normalizer {normalizer.get('type')}")
    if pattern is None:
        reasons.append("pre-tokenizer")
    if decoder.get("type") != "ByteLevel":
        reasons.append("decoder is not ByteLevel")
    if reasons:
        logger.debug("tiktoken path not eligible: %s", ", ".join(reasons))
        return None
    return pattern


def _make_plan(tiktoken: Any, pattern: str, token_bytes: list[bytes]) -> _TiktokenPlan:
    encoding = tiktoken.Encoding(
        name=f"reasonrank-bpe-{len(token_bytes)}",
        pat_str=pattern,
        mergeable_ranks={token: rank for rank, token in enumerate(token_bytes)},
        special_tokens={},
    )
    logger.debug("tiktoken path eligible (%d ranks)", len(token_bytes))
    return _TiktokenPlan(
        encode=encoding.encode_ordinary,
        token_bytes=token_bytes,
        prefix_safe=pattern in _PREFIX_SAFE_PATTERNS,
    )


_PROBE = (
    "Title: Probe Content: The quick brown fox jumps over the lazy dog; they'll say it's 12345 "
    "+ 3.14159 = x_{i}\n\tdef rank(a, b):\n        return a[0] > b[1]  # 中文 "
    "über café naïve ∑ 😀 passages, relevance, reasoning."
)


def _agrees(backend: Any, plan: _TiktokenPlan) -> bool:
    """Whether `plan` tokenizes a probe text as the Rust tokenizer does (a cached plan is
    checked so, in about a millisecond, before it is used)."""
    added = [t.content for t in backend.get_added_tokens_decoder().values() if t.content]
    if any(content in _PROBE for content in added) or backend.truncation or backend.padding:
        return True  # the probe would not test the BPE alone
    decoder = _byte_decoder()
    try:
        expected = [bytes(decoder[c] for c in token)
                    for token in backend.encode(_PROBE, add_special_tokens=False).tokens]
        return [plan.token_bytes[i] for i in plan.encode(_PROBE)] == expected
    except Exception:  # a token the tables do not know: the plan is not this tokenizer's
        return False


def _verified_ranks(backend: Any) -> dict[bytes, int] | None:
    """The BPE model's tiktoken ranks if its options and merges allow them (the slow check)."""
    model = json.loads(backend.model.__getstate__())
    if model.get("byte_fallback") or model.get("dropout") or model.get("continuing_subword_prefix"):
        logger.debug("tiktoken path not eligible: BPE options (byte_fallback/dropout/prefix)")
        return None
    if model.get("end_of_word_suffix"):
        logger.debug("tiktoken path not eligible: BPE end_of_word_suffix")
        return None
    added = {token.content for token in backend.get_added_tokens_decoder().values()}
    return _consistent_ranks(model["vocab"], model["merges"], added)


@functools.cache
def _byte_decoder() -> dict[str, int]:

    return {char: byte for byte, char in bytes_to_unicode().items()}


def _consistent_ranks(
    vocab: dict[str, int], merges: list[Any], added: set[str]
) -> dict[bytes, int] | None:
    """tiktoken ranks (single bytes by value, then merge `i` at `256 + i`) of a byte-level BPE,
    or None unless every merge `(a, b) -> t` is what byte-pair encoding `t` with the lower ranks
    gives (then rank-BPE equals merge-list BPE) and every non-added token is reachable."""
    to_latin1 = str.maketrans({char: chr(byte) for char, byte in _byte_decoder().items()})
    byte_chars = list(_byte_decoder())
    if any(char not in vocab for char in byte_chars):
        logger.debug("tiktoken path not eligible: a single byte is missing from the vocab")
        return None
    memo: dict[str, bytes] = {}

    def to_bytes(token: str) -> bytes:
        value = memo.get(token)
        if value is None:
            value = memo[token] = token.translate(to_latin1).encode("latin-1")
        return value

    ranks = {bytes([byte]): byte for byte in range(256)}
    pairs: list[tuple[bytes, bytes]] = []
    outputs: set[str] = set(byte_chars)
    for index, merge in enumerate(merges):
        left, right = merge.split(" ") if isinstance(merge, str) else merge
        pair = (to_bytes(left), to_bytes(right))
        pairs.append(pair)
        ranks[pair[0] + pair[1]] = 256 + index
        outputs.add(left + right)
    if len(ranks) != 256 + len(merges):
        logger.debug("tiktoken path not eligible: a token is the output of two merges")
        return None
    if any(token not in outputs and token not in added for token in vocab):
        logger.debug("tiktoken path not eligible: a vocab token is not reachable by merges")
        return None
    for index, (left, right) in enumerate(pairs):
        merged = left + right
        if len(merged) > 2 and bpe_split(ranks, merged, 256 + index) != [left, right]:
            logger.debug("tiktoken path not eligible: merge %d is not the lower-rank split", index)
            return None
    return ranks


def _decoded_bytes(content: str) -> bytes:
    """The bytes the ByteLevel decoder gives an added token: its characters through GPT-2's
    byte map when all are in it (so `"é"` gives byte 0xE9), else its UTF-8."""
    decoder = _byte_decoder()
    if all(char in decoder for char in content):
        return bytes(decoder[char] for char in content)
    return content.encode("utf-8")


def _alternation(strings: Any) -> re.Pattern[str] | None:
    """A regex for the leftmost, then longest, of `strings` (Hugging Face's added-token match)."""
    strings = sorted(strings, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, strings))) if strings else None
