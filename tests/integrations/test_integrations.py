"""The HTTP `RerankClient` and the LangChain / LlamaIndex adapters.

In-process mode runs a `Reranker` on the deterministic `FakeBackend` ("overlap": passages sharing
more words with the query rank higher); client mode talks to a tiny stdlib HTTP server that answers
`/v1/rerank` in the Cohere shape with a fixed permutation.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from reasonrank.backends.fake import FakeBackend
from reasonrank.errors import BackendError, BackendRequestError, ConfigError
from reasonrank.reranker import Reranker
from reasonrank.server.client import RerankClient

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")

from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from pydantic import ValidationError

from reasonrank.integrations.langchain import ReasonRankCompressor
from reasonrank.integrations.llamaindex import ReasonRankPostprocessor

QUERY = "why do onions make you cry"
TEXTS = [
    "the stock market fell sharply today",  # 0 shared words
    "onions contain sulfur compounds",  # 1: onions
    "why do onions make you cry when you cut them",  # 6
    "cry babies and their parents",  # 1: cry
    "you can make soup from onions",  # 3: you, make, onions
]
OVERLAP_ORDER = [2, 4, 1, 3, 0]  # by shared words, ties in input order
API_KEY = "secret-key"


def server_order(n: int) -> list[int]:
    """The fixed permutation the test server answers with ([0, 2, 4, 1, 3] for 5 documents)."""
    return sorted(range(n), key=lambda i: (i * 3) % n)


def server_score(rank0: int) -> float:
    return round(0.95 - 0.1 * rank0, 6)


SERVER_ORDER = server_order(len(TEXTS))


# --- a tiny Cohere-style rerank server -------------------------------------------------------


class RerankServer:
    """`POST /v1/rerank` on 127.0.0.1 (ephemeral port) in a background thread.

    Requests without `Authorization: Bearer {API_KEY}` get a 401 in the `{"error": {...}}` shape.
    Every request body and header set is recorded in `requests`.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output quiet
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append((dict(self.headers), body))
                if self.path != "/v1/rerank":
                    self._send(404, {"error": {"message": "not found", "type": "not_found"}})
                    return
                if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    self._send(401, {"error": {"message": "invalid API key",
                                               "type": "authentication_error"}})
                    return
                order = server_order(len(body["documents"]))
                if body.get("top_n") is not None:
                    order = order[: body["top_n"]]
                results = [{"index": i, "relevance_score": server_score(r)}
                           for r, i in enumerate(order)]
                self._send(200, {"id": "test", "model": "fake", "results": results})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> RerankServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[RerankServer]:
    with RerankServer() as srv:
        yield srv


@pytest.fixture
def client(server: RerankServer) -> RerankClient:
    return RerankClient(server.url, api_key=API_KEY, timeout=5.0, model="fake")


@pytest.fixture(scope="module")
def reranker(qwen_tokenizer: Any) -> Iterator[Reranker]:
    with Reranker(backend=FakeBackend(qwen_tokenizer, "overlap"), model="fake") as rr:
        yield rr


@pytest.fixture(scope="module")
def expected_order(reranker: Reranker) -> list[int]:
    """The order `Reranker.rerank` itself gives the test documents."""
    order = [int(doc.docid) for doc in reranker.rerank(QUERY, TEXTS).docs]
    assert order == OVERLAP_ORDER  # the fake backend ranks by word overlap
    return order


def assert_strictly_decreasing(scores: list[float]) -> None:
    assert all(a > b for a, b in itertools.pairwise(scores)), scores
    assert all(0 < s <= 1 for s in scores), scores


# --- RerankClient -----------------------------------------------------------------------------


def test_client_rerank_follows_server_answer(server: RerankServer, client: RerankClient) -> None:
    pairs = client.rerank(QUERY, TEXTS)
    assert pairs == [(i, server_score(r)) for r, i in enumerate(SERVER_ORDER)]
    headers, body = server.requests[-1]
    assert headers["Authorization"] == f"Bearer {API_KEY}"
    assert body == {"model": "fake", "query": QUERY, "documents": TEXTS,
                    "return_documents": False}

    top = client.rerank(QUERY, TEXTS, top_n=2)
    assert top == pairs[:2]
    assert server.requests[-1][1]["top_n"] == 2

    assert asyncio.run(client.arerank(QUERY, TEXTS, top_n=3)) == pairs[:3]


def test_client_accepts_base_url_with_v1(server: RerankServer) -> None:
    client = RerankClient(server.url + "/v1/", api_key=API_KEY)
    assert client.url == server.url + "/v1/rerank"
    assert [i for i, _ in client.rerank(QUERY, TEXTS)] == SERVER_ORDER


def test_client_401_becomes_backend_request_error(server: RerankServer) -> None:
    for client in (RerankClient(server.url), RerankClient(server.url, api_key="wrong")):
        with pytest.raises(BackendRequestError, match="invalid API key") as info:
            client.rerank(QUERY, TEXTS)
        assert info.value.status_code == 401
        assert info.value.detail == "invalid API key"
        with pytest.raises(BackendRequestError, match="HTTP 401"):
            asyncio.run(client.arerank(QUERY, TEXTS))
    assert "Authorization" not in server.requests[0][0]


def test_client_connection_error_is_backend_error() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = RerankClient(f"http://127.0.0.1:{port}", timeout=2.0)
    with pytest.raises(BackendError, match="failed") as info:
        client.rerank(QUERY, TEXTS)
    assert not isinstance(info.value, BackendRequestError)
    with pytest.raises(BackendError, match="failed"):
        asyncio.run(client.arerank(QUERY, TEXTS))


