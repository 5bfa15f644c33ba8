"""The FastAPI app: `/v1/rerank`, `/rerank`, `/v2/rerank`, `/v1/rerank/reasoning`, `/v1/models`,
`/health`, `/metrics`.

One handler serves every rerank route: Cohere v1 and v2, Jina, vLLM, and TEI (`texts` on
`/rerank`, answered with a list). Every request awaits the one shared `Reranker` on the server's
event loop, so the windows of concurrent requests share the scheduler's concurrency cap and are
batched on the backend. Errors are JSON `{"message", "detail", "error": {"message", "type"}}`
(Cohere, Jina and OpenAI clients each find their field), never a stack trace.

The `_Guard` middleware runs before any route: API key check (before the body is read), body
size limit, body-read deadline (408), and cancellation of the request's work when its client
disconnects, so no window is generated for a caller that is gone.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager, suppress
from functools import lru_cache
from typing import Annotated, Any

from reasonrank.core.parsing import split_output
from reasonrank.errors import ReasonRankError, require
from reasonrank.reranker import Reranker
from reasonrank.server.metrics import ServerMetrics
from reasonrank.server.schemas import (
    SCORE_NOTE,
    DocumentObject,
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
    TeiRank,
    TeiRerankRequest,
    Usage,
    V2RerankRequest,
    WindowOut,
)
from reasonrank.server.settings import ServerSettings
from reasonrank.types import Query, RankedResult, WindowTrace, relevance_score

log = logging.getLogger(__name__)

require("fastapi", "server", "reasonrank serve")
from fastapi import Body, Depends, FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse, Response  # noqa: E402
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer  # noqa: E402
from pydantic import Discriminator, Tag  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found",
                405: "method_not_allowed", 408: "request_timeout", 413: "request_too_large",
                422: "validation_error", 500: "server_error", 502: "backend_error",
                503: "unavailable", 504: "timeout"}
# Routes that need a key when keys are set (checked before the body is read).
PROTECTED = frozenset({"/v1/rerank", "/rerank", "/v2/rerank", "/v1/rerank/reasoning",
                       "/v1/models", "/metrics"})
CLIENT_CLOSED = 499  # nginx's status for "the client closed the connection" (metrics only)


class ApiError(Exception):
    """An error answered as `{"error": {"message", "type"}}` with an HTTP status."""

    def __init__(self, status: int, message: str, type_: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_ or _ERROR_TYPES.get(status, "error")


def error_body(status: int, message: str, type_: str | None = None) -> dict[str, Any]:
    """`message` for Cohere clients, `detail` for Jina's and FastAPI's, `error` for OpenAI's."""
    return {"message": message, "detail": message,
            "error": {"message": message, "type": type_ or _ERROR_TYPES.get(status, "error")}}


def error_response(status: int, message: str, type_: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, type_), status_code=status, headers=headers)


