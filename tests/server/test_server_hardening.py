"""The server against slow, vanished and hostile clients, each case bounded in count and time.

Raw sockets on 127.0.0.1 play the clients: headers sent a byte at a time, bodies that never
finish, connections beyond the cap, callers that hang up mid-request; plus a 1,000-document
request that must not stall `/health`, and credentials that must never reach any output.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from fake_openai_server import FakeOpenAIServer, Fault
from reasonrank import Reranker
from reasonrank.backends.fake import FakeBackend
from reasonrank.backends.openai import OpenAIBackend
from reasonrank.config import RerankConfig
from reasonrank.core.redact import redact
from reasonrank.errors import BackendError
from reasonrank.server.app import create_app
from reasonrank.server.background import serve_in_thread
from reasonrank.server.settings import ServerSettings

QUERY = "salt ocean water"
DOCS = ["rock and stone", "salt ocean water", "salt mines", "ocean water waves"]


def make_app(backend: Any, **settings: Any) -> Any:
    reranker = Reranker(config=RerankConfig(model="m", backend="fake"), backend=backend)
    return create_app(reranker, ServerSettings(**settings))


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


@contextmanager
def raw(url: str, timeout: float = 5.0) -> Iterator[socket.socket]:
    sock = socket.create_connection(host_port(url), timeout=timeout)
    try:
        yield sock
    finally:
        sock.close()


def read_response(sock: socket.socket) -> bytes:
    """One response: its head and its Content-Length bytes of body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head_, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head_.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head_ + b"\r\n\r\n" + body


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (or the socket's timeout)."""
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return out


def head(path: str, length: int, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()


def test_auth_is_checked_before_the_body_is_read(qwen_tokenizer: Any) -> None:
    app = make_app(FakeBackend(qwen_tokenizer), api_keys=("k",), body_timeout=30)
    with serve_in_thread(app) as url, raw(url) as sock:
        sock.sendall(head("/v1/rerank", 5_000_000))  # a big body announced, none sent
        began = time.monotonic()
        answer = read_response(sock)
        assert answer.startswith(b"HTTP/1.1 401"), answer
        assert time.monotonic() - began < 2  # not after the 30 s body deadline
        assert b'"detail":"missing API key' in answer


def test_slow_body_gets_408_and_is_closed(qwen_tokenizer: Any) -> None:
    app = make_app(FakeBackend(qwen_tokenizer), body_timeout=0.5)
    with serve_in_thread(app) as url, raw(url) as sock:
        sock.sendall(head("/v1/rerank", 1000) + b'{"query": ')
        began = time.monotonic()
        answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"not received within 0.5 s" in answer
        assert time.monotonic() - began < 3
        metrics = httpx.get(f"{url}/metrics").text
        assert 'reasonrank_http_client_timeouts_total{phase="body"} 1.0' in metrics


def test_slow_headers_and_idle_connections_are_closed(qwen_tokenizer: Any) -> None:
    app = make_app(FakeBackend(qwen_tokenizer), header_timeout=0.5)
    with serve_in_thread(app) as url:
        with raw(url) as idle, raw(url) as slow:
            began = time.monotonic()
            sent = 0
            try:
                for byte in b"GET /health HTTP/1.1\r\nHost: x\r\n":  # a byte every 0.05 s
                    slow.sendall(bytes([byte]))
                    sent += 1
                    time.sleep(0.05)
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert sent < 25  # cut off after about 0.5 s, mid-header
            assert read_all(slow) == b""  # closed without an answer
            assert read_all(idle) == b""
            assert time.monotonic() - began < 4
        # a connection that keeps sending whole requests in time is never cut
        with httpx.Client(base_url=url) as client:
            for _ in range(3):
                assert client.get("/health").status_code == 200
                time.sleep(0.3)
        assert 'phase="header"} 2.0' in httpx.get(f"{url}/metrics").text


def test_connection_cap_answers_503(qwen_tokenizer: Any) -> None:
    app = make_app(FakeBackend(qwen_tokenizer), max_connections=4, header_timeout=30)
    with serve_in_thread(app) as url:
        held = [socket.create_connection(host_port(url), timeout=5) for _ in range(4)]
        try:
            time.sleep(0.2)
            with raw(url) as extra:
                extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = read_all(extra)
            assert answer.startswith(b"HTTP/1.1 503"), answer
            assert b"too many connections" in answer
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.3)
        assert httpx.get(f"{url}/health").status_code == 200  # room again
        assert "reasonrank_http_connections_refused_total 1.0" in httpx.get(
            f"{url}/metrics").text


def test_disconnected_client_gets_no_more_windows(qwen_tokenizer: Any) -> None:
    backend = FakeBackend(qwen_tokenizer, latency=0.3)
    app = make_app(backend)
    docs = [f"passage {i} salt" for i in range(100)]  # 9 windows, one after another
    with serve_in_thread(app) as url:
        for _ in range(3):
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{url}/v1/rerank", json={"query": QUERY, "documents": docs},
                           timeout=httpx.Timeout(5, read=0.1))
        time.sleep(1.5)  # long enough for 5 more windows each had they gone on
        assert backend.calls <= 3  # each request's first window at most
        metrics = httpx.get(f"{url}/metrics").text
        assert 'reasonrank_http_requests_total{endpoint="/v1/rerank",status="499"} 3.0' in metrics
        r = httpx.post(f"{url}/v1/rerank", json={"query": QUERY, "documents": DOCS}, timeout=30)
        assert r.status_code == 200


