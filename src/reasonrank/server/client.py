"""A small client for the reasonrank HTTP service's Cohere-style rerank endpoint.

    from reasonrank.server.client import RerankClient
    client = RerankClient("http://127.0.0.1:8080", api_key="...")
    client.rerank("why do onions make you cry?", ["passage one", "passage two"], top_n=1)
    # -> [(1, 1.0)]: (index into `documents`, relevance score), best first

Request: `POST {base_url}/v1/rerank` with
`{"model", "query", "documents": [str], "top_n", "return_documents": false}` (`model` and `top_n`
are sent only when set). Response: `{"results": [{"index": int, "relevance_score": float}, ...]}`
ordered by rank.

Errors: an HTTP error status raises `BackendRequestError(status, message)` with the server's
`{"error": {"message": ...}}` text; connection problems, timeouts and malformed responses raise
`BackendError`. Nothing is retried. Each call opens its own connection, so one client can be used
from any thread and any event loop.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

from reasonrank.errors import BackendError, BackendRequestError, ConfigError
from reasonrank.http_errors import clip, error_detail


class RerankClient:
    """Reranks documents through a running reasonrank HTTP service."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 600.0,
        model: str | None = None,
    ) -> None:
        if not base_url:
            raise ConfigError("RerankClient needs a base_url, e.g. http://127.0.0.1:8080")
        base = base_url.rstrip("/")
        if base.endswith("/v1"):  # accept both http://host:port and http://host:port/v1
            base = base[: -len("/v1")]
        self.base_url = base
        self.url = f"{base}/v1/rerank"
        self.api_key = api_key
        self.timeout = timeout
        self.model = model

    def __repr__(self) -> str:
        return f"RerankClient({self.base_url!r}, model={self.model!r})"

    # public API
    def rerank(
        self, query: str, documents: Sequence[str], top_n: int | None = None
    ) -> list[tuple[int, float]]:
        """`(index into documents, relevance score)` pairs, best first, at most `top_n`."""
        body = self._body(query, documents, top_n)
        if body is None:
            return []
        try:
            with httpx.Client(timeout=self.timeout) as http:
                response = http.post(self.url, json=body, headers=self._headers())
        except httpx.HTTPError as exc:
            raise BackendError(f"POST {self.url} failed: {_describe(exc)}") from exc
        return self._decode(response, len(documents), top_n)

    async def arerank(
        self, query: str, documents: Sequence[str], top_n: int | None = None
    ) -> list[tuple[int, float]]:
        """The async `rerank`."""
        body = self._body(query, documents, top_n)
        if body is None:
            return []
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                response = await http.post(self.url, json=body, headers=self._headers())
        except httpx.HTTPError as exc:
            raise BackendError(f"POST {self.url} failed: {_describe(exc)}") from exc
        return self._decode(response, len(documents), top_n)

    # internals
    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _body(
        self, query: str, documents: Sequence[str], top_n: int | None
    ) -> dict[str, Any] | None:
        if top_n is not None and top_n < 1:
            raise ConfigError(f"top_n must be a positive integer or None, got {top_n}")
        if isinstance(documents, str):
            raise ConfigError("documents must be a sequence of strings, not one string")
        docs = list(documents)
        for i, doc in enumerate(docs):
            if not isinstance(doc, str):
                raise ConfigError(f"document {i}: expected str, got {type(doc).__name__}")
        if not docs:
            return None
        body: dict[str, Any] = {"query": query, "documents": docs, "return_documents": False}
        if self.model is not None:
            body["model"] = self.model
        if top_n is not None:
            body["top_n"] = top_n
        return body

    def _decode(
        self, response: httpx.Response, n: int, top_n: int | None
    ) -> list[tuple[int, float]]:
        if response.status_code >= 400:
            raise BackendRequestError(response.status_code, error_detail(response))
        try:
            data = response.json()
        except ValueError as exc:
            raise BackendError(
                f"POST {self.url} answered with a body that is not JSON: {clip(response.text)}"
            ) from exc
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise BackendError(f"POST {self.url} answered without a 'results' list: "
                               f"{clip(json.dumps(data))}")
        out: list[tuple[int, float]] = []
        seen: set[int] = set()
        for item in results:
            index = item.get("index") if isinstance(item, dict) else None
            score = item.get("relevance_score") if isinstance(item, dict) else None
            if (
                not isinstance(index, int) or isinstance(index, bool)
                or not 0 <= index < n or index in seen
                or not isinstance(score, int | float) or isinstance(score, bool)
            ):
                raise BackendError(f"POST {self.url} returned an invalid result {item!r} "
                                   f"for {n} documents")
            seen.add(index)
            out.append((index, float(score)))
        return out if top_n is None else out[:top_n]


def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
