"""An HTTP reranking server (Cohere/Jina/vLLM `/v1/rerank` shape) over one shared `Reranker`.

Needs the `server` extra (FastAPI, uvicorn, prometheus-client); see `reasonrank serve`.
"""

from __future__ import annotations

from reasonrank.server.settings import ServerSettings, load_api_keys

__all__ = ["ServerSettings", "create_app", "load_api_keys"]


def __getattr__(name: str) -> object:  # keep FastAPI out of `import reasonrank.server`
    if name == "create_app":
        from reasonrank.server.app import create_app

        return create_app
    raise AttributeError(name)
