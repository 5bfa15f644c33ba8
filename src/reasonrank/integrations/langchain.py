"""LangChain adapter: `ReasonRankCompressor`, a document compressor that reranks.

    from reasonrank.integrations.langchain import ReasonRankCompressor
    compressor = ReasonRankCompressor(reranker=Reranker(...), top_n=5)
    # or ReasonRankCompressor(client=RerankClient("http://127.0.0.1:8080"), top_n=5)
    docs = compressor.compress_documents(retrieved_docs, "my query")

The documents come back best first (at most `top_n`), as copies with
`metadata["relevance_score"]` set: the server's score with `client`; with `reranker`,
`1 - (rank - 1) / n`, the same rank-derived score the server reports.
Needs `langchain-core` (`pip install 'reasonrank[langchain]'`).
"""

from __future__ import annotations

from reasonrank.errors import require

require("langchain_core", "langchain", "reasonrank.integrations.langchain")

from collections.abc import Sequence  # noqa: E402
from typing import Any  # noqa: E402

from langchain_core.callbacks import Callbacks  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.documents.compressor import BaseDocumentCompressor  # noqa: E402
from pydantic import ConfigDict, Field, model_validator  # noqa: E402

from reasonrank.integrations._core import arank_texts, check_source, rank_texts  # noqa: E402
from reasonrank.reranker import Reranker  # noqa: E402
from reasonrank.server.client import RerankClient  # noqa: E402

__all__ = ["ReasonRankCompressor"]


class ReasonRankCompressor(BaseDocumentCompressor):
    """Reorders documents with reasonrank, in process (`reranker`) or via its server (`client`)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    reranker: Reranker | None = None
    """An in-process `reasonrank.Reranker`."""
    client: RerankClient | None = None
    """A `reasonrank.server.client.RerankClient` for the reasonrank HTTP service."""
    top_n: int | None = Field(default=None, ge=1)
    """How many documents to keep; None keeps them all."""

    @model_validator(mode="after")
    def _one_source(self) -> ReasonRankCompressor:
        check_source(self.reranker, self.client, type(self).__name__)
        return self

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        texts = [doc.page_content for doc in documents]
        ranked = rank_texts(self.reranker, self.client, query, texts, self.top_n)
        return _scored(documents, ranked)

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        texts = [doc.page_content for doc in documents]
        ranked = await arank_texts(self.reranker, self.client, query, texts, self.top_n)
        return _scored(documents, ranked)


def _scored(documents: Sequence[Document], ranked: list[tuple[int, float]]) -> list[Document]:
    out = []
    for index, score in ranked:
        doc = documents[index]
        metadata: dict[str, Any] = {**doc.metadata, "relevance_score": score}
        out.append(doc.model_copy(update={"metadata": metadata}))
    return out
