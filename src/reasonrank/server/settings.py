"""Server settings: network binding, authentication and request limits.

`reasonrank serve` builds its server flags from these fields (`reasonrank.settings`); a
`--config` file sets them by flag name with underscores (`server_timeout: 30`).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from reasonrank.errors import ConfigError
from reasonrank.settings import option


@dataclass(frozen=True)
class ServerSettings:
    """How the server listens and what it accepts. `api_keys` empty means no authentication."""

    host: str = option("127.0.0.1", "address to bind")
    port: int = option(8000, "port")
    allow_public: bool = option(False, "allow binding a non-loopback host")
    api_keys: tuple[str, ...] = field(default=(), repr=False, metadata={"cli": False})
    cors_origins: tuple[str, ...] = option(
        (), "allow cross-origin requests from ORIGIN (repeatable; default: none)",
        flag="cors-origin")
    max_documents: int = option(1000, "documents per request")
    max_document_chars: int = option(100_000, "characters per document")
    max_query_chars: int = option(10_000, "characters per query")
    max_body_bytes: int = option(10_000_000, "request body size")
    request_timeout: float = option(600.0, "per-request time limit in seconds, then 504",
                                    flag="server-timeout")
    served_model_name: str | None = option(
        None, "model name in answers and /v1/models (default: --model)")
    # slow or hostile clients: time to send the request line and headers (per request on a
    # connection), time to send the body, most connections open at once (then 503)
    header_timeout: float = option(
        10.0, "seconds a client has to send a request's headers, then the connection is closed")
    body_timeout: float = option(30.0, "seconds a client has to send a request's body, then 408")
    max_connections: int = option(
        4096, "connections open at once; beyond it 503 (lowered to fit ulimit -n)")

    def __post_init__(self) -> None:
        for name in ("max_documents", "max_document_chars", "max_query_chars", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("request_timeout", "header_timeout", "body_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_connections < 1:
            raise ConfigError(f"max_connections must be at least 1, got {self.max_connections}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in 0..65535, got {self.port}")
        if not is_loopback(self.host) and not self.allow_public:
            raise ConfigError(
                f"refusing to listen on non-loopback host {self.host!r} without --allow-public "
                "(and consider --server-api-key-env / --server-api-key-file)"
            )
        if any(not k for k in self.api_keys):
            raise ConfigError("API keys must not be empty")


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_api_keys(env_name: str | None = None, path: str | Path | None = None) -> tuple[str, ...]:
    """Keys from an environment variable (comma-separated) and/or a file (one key per line).

    A named source that yields no key is an error, so a typo never silently disables auth.
    """
    keys: list[str] = []
    if env_name:
        value = os.environ.get(env_name, "")
        found = [k.strip() for k in value.split(",") if k.strip()]
        if not found:
            raise ConfigError(f"environment variable {env_name} holds no API key")
        keys += found
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read API key file {path}: {exc}") from exc
        found = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        if not found:
            raise ConfigError(f"API key file {path} holds no key")
        keys += found
    return tuple(dict.fromkeys(keys))
