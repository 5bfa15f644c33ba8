"""Run an app with uvicorn in a background thread (tests, benchmarks, notebooks)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from reasonrank.errors import require


@contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0,
                    startup_timeout: float = 30.0) -> Iterator[str]:
    """Serve `app` on `host:port` (0: a free port) until the block exits; yields the base URL."""
    uvicorn = require("uvicorn", "server", "reasonrank serve")
    from reasonrank.server.run import uvicorn_config
    from reasonrank.server.settings import ServerSettings

    settings = getattr(getattr(app, "state", None), "settings", None) or ServerSettings()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    config = uvicorn_config(app, settings, log_level="warning", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="reasonrank-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
