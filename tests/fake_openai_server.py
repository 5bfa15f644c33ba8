"""A small, real OpenAI-compatible HTTP server for tests: deterministic answers, injected faults.

    from fake_openai_server import FakeOpenAIServer, Fault

    with FakeOpenAIServer(faults=[Fault.rate_limited(), Fault.server_error(503)]) as server:
        backend = OpenAIBackend("m", api_base=server.url, ...)
        ...
        assert server.statuses() == [429, 503, 200]

It serves POST /v1/completions, POST /v1/chat/completions and GET /v1/models on 127.0.0.1 at an
ephemeral port, in a background thread (stdlib `ThreadingHTTPServer`, one thread per connection).

Answers: by default the reverse of the passages the prompt lists (lines that start with `[n]`),
`<think>...</think>\n<answer>[3] > [2] > [1]</answer>`; see `reverse_answer`. Pass `answer=` to
compute another text from the prompt. Token counts in `usage` are whitespace-separated words;
an answer longer than `max_tokens` words is cut there with finish_reason "length".

Log-probabilities (completions): a request with `logprobs: N` gets OpenAI's `logprobs` object.
The answer is split into tokens at whitespace (`word_tokens`); at each position the server scores
candidate tokens with `token_logits(prompt, tokens, i)` (default `default_token_logits`: the
answer's own token highest), adds the request's `logit_bias` (token ids resolved through
`vocab`), takes the log-softmax over them, chooses the most likely one (greedy, so a bias that
overrules the answer changes the text) and returns the top N with the chosen token. `stop` cuts
the text before the first stop string and ends the tokens with the one completing it, as vLLM
does.

Faults: `faults` is a queue consumed one per POST in arrival order (concurrent requests take them
in whatever order they arrive); once it is empty `default_fault` (None: answer normally) applies
to every request. `add_faults` appends to the queue while the server runs.

Every POST is recorded (`requests`: path, lower-cased headers, parsed JSON body, the status the
server chose) and the server tracks the largest number of POSTs in flight at once
(`max_in_flight`).
"""

from __future__ import annotations

import json
import math
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "FakeOpenAIServer",
    "Fault",
    "RecordedRequest",
    "passage_ids",
    "prompt_text_of",
    "reverse_answer",
]

_TOKEN = re.compile(r"\s*\S+")


def word_tokens(text: str) -> list[str]:
    """The fake's tokens: whitespace-separated words with the whitespace before them."""
    return _TOKEN.findall(text)


def default_token_logits(prompt: str, tokens: list[str], i: int) -> dict[str, float]:
    """Candidate logits at position i: the answer's token 4, " true" and " false" from the
    prompt's length (deterministic), a filler token 0."""
    return {tokens[i]: 4.0, " true": float(len(prompt) % 4), " false": 1.5, " maybe": 0.0}


def log_softmax(logits: dict[str, float]) -> dict[str, float]:
    top = max(logits.values())
    norm = top + math.log(sum(math.exp(v - top) for v in logits.values()))
    return {k: v - norm for k, v in logits.items()}


_LINE_MARKER = re.compile(r"(?m)^\s*\[(\d+)\]")
_ANY_MARKER = re.compile(r"\[(\d+)\]")


def passage_ids(prompt: str) -> list[int]:
    """The passage numbers a prompt lists: `[n]` at line starts, else `[n]` anywhere; sorted."""
    found = _LINE_MARKER.findall(prompt) or _ANY_MARKER.findall(prompt)
    return sorted({int(n) for n in found})


def reverse_answer(prompt: str) -> str:
    """The default answer: the listed passages in reverse order, in ReasonRank's output format."""
    ids = passage_ids(prompt)
    ranking = " > ".join(f"[{i}]" for i in reversed(ids))
    return f"<think>Reverse order of {len(ids)} passages.</think>\n<answer>{ranking}</answer>"


def prompt_text_of(body: dict[str, Any]) -> str:
    """The prompt of a request body: `prompt`, or the message contents joined by newlines."""
    if "prompt" in body:
        prompt = body["prompt"]
        return prompt if isinstance(prompt, str) else json.dumps(prompt)
    parts = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
    return "\n".join(parts)


