"""reasonrank: reasoning-intensive listwise passage reranking (ReasonRank), end to end."""

from __future__ import annotations

from reasonrank.config import RerankConfig
from reasonrank.reranker import Reranker
from reasonrank.types import (
    Candidate,
    ParseStatus,
    Query,
    RankedDoc,
    RankedResult,
    Request,
    WindowTrace,
)

__all__ = [
    "Candidate",
    "ParseStatus",
    "Query",
    "RankedDoc",
    "RankedResult",
    "Request",
    "RerankConfig",
    "Reranker",
    "WindowTrace",
]
__version__ = "0.1.0"
