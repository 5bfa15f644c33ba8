"""Adapters that plug reasonrank into retrieval frameworks.

    # LangChain (pip install 'reasonrank[langchain]')
    from reasonrank.integrations.langchain import ReasonRankCompressor
    compressor = ReasonRankCompressor(reranker=Reranker(...), top_n=5)     # in-process model
    compressor = ReasonRankCompressor(client=RerankClient(url), top_n=5)   # a reasonrank server
    # e.g. ContextualCompressionRetriever(base_compressor=compressor, base_retriever=...)

    # LlamaIndex (pip install 'reasonrank[llamaindex]')
    from reasonrank.integrations.llamaindex import ReasonRankPostprocessor
    query_engine = index.as_query_engine(
        similarity_top_k=20, node_postprocessors=[ReasonRankPostprocessor(reranker=rr, top_n=5)]
    )

Both take exactly one of `reranker` (a `reasonrank.Reranker`, run in this process) or `client` (a
`reasonrank.server.client.RerankClient` for the HTTP service), and an optional `top_n`.

Scores: with `client` each document gets the server's `relevance_score`. With `reranker` the
listwise model gives an order, not scores, so the document at rank r of n gets `1 - (r - 1) / n`,
the same rank-derived score the reasonrank server reports (1.0 at the top, strictly decreasing,
always > 0); compare scores only within one call.

Importing this package needs neither framework; the submodules import theirs and raise
`MissingDependencyError` (naming the extra to install) when it is missing. The classes are also
reachable lazily as `reasonrank.integrations.ReasonRankCompressor` / `.ReasonRankPostprocessor`.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ReasonRankCompressor", "ReasonRankPostprocessor"]

_LAZY = {
    "ReasonRankCompressor": "reasonrank.integrations.langchain",
    "ReasonRankPostprocessor": "reasonrank.integrations.llamaindex",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
