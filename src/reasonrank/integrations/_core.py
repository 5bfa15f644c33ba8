"""What the framework adapters share: rank texts with a `Reranker` or a `RerankClient`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from reasonrank.errors import BackendError, ConfigError
from reasonrank.types import relevance_score


def check_source(reranker: Any, client: Any, owner: str) -> None:
    """Exactly one of `reranker` and `client` must be given."""
    if (reranker is None) == (client is None):
        raise ConfigError(
            f"{owner} needs exactly one of reranker= (a reasonrank.Reranker) "
            "or client= (a reasonrank.server.client.RerankClient)"
        )


def rank_texts(
    reranker: Any, client: Any, query: str, texts: Sequence[str], top_n: int | None
) -> list[tuple[int, float]]:
    """`(index into texts, score)` pairs, best first, at most `top_n`."""
    if not texts:
        return []
    if client is not None:
        return client.rerank(query, list(texts), top_n=top_n)
    return _from_result(reranker.rerank(query, list(texts)), len(texts), top_n)


async def arank_texts(
    reranker: Any, client: Any, query: str, texts: Sequence[str], top_n: int | None
) -> list[tuple[int, float]]:
    """The async `rank_texts`.

    An in-process `Reranker` is driven through its sync API in a worker thread: it then runs on
    the Reranker's own event loop, where its backend's async resources live, whatever loop
    the caller is on.
    """
    if not texts:
        return []
    if client is not None:
        return await client.arerank(query, list(texts), top_n=top_n)
    result = await asyncio.to_thread(reranker.rerank, query, list(texts))
    return _from_result(result, len(texts), top_n)


def _from_result(result: Any, n: int, top_n: int | None) -> list[tuple[int, float]]:
    # string documents get docids "0", "1", ... (their input positions)
    pairs = [(int(doc.docid), relevance_score(doc.rank, n)) for doc in result.docs]
    if sorted(i for i, _ in pairs) != list(range(n)):
        raise BackendError(f"the reranker returned {len(pairs)} documents for {n} inputs")
    return pairs if top_n is None else pairs[:top_n]
