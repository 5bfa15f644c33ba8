"""The FastAPI app: `/v1/rerank`, `/v1/rerank/reasoning`, `/v1/models`, `/health`, `/metrics`.

Every request awaits the one shared `Reranker` on the server's event loop, so the windows of
concurrent requests share the scheduler's concurrency cap and are batched on the backend.
Errors are JSON `{"error": {"message", "type"}}`, never a stack trace.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from reasonrank.errors import ReasonRankError, require
from reasonrank.reranker import Reranker
from reasonrank.server.metrics import ServerMetrics
from reasonrank.server.schemas import (
    SCORE_NOTE,
    ErrorResponse,
    Health,
    Meta,
    ModelCard,
    ModelList,
    ReasoningRerankResponse,
    RerankRequest,
    RerankResponse,
    RerankResult,
    ResultDocument,
    Usage,
    WindowOut,
)
from reasonrank.server.settings import ServerSettings
from reasonrank.types import Candidate, Query, RankedResult, WindowTrace

log = logging.getLogger(__name__)

require("fastapi", "server", "reasonrank serve")
from fastapi import Depends, FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse, Response  # noqa: E402
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found",
                405: "method_not_allowed", 413: "request_too_large", 422: "validation_error",
                500: "server_error", 502: "backend_error", 504: "timeout"}
_THINK = re.compile(r"(?:<think>)?(.*?)</think>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)


class ApiError(Exception):
    """An error answered as `{"error": {"message", "type"}}` with an HTTP status."""

    def __init__(self, status: int, message: str, type_: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_ or _ERROR_TYPES.get(status, "error")


def error_response(status: int, message: str, type_: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": type_ or _ERROR_TYPES.get(status, "error")}}
    return JSONResponse(body, status_code=status, headers=headers)


def relevance_score(rank: int, n: int) -> float:
    """`1 - (rank - 1) / n`: 1.0 at rank 1, strictly decreasing, > 0 (an order, not a
    calibrated probability)."""
    return 1.0 - (rank - 1) / n


def split_output(output: str) -> tuple[str | None, str | None]:
    """The reasoning (inside <think>..</think>) and answer (inside <answer>..</answer>) of an
    output; None where absent. An unterminated block runs to the end of the output."""
    reasoning = answer = None
    if "</think>" in output:
        match = _THINK.search(output)
        if match:
            reasoning = match.group(1).rsplit("<think>", 1)[-1].strip()
    elif "<think>" in output:
        reasoning = output.split("<think>", 1)[1].split("<answer>", 1)[0].strip()
    match = _ANSWER.search(output)
    if match:
        answer = match.group(1).strip()
    return reasoning, answer


class _Guard:
    """Pure ASGI middleware: the body size limit (Content-Length, then while reading) and the
    per-endpoint request counter and latency histogram."""

    def __init__(self, app: Any, settings: ServerSettings, metrics: ServerMetrics,
                 endpoints: set[str]) -> None:
        self.app = app
        self.limit = settings.max_body_bytes
        self.metrics = metrics
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in self.endpoints else "other"
        status = 500
        began = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if scope["method"] in ("POST", "PUT", "PATCH"):
                body = await self._read_body(scope, receive, send_status)
                if body is None:
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe_request(endpoint, status, time.perf_counter() - began)

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None after answering 400/413 (or on a disconnect)."""
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        too_large = f"request body exceeds the {self.limit}-byte limit"
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await error_response(400, "invalid Content-Length header")(scope, receive, send)
                return None
            if length > self.limit:
                await error_response(413, too_large)(scope, receive, send)
                return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await error_response(413, too_large)(scope, receive, send)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {400: "bad request: invalid JSON, empty query or no documents",
            401: "missing or invalid API key", 413: "body, document count or text too large",
            422: "the body does not match the schema", 500: "internal error",
            502: "the generation backend failed", 504: "the request timed out"}
    return {c: {"model": ErrorResponse, "description": text[c]} for c in codes}