class KeyCheck:
    """Bearer-key check in constant time per key; no keys means no authentication."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(k.encode() for k in keys)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def problem(self, authorization: str | None) -> str | None:
        """None when `authorization` (the header's value) carries a valid key, else why not."""
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return "missing API key: send 'Authorization: Bearer <key>'"
        ok = False
        for key in self.keys:  # compare against every key: timing does not reveal which matched
            ok |= hmac.compare_digest(given.strip().encode(), key)
        return None if ok else "invalid API key"


class _Guard:
    """Pure ASGI middleware, outermost: the API key (before the body is read), the body size
    limit (Content-Length, then while reading), the body-read deadline, cancellation on client
    disconnect, and the per-endpoint request counter and latency histogram."""

    def __init__(self, app: Any, settings: ServerSettings, metrics: ServerMetrics,
                 endpoints: set[str], keys: KeyCheck) -> None:
        self.app = app
        self.limit = settings.max_body_bytes
        self.body_timeout = settings.body_timeout
        self.metrics = metrics
        self.endpoints = endpoints
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in self.endpoints else "other"
        status = 500
        responded = False
        began = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                responded = True
            await send(message)

        try:
            if self.keys and scope["path"] in PROTECTED and scope["method"] != "OPTIONS":
                problem = self.keys.problem(_header(scope, b"authorization"))
                if problem is not None:
                    # the body is never buffered: uvicorn drops it as it arrives, and the
                    # connection's header deadline closes it if no new request follows
                    await error_response(401, problem, headers={"WWW-Authenticate": "Bearer"})(
                        scope, receive, send_status)
                    return
            if scope["method"] not in ("POST", "PUT", "PATCH"):
                await self.app(scope, receive, send_status)
                return
            body = await self._read_body(scope, receive, send_status)
            if body is None:
                return
            if await self._run_until_disconnect(scope, body, receive, send_status,
                                                lambda: responded):
                status = CLIENT_CLOSED
        finally:
            self.metrics.observe_request(endpoint, status, time.perf_counter() - began)

    async def _run_until_disconnect(self, scope: Scope, body: bytes, receive: Receive,
                                    send: Send, responded: Callable[[], bool]) -> bool:
        """Run the app with the body; cancel it if the client disconnects before the answer.
        True when it was cancelled so."""
        gone = asyncio.Event()
        sent = False

        async def app_receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        task = asyncio.ensure_future(self.app(scope, app_receive, send))

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    if not responded() and not task.done():
                        log.info("client %s went away; its request on %s is cancelled",
                                 _client(scope), scope["path"])
                        task.cancel()
                    return

        watcher = asyncio.ensure_future(watch())
        try:
            await task
        except asyncio.CancelledError:
            if not gone.is_set():
                raise  # the server itself is being cancelled
            return True
        finally:
            watcher.cancel()
            with suppress(asyncio.CancelledError):
                await watcher
            if not task.done():
                task.cancel()
        return False

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None after answering 400/408/413 (or on a disconnect)."""
        declared = _header(scope, b"content-length")
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
        try:
            async with asyncio.timeout(self.body_timeout):
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
        except TimeoutError:
            self.metrics.timeouts.labels(phase="body").inc()
            log.debug("client %s sent %d body bytes in %g s; answered 408",
                      _client(scope), size, self.body_timeout)
            await error_response(
                408, f"the request body was not received within {self.body_timeout:g} s",
                headers={"Connection": "close"})(scope, receive, send)
            return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {400: "bad request: invalid JSON, empty query, no documents or a document without "
                 "text", 401: "missing or invalid API key",
            408: "the request body was not received in time",
            413: "body, document count or text too large",
            422: "the body does not match the schema", 500: "internal error",
            502: "the generation backend failed", 503: "too many connections",
            504: "the request timed out"}
    return {c: {"model": ErrorResponse, "description": text[c]} for c in codes}


def document_text(doc: str | DocumentObject, rank_fields: Sequence[str] | None,
                  index: int) -> str:
    """The text reranked for a document: a string as is; an object's `rank_fields` joined as
    `key: value` lines (Cohere's rule; absent fields skipped), else its `text`. ApiError 400
    naming the document when it has neither."""
    if isinstance(doc, str):
        return doc
    data = doc.model_dump()
    fields = [f for f in rank_fields or () if data.get(f) is not None]
    if fields and fields != ["text"]:
        return "\n".join(f"{key}: {v if isinstance(v := data[key], str) else json.dumps(v)}"
                         for key in fields)
    text = data.get("text")
    if isinstance(text, str):
        return text
    if rank_fields:
        raise ApiError(400, f"document {index} has none of the rank_fields "
                            f"{', '.join(rank_fields)} and no 'text'")
    raise ApiError(400, f"document {index} has no 'text' field: give it one, send a string, "
                        "or name the fields to rerank on in 'rank_fields'")


def _tei_or_cohere(body: Any) -> str:
    return "tei" if isinstance(body, dict) and "texts" in body else "cohere"


JinaOrTeiBody = Annotated[
    Annotated[RerankRequest, Tag("cohere")] | Annotated[TeiRerankRequest, Tag("tei")],
    Discriminator(_tei_or_cohere),
]


def create_app(reranker: Reranker, settings: ServerSettings | None = None) -> FastAPI:
    """An app serving `reranker`; the app owns it and closes its backend on shutdown."""
    settings = settings or ServerSettings()
    model_name = settings.served_model_name or reranker.config.model
    metrics = ServerMetrics()
    created = int(time.time())
    keys = KeyCheck(settings.api_keys)
    # prompts are prepared in a worker thread: a big request never stalls the event loop
    reranker.scheduler.prompt_thread = True

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await reranker.backend.aclose()

    app = FastAPI(
        title="reasonrank",
        summary="Listwise reasoning reranker with Cohere (v1, v2), Jina, vLLM and TEI "
                "compatible rerank routes",
        description=SCORE_NOTE,
        lifespan=lifespan,
    )
    bearer = HTTPBearer(auto_error=False, description="an API key of the server")

    async def check_key(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> None:
        # the middleware answered 401 already; this documents the scheme and re-checks
        header = f"Bearer {credentials.credentials}" if credentials is not None else None
        problem = keys.problem(header)
        if problem is not None:
            raise ApiError(401, problem)

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
        skip = ("body", "cohere", "tei")  # the body and the /rerank union's tags
        parts = [
            f"{'.'.join(str(x) for x in e.get('loc', ()) if x not in skip) or 'body'}: "
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

    @lru_cache(maxsize=8)
    def truncator(max_tokens: int) -> Any:
        from reasonrank.core.truncation import Truncator

        return Truncator(reranker.builder.tokenizer, max_tokens)

    def cut(texts: list[str], max_tokens: int) -> list[str]:
        return truncator(max_tokens).truncate_all(texts)

    async def rerank(query: str, docs: Sequence[str | DocumentObject],
                     rank_fields: Sequence[str] | None = None,
                     max_tokens_per_doc: int | None = None
                     ) -> tuple[RankedResult, dict[str, Any]]:
        """The one rerank handler behind every route: checks, reranking, the common fields."""
        if not query.strip():
            raise ApiError(400, "query must not be empty")
        if not docs:
            raise ApiError(400, "documents must not be empty")
        if len(query) > settings.max_query_chars:
            raise ApiError(413, f"query has {len(query)} characters; "
                                f"the limit is {settings.max_query_chars}")
        if len(docs) > settings.max_documents:
            raise ApiError(413, f"{len(docs)} documents; "
                                f"the limit is {settings.max_documents} per request")
        texts, titles = [], []
        for i, doc in enumerate(docs):
            text = document_text(doc, rank_fields, i)
            if len(text) > settings.max_document_chars:
                raise ApiError(413, f"document {i} has {len(text)} characters; "
                                    f"the limit is {settings.max_document_chars}")
            title = None
            if isinstance(doc, DocumentObject) and not rank_fields:
                title = (doc.model_extra or {}).get("title")
            texts.append(text)
            titles.append(title if isinstance(title, str) and title else None)
        metrics.in_flight.inc()
        began = time.perf_counter()
        try:
            async with asyncio.timeout(settings.request_timeout):
                if max_tokens_per_doc and max_tokens_per_doc < reranker.config.passage_tokens:
                    texts = await reranker.scheduler.offload(cut, texts, max_tokens_per_doc)
                result = await reranker.arerank(Query(query), [
                    {"text": t, "title": title} for t, title in zip(texts, titles, strict=True)])
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
        prompt = [w.prompt_tokens for w in result.windows if w.prompt_tokens is not None]
        output = [w.output_tokens for w in result.windows if w.output_tokens is not None]
        usage = Usage(
            prompt_tokens=sum(prompt) if prompt else None,
            output_tokens=sum(output) if output else None,
            total_tokens=sum(prompt) + sum(output) if prompt or output else None,
        )
        fields = {
            "id": f"rerank-{uuid.uuid4().hex}", "model": model_name,
            "meta": Meta(windows=len(result.windows), parse_status=result.status_counts(),
                         latency_s=round(latency, 6)),
            "usage": usage,
        }
        return result, fields

    def results(result: RankedResult, docs: Sequence[str | DocumentObject], top_n: int | None,
                return_documents: bool) -> list[RerankResult]:
        n = len(docs)
        top = result.docs[:top_n] if top_n is not None and top_n > 0 else result.docs
        out = []
        for d in top:
            index = int(d.docid)
            document = None
            if return_documents:
                given = docs[index]
                document = (ResultDocument(text=given) if isinstance(given, str)
                            else ResultDocument(**given.model_dump(exclude_none=True)))
            out.append(RerankResult(index=index, relevance_score=relevance_score(d.rank, n),
                                    document=document))
        return out

    async def cohere_shape(body: RerankRequest, return_documents: bool
                           ) -> tuple[RankedResult, RerankResponse]:
        result, fields = await rerank(body.query, body.documents, body.rank_fields,
                                      body.max_tokens_per_doc)
        want = body.return_documents if body.return_documents is not None else return_documents
        return result, RerankResponse(
            **fields, results=results(result, body.documents, body.top_n, want))

    rerank_codes = (400, *auth_codes, 408, 413, 422, 500, 502, 503, 504)
    common = dict(response_model_exclude_none=True, dependencies=auth,
                  responses=_responses(*rerank_codes), tags=["rerank"])

    @app.post(
        "/v1/rerank", response_model=RerankResponse,
        summary="Rerank documents for a query (Cohere v1, Jina and vLLM shape)",
        description=f"{SCORE_NOTE}\n\n`return_documents` defaults to false (Cohere v1). "
                    "`top_n` absent or <= 0 returns every document. Object documents are "
                    "reranked on `text`, or on the `rank_fields` joined as `key: value` lines.",
        **common,
    )
    async def rerank_v1(body: RerankRequest) -> RerankResponse:
        return (await cohere_shape(body, False))[1]

    @app.post(
        "/v2/rerank", response_model=RerankResponse,
        summary="Rerank documents for a query (Cohere v2 shape)",
        description=f"{SCORE_NOTE}\n\nDocuments are strings; `max_tokens_per_doc` truncates "
                    "them further. Documents are not returned unless `return_documents` is "
                    "true.",
        **common,
    )
    async def rerank_v2(body: V2RerankRequest) -> RerankResponse:
        return (await cohere_shape(body, False))[1]

    @app.post(
        "/rerank", response_model=RerankResponse | list[TeiRank],
        summary="Rerank documents for a query (Jina and vLLM shape; TEI with `texts`)",
        description=f"{SCORE_NOTE}\n\nA body with `documents` is the Jina / vLLM request "
                    "(`return_documents` defaults to true, as they document) and gets the "
                    "object answer of /v1/rerank. A body with `texts` is Text Embeddings "
                    "Inference's request and gets its answer: a list of `{index, score[, "
                    "text]}`, best first.",
        **common,
    )
    async def rerank_jina_or_tei(
        body: Annotated[JinaOrTeiBody, Body()],
    ) -> RerankResponse | list[TeiRank]:
        if isinstance(body, TeiRerankRequest):
            result, _ = await rerank(body.query, body.texts)
            n = len(body.texts)
            return [TeiRank(index=int(d.docid), score=relevance_score(d.rank, n),
                            text=d.text if body.return_text else None)
                    for d in result.docs]
        return (await cohere_shape(body, True))[1]

    @app.post(
        "/v1/rerank/reasoning", response_model=ReasoningRerankResponse,
        summary="Rerank, with the model's reasoning for every window",
        description=SCORE_NOTE, **common,
    )
    async def reasoning_endpoint(body: RerankRequest) -> ReasoningRerankResponse:
        result, response = await cohere_shape(body, False)
        return ReasoningRerankResponse(**response.model_dump(),
                                       windows=[_window(w) for w in result.windows])

    @app.get("/health", response_model=Health, response_model_exclude_none=True,
             tags=["server"], responses=_responses(500),
             description="Liveness (HEAD works too). The model is named only without keys or "
                         "with a valid key.")
    async def health(request: Request) -> Health:
        shown = not keys or keys.problem(request.headers.get("authorization")) is None
        return Health(status="ok", model=model_name if shown else None)

    app.add_api_route("/health", health, methods=["HEAD"], response_model=Health,
                      response_model_exclude_none=True, include_in_schema=False)

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
    app.add_middleware(_Guard, settings=settings, metrics=metrics, endpoints=endpoints,
                       keys=keys)
    _document_limits(app, settings)
    app.state.reranker = reranker
    app.state.metrics = metrics
    app.state.settings = settings
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
            for name, docs_key in (("RerankRequest", "documents"),
                                   ("V2RerankRequest", "documents"),
                                   ("TeiRerankRequest", "texts")):
                props = comps[name]["properties"]
                props["query"].update(minLength=1, maxLength=settings.max_query_chars,
                                      pattern=r"\S")
                props[docs_key].update(minItems=1, maxItems=settings.max_documents)
                items = props[docs_key]["items"]
                for option in items.get("anyOf", [items]):
                    if option.get("type") == "string":
                        option["maxLength"] = settings.max_document_chars
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
