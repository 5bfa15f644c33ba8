"""The server with `method="rank1"`: the same routes, the documents in Rank1's order (by
p(true), ties by input order), the reasoning route showing one record per document."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from reasonrank import Reranker
from reasonrank.backends.fake import FakeBackend
from reasonrank.config import RerankConfig
from reasonrank.server.app import create_app
from reasonrank.server.background import serve_in_thread
from reasonrank.server.settings import ServerSettings

QUERY = "salt ocean water"
DOCS = ["rock and stone", "salt ocean water", "salt mines", "ocean water waves", "stone"]


def test_rank1_through_the_server(qwen_tokenizer: Any) -> None:
    config = RerankConfig(model="m", backend="fake", method="rank1")
    reranker = Reranker(config=config, backend=FakeBackend(qwen_tokenizer))
    # the fake judges by query terms in the passage: 0, 3, 1, 2, 0 -> p(true) = (k+1)/(k+2)
    expected = [1, 3, 2, 0, 4]  # ties (0 and 4) keep their input order
    with serve_in_thread(create_app(reranker, ServerSettings())) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        response = client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS})
        assert response.status_code == 200, response.text
        assert [r["index"] for r in response.json()["results"]] == expected
        reasoning = client.post("/v1/rerank/reasoning", json={"query": QUERY, "documents": DOCS})
        assert reasoning.status_code == 200, reasoning.text
        body = reasoning.text
    assert "scored" in body and "query terms appear in the passage" in body
