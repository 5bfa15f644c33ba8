"""A backend for any OpenAI-compatible server: vLLM serve, SGLang, llama.cpp server, hosted APIs.

Endpoints:
- "completions" (default): POST {api_base}/completions with the exact rendered prompt. The chat
  template is applied client-side (by the prompt builder, with `tokenizer`), so the server sees the
  same string the hf and vllm backends feed their models.
- "chat": POST {api_base}/chat/completions with the chat messages; the server applies its own
  template. Use it for hosted APIs that have no completions endpoint.

Reasoning split out by the server: servers run with a reasoning parser (vLLM/SGLang
`--reasoning-parser`, DeepSeek's API) return the thinking in `message.reasoning_content` (or
`message.reasoning`) and only what follows `</think>` in `content`. The backend puts it back as
`<think>{reasoning}</think>{content}`, which is the text the model produced, so the answer parser
and the window traces see the same output on every backend. A `content` that already holds a
`<think>` block is left as it is.

Log-probabilities (`SamplingParams.logprobs`, the rank1 method): the completions endpoint's
`logprobs` (top N per token, keyed by token text), `stop` as given, and `allowed_tokens` as a
`logit_bias` of +100 on their ids (the tokenizer's); the chat endpoint is refused for them with a
`LogprobsUnavailableError`, and so is a completion that comes back without them.

Errors: 429, 408, 5xx, timeouts and connection errors are retried with exponential backoff and
jitter (`Retry-After` honoured, capped at `backoff_max`), up to `max_retries` retries; any other
4xx raises `BackendRequestError` at once with the server's message; exhausted retries and
malformed responses raise `BackendError`.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from reasonrank.backends.base import Backend, load_tokenizer
from reasonrank.config import ENDPOINTS, BackendOptions
from reasonrank.core.options import POSITIVE, Range
from reasonrank.core.redact import redact_url
from reasonrank.errors import (
    BackendError,
    BackendRequestError,
    ConfigError,
    LogprobsUnavailableError,
)
from reasonrank.http_errors import clip, error_detail, message_of
from reasonrank.settings import option
from reasonrank.types import Generation, Prompt, SamplingParams

if TYPE_CHECKING:
    from reasonrank.config import RerankConfig

logger = logging.getLogger(__name__)

_RETRY_STATUSES = frozenset({408, 429})  # and every 5xx


class _RetryableError(Exception):
    """One failed attempt that may succeed when tried again."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind  # counted in the final error: "HTTP 503", "timeout", "connection error"
        self.retry_after = retry_after


SERVER_CONCURRENCY = 256
"""--concurrency when it is not given: a server keeps hundreds of sequences decoding at once."""


@dataclass
class OpenAIOptions(BackendOptions):
    """Options of the OpenAI-compatible backend."""

    api_base: str = option("http://127.0.0.1:8000/v1", "OpenAI-compatible base URL",
                           group="openai")
    api_key_env: str = option("OPENAI_API_KEY", "environment variable that holds the API key",
                              group="openai")
    endpoint: str = option("completions", "completions (exact rendered prompt) or chat",
                           group="openai", choices=ENDPOINTS)
    request_timeout: float = option(600.0, "seconds before a request is retried",
                                    group="openai", range=POSITIVE)
    max_retries: int = option(6, "retries on 429, 5xx and timeouts", group="openai",
                              range=Range(0, 1000))
    extra_body: dict[str, Any] | None = option(  # noqa: RUF009 (a field specifier)
        None, "JSON object merged into every request body, e.g. '{\"repeat_penalty\": 1.0}' "
        "for llama.cpp's server (whose default 1.1 changes greedy outputs)", group="openai")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.extra_body is not None and (
            not isinstance(self.extra_body, dict)
            or not all(isinstance(k, str) for k in self.extra_body)
        ):
            raise ConfigError(f"extra_body must be a JSON object, got {self.extra_body!r}")

    def default_concurrency(self) -> int:
        return SERVER_CONCURRENCY

    def check(self, config: RerankConfig) -> None:
        problem = self.raw_prompt_problem()
        if config.force_answer_tokens and problem:
            raise ConfigError(f"force_answer_tokens continues the rendered prompt: {problem}")

    def raw_prompt_problem(self) -> str | None:
        if self.endpoint == "chat":
            return ("use the openai backend's completions endpoint (the chat endpoint "
                    "re-renders the prompt)")
        return None


