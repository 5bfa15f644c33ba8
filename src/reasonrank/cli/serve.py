"""CLI: `reasonrank serve`, the HTTP reranking server (needs the `server` extra)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger(__name__)


def register(sub: Any) -> None:  # argparse's subparsers action
    """Add `serve` to the `reasonrank` parser."""
    from reasonrank.cli.main import add_config_arguments

    sv = sub.add_parser("serve", help="serve /v1/rerank (Cohere/Jina/vLLM shape) over HTTP")
    net = sv.add_argument_group("server options")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    net.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    net.add_argument("--allow-public", action="store_true",
                     help="allow binding a non-loopback host")
    net.add_argument("--server-api-key-env", metavar="NAME", default=None,
                     help="require a Bearer key; keys (comma-separated) in this env variable")
    net.add_argument("--server-api-key-file", metavar="PATH", default=None,
                     help="require a Bearer key; keys in this file, one per line")
    net.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                     help="allow cross-origin requests from ORIGIN (repeatable; default: none)")
    net.add_argument("--served-model-name", default=None,
                     help="model name in answers and /v1/models (default: --model)")
    net.add_argument("--max-documents", type=int, default=1000,
                     help="documents per request (default: 1000)")
    net.add_argument("--max-document-chars", type=int, default=100_000,
                     help="characters per document (default: 100000)")
    net.add_argument("--max-query-chars", type=int, default=10_000,
                     help="characters per query (default: 10000)")
    net.add_argument("--max-body-bytes", type=int, default=10_000_000,
                     help="request body size (default: 10000000)")
    net.add_argument("--server-timeout", type=float, default=600.0, metavar="SECONDS",
                     help="per-request time limit, then 504 (default: 600)")
    net.add_argument("--header-timeout", type=float, default=10.0, metavar="SECONDS",
                     help="time a client has to send a request's headers, then the connection "
                          "is closed (default: 10)")
    net.add_argument("--body-timeout", type=float, default=30.0, metavar="SECONDS",
                     help="time a client has to send a request's body, then 408 (default: 30)")
    net.add_argument("--max-connections", type=int, default=4096,
                     help="connections open at once; beyond it 503 (default: 4096, lowered to "
                          "fit ulimit -n)")
    net.add_argument("--log-level", default="info",
                     choices=("critical", "error", "warning", "info", "debug"),
                     help="uvicorn log level (default: info)")
    add_config_arguments(sv, ("rerank", "hf", "openai", "vllm"))
    sv.set_defaults(handler="reasonrank.cli.serve:cmd_serve",
                    input_files=("server_api_key_file",))


def settings_from_args(args: argparse.Namespace) -> Any:
    """The `ServerSettings` of parsed `serve` arguments (API keys loaded now)."""
    from reasonrank.server.settings import ServerSettings, load_api_keys

    keys = load_api_keys(args.server_api_key_env, args.server_api_key_file)
    return ServerSettings(
        host=args.host, port=args.port, allow_public=args.allow_public, api_keys=keys,
        cors_origins=tuple(args.cors_origin), max_documents=args.max_documents,
        max_document_chars=args.max_document_chars, max_query_chars=args.max_query_chars,
        max_body_bytes=args.max_body_bytes, request_timeout=args.server_timeout,
        served_model_name=args.served_model_name, header_timeout=args.header_timeout,
        body_timeout=args.body_timeout, max_connections=args.max_connections,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from reasonrank.cli.main import config_from_args
    from reasonrank.errors import require

    uvicorn = require("uvicorn", "server", "reasonrank serve")
    settings = settings_from_args(args)  # validate before loading a model
    if not settings.api_keys and settings.allow_public:
        log.warning("serving on %s without an API key", settings.host)
    from reasonrank.core.redact import install_log_redaction
    from reasonrank.reranker import Reranker
    from reasonrank.server.app import create_app
    from reasonrank.server.run import raise_fd_limit, uvicorn_config

    settings = raise_fd_limit(settings)
    reranker = Reranker(config=config_from_args(args))
    app = create_app(reranker, settings)
    config = uvicorn_config(app, settings, log_level=args.log_level, host=settings.host,
                            port=settings.port)
    # uvicorn's handlers exist now: no URL credential, bearer token or key reaches a log line
    install_log_redaction(*(logging.getLogger(n) for n in ("uvicorn", "uvicorn.error",
                                                            "uvicorn.access")))
    uvicorn.Server(config).run()
    return 0
