"""The client libraries people already use, unchanged, against a real `reasonrank serve` process.

One server subprocess on 127.0.0.1 (fake backend: passages sharing more words with the query rank
higher, ties in input order) serves the whole module. Each client is called as its documentation
shows, with only its base URL pointed at the server: cohere `Client`/`ClientV2` (sync and async),
LangChain's `CohereRerank`, LlamaIndex's `CohereRerank` and `JinaRerank`, `rerankers`'
`APIRanker` (cohere, jina and TEI modes), a raw TEI request, and this package's own client and
adapters.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi")
cohere = pytest.importorskip("cohere")
pytest.importorskip("langchain_cohere")
pytest.importorskip("llama_index.postprocessor.cohere_rerank")
pytest.importorskip("llama_index.postprocessor.jinaai_rerank")
pytest.importorskip("rerankers")

KEY = "client-test-key"
MODEL = "reasonrank-test"
QUERY = "salt ocean water"
DOCS = ["rock and stone", "salt ocean water", "salt mines", "ocean water waves"]
ORDER = [1, 3, 2, 0]  # by overlap with the query: 3, 2, 1, 0 terms
SCORES = [1.0, 0.75, 0.5, 0.25]  # 1 - (rank - 1) / n


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(qwen_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`reasonrank serve` in a subprocess; yields its base URL (no trailing slash)."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "RR_CLIENT_KEYS": KEY, "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reasonrank.cli.main", "serve", "--model", MODEL, "--backend",
             "fake", "--tokenizer", str(qwen_tokenizer_dir), "--port", str(port),
             "--server-api-key-env", "RR_CLIENT_KEYS", "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"reasonrank serve exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"reasonrank serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- Cohere SDK -------------------------------------------------------------------------------


def test_cohere_v1_client(server: str) -> None:
    co = cohere.Client(api_key=KEY, base_url=server)
    response = co.rerank(model="rerank-english-v3.0", query=QUERY, documents=DOCS, top_n=3)
    assert [r.index for r in response.results] == ORDER[:3]
    assert [r.relevance_score for r in response.results] == SCORES[:3]
    assert all(r.document is None for r in response.results)  # Cohere v1 default: no documents
    both = co.rerank(model="m", query=QUERY, documents=DOCS, return_documents=True)
    assert [r.document.text for r in both.results] == [DOCS[i] for i in ORDER]


def test_cohere_v1_dict_documents_with_rank_fields(server: str) -> None:
    co = cohere.Client(api_key=KEY, base_url=server)
    docs = [{"title": "salt", "body": text, "id": i} for i, text in enumerate(DOCS)]
    response = co.rerank(model="m", query=QUERY, documents=docs, rank_fields=["body"],
                         return_documents=True)
    assert [r.index for r in response.results] == ORDER  # ranked on "body" alone
    first = response.results[0].document
    assert (first.body, first.id) == (DOCS[ORDER[0]], ORDER[0])  # the object comes back whole
    # a document object without text and no rank_fields: 400 naming the document
    with pytest.raises(cohere.core.api_error.ApiError) as error:
        co.rerank(model="m", query=QUERY, documents=["a", {"title": "x"}])
    assert error.value.status_code == 400
    assert "document 1" in error.value.body["message"]


def test_cohere_v1_async_client(server: str) -> None:
    async def go() -> Any:
        co = cohere.AsyncClient(api_key=KEY, base_url=server)
        return await co.rerank(model="m", query=QUERY, documents=DOCS, top_n=2)

    assert [r.index for r in asyncio.run(go()).results] == ORDER[:2]


def test_cohere_v2_client(server: str) -> None:
    co = cohere.ClientV2(api_key=KEY, base_url=server)
    response = co.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS, top_n=2,
                         max_tokens_per_doc=4000)
    assert [r.index for r in response.results] == ORDER[:2]
    assert [r.relevance_score for r in response.results] == SCORES[:2]


def test_cohere_v2_async_client(server: str) -> None:
    async def go() -> Any:
        co = cohere.AsyncClientV2(api_key=KEY, base_url=server)
        return await co.rerank(model="m", query=QUERY, documents=DOCS)

    assert [r.index for r in asyncio.run(go()).results] == ORDER


def test_cohere_wrong_key_is_a_401_with_a_message(server: str) -> None:
    co = cohere.ClientV2(api_key="wrong", base_url=server)
    with pytest.raises(cohere.core.api_error.ApiError) as error:
        co.rerank(model="m", query=QUERY, documents=DOCS)
    assert error.value.status_code == 401
    assert error.value.body["message"] == "invalid API key"


def test_max_tokens_per_doc_truncates(server: str) -> None:
    co = cohere.ClientV2(api_key=KEY, base_url=server)
    # cut to one token each ("rock", "salt", "salt", "o"): documents 1 and 2 tie on "salt"
    # and keep their input order; document 3 loses "ocean water" and falls to the tie of 0
    response = co.rerank(model="m", query=QUERY, documents=DOCS, max_tokens_per_doc=1)
    assert [r.index for r in response.results] == [1, 2, 0, 3]


# --- LangChain / LlamaIndex ---------------------------------------------------------------------


def test_langchain_cohere_rerank(server: str) -> None:
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    reranker = CohereRerank(cohere_api_key=KEY, base_url=server, model="rerank-v3.5", top_n=3)
    docs = [Document(page_content=t, metadata={"i": i}) for i, t in enumerate(DOCS)]
    out = reranker.compress_documents(docs, QUERY)
    assert [d.metadata["i"] for d in out] == ORDER[:3]
    assert [d.metadata["relevance_score"] for d in out] == SCORES[:3]


def nodes() -> list[Any]:
    from llama_index.core.schema import NodeWithScore, TextNode

    return [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=0.0)
            for i, t in enumerate(DOCS)]


def test_llamaindex_cohere_rerank(server: str) -> None:
    from llama_index.postprocessor.cohere_rerank import CohereRerank

    post = CohereRerank(api_key=KEY, base_url=server, top_n=2, model="rerank-v3.5")
    out = post.postprocess_nodes(nodes(), query_str=QUERY)
    assert [n.node.node_id for n in out] == [f"n{i}" for i in ORDER[:2]]
    assert [n.score for n in out] == SCORES[:2]


@pytest.mark.parametrize("suffix", ["/v1", ""])  # Jina's documented base, and vLLM's /rerank
def test_llamaindex_jina_rerank(server: str, suffix: str) -> None:
    from llama_index.postprocessor.jinaai_rerank import JinaRerank

    post = JinaRerank(api_key=KEY, base_url=server + suffix, top_n=3)
    out = post.postprocess_nodes(nodes(), query_str=QUERY)
    assert [n.node.node_id for n in out] == [f"n{i}" for i in ORDER[:3]]
    # an error surfaces as Jina's client reads it: RuntimeError(body["detail"])
    bad = JinaRerank(api_key="wrong", base_url=server + suffix, top_n=3)
    with pytest.raises(RuntimeError, match="invalid API key"):
        bad.postprocess_nodes(nodes(), query_str=QUERY)


# --- rerankers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("provider", "path"), [
    ("cohere", "/v1/rerank"), ("jina", "/v1/rerank"), ("jina", "/rerank"),
    ("text-embeddings-inference", "/rerank"),
])
def test_rerankers_api_ranker(server: str, provider: str, path: str) -> None:
    from rerankers.models.api_rankers import APIRanker

    ranker = APIRanker(model="m", api_key=KEY, api_provider=provider, url=server + path,
                       verbose=0)
    ranked = ranker.rank(QUERY, DOCS)
    assert [r.document.text for r in ranked.results] == [DOCS[i] for i in ORDER]
    assert [r.score for r in ranked.results] == SCORES


# --- raw shapes: TEI, vLLM, Jina ----------------------------------------------------------------


def post(server: str, path: str, body: dict[str, Any], key: str | None = KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(server + path, json=body, headers=headers, timeout=30)


def test_tei_request_gets_a_list(server: str) -> None:
    r = post(server, "/rerank", {"query": QUERY, "texts": DOCS, "return_text": True,
                                 "raw_scores": False, "truncate": True})
    assert r.status_code == 200, r.text
    assert r.json() == [{"index": i, "score": s, "text": DOCS[i]}
                        for i, s in zip(ORDER, SCORES, strict=True)]
    plain = post(server, "/rerank", {"query": QUERY, "texts": DOCS}).json()
    assert [x["index"] for x in plain] == ORDER and all("text" not in x for x in plain)


@pytest.mark.parametrize("top_n", [0, -1, None])
def test_vllm_top_n_zero_means_all_and_documents_by_default(server: str, top_n: Any) -> None:
    body = {"model": "m", "query": QUERY, "documents": DOCS, "top_n": top_n}
    results = post(server, "/rerank", body).json()["results"]
    assert [x["index"] for x in results] == ORDER
    assert [x["document"]["text"] for x in results] == [DOCS[i] for i in ORDER]  # Jina/vLLM
    cohere_v1 = post(server, "/v1/rerank", body).json()["results"]
    assert [x["index"] for x in cohere_v1] == ORDER
    assert all("document" not in x for x in cohere_v1)  # Cohere v1's default


def test_errors_carry_message_and_detail(server: str) -> None:
    for path in ("/v1/rerank", "/v2/rerank", "/rerank"):
        r = post(server, path, {"query": " ", "documents": DOCS})
        assert r.status_code == 400
        body = r.json()
        assert body["message"] == body["detail"] == body["error"]["message"] \
            == "query must not be empty"


def test_health_without_a_key_shows_only_liveness(server: str) -> None:
    assert httpx.get(server + "/health").json() == {"status": "ok"}
    shown = httpx.get(server + "/health", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert shown == {"status": "ok", "model": MODEL}
    head = httpx.head(server + "/health")
    assert head.status_code == 200 and head.content == b""


def test_openapi_documents_each_route(server: str) -> None:
    paths = httpx.get(server + "/openapi.json").json()["paths"]
    for path in ("/v1/rerank", "/rerank", "/v2/rerank", "/v1/rerank/reasoning"):
        assert "401" in paths[path]["post"]["responses"]
    tei = paths["/rerank"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {ref["$ref"].rsplit("/", 1)[-1] for ref in tei["oneOf"]} == {
        "RerankRequest", "TeiRerankRequest"}


# --- this package's client and adapters ---------------------------------------------------------


def test_reasonrank_client_and_adapters(server: str) -> None:
    from langchain_core.documents import Document
    from llama_index.core.schema import QueryBundle

    from reasonrank.integrations.langchain import ReasonRankCompressor
    from reasonrank.integrations.llamaindex import ReasonRankPostprocessor
    from reasonrank.server.client import RerankClient

    client = RerankClient(server, api_key=KEY, timeout=30)
    assert client.rerank(QUERY, DOCS, top_n=2) == list(zip(ORDER[:2], SCORES[:2], strict=True))
    assert asyncio.run(client.arerank(QUERY, DOCS)) == list(zip(ORDER, SCORES, strict=True))
    docs = [Document(page_content=t) for t in DOCS]
    out = ReasonRankCompressor(client=client, top_n=3).compress_documents(docs, QUERY)
    assert [d.page_content for d in out] == [DOCS[i] for i in ORDER[:3]]
    post_ = ReasonRankPostprocessor(client=client, top_n=2)
    kept = post_.postprocess_nodes(nodes(), QueryBundle(QUERY))
    assert [n.node.node_id for n in kept] == [f"n{i}" for i in ORDER[:2]]
