"""CLI: `reasonrank serve`, the HTTP reranking server (needs the `server` extra)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger(__name__)


def register(sub: Any) -> None:  # argparse's subparsers action
    """Add `serve` to the `reasonrank` parser: flags from `ServerSettings`, `RerankConfig` and
    each backend's options; `--config` holds any of them (flag names with underscores)."""
    from reasonrank.cli.main import add_config_arguments
    from reasonrank.cli.paths import CommandPaths
    from reasonrank.server.settings import ServerSettings
    from reasonrank.settings import add_flags

    sv = sub.add_parser("serve", help="serve /v1/rerank (Cohere/Jina/vLLM shape) over HTTP")
    net = sv.add_argument_group("server options")
    net.add_argument("--server-api-key-env", metavar="NAME", default=None,
                     help="require a Bearer key; keys (comma-separated) in this env variable")
    net.add_argument("--server-api-key-file", metavar="PATH", default=None,
                     help="require a Bearer key; keys in this file, one per line")
    net.add_argument("--log-level", default="info",
                     choices=("critical", "error", "warning", "info", "debug"),
                     help="uvicorn log level (default: info)")
    add_flags(sv, ServerSettings, title="server options")
    add_config_arguments(sv)
    sv.set_defaults(handler="reasonrank.cli.serve:cmd_serve",
                    paths=CommandPaths(inputs=("server_api_key_file", "config")))


def server_values(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The parsed arguments split in two: `ServerSettings` values and reranking options (each
    the `--config` file's, then `--set`, then the flags given), and the file's name."""
    import dataclasses

    from reasonrank.cli.main import config_values
    from reasonrank.server.settings import ServerSettings
    from reasonrank.settings import flag_dest

    values, source = config_values(args)
    names = {flag_dest(f): f.name for f in dataclasses.fields(ServerSettings)
             if f.metadata.get("cli", True)}
    server = {names[key]: values.pop(key) for key in list(values) if key in names}
    _reject_unknown(values, names, source)
    given = vars(args)
    server.update({name: given[dest] for dest, name in names.items() if dest in given})
    return server, values, source


def _reject_unknown(values: dict[str, Any], server: dict[str, str], source: str) -> None:
    """Refuse keys that are no setting of the server, of reranking or of any backend, listing
    the valid ones (the server's, reranking's and the selected backend's)."""
    import dataclasses

    from reasonrank.backends.registry import backend_names, options_class
    from reasonrank.config import RerankConfig
    from reasonrank.settings import reject_unknown

    def names(cls: Any) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)} - {"backend_options"}

    anywhere = names(RerankConfig).union(*(names(options_class(b)) for b in backend_names()))
    if set(values) - anywhere:
        selected = options_class(values.get("backend", RerankConfig.backend))
        reject_unknown(set(values) - anywhere, {*server, *names(RerankConfig), *names(selected)},
                       source, " for serve")


def settings_from_args(args: argparse.Namespace,
                       values: dict[str, Any] | None = None) -> Any:
    """The `ServerSettings` of parsed `serve` arguments (API keys loaded now)."""
    from reasonrank.server.settings import ServerSettings, load_api_keys
    from reasonrank.settings import build_settings

    source = "options"
    if values is None:
        values, _, source = server_values(args)
    keys = load_api_keys(args.server_api_key_env, args.server_api_key_file)
    return build_settings(ServerSettings, {**values, "api_keys": keys}, source=source)


def cmd_serve(args: argparse.Namespace) -> int:
    from reasonrank.cli.main import config_from_args
    from reasonrank.errors import require

    uvicorn = require("uvicorn", "server", "reasonrank serve")
    server, rerank_values, _ = server_values(args)
    settings = settings_from_args(args, server)  # validate before loading a model
    if not settings.api_keys and settings.allow_public:
        log.warning("serving on %s without an API key", settings.host)
    from reasonrank.core.redact import install_log_redaction
    from reasonrank.reranker import Reranker
    from reasonrank.server.app import create_app
    from reasonrank.server.run import raise_fd_limit, uvicorn_config

    settings = raise_fd_limit(settings)
    reranker = Reranker(config=config_from_args(args, rerank_values))
    app = create_app(reranker, settings)
    config = uvicorn_config(app, settings, log_level=args.log_level, host=settings.host,
                            port=settings.port)
    # uvicorn's handlers exist now: no URL credential, bearer token or key reaches a log line
    install_log_redaction(*(logging.getLogger(n) for n in ("uvicorn", "uvicorn.error",
                                                            "uvicorn.access")))
    uvicorn.Server(config).run()
    return 0