def test_client_edge_cases(server: RerankServer, client: RerankClient) -> None:
    assert client.rerank(QUERY, []) == []
    assert asyncio.run(client.arerank(QUERY, [])) == []
    assert server.requests == []  # no request for no documents
    with pytest.raises(ConfigError, match="top_n"):
        client.rerank(QUERY, TEXTS, top_n=0)
    with pytest.raises(ConfigError, match="sequence of strings"):
        client.rerank(QUERY, "one string")  # type: ignore[arg-type]


# --- LangChain --------------------------------------------------------------------------------


def lc_documents() -> list[Document]:
    return [Document(page_content=t, metadata={"source": f"doc{i}"}) for i, t in enumerate(TEXTS)]


def test_langchain_in_process_follows_reranker(
    reranker: Reranker, expected_order: list[int]
) -> None:
    docs = lc_documents()
    out = ReasonRankCompressor(reranker=reranker).compress_documents(docs, QUERY)
    assert [d.metadata["source"] for d in out] == [f"doc{i}" for i in expected_order]
    assert [d.page_content for d in out] == [TEXTS[i] for i in expected_order]
    scores = [d.metadata["relevance_score"] for d in out]
    assert_strictly_decreasing(scores)
    assert scores == [1 - r / len(TEXTS) for r in range(len(TEXTS))]  # the server's formula
    assert all("relevance_score" not in d.metadata for d in docs)  # inputs untouched

    top = ReasonRankCompressor(reranker=reranker, top_n=2)
    assert [d.page_content for d in top.compress_documents(docs, QUERY)] == [
        TEXTS[i] for i in expected_order[:2]
    ]
    async_out = asyncio.run(top.acompress_documents(docs, QUERY))
    assert [d.page_content for d in async_out] == [TEXTS[i] for i in expected_order[:2]]
    assert ReasonRankCompressor(reranker=reranker).compress_documents([], QUERY) == []


def test_langchain_client_follows_server(client: RerankClient) -> None:
    docs = lc_documents()
    compressor = ReasonRankCompressor(client=client, top_n=3)
    for out in (compressor.compress_documents(docs, QUERY),
                asyncio.run(compressor.acompress_documents(docs, QUERY))):
        assert [d.page_content for d in out] == [TEXTS[i] for i in SERVER_ORDER[:3]]
        assert [d.metadata["relevance_score"] for d in out] == [server_score(r) for r in range(3)]
        assert [d.metadata["source"] for d in out] == [f"doc{i}" for i in SERVER_ORDER[:3]]


def test_langchain_client_error_propagates(server: RerankServer) -> None:
    compressor = ReasonRankCompressor(client=RerankClient(server.url))
    with pytest.raises(BackendRequestError, match="invalid API key"):
        compressor.compress_documents(lc_documents(), QUERY)


def test_langchain_needs_exactly_one_source(reranker: Reranker, client: RerankClient) -> None:
    with pytest.raises(ValidationError, match="exactly one of"):
        ReasonRankCompressor()
    with pytest.raises(ValidationError, match="exactly one of"):
        ReasonRankCompressor(reranker=reranker, client=client)
    with pytest.raises(ValidationError):
        ReasonRankCompressor(client=client, top_n=0)


# --- LlamaIndex -------------------------------------------------------------------------------


def li_nodes() -> list[NodeWithScore]:
    return [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=float(len(TEXTS) - i))
            for i, t in enumerate(TEXTS)]


def test_llamaindex_in_process_follows_reranker(
    reranker: Reranker, expected_order: list[int]
) -> None:
    nodes = li_nodes()
    post = ReasonRankPostprocessor(reranker=reranker)
    out = post.postprocess_nodes(nodes, QueryBundle(QUERY))
    assert [n.node.node_id for n in out] == [f"n{i}" for i in expected_order]
    assert all(out[k].node is nodes[i].node for k, i in enumerate(expected_order))
    scores = [n.score for n in out]
    assert_strictly_decreasing(scores)
    assert scores == [1 - r / len(TEXTS) for r in range(len(TEXTS))]

    top = ReasonRankPostprocessor(reranker=reranker, top_n=2)
    assert [n.node.node_id for n in top.postprocess_nodes(nodes, query_str=QUERY)] == [
        f"n{i}" for i in expected_order[:2]
    ]
    async_out = asyncio.run(top.apostprocess_nodes(nodes, query_str=QUERY))
    assert [n.node.node_id for n in async_out] == [f"n{i}" for i in expected_order[:2]]
    assert post.postprocess_nodes([], query_str=QUERY) == []


def test_llamaindex_client_follows_server(client: RerankClient) -> None:
    post = ReasonRankPostprocessor(client=client, top_n=3)
    nodes = li_nodes()
    for out in (post.postprocess_nodes(nodes, query_str=QUERY),
                asyncio.run(post.apostprocess_nodes(nodes, QueryBundle(QUERY)))):
        assert [n.node.node_id for n in out] == [f"n{i}" for i in SERVER_ORDER[:3]]
        assert [n.score for n in out] == [server_score(r) for r in range(3)]


def test_llamaindex_requires_query(reranker: Reranker) -> None:
    post = ReasonRankPostprocessor(reranker=reranker)
    with pytest.raises(ConfigError, match="needs the query"):
        post.postprocess_nodes(li_nodes())
    with pytest.raises(ConfigError, match="needs the query"):
        asyncio.run(post.apostprocess_nodes(li_nodes()))
    with pytest.raises(ValidationError, match="exactly one of"):
        ReasonRankPostprocessor()


def test_integrations_package_is_lazy() -> None:
    import reasonrank.integrations as integrations

    assert integrations.ReasonRankCompressor is ReasonRankCompressor
    assert integrations.ReasonRankPostprocessor is ReasonRankPostprocessor
    with pytest.raises(AttributeError):
        _ = integrations.Nope