def test_openai_requests_of_a_vanished_client_are_aborted(qwen_tokenizer: Any) -> None:
    with FakeOpenAIServer(default_fault=Fault.slow(0.4)) as upstream:
        backend = OpenAIBackend("m", api_base=upstream.url, tokenizer=qwen_tokenizer,
                                max_retries=0)
        app = make_app(backend)
        docs = [f"passage {i} salt" for i in range(100)]
        with serve_in_thread(app) as url:
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{url}/v1/rerank", json={"query": QUERY, "documents": docs},
                           timeout=httpx.Timeout(5, read=0.2))
            time.sleep(1.5)
        assert len(upstream.requests) == 1  # the one in flight; the next 8 never sent


def test_health_answers_while_a_big_request_is_prepared(qwen_tokenizer: Any) -> None:
    app = make_app(FakeBackend(qwen_tokenizer))
    # text that ftfy has work to do on (it cleans the whole text before truncation): several
    # ms a document, so preparing 1,000 of them outlasts the 1 s bound even on a quiet machine
    docs = [("Ünïcödé salt &amp; <b>ocean</b> — “water” " * 80) + f" {i}" for i in range(1000)]
    with serve_in_thread(app) as url:
        done = threading.Event()
        answer: list[httpx.Response] = []

        def big() -> None:
            answer.append(httpx.post(f"{url}/v1/rerank", timeout=300,
                                     json={"query": QUERY, "documents": docs}))
            done.set()

        began = time.monotonic()
        thread = threading.Thread(target=big)
        thread.start()
        latencies = []
        while not done.is_set():
            t0 = time.monotonic()
            assert httpx.get(f"{url}/health", timeout=10).status_code == 200
            latencies.append(time.monotonic() - t0)
            time.sleep(0.05)
        thread.join()
        assert answer[0].status_code == 200, answer[0].text
        assert time.monotonic() - began > 1  # the big request really kept the server busy
        assert max(latencies) < 1, max(latencies)


# --- credentials ----------------------------------------------------------------------------


def test_redact() -> None:
    text = ("POST http://alice:s3cret@10.0.0.1:8000/v1/completions failed; "
            "Authorization: Bearer sk-abc; https://tok@h/v1?api_key=zzz&x=1")
    out = redact(text)
    for secret in ("s3cret", "alice", "sk-abc", "tok@", "zzz"):
        assert secret not in out
    assert "http://***@10.0.0.1:8000/v1/completions" in out and "x=1" in out
    assert redact("a token budget of 100 tokens, basic usage") == \
        "a token budget of 100 tokens, basic usage"