@dataclass(frozen=True)
class Fault:
    """What the server does instead of (or before) a normal answer.

    status 200 with no `body` means "answer normally, after `delay` seconds" (a slow answer);
    any other status sends an OpenAI-style error body, or `body` verbatim when it is given.
    """

    status: int = 500
    message: str = "injected failure"
    error_type: str = "server_error"
    retry_after: str | None = None  # Retry-After header value
    delay: float = 0.0  # seconds to sleep before answering
    body: str | None = None  # raw response body (e.g. malformed JSON)

    @classmethod
    def rate_limited(cls, retry_after: str | None = "0") -> Fault:
        return cls(429, "Rate limit reached, slow down", "rate_limit_error", retry_after)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        return cls(status, f"injected HTTP {status}", "server_error")

    @classmethod
    def unavailable(cls, retry_after: str | None = None) -> Fault:
        return cls(503, "The server is overloaded", "server_error", retry_after)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """A normal answer after `seconds` (make it longer than the client's timeout)."""
        return cls(200, delay=seconds)

    @classmethod
    def bad_request(cls, message: str = "This model's maximum context length is exceeded") -> Fault:
        return cls(400, message, "invalid_request_error")

    @classmethod
    def malformed(cls, body: str = "{not json") -> Fault:
        """HTTP 200 with a body that is not JSON."""
        return cls(200, body=body)