def create_app(reranker: Reranker, settings: ServerSettings | None = None) -> FastAPI:
    """An app serving `reranker`; the app owns it and closes its backend on shutdown."""
    settings = settings or ServerSettings()
    model_name = settings.served_model_name or reranker.config.model
    metrics = ServerMetrics()
    created = int(time.time())
    keys = tuple(k.encode() for k in settings.api_keys)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await reranker.backend.aclose()

    app = FastAPI(
        title="reasonrank",
        summary="Listwise reasoning reranker (Cohere / Jina / vLLM compatible /v1/rerank)",
        description=SCORE_NOTE,
        lifespan=lifespan,
    )
    bearer = HTTPBearer(auto_error=False, description="an API key of the server")

    async def check_key(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> None:
        if credentials is None:
            raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'")
        given = credentials.credentials.encode()
        ok = False
        for key in keys:  # compare against every key: timing does not reveal which matched
            ok |= hmac.compare_digest(given, key)
        if not ok:
            raise ApiError(401, "invalid API key")

    auth = [Depends(check_key)] if keys else []
    auth_codes = (401,) if keys else ()

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.message, exc.type, headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if bad_json is not None:
            reason = (bad_json.get("ctx") or {}).get("error", "malformed JSON")
            return error_response(400, f"invalid JSON body: {reason}")
        parts = [
            f"{'.'.join(str(x) for x in e.get('loc', ()) if x != 'body') or 'body'}: "
            f"{e.get('msg', 'invalid')}"
            for e in errors[:5]
        ]
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        return error_response(422, "; ".join(parts) + more)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal server error")

    async def rerank(body: RerankRequest) -> tuple[RankedResult, dict[str, Any]]:
        if not body.query.strip():
            raise ApiError(400, "query must not be empty")
        if not body.documents:
            raise ApiError(400, "documents must not be empty")
        if len(body.query) > settings.max_query_chars:
            raise ApiError(413, f"query has {len(body.query)} characters; "
                                f"the limit is {settings.max_query_chars}")
        if len(body.documents) > settings.max_documents:
            raise ApiError(413, f"{len(body.documents)} documents; "
                                f"the limit is {settings.max_documents} per request")
        n = len(body.documents)
        cands = []
        for i, doc in enumerate(body.documents):
            text = doc if isinstance(doc, str) else doc.text
            if len(text) > settings.max_document_chars:
                raise ApiError(413, f"document {i} has {len(text)} characters; "
                                    f"the limit is {settings.max_document_chars}")
            title = None if isinstance(doc, str) else (doc.model_extra or {}).get("title")
            cands.append(Candidate(str(i), text, float(n - i),
                                   title if isinstance(title, str) and title else None))
        metrics.in_flight.inc()
        began = time.perf_counter()
        try:
            result = await asyncio.wait_for(
                reranker.arerank(Query(body.query), cands), settings.request_timeout
            )
        except TimeoutError:
            raise ApiError(504, f"reranking did not finish within the "
                                f"{settings.request_timeout:g} s request timeout") from None
        except ReasonRankError as exc:
            log.error("reranking failed: %s", exc)
            raise ApiError(502, "the generation backend failed") from None
        finally:
            metrics.in_flight.dec()
        latency = time.perf_counter() - began
        metrics.observe_result(result)
        top = result.docs[: body.top_n] if body.top_n else result.docs
        results = [
            RerankResult(
                index=int(d.docid), relevance_score=relevance_score(d.rank, n),
                document=ResultDocument(text=d.text) if body.return_documents else None,
            )
            for d in top
        ]
        prompt = [w.prompt_tokens for w in result.windows if w.prompt_tokens is not None]
        output = [w.output_tokens for w in result.windows if w.output_tokens is not None]
        usage = Usage(
            prompt_tokens=sum(prompt) if prompt else None,
            output_tokens=sum(output) if output else None,
            total_tokens=sum(prompt) + sum(output) if prompt or output else None,
        )
        fields = {
            "id": f"rerank-{uuid.uuid4().hex}", "model": model_name, "results": results,
            "meta": Meta(windows=len(result.windows), parse_status=result.status_counts(),
                         latency_s=round(latency, 6)),
            "usage": usage,
        }
        return result, fields

    rerank_codes = (400, *auth_codes, 413, 422, 500, 502, 504)

    @app.post(
        "/v1/rerank", response_model=RerankResponse, response_model_exclude_none=True,
        dependencies=auth, responses=_responses(*rerank_codes), tags=["rerank"],
        summary="Rerank documents for a query (Cohere / Jina / vLLM shape)",
        description=SCORE_NOTE,
    )
    async def rerank_endpoint(body: RerankRequest) -> RerankResponse:
        _, fields = await rerank(body)
        return RerankResponse(**fields)

    @app.post(
        "/v1/rerank/reasoning", response_model=ReasoningRerankResponse,
        response_model_exclude_none=True, dependencies=auth,
        responses=_responses(*rerank_codes), tags=["rerank"],
        summary="Rerank, with the model's reasoning for every window",
        description=SCORE_NOTE,
    )
    async def reasoning_endpoint(body: RerankRequest) -> ReasoningRerankResponse:
        result, fields = await rerank(body)
        return ReasoningRerankResponse(**fields, windows=[_window(w) for w in result.windows])

    @app.get("/health", response_model=Health, tags=["server"],
             responses=_responses(500))
    async def health() -> Health:
        return Health(status="ok", model=model_name)

    @app.get("/v1/models", response_model=ModelList, dependencies=auth, tags=["server"],
             responses=_responses(*auth_codes, 500))
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=model_name, created=created)])

    @app.get(
        "/metrics", dependencies=auth, tags=["server"], response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                         "description": "Prometheus metrics"}, **_responses(*auth_codes, 500)},
    )
    async def metrics_endpoint() -> Response:
        content, media_type = metrics.render()
        return Response(content, media_type=media_type)

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"],
        )
    endpoints = {getattr(r, "path", "") for r in app.routes}
    app.add_middleware(_Guard, settings=settings, metrics=metrics, endpoints=endpoints)
    _document_limits(app, settings)
    app.state.reranker = reranker
    app.state.metrics = metrics
    return app


def _window(w: WindowTrace) -> WindowOut:
    reasoning, answer = split_output(w.output)
    return WindowOut(
        start=w.start, end=w.end, pass_index=w.pass_index, status=w.status.value,
        reasoning=reasoning, answer=answer, output=w.output, order=w.order,
        prompt_tokens=w.prompt_tokens, output_tokens=w.output_tokens,
        finish_reason=w.finish_reason, latency_s=round(w.latency_s, 6),
    )


def _document_limits(app: FastAPI, settings: ServerSettings) -> None:
    """Write the request limits into the OpenAPI schema, so it says what the server accepts."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            comps = schema["components"]["schemas"]
            props = comps["RerankRequest"]["properties"]
            props["query"].update(minLength=1, maxLength=settings.max_query_chars,
                                  pattern=r"\S")
            props["documents"].update(minItems=1, maxItems=settings.max_documents)
            for option in props["documents"]["items"]["anyOf"]:
                if option.get("type") == "string":
                    option["maxLength"] = settings.max_document_chars
            comps["DocumentObject"]["properties"]["text"]["maxLength"] = (
                settings.max_document_chars
            )
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
