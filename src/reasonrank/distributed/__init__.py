"""Data-parallel reranking across model replicas (Ray)."""

from __future__ import annotations

from reasonrank.distributed.ray_runner import RerankWorker, rerank_to_files_ray

__all__ = ["RerankWorker", "rerank_to_files_ray"]
