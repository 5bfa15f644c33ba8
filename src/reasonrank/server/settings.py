"""Server settings: network binding, authentication and request limits."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from reasonrank.errors import ConfigError


@dataclass(frozen=True)
class ServerSettings:
    """How the server listens and what it accepts. `api_keys` empty means no authentication."""

    host: str = "127.0.0.1"
    port: int = 8000
    allow_public: bool = False
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    cors_origins: tuple[str, ...] = ()
    max_documents: int = 1000
    max_document_chars: int = 100_000
    max_query_chars: int = 10_000
    max_body_bytes: int = 10_000_000
    request_timeout: float = 600.0
    served_model_name: str | None = None  # default: the reranker's model
    # slow or hostile clients: time to send the request line and headers (per request on a
    # connection), time to send the body, most connections open at once (then 503)
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 4096

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
