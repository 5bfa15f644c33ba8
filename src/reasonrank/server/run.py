"""uvicorn under the server's connection rules: a header deadline, a connection cap, and a
file-descriptor limit that the cap never reaches.

uvicorn keeps an idle connection only `timeout_keep_alive` seconds, but a client that sends its
request line and headers a byte at a time is never timed out, and its `limit_concurrency`
answers 503 only after reading a request (and logs a warning for each). `guarded_protocol`
adds both rules at the protocol level:

- header deadline: from the moment a connection opens (or its last answer completes) the client
  has `header_timeout` seconds to send a whole request head, else the connection is closed;
- connection cap: a connection beyond `max_connections` gets a 503 and is closed at once, so a
  flood of connections never exhausts the process's file descriptors.

The body deadline (408) is the app's `_Guard`, which sees the body arrive.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from reasonrank.errors import require
from reasonrank.server.settings import ServerSettings

log = logging.getLogger(__name__)

FD_RESERVE = 256  # descriptors kept free beyond the connection cap (files, backend sockets)


def _refusal() -> bytes:
    from reasonrank.server.app import error_body

    body = json.dumps(error_body(503, "too many connections; retry shortly")).encode()
    head = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            b"connection: close\r\nretry-after: 1\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n\r\n")
    return head + body


def guarded_protocol(base: type[Any], settings: ServerSettings, metrics: Any = None) -> type:
    """A subclass of uvicorn's HTTP protocol class `base` with the header deadline and the
    connection cap of `settings`."""
    refusal = _refusal()
    header_timeout = settings.header_timeout
    cap = settings.max_connections

    class GuardedProtocol(base):  # type: ignore[misc, valid-type]
        _deadline: asyncio.TimerHandle | None = None
        _armed_for: Any = None
        _refused = False

        def connection_made(self, transport: Any) -> None:
            if len(self.connections) >= cap:
                self._refused = True
                self.transport = transport
                if metrics is not None:
                    metrics.refused.inc()
                # answer at once; the client's unread request may turn the close into a reset,
                # so linger a moment (reading and dropping) before closing
                transport.write(refusal)
                self._deadline = self.loop.call_later(0.5, transport.close)
                return
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            super().data_received(data)

        def eof_received(self) -> Any:
            if self._refused:
                self.transport.close()
                return None
            return super().eof_received()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._refused:
                return
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            if self.transport is None or self.transport.is_closing():
                return
            self._armed_for = self.cycle
            self._deadline = self.loop.call_later(header_timeout, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if self.cycle is self._armed_for and not self.transport.is_closing():
                # no new request head since the deadline was armed
                if metrics is not None:
                    metrics.timeouts.labels(phase="header").inc()
                log.debug("closing a connection that sent no request head within %g s",
                          header_timeout)
                self.transport.close()

    GuardedProtocol.__name__ = f"Guarded{base.__name__}"
    return GuardedProtocol


def raise_fd_limit(settings: ServerSettings) -> ServerSettings:
    """Raise the soft descriptor limit towards the hard one so `max_connections` fits; if it
    cannot, lower the cap (with a warning). Returns the settings in force."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return settings
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = settings.max_connections + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        cap = max(1, soft - FD_RESERVE)
        log.warning("the descriptor limit (ulimit -n) is %d: at most %d connections at once "
                    "instead of %d", soft, cap, settings.max_connections)
        from dataclasses import replace

        return replace(settings, max_connections=cap)
    return settings


def uvicorn_config(app: Any, settings: ServerSettings, log_level: str = "info",
                   **options: Any) -> Any:
    """A `uvicorn.Config` for `app` under `settings`' connection rules."""
    uvicorn = require("uvicorn", "server", "reasonrank serve")
    config = uvicorn.Config(app, log_level=log_level, lifespan="on",
                            timeout_graceful_shutdown=options.pop("timeout_graceful_shutdown", 10),
                            **options)
    config.load()
    metrics = getattr(getattr(app, "state", None), "metrics", None)
    config.http_protocol_class = guarded_protocol(config.http_protocol_class, settings, metrics)
    return config
