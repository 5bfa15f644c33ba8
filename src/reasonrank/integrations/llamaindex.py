"""LlamaIndex adapter: `ReasonRankPostprocessor`, a node postprocessor that reranks.

    from reasonrank.integrations.llamaindex import ReasonRankPostprocessor
    postprocessor = ReasonRankPostprocessor(reranker=Reranker(...), top_n=5)
    # or ReasonRankPostprocessor(client=RerankClient("http://127.0.0.1:8080"), top_n=5)
    query_engine = index.as_query_engine(similarity_top_k=20, node_postprocessors=[postprocessor])

Nodes come back best first (at most `top_n`) as new `NodeWithScore`s around the same nodes, with
`score` set: the server's score with `client`; with `reranker`, `1 - (rank - 1) / n`, the same
rank-derived score the server reports. The text ranked is
`node.get_content(metadata_mode=MetadataMode.EMBED)`, as LlamaIndex's own rerankers use.
Needs `llama-index-core` (`pip install 'reasonrank[llamaindex]'`).
"""

from __future__ import annotations

from reasonrank.errors import require

require("llama_index.core", "llamaindex", "reasonrank.integrations.llamaindex")

from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle  # noqa: E402
from pydantic import Field, model_validator  # noqa: E402

from reasonrank.errors import ConfigError  # noqa: E402
from reasonrank.integrations._core import arank_texts, check_source, rank_texts  # noqa: E402
from reasonrank.reranker import Reranker  # noqa: E402
from reasonrank.server.client import RerankClient  # noqa: E402

__all__ = ["ReasonRankPostprocessor"]


class ReasonRankPostprocessor(BaseNodePostprocessor):
    """Reorders nodes with reasonrank, in process (`reranker`) or via its server (`client`)."""

    reranker: Reranker | None = Field(default=None, description="An in-process Reranker.")
    client: RerankClient | None = Field(
        default=None, description="A RerankClient for the reasonrank HTTP service."
    )
    top_n: int | None = Field(
        default=None, ge=1, description="How many nodes to keep; None keeps them all."
    )

    @model_validator(mode="after")
    def _one_source(self) -> ReasonRankPostprocessor:
        check_source(self.reranker, self.client, type(self).__name__)
        return self

    @classmethod
    def class_name(cls) -> str:
        return "ReasonRankPostprocessor"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query = _query_of(query_bundle)
        texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        ranked = rank_texts(self.reranker, self.client, query, texts, self.top_n)
        return [NodeWithScore(node=nodes[i].node, score=score) for i, score in ranked]

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query = _query_of(query_bundle)
        texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        ranked = await arank_texts(self.reranker, self.client, query, texts, self.top_n)
        return [NodeWithScore(node=nodes[i].node, score=score) for i, score in ranked]


def _query_of(query_bundle: QueryBundle | None) -> str:
    if query_bundle is None:
        raise ConfigError(
            "ReasonRankPostprocessor needs the query: call postprocess_nodes(nodes, "
            "query_bundle=QueryBundle(query)) or postprocess_nodes(nodes, query_str=query)"
        )
    return query_bundle.query_str
