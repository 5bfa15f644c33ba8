"""Dataset layouts: BRIGHT, BEIR, TREC/RankGPT and R2MED, loaded through `reasonrank.io`.

Each loader knows where a benchmark keeps its files and how its records name their fields;
the file formats themselves (TREC runs and qrels, JSONL corpora and queries, request files)
are read by `reasonrank.io`'s readers.
"""

from __future__ import annotations

from reasonrank.datasets import beir, bright, r2med, trec
from reasonrank.datasets._layout import DatasetNotFoundError
from reasonrank.datasets.base import IRDataset
from reasonrank.datasets.beir import load_beir
from reasonrank.datasets.bright import BrightDataWarning, BrightTask
from reasonrank.datasets.trec import load_rankgpt, load_trec, requests_to_run

BRIGHT_TASKS = bright.TASKS

__all__ = [
    "BRIGHT_TASKS",
    "BrightDataWarning",
    "BrightTask",
    "DatasetNotFoundError",
    "IRDataset",
    "beir",
    "bright",
    "load_beir",
    "load_rankgpt",
    "load_trec",
    "r2med",
    "requests_to_run",
    "trec",
]
