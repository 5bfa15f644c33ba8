"""BM25 first-stage retrieval with `bm25s` (sparse, precomputed term scores; numpy search).

Defaults follow Anserini's BM25 as used for BEIR: Lucene's BM25 (`method="lucene"`,
k1=0.9, b=0.4), Lucene's 33 English stopwords, Porter stemming and a tokenizer close to
Lucene's StandardTokenizer (runs of letters/digits, a possessive `'s` dropped), over
title + text. NDCG@10 on BEIR SciFact test (`benchmarks/scifact_first_stage.py`): 0.677,
against 0.679 reported for Pyserini's flat BM25 index and 0.665 for BEIR's multifield one.
Variations measured on the same data while choosing: Snowball ("english") stems 0.680, no
stemming 0.664, no stopwords 0.680, neither 0.662, tokens of two or more characters 0.671,
k1=1.2/b=0.75 0.683, `method="robertson"` 0.677, `"atire"` 0.678. The Anserini settings are
kept as the default: they are the reference BEIR numbers are compared with.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reasonrank.errors import ConfigError, InputFormatError, require
from reasonrank.io._files import StrPath
from reasonrank.retrieval.common import (
    Progress,
    as_floats,
    check_k,
    check_queries,
    cpu_count,
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

METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
TOKEN_PATTERN = r"(?u)\w+"
"""Default tokens: runs of letters/digits/underscore (Lucene's StandardTokenizer, roughly)."""
_POSSESSIVE = re.compile(r"['’]s\b")
_BM25S_DIR = "bm25s"
_CHUNK = 4096  # documents analysed between progress updates


def _bm25s() -> Any:
    module = require("bm25s", "retrieval", "BM25 retrieval")
    logger = logging.getLogger("bm25s")
    if logger.level == logging.DEBUG:  # bm25s forces DEBUG on import; let logging config decide
        logger.setLevel(logging.NOTSET)
    return module


@dataclass(frozen=True)
class BM25Settings:
    """How an index was built; queries are analysed with the same settings."""

    k1: float = 0.9
    b: float = 0.4
    method: str = "lucene"
    stemmer: str | None = "porter"
    stopwords: str | tuple[str, ...] | None = "en"
    fields: str = "title+text"
    token_pattern: str = TOKEN_PATTERN

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.k1 < 0 or not 0 <= self.b <= 1:
            raise ConfigError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={self.k1}, b={self.b}")
        if self.fields not in ("title+text", "text", "title"):
            raise ConfigError(
                f"fields must be 'title+text', 'text' or 'title', got {self.fields!r}"
            )
        if isinstance(self.stopwords, list):
            object.__setattr__(self, "stopwords", tuple(self.stopwords))

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if isinstance(self.stopwords, tuple):
            data["stopwords"] = list(self.stopwords)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BM25Settings:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class Analyzer:
    """Lower-case, tokenize, drop stopwords, stem (the stem of each word seen is cached)."""

    def __init__(self, settings: BM25Settings) -> None:
        self._pattern = re.compile(settings.token_pattern)
        self._stopwords = _stopword_set(settings.stopwords)
        self._stemmer = None
        if settings.stemmer:
            stemmer_module = require("Stemmer", "retrieval", "BM25 stemming (PyStemmer)")
            try:
                self._stemmer = stemmer_module.Stemmer(settings.stemmer)
            except KeyError:
                known = ", ".join(stemmer_module.algorithms())
                raise ConfigError(f"unknown stemmer {settings.stemmer!r} (one of {known})") \
                    from None
        self._cache: dict[str, str] = {}  # word -> stem; "" for a stopword

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        """The tokens of each text."""
        words = self.words(texts)
        stem = self._cache.__getitem__
        return [list(filter(None, map(stem, w))) for w in words]

    def words(self, texts: Sequence[str]) -> list[list[str]]:
        """The words of each text before stopping and stemming (their stems get cached)."""
        words = [self._pattern.findall(_POSSESSIVE.sub("", text.lower())) for text in texts]
        new = set().union(*words).difference(self._cache)
        if new:
            kept = sorted(new.difference(self._stopwords))
            stems = self._stemmer.stemWords(kept) if self._stemmer is not None else kept
            learnt = dict.fromkeys(new, "")
            # a stem is never empty (Snowball's Porter stems "s" to ""); keep the word then
            learnt.update((w, s or w) for w, s in zip(kept, stems, strict=True))
            self._cache.update(learnt)  # one update: threads never see a partial state
        return words

    def token_ids(
        self, words: Sequence[Sequence[str]], vocab: dict[str, int],
        word_ids: dict[str, int | None],
    ) -> list[list[int]]:
        """Each word list (from `words`) as ids of its stems in `vocab`; new stems are added
        to `vocab`, and `word_ids` caches word -> id (None for a stopword) across calls."""
        for w in set().union(*words).difference(word_ids):
            stem = self._cache[w]
            word_ids[w] = vocab.setdefault(stem, len(vocab)) if stem else None
        lookup = word_ids.__getitem__
        return [list(filter(_is_id, map(lookup, w))) for w in words]


_is_id = functools.partial(operator.is_not, None)


def _stopword_set(stopwords: str | Iterable[str] | None) -> frozenset[str]:
    if stopwords is None:
        return frozenset()
    if not isinstance(stopwords, str):
        return frozenset(w.lower() for w in stopwords)
    module = require("bm25s.stopwords", "retrieval", "BM25 stopwords")
    code = {"english": "en"}.get(stopwords.lower(), stopwords.lower())
    words = getattr(module, f"STOPWORDS_{code.upper()}", None)
    if words is None:
        known = sorted(n[10:].lower() for n in dir(module) if n.startswith("STOPWORDS_"))
        raise ConfigError(f"unknown stopword list {stopwords!r} (one of {', '.join(known)})")
    return frozenset(words)


class BM25Index:
    """A BM25 index over a corpus mapping; `search` returns a `Run` (qid -> [(docid, score)]).

    Build with `BM25Index.build(corpus)`, persist with `save(dir)` / `BM25Index.load(dir)`.
    A query's results are the documents that contain at least one of its terms (as in
    Lucene), at most `k`, ordered by score with ties broken by doc id descending (trec_eval's
    order), so runs are deterministic and survive a TREC round trip unchanged.
    """

    def __init__(self, retriever: Any, docids: list[str], settings: BM25Settings) -> None:
        self.retriever = retriever  # a bm25s.BM25
        self.docids = docids
        self.settings = settings
        self.analyzer = Analyzer(settings)
        self._tiebreak = tiebreak_keys(docids)

    def __len__(self) -> int:
        return len(self.docids)

    @classmethod
    def build(
        cls,
        corpus: Mapping[str, Doc],
        *,
        k1: float = 0.9,
        b: float = 0.4,
        method: str = "lucene",
        stemmer: str | None = "porter",
        stopwords: str | Sequence[str] | None = "en",
        fields: str = "title+text",
        token_pattern: str = TOKEN_PATTERN,
        progress: Progress | None = None,
    ) -> BM25Index:
        """Index `corpus` (docid -> `Doc`); the text is `title + " " + text` by default.

        `stemmer` is a PyStemmer algorithm ("porter", as Anserini; "english" is Snowball's
        Porter2) or None; `stopwords` a language code of bm25s ("en": Lucene's 33 words), a
        word list, or None. `progress` is called with the number of documents analysed.
        """
        if not corpus:
            raise ConfigError("cannot index an empty corpus")
        stop = stopwords if stopwords is None or isinstance(stopwords, str) else tuple(stopwords)
        settings = BM25Settings(k1, b, method, stemmer, stop, fields, token_pattern)
        analyzer = Analyzer(settings)
        docids = list(corpus)
        vocab: dict[str, int] = {}
        word_ids: dict[str, int | None] = {}
        token_ids: list[list[int]] = []
        for start in range(0, len(docids), _CHUNK):
            chunk = docids[start : start + _CHUNK]
            words = analyzer.words([doc_text(corpus[d], fields) for d in chunk])
            token_ids.extend(analyzer.token_ids(words, vocab, word_ids))
            if progress is not None:
                progress(len(chunk))
        retriever = _bm25s().BM25(k1=k1, b=b, method=method)
        retriever.index((token_ids, vocab), show_progress=False)
        index = cls(retriever, docids, settings)
        index.analyzer = analyzer  # keep its cache
        return index

    def save(self, path: StrPath) -> Path:
        """Write the index to directory `path` (created; an existing index there is replaced)."""
        out = prepare_dir(path)
        self.retriever.save(str(out / _BM25S_DIR), show_progress=False)
        write_manifest(out, "bm25", self.docids, self.settings.to_json())
        return out

    @classmethod
    def load(cls, path: StrPath, *, mmap: bool = False) -> BM25Index:
        """Load an index saved by `save`; a missing, foreign or corrupt one raises
        `InputFormatError` naming the directory. `mmap` memory-maps the score arrays."""
        root = Path(path)
        raw_settings, docids = read_manifest(root, "bm25")
        try:
            settings = BM25Settings.from_json(raw_settings)
        except (TypeError, ConfigError) as exc:
            raise InputFormatError(root, None, f"corrupt manifest settings ({exc})") from None
        bm25s = _bm25s()
        try:
            retriever = bm25s.BM25.load(str(root / _BM25S_DIR), mmap=mmap, show_progress=False)
            num_docs = int(retriever.scores["num_docs"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputFormatError(root, None, f"corrupt BM25 index ({exc})") from None
        if num_docs != len(docids):
            raise InputFormatError(
                root, None, f"corrupt index: {num_docs} indexed docs but {len(docids)} doc ids"
            )
        return cls(retriever, docids, settings)

    def search(
        self,
        queries: Mapping[str, str],
        k: int = 100,
        *,
        batch_size: int = 256,
        n_threads: int = 1,
        progress: Progress | None = None,
    ) -> Run:
        """The top `k` documents of each query (qid -> [(docid, score)], best first).

        Queries are analysed and scored `batch_size` at a time, batches spread over
        `n_threads` threads (0: one per CPU); results do not depend on either. Every qid is
        in the run, with an empty list when no indexed term matches. `progress` is called
        with the number of queries finished.
        """
        check_k(k)
        check_queries(queries)
        qids = list(queries)
        size = max(batch_size, 1)
        batches = [qids[i : i + size] for i in range(0, len(qids), size)]
        threads = cpu_count() if n_threads <= 0 else n_threads

        def run_batch(batch: list[str]) -> list[list[tuple[str, float]]]:
            out = self._search_batch([queries[q] for q in batch], k)
            if progress is not None:
                progress(len(batch))
            return out

        if threads == 1 or len(batches) <= 1:
            results = [run_batch(b) for b in batches]
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                results = list(pool.map(run_batch, batches))
        return {q: docs for batch, res in zip(batches, results, strict=True)
                for q, docs in zip(batch, res, strict=True)}

    def _search_batch(self, texts: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        np_ = numpy("BM25 retrieval")
        vocab = self.retriever.vocab_dict
        data_ptr = self.retriever.scores["indptr"]
        indices = self.retriever.scores["indices"]
        n_terms = len(data_ptr) - 1
        out = []
        for tokens in self.analyzer(texts):
            ids = [i for t in tokens if (i := vocab.get(t)) is not None and i < n_terms]
            if not ids:
                out.append([])
                continue
            scores = self.retriever.get_scores_from_ids(ids)
            matched = np_.unique(np_.concatenate(
                [indices[data_ptr[i] : data_ptr[i + 1]] for i in set(ids)]
            ))
            best, best_scores = top_k(scores, k, self._tiebreak, matched)
            out.append(list(zip([self.docids[i] for i in best], as_floats(best_scores),
                                strict=True)))
        return out

    def doc_scores(self, query: str) -> np.ndarray:
        """The BM25 score of every document (corpus order) for one query."""
        np_ = numpy("BM25 retrieval")
        vocab = self.retriever.vocab_dict
        n_terms = len(self.retriever.scores["indptr"]) - 1
        tokens = self.analyzer([query])[0]
        ids = [i for t in tokens if (i := vocab.get(t)) is not None and i < n_terms]
        if not ids:
            return np_.zeros(len(self.docids), dtype=np_.float32)
        return self.retriever.get_scores_from_ids(ids)
