"""Shared pieces of the first-stage retrievers: index manifests, top-k selection, run output.

Runs follow trec_eval's order: score descending, ties broken by doc id descending, so a run
written with `write_run` reads back (`reasonrank.io.read_run`) exactly as it was returned.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from reasonrank.errors import ConfigError, InputFormatError, require
from reasonrank.io._files import StrPath, atomic_write

if TYPE_CHECKING:
    import numpy as np

    from reasonrank.io.readers import Doc, Run

MANIFEST = "reasonrank-index.json"
"""The manifest file every index directory holds; written last, so a half-saved index fails."""
DOCIDS = "docids.json"
_ARTIFACTS = (DOCIDS, "bm25s", "embeddings.npy")
FORMAT = "reasonrank-index"
FORMAT_VERSION = 1

Progress = Callable[[int], None]
"""A progress callback: called with the number of items just finished."""


def numpy(purpose: str, extra: str = "retrieval") -> Any:
    """Import numpy lazily (it comes with the `retrieval` and `dense` extras)."""
    return require("numpy", extra, purpose)


def doc_text(doc: Doc, fields: str = "title+text") -> str:
    """The text indexed for `doc`: `title + " " + text` when it has a title, or one field."""
    if fields == "title+text":
        return f"{doc.title} {doc.text}" if doc.title else doc.text
    if fields == "text":
        return doc.text
    if fields == "title":
        return doc.title or ""
    raise ConfigError(f"fields must be 'title+text', 'text' or 'title', got {fields!r}")


# --- index directories ----------------------------------------------------------------------


def prepare_dir(path: StrPath) -> Path:
    """Create `path`, refusing a non-empty directory that is not a reasonrank index."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"index path {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ConfigError(
            f"{out} is a non-empty directory without a {MANIFEST}; refusing to overwrite it "
            "(choose a new or empty directory)"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # an interrupted save then leaves no index
    for name in _ARTIFACTS:  # what an index of either kind wrote there before
        stale = out / name
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink(missing_ok=True)
    return out


def write_manifest(path: Path, kind: str, docids: Sequence[str], settings: dict[str, Any]) -> None:
    """Write the doc ids, then the manifest (last: its presence marks a complete index)."""
    from reasonrank import __version__

    with atomic_write(path / DOCIDS, compress=False) as fh:
        fh.write(json.dumps(list(docids), ensure_ascii=False).encode("utf-8"))
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "num_docs": len(docids),
        "reasonrank_version": __version__,
        "settings": settings,
    }
    with atomic_write(path / MANIFEST, compress=False) as fh:
        fh.write((json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def index_kind(path: StrPath) -> str:
    """The kind of the index in `path` ('bm25' or 'dense'), checking its manifest."""
    return str(_manifest(Path(path))["kind"])


def read_manifest(path: StrPath, kind: str) -> tuple[dict[str, Any], list[str]]:
    """`(settings, docids)` of the `kind` index in `path`; a foreign or corrupt one raises."""
    root = Path(path)
    manifest = _manifest(root)
    if manifest["kind"] != kind:
        raise InputFormatError(root, None, f"this is a {manifest['kind']} index, not a {kind} one")
    settings = manifest.get("settings")
    if not isinstance(settings, dict):
        raise InputFormatError(root / MANIFEST, None, "corrupt manifest: no 'settings' object")
    try:
        docids = json.loads((root / DOCIDS).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputFormatError(root / DOCIDS, None, f"corrupt index: unreadable doc ids ({exc})") \
            from None
    if not isinstance(docids, list) or not all(isinstance(d, str) for d in docids):
        raise InputFormatError(root / DOCIDS, None, "corrupt index: expected a JSON list of ids")
    if len(docids) != manifest["num_docs"]:
        raise InputFormatError(
            root / DOCIDS, None,
            f"corrupt index: {len(docids)} doc ids but the manifest says {manifest['num_docs']}",
        )
    return settings, docids


def _manifest(root: Path) -> dict[str, Any]:
    if not root.is_dir():
        raise InputFormatError(root, None, "no such index directory")
    file = root / MANIFEST
    if not file.is_file():
        raise InputFormatError(
            root, None, f"not a reasonrank index (no {MANIFEST}; build one with `reasonrank index`)"
        )
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputFormatError(file, None, f"corrupt manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputFormatError(file, None, "not a reasonrank index manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputFormatError(
            file, None,
            f"index format version {manifest.get('format_version')!r} is not supported "
            f"(this reasonrank reads version {FORMAT_VERSION}); rebuild the index",
        )
    if manifest.get("kind") not in ("bm25", "dense") or not isinstance(
        manifest.get("num_docs"), int
    ):
        raise InputFormatError(file, None, "corrupt manifest: bad 'kind' or 'num_docs'")
    return manifest


# --- top-k ----------------------------------------------------------------------------------


def tiebreak_keys(docids: Sequence[str]) -> np.ndarray:
    """Per document, its position among the doc ids sorted descending (the tie-break key)."""
    np_ = numpy("ranking documents")
    order = sorted(range(len(docids)), key=docids.__getitem__, reverse=True)
    keys = np_.empty(len(docids), dtype=np_.int64)
    keys[order] = np_.arange(len(docids), dtype=np_.int64)
    return keys


def top_k(
    scores: np.ndarray, k: int, tiebreak: np.ndarray, candidates: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The best `k` of `candidates` (default: all documents) as `(doc indices, scores)`.

    Order: score descending, ties by doc id descending (via `tiebreak`), so the cut at `k`
    and the order within it do not depend on the corpus order or on numpy's partitioning.
    """
    np_ = numpy("ranking documents")
    idx = np_.arange(len(scores)) if candidates is None else candidates
    cand = scores[idx]
    if 0 < k < len(idx):
        threshold = np_.partition(cand, len(cand) - k)[len(cand) - k]  # the k-th largest
        keep = cand >= threshold  # keeps every doc tied at the threshold for the tie-break
        idx, cand = idx[keep], cand[keep]
    order = np_.lexsort((tiebreak[idx], -cand))[: max(k, 0)]
    return idx[order], cand[order]


def as_floats(scores: np.ndarray) -> list[float]:
    """Python floats; float32 scores become their shortest decimal (order and ties kept)."""
    np_ = numpy("ranking documents")
    if scores.dtype == np_.float32:
        return [float(s) for s in scores.astype(str)]
    return [float(s) for s in scores]


# --- runs -----------------------------------------------------------------------------------


def write_run(run: Run, path_or_fp: StrPath | TextIO, tag: str = "reasonrank") -> int:
    """Write `run` as a TREC run (`qid Q0 docid rank score tag`); returns the line count.

    Docs are written in the order given (rank = position); a path is replaced atomically and
    `.gz` is compressed. Ids with whitespace, repeated docs and NaN scores are refused
    (`OutputFormatError`).
    """
    from reasonrank.io.writers import write_trec
    from reasonrank.types import Query, RankedDoc, RankedResult

    results = (
        RankedResult(
            Query(text="", qid=qid),
            [RankedDoc(docid=d, rank=r, score=s, text="") for r, (d, s) in enumerate(docs, 1)],
        )
        for qid, docs in run.items()
    )
    return write_trec(results, path_or_fp, tag=tag)


def check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")


def check_queries(queries: Mapping[str, str]) -> None:
    for qid, text in queries.items():
        if not isinstance(text, str):
            raise ConfigError(f"query {qid!r}: text must be a string, got {type(text).__name__}")


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
