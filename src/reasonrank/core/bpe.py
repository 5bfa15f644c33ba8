"""Byte-level BPE primitives shared by the offline tokenizer build and fast truncation."""

from __future__ import annotations

from functools import lru_cache

_NO_RANK = 1 << 62


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character map used by byte-level BPE."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes), strict=True))


def bpe_split(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """Byte-pair encode `token` with the ranks below `max_rank` (lowest rank, then leftmost)."""
    get = ranks.get
    parts = [token[i : i + 1] for i in range(len(token))]
    pair_ranks = [get(token[i : i + 2], _NO_RANK) for i in range(len(token) - 1)]
    while pair_ranks:
        best = min(pair_ranks)
        if best >= max_rank:
            break
        i = pair_ranks.index(best)
        merged = parts[i] + parts[i + 1]
        parts[i] = merged
        del parts[i + 1], pair_ranks[i]
        if i < len(pair_ranks):
            pair_ranks[i] = get(merged + parts[i + 1], _NO_RANK)
        if i:
            pair_ranks[i - 1] = get(parts[i - 1] + merged, _NO_RANK)
    return parts