class OpenAIBackend(Backend):
    """Generations from an OpenAI-compatible HTTP server, `concurrency` requests at a time."""

    name = "openai"
    Options = OpenAIOptions

    def __init__(
        self,
        model: str,
        *,
        api_base: str = "http://127.0.0.1:8000/v1",
        api_key_env: str | None = "OPENAI_API_KEY",
        api_key: str | None = None,
        endpoint: str = "completions",
        tokenizer: Any = None,
        tokenizer_name: str | None = None,
        request_timeout: float = 600.0,
        max_retries: int = 6,
        concurrency: int = 32,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        extra_body: dict[str, Any] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Cheap: no connection is opened and no tokenizer loaded until they are needed.

        `api_key` overrides the environment variable named by `api_key_env`; with neither set no
        Authorization header is sent (fine for local servers). `tokenizer` injects a tokenizer
        object; otherwise `tokenizer_name` (default: `model`) is loaded on first access.
        `extra_body` is merged into every request body (server-specific options, e.g. vLLM's
        `{"add_special_tokens": false}`). `transport` is passed to `httpx.AsyncClient`.
        """
        if endpoint not in ENDPOINTS:
            raise ConfigError(f"endpoint must be one of {', '.join(ENDPOINTS)}; got {endpoint!r}")
        if concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
        if request_timeout <= 0:
            raise ConfigError(f"request_timeout must be > 0, got {request_timeout}")
        if backoff_base < 0 or backoff_max < 0:
            raise ConfigError("backoff_base and backoff_max must be >= 0")
        self.model = model
        # Credentials in the URL (http://user:pw@host/v1) become Basic auth, and `api_base`
        # keeps only the rest: no message, log line or repr can show them.
        self.api_base, self._basic_auth = _split_userinfo(api_base.rstrip("/"))
        self.endpoint = endpoint
        self.api_key_env = api_key_env
        if api_key is None and api_key_env:
            api_key = os.environ.get(api_key_env) or None
        self._api_key = api_key
        self.request_timeout = float(request_timeout)
        self.max_retries = int(max_retries)
        self.concurrency = int(concurrency)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.extra_body = dict(extra_body or {})
        self._transport = transport
        self._tokenizer = tokenizer
        self._tokenizer_name = tokenizer_name or model
        self._rng = random.Random()
        # Created on first use, in the running event loop (an AsyncClient's pool and a Semaphore
        # belong to one loop); remade if a later call runs in another loop (asyncio.run twice).
        self._client: httpx.AsyncClient | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._keeper: AsyncGenerator[None, None] | None = None

    # -- Backend interface -------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: RerankConfig) -> OpenAIBackend:
        options = OpenAIOptions.of(config)
        return cls(
            config.model,
            api_base=options.api_base,
            api_key_env=options.api_key_env,
            endpoint=options.endpoint,
            tokenizer_name=config.tokenizer_name,
            request_timeout=options.request_timeout,
            max_retries=options.max_retries,
            concurrency=config.in_flight,
            extra_body=options.extra_body,
        )

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self._tokenizer_name, "the openai backend's prompts")
        return self._tokenizer

    @property
    def url(self) -> str:
        path = "/completions" if self.endpoint == "completions" else "/chat/completions"
        return self.api_base + path

    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        if (params.logprobs or params.allowed_tokens) and self.endpoint != "completions":
            raise LogprobsUnavailableError(
                f"the openai backend's {self.endpoint} endpoint (POST {self.url}) cannot give "
                "the log-probabilities of a raw prompt's continuation; use endpoint completions"
            )
        body = self._request_body(prompt, params)
        if params.allowed_tokens:
            from reasonrank.backends.hf import allowed_ids

            ids = allowed_ids(self.tokenizer, params.allowed_tokens, self.name)
            body["logit_bias"] = {str(i): 100 for i in ids}
        data = await self._post_with_retries(body)
        gen = self._parse(data)
        if params.logprobs and gen.logprobs is None:
            raise LogprobsUnavailableError(
                f"POST {self.url} returned no logprobs for a completion that asked for "
                f"{params.logprobs}; the server must support the completions 'logprobs' field"
            )
        return gen

    async def aclose(self) -> None:
        keeper, loop = self._keeper, self._loop
        self._client = self._semaphore = self._loop = self._keeper = None
        if keeper is not None and loop is asyncio.get_running_loop():
            await keeper.aclose()  # closes the client
        # A client of another loop was closed when that loop shut down (see _ensure_client).

    # -- requests ----------------------------------------------------------------------------

    def _request_body(self, prompt: Prompt, params: SamplingParams) -> dict[str, Any]:
        return request_body(self.model, self.endpoint, prompt, params, self.extra_body)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    async def _ensure_client(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._client is None or self._semaphore is None or self._loop is not loop:
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.request_timeout),
                limits=httpx.Limits(
                    max_connections=self.concurrency,
                    max_keepalive_connections=self.concurrency,
                ),
                headers=self._headers(),
                auth=None if self._api_key else self._basic_auth,  # an API key wins
                transport=self._transport,
            )
            self._client, self._loop = client, loop
            self._semaphore = asyncio.Semaphore(self.concurrency)
            # An async generator started in this loop is closed by the loop's shutdown
            # (asyncio.run calls loop.shutdown_asyncgens), which closes the client: a backend
            # used from several asyncio.run calls leaves no connection open behind.
            self._keeper = _close_at_loop_shutdown(client)
            await anext(self._keeper)
        return self._client, self._semaphore

    async def _post_with_retries(self, body: dict[str, Any]) -> dict[str, Any]:
        url = self.url
        attempts = self.max_retries + 1
        failures: Counter[str] = Counter()
        last: _RetryableError | None = None
        for attempt in range(attempts):
            try:
                return await self._post_once(url, body)
            except _RetryableError as exc:
                failures[exc.kind] += 1
                last = exc
                if attempt + 1 >= attempts:
                    break
                delay = self._backoff(attempt, exc.retry_after)
                logger.warning(
                    "POST %s failed (%s); retry %d of %d in %.2fs",
                    redact_url(url), exc, attempt + 1, self.max_retries, delay,
                )
                await asyncio.sleep(delay)
        summary = ", ".join(f"{n}x {kind}" for kind, n in failures.most_common())
        hint = ""
        if "connection error" in failures:
            hint = f" Is the server running at {self.api_base}?"
        elif "timeout" in failures:
            hint = " Raise request_timeout if the server is just slow."
        raise BackendError(
            f"POST {url} failed after {attempts} attempt(s) ({summary}); last error: {last}.{hint}"
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry `attempt + 1`: Retry-After if given, else exponential."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.backoff_max)
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** min(attempt, 30))
        return ceiling * (0.5 + 0.5 * self._rng.random())  # "equal jitter"

    async def _post_once(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        client, semaphore = await self._ensure_client()
        async with semaphore:
            try:
                async with asyncio.timeout(self.request_timeout):
                    response = await client.post(url, json=body)
            except (TimeoutError, httpx.TimeoutException) as exc:
                raise _RetryableError(
                    "timeout", f"no answer within {self.request_timeout:g}s"
                ) from exc
            except httpx.TransportError as exc:
                reason = str(exc) or type(exc).__name__
                raise _RetryableError("connection error", f"connection error: {reason}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return self._decode(response)
        detail = error_detail(response)
        if status in _RETRY_STATUSES or status >= 500:
            raise _RetryableError(
                f"HTTP {status}", f"HTTP {status}: {detail}", _retry_after(response)
            )
        raise BackendRequestError(status, detail + self._hint(status))

    def _hint(self, status: int) -> str:
        if status in (401, 403):
            where = (f"the environment variable {self.api_key_env}" if self.api_key_env
                     else "api_key")
            state = "is set" if self._api_key else "is not set"
            return f" (check the API key: {where} {state})"
        if status == 404:
            return (
                f" (check api_base {self.api_base!r} - it usually ends in /v1 -, the endpoint "
                f"{self.endpoint!r} and the model name {self.model!r})"
            )
        return ""

    def _decode(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError
            raise BackendError(
                f"POST {self.url} answered HTTP 200 with a body that is not JSON: "
                f"{clip(response.text)!r}"
            ) from exc
        if not isinstance(data, dict):
            raise BackendError(f"POST {self.url} answered with JSON that is not an object: "
                               f"{clip(response.text)!r}")
        return data

    # -- responses ---------------------------------------------------------------------------

    def _parse(self, data: dict[str, Any]) -> Generation:
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            if "error" in data:
                raise BackendError(f"POST {self.url} returned an error: {message_of(data)}")
            raise BackendError(
                f"POST {self.url} returned no choices: {clip(json.dumps(data))}"
            )
        choice = choices[0]
        if self.endpoint == "completions":
            text = choice.get("text")
            if text is None:
                raise BackendError(f"POST {self.url} returned a choice without 'text': "
                                   f"{clip(json.dumps(choice))}")
        else:
            message = choice.get("message")
            if not isinstance(message, dict):
                raise BackendError(f"POST {self.url} returned a choice without 'message': "
                                   f"{clip(json.dumps(choice))}")
            text = _chat_text(message)
        usage = data.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        return Generation(
            text=str(text),
            prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
            output_tokens=_int_or_none(usage.get("completion_tokens")),
            finish_reason=choice.get("finish_reason"),
            logprobs=_completion_logprobs(choice.get("logprobs")),
        )


def request_body(model: str, endpoint: str, prompt: Prompt, params: SamplingParams,
                 extra_body: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON body sent for one generation: the rendered prompt (completions) or the
    messages (chat), the sampling settings, then `extra_body`."""
    body: dict[str, Any] = {"model": model}
    if endpoint == "completions":
        body["prompt"] = prompt.text
    else:
        body["messages"] = [dict(m) for m in prompt.messages]
    body["max_tokens"] = params.max_new_tokens
    body["temperature"] = params.temperature
    body["top_p"] = params.top_p
    if params.seed is not None:
        body["seed"] = params.seed
    if params.stop:
        body["stop"] = list(params.stop)
    if params.logprobs:
        body["logprobs"] = params.logprobs
    body.update(extra_body or {})
    return body


def _completion_logprobs(data: Any) -> tuple[dict[str, float], ...] | None:
    """A completions choice's `logprobs` as {token text: log-probability} per token (the top
    alternatives with the chosen token); None when absent or malformed."""
    if not isinstance(data, dict):
        return None
    tokens, chosen, top = data.get("tokens"), data.get("token_logprobs"), data.get("top_logprobs")
    if not isinstance(tokens, list) or not isinstance(top, list) or len(top) != len(tokens):
        return None
    out = []
    for i, alternatives in enumerate(top):
        position = {str(k): float(v) for k, v in (alternatives or {}).items()
                    if isinstance(v, int | float)}
        if isinstance(chosen, list) and i < len(chosen) and isinstance(chosen[i], int | float):
            position.setdefault(str(tokens[i]), float(chosen[i]))
        out.append(position)
    return tuple(out)


def _split_userinfo(url: str) -> tuple[str, httpx.BasicAuth | None]:
    """`url` without its userinfo, and that userinfo as Basic auth (None when absent)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigError(f"invalid api_base {redact_url(url)!r}: {exc}") from None
    if not parsed.userinfo:
        return url, None
    bare = str(parsed.copy_with(username=None, password=None))
    if not url.endswith("/") and bare.endswith("/") and parsed.raw_path == b"/":
        bare = bare[:-1]
    return bare, httpx.BasicAuth(parsed.username, parsed.password)


async def _close_at_loop_shutdown(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.aclose()


def _chat_text(message: dict[str, Any]) -> str:
    """`content`, with a server-split reasoning put back in front as `<think>...</think>`."""
    content = message.get("content") or ""
    reasoning = message.get("reasoning_content")
    if reasoning is None:
        reasoning = message.get("reasoning")
    if isinstance(reasoning, str) and reasoning and "<think>" not in content:
        return f"<think>{reasoning}</think>{content}"
    return content


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _retry_after(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("retry-after"))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None when unusable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(seconds, 0.0)