def test_openai_url_credentials_never_shown(qwen_tokenizer: Any,
                                            caplog: pytest.LogCaptureFixture) -> None:
    with FakeOpenAIServer(default_fault=Fault.server_error(503)) as upstream:
        base = upstream.url.replace("http://", "http://alice:s3cret@")
        backend = OpenAIBackend("m", api_base=base, tokenizer=qwen_tokenizer, max_retries=2,
                                backoff_base=0, backoff_max=0, api_key_env=None)
        reranker = Reranker(config=RerankConfig(model="m", backend="openai"), backend=backend)
        caplog.set_level(logging.DEBUG)
        with pytest.raises(BackendError) as error:
            reranker.rerank(QUERY, DOCS)
        reranker.close()
        # the credentials still authenticate, as Basic auth
        assert upstream.requests[0].headers["authorization"] == "Basic YWxpY2U6czNjcmV0"
    shown = f"{error.value} {error.value!r} {backend.api_base} {caplog.text}"
    assert "s3cret" not in shown and "alice" not in shown
    assert "retry 1 of 2" in caplog.text


def test_no_credential_in_any_serve_output(qwen_tokenizer_dir: Path, tmp_path: Path) -> None:
    """`reasonrank -v serve --log-level debug` with a password in --api-base, a backend API
    key, and server keys in a file: a request with a key that fails upstream (502) leaves none
    of them in the process's output."""
    keys = tmp_path / "keys"
    keys.write_text("server-key-123\n")
    with FakeOpenAIServer(default_fault=Fault.server_error(500)) as upstream:
        base = upstream.url.replace("http://", "http://alice:s3cret@")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "RR_UPSTREAM_KEY": "upstream-key-456", "HF_HUB_OFFLINE": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "reasonrank.cli.main", "-v", "serve", "--model", "m",
             "--backend", "openai", "--api-base", base, "--api-key-env", "RR_UPSTREAM_KEY",
             "--tokenizer", str(qwen_tokenizer_dir), "--max-retries", "1", "--port",
             str(port), "--server-api-key-file", str(keys), "--log-level", "debug"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
            r = httpx.post(f"{url}/v1/rerank?api_key=query-key-789", timeout=60,
                           headers={"Authorization": "Bearer server-key-123"},
                           json={"query": QUERY, "documents": DOCS})
            assert r.status_code == 502, r.text
            assert upstream.requests[0].headers["authorization"] == "Bearer upstream-key-456"
        finally:
            proc.terminate()
            output = proc.communicate(timeout=30)[0].decode()
    assert "retry 1 of 1" in output and "reranking failed" in output  # it did log
    for secret in ("s3cret", "server-key-123", "upstream-key-456", "query-key-789"):
        assert secret not in output, secret


def test_scheduler_prepares_prompts_off_the_loop(qwen_tokenizer: Any) -> None:
    """With `prompt_thread` (the server's app sets it) the loop's own thread never runs
    `prepare` or `render`."""
    reranker = Reranker(config=RerankConfig(model="m", backend="fake"),
                        backend=FakeBackend(qwen_tokenizer))
    create_app(reranker)
    assert reranker.scheduler.prompt_thread
    threads: set[str] = set()
    builder = reranker.builder
    prepare, render = builder.prepare, builder.render

    def spy(fn: Any) -> Any:
        def wrapped(*args: Any) -> Any:
            threads.add(threading.current_thread().name)
            return fn(*args)
        return wrapped

    builder.prepare, builder.render = spy(prepare), spy(render)  # type: ignore[method-assign]

    async def go() -> list[str]:
        loop_thread = threading.current_thread().name
        result = await reranker.arerank(QUERY, DOCS)
        assert loop_thread not in threads
        return result.docids

    assert asyncio.run(go()) == ["1", "3", "2", "0"]
    assert threads and all(t.startswith("reasonrank-prompts") for t in threads)
