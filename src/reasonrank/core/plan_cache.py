"""The verified tiktoken plans of `core.truncation`, cached on disk, one file per tokenizer.

Checking that a byte-level BPE's merges are tiktoken-consistent takes seconds for a 150k-merge
vocabulary; the outcome depends only on the tokenizer's content, so it is stored under a SHA-256
of that content (vocab and merges with the model's options, added tokens, normalizer,
pre-tokenizer and decoder) and paid once per tokenizer per machine. The folder is
`$REASONRANK_CACHE_DIR` (empty: no disk cache), else `$XDG_CACHE_HOME/reasonrank`, else
`~/.cache/reasonrank`. Files are written atomically; one that is unreadable, truncated, altered
or written for another key is ignored (and rewritten), and `core.truncation` uses a plan read
from here only if it tokenizes a probe text exactly as the tokenizer does.

File layout: a magic line, a JSON header line (format, key, eligible, count, sha256 of the
payload), then the payload: `count` little-endian uint16 token lengths followed by the tokens'
bytes in rank order (empty for a tokenizer that is not eligible).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
from array import array
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CACHE_ENV = "REASONRANK_CACHE_DIR"
FORMAT = 1  # bump when the file layout or the meaning of "verified" changes
_MAGIC = b"reasonrank tiktoken plan\n"
_SUBDIR = "tiktoken-plans"


@dataclass(frozen=True)
class CachedPlan:
    """A cached verdict: the token bytes in rank order, or None for "not tiktoken-exact"."""

    token_bytes: list[bytes] | None


def cache_dir() -> Path | None:
    """Where plans are cached (None: disk caching is off)."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return Path(value).expanduser() if value.strip() else None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "reasonrank"


def tokenizer_key(backend: Any) -> str:
    """SHA-256 of what decides a Rust tokenizer's plan: the model (vocab, merges, options),
    the added tokens and the normalizer, pre-tokenizer and decoder."""
    digest = hashlib.sha256(f"reasonrank-tiktoken-plan/{FORMAT}\0".encode())
    digest.update(type(backend.model).__name__.encode() + b"\0")
    digest.update(backend.model.__getstate__())
    added = sorted(
        (index, t.content, t.single_word, t.lstrip, t.rstrip, t.normalized, t.special)
        for index, t in backend.get_added_tokens_decoder().items()
    )
    digest.update(b"\0" + json.dumps(added).encode())
    for component in (backend.normalizer, backend.pre_tokenizer, backend.decoder):
        digest.update(b"\0" + (b"null" if component is None else component.__getstate__()))
    return digest.hexdigest()


def plan_path(key: str) -> Path | None:
    folder = cache_dir()
    return None if folder is None else folder / _SUBDIR / f"{key}.bin"


def read_plan(path: Path, key: str) -> CachedPlan | None:
    """The plan stored at `path` for `key`; None when there is none or it cannot be trusted."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.info("cannot read the cached tiktoken plan %s (%s); rebuilding it", path, exc)
        return None
    try:
        return _decode(data, key)
    except (ValueError, KeyError, TypeError) as exc:
        logger.info("ignoring the cached tiktoken plan %s (%s); rebuilding it", path, exc)
        return None


def write_plan(path: Path, key: str, token_bytes: list[bytes] | None) -> None:
    """Store a verdict atomically (a reader never sees half a file); errors only logged."""
    try:
        payload = b"" if token_bytes is None else _encode_tokens(token_bytes)
        header = {"format": FORMAT, "key": key, "eligible": token_bytes is not None,
                  "count": 0 if token_bytes is None else len(token_bytes),
                  "sha256": hashlib.sha256(payload).hexdigest()}
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f".{path.name}.",
                                         delete=False) as handle:
            handle.write(_MAGIC + json.dumps(header).encode() + b"\n" + payload)
            temp = Path(handle.name)
        try:
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)
    except (OSError, OverflowError) as exc:
        logger.info("cannot cache the tiktoken plan in %s (%s)", path, exc)


def _encode_tokens(token_bytes: list[bytes]) -> bytes:
    lengths = array("H", map(len, token_bytes))  # OverflowError for a token over 65535 bytes
    if sys.byteorder != "little":
        lengths.byteswap()
    return lengths.tobytes() + b"".join(token_bytes)


def _decode(data: bytes, key: str) -> CachedPlan:
    if not data.startswith(_MAGIC):
        raise ValueError("not a plan file")
    end = data.index(b"\n", len(_MAGIC))
    header = json.loads(data[len(_MAGIC) : end])
    payload = data[end + 1 :]
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError("another format")
    if header["key"] != key:
        raise ValueError("written for another tokenizer")
    if hashlib.sha256(payload).hexdigest() != header["sha256"]:
        raise ValueError("payload checksum mismatch")
    if header["eligible"] is False:
        if payload:
            raise ValueError("payload on a not-eligible verdict")
        return CachedPlan(None)
    count = header["count"]
    if header["eligible"] is not True or not isinstance(count, int) or count < 256:
        raise ValueError("bad header")
    lengths = array("H")
    lengths.frombytes(payload[: 2 * count])
    if sys.byteorder != "little":
        lengths.byteswap()
    blob = payload[2 * count :]
    if len(lengths) != count or sum(lengths) != len(blob):
        raise ValueError("truncated payload")
    ends = list(accumulate(lengths))
    tokens = [blob[start:stop] for start, stop in zip([0, *ends], ends, strict=False)]
    if tokens[:256] != [bytes([b]) for b in range(256)] or len(set(tokens)) != count:
        raise ValueError("the ranks are not a byte-level BPE's")
    return CachedPlan(tokens)