@dataclass
class RecordedRequest:
    """One POST the server received."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # the parsed JSON body, None when it did not parse
    raw: bytes
    status: int = 0  # the status the server chose (also for requests whose client went away)
    fault: Fault | None = None
    received_at: float = field(default_factory=time.monotonic)

    @property
    def prompt_text(self) -> str:
        return prompt_text_of(self.body) if isinstance(self.body, dict) else ""


class FakeOpenAIServer:
    """An OpenAI-compatible server on 127.0.0.1; a context manager that stops itself."""

    def __init__(
        self,
        *,
        faults: Iterable[Fault] = (),
        default_fault: Fault | None = None,
        answer: Callable[[str], str] = reverse_answer,
        answer_request: Callable[[dict[str, Any]], str] | None = None,
        answer_delay: float = 0.0,
        reasoning_split: bool = False,
        include_usage: bool = True,
        finish_reason: str = "stop",
        model: str | None = None,
        token_logits: Callable[[str, list[str], int], dict[str, float]] = default_token_logits,
        vocab: dict[int, str] | None = None,
    ) -> None:
        """`model`: when set, requests for another model get OpenAI's 404 "model not found".

        `reasoning_split`: chat answers put the `<think>` block's inside in
        `message.reasoning_content` and the rest in `content`, as vLLM's reasoning parsers do.

        `answer_request`: when set, computes the answer from the whole parsed request body
        (sampling settings such as `seed` included) instead of `answer` from its prompt.
        """
        self.answer = answer
        self.answer_request = answer_request
        self.answer_delay = answer_delay
        self.reasoning_split = reasoning_split
        self.include_usage = include_usage
        self.finish_reason = finish_reason
        self.model = model
        self.token_logits = token_logits
        self.vocab = dict(vocab or {})
        self.default_fault = default_fault
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._faults: deque[Fault] = deque(faults)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"fake-openai-{self.port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a delay
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses and inspection ------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the fake server is not running")
        return self._httpd.server_address[1]

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI base URL (what `api_base` takes): http://127.0.0.1:PORT/v1."""
        return self.root + "/v1"

    def add_faults(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    def statuses(self) -> list[int]:
        """The status chosen for every POST, in arrival order."""
        with self._lock:
            return [r.status for r in self.requests]

    def status_counts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for status in self.statuses():
            counts[status] = counts.get(status, 0) + 1
        return counts

    def reset(self) -> None:
        """Forget the recorded requests and the in-flight maximum (faults stay queued)."""
        with self._lock:
            self.requests.clear()
            self.max_in_flight = self.in_flight

    # -- used by the handler -----------------------------------------------------------------

    def _enter(self, record: RecordedRequest) -> Fault | None:
        with self._lock:
            self.requests.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self._faults.popleft() if self._faults else self.default_fault

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _sleep(self, seconds: float) -> bool:
        """Sleep; False when the server stopped meanwhile."""
        return not (seconds > 0 and self._stopping.wait(seconds))

    def _completion(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        prompt = prompt_text_of(body)
        text = self.answer_request(body) if self.answer_request else self.answer(prompt)
        finish = self.finish_reason
        words = text.split()
        max_tokens = body.get("max_tokens")
        logprobs: dict[str, Any] | None = None
        if body.get("logprobs") and not path.endswith("/chat/completions"):
            text, words, finish, logprobs = self._with_logprobs(prompt, text, body)
        elif isinstance(max_tokens, int) and len(words) > max_tokens:
            words = words[:max_tokens]
            text = " ".join(words)
            finish = "length"
        created = int(time.time())
        model = body.get("model", "fake-model")
        if path.endswith("/chat/completions"):
            message: dict[str, Any] = {"role": "assistant", "content": text}
            match = re.match(r"\s*<think>(.*?)</think>(.*)\Z", text, re.DOTALL)
            if self.reasoning_split and match:
                message = {"role": "assistant", "reasoning_content": match.group(1),
                           "content": match.group(2)}
            choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish}
            data = {"id": "chatcmpl-fake", "object": "chat.completion", "created": created,
                    "model": model, "choices": [choice]}
        else:
            choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}
            data = {"id": "cmpl-fake", "object": "text_completion", "created": created,
                    "model": model, "choices": [choice]}
        if self.include_usage:
            prompt_tokens = len(prompt.split())
            data["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                             "total_tokens": prompt_tokens + len(words)}
        return data


    def _with_logprobs(self, prompt: str, answer: str, body: dict[str, Any]
                       ) -> tuple[str, list[str], str, dict[str, Any]]:
        """Greedy decoding of `answer`'s tokens under `token_logits` and `logit_bias`, with
        `stop` and `max_tokens`: (text, tokens, finish reason, OpenAI logprobs object)."""
        planned = word_tokens(answer) or [" "]
        bias = {self.vocab[int(k)]: float(v) for k, v in (body.get("logit_bias") or {}).items()
                if int(k) in self.vocab}
        n_top = int(body["logprobs"])
        max_tokens = body.get("max_tokens")
        limit = max_tokens if isinstance(max_tokens, int) else len(planned)
        stops = [s for s in body.get("stop") or [] if s]
        tokens: list[str] = []
        chosen_lp: list[float] = []
        tops: list[dict[str, float]] = []
        finish, cut = "stop", None
        for i in range(min(limit, len(planned))):
            logits = self.token_logits(prompt, planned, i)
            for token, b in bias.items():
                logits[token] = logits.get(token, -30.0) + b
            lp = log_softmax(logits)
            token = max(lp, key=lambda t: lp[t])
            tokens.append(token)
            chosen_lp.append(lp[token])
            tops.append(dict(sorted(lp.items(), key=lambda kv: -kv[1])[:n_top]))
            so_far = "".join(tokens)
            found = [so_far.find(s) for s in stops if s in so_far]
            if found:
                cut = min(found)
                break
        else:
            if len(tokens) < len(planned):
                finish = "length"
        text = "".join(tokens) if cut is None else "".join(tokens)[:cut]
        logprobs = {"tokens": tokens, "token_logprobs": chosen_lp, "top_logprobs": tops,
                    "text_offset": [0] * len(tokens)}
        return text, tokens, finish, logprobs


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeOpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # a client that went away mid-request: expected with injected timeouts
        super().handle_error(request, client_address)


def _error_body(message: str, error_type: str, code: Any = None) -> bytes:
    error = {"message": message, "type": error_type, "param": None, "code": code}
    return json.dumps({"error": error}).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    server_version = "FakeOpenAI/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet

    @property
    def fake(self) -> FakeOpenAIServer:
        return self.server.fake  # type: ignore[attr-defined]  # the _Server's

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True  # the client gave up (timeout)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            model = self.fake.model or "fake-model"
            body = {"object": "list", "data": [{"id": model, "object": "model"}]}
            self._send(200, json.dumps(body).encode())
        else:
            self._send(404, _error_body(f"no route GET {self.path}", "not_found_error"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        path = self.path.split("?", 1)[0].rstrip("/")
        record = RecordedRequest(
            method="POST", path=path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body, raw=raw,
        )
        fake = self.fake
        fault = fake._enter(record)
        record.fault = fault
        try:
            self._answer(fake, record, fault)
        finally:
            fake._leave()

    def _answer(self, fake: FakeOpenAIServer, record: RecordedRequest, fault: Fault | None) -> None:
        if fault is not None:
            record.status = fault.status
            if not fake._sleep(fault.delay):
                self.close_connection = True
                return
            if fault.status != 200 or fault.body is not None:
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = fault.retry_after
                payload = (fault.body.encode() if fault.body is not None
                           else _error_body(fault.message, fault.error_type))
                self._send(fault.status, payload, headers)
                return
        if record.path not in ("/v1/completions", "/v1/chat/completions"):
            record.status = 404
            self._send(404, _error_body(f"no route POST {self.path}", "not_found_error"))
            return
        body = record.body
        if not isinstance(body, dict):
            record.status = 400
            self._send(400, _error_body("request body is not a JSON object",
                                        "invalid_request_error"))
            return
        key = "prompt" if record.path == "/v1/completions" else "messages"
        if key not in body:
            record.status = 400
            self._send(400, _error_body(f"'{key}' is a required property",
                                        "invalid_request_error"))
            return
        if fake.model is not None and body.get("model") != fake.model:
            record.status = 404
            self._send(404, _error_body(f"The model `{body.get('model')}` does not exist.",
                                        "invalid_request_error", "model_not_found"))
            return
        record.status = 200
        if not fake._sleep(fake.answer_delay):
            self.close_connection = True
            return
        self._send(200, json.dumps(fake._completion(record.path, body)).encode())
