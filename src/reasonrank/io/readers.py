"""Readers of first-stage runs, corpora, queries, request files and qrels.

Every reader takes a path; `.gz` files (any gzip data, in fact) are decompressed
transparently. Lines are split on `\\n` only. A malformed input raises `InputFormatError`
naming the file and the line.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from typing import Any, NamedTuple, TypeVar

from reasonrank.errors import ConfigError, EmptyInputError, InputFormatError, ReasonRankError
from reasonrank.io._files import StrPath, base_name, excerpt, iter_lines, load_json, read_text
from reasonrank.io.trec import (
    SEPARATOR,
    RecordError,
    docid_problem,
    parse_int,
    parse_run_line,
    qid_problem,
    split_ends,
)
from reasonrank.types import Candidate, Query, Request

V = TypeVar("V")
log = logging.getLogger(__name__)

Run = dict[str, list[tuple[str, float]]]
"""qid -> [(docid, score)] in first-stage order (best first); qids in order of first
appearance."""
Qrels = dict[str, dict[str, int]]
"""qid -> {docid: relevance}."""

TEXT_FIELDS = ("text", "segment", "contents", "body", "passage")
"""Where a document's text is looked for, in this order (the reference's)."""
DOC_ID_FIELDS = ("_id", "id", "docid")
QUERY_ID_FIELDS = ("_id", "id", "qid")
QUERY_TEXT_FIELDS = ("text", "query")

_JSON_NAMES = (".jsonl", ".json", ".ndjson")
_TSV_NAMES = (".tsv", ".txt", ".tab")
_BEIR_HEADER = ["query-id", "corpus-id", "score"]
_SHOWN = 5  # missing ids listed in an error
MAX_RELEVANCE = 2**31 - 1  # trec_eval (and pytrec_eval) hold relevance in a C int


class Doc(NamedTuple):
    """A corpus document: its text and optional title."""

    text: str
    title: str | None = None


class MissingIdsError(ReasonRankError, LookupError):
    """Ids of a run are missing from the queries or the corpus it is joined with."""

    def __init__(
        self, message: str, missing_qids: list[str], missing_docs: list[tuple[str, str]]
    ) -> None:
        super().__init__(message)
        self.missing_qids = missing_qids
        self.missing_docs = missing_docs  # (qid, docid)


# --- ids that a TREC run can carry (the rules are in `reasonrank.io.trec`) ----------------


def _check_qid(qid: str, what: str = "query id") -> str:
    problem = qid_problem(qid)
    if problem is not None:
        raise RecordError(f"{what} {qid!r} {problem}: a TREC run cannot carry it")
    return qid


def _check_docid(docid: str, what: str = "doc id") -> str:
    problem = docid_problem(docid)
    if problem is not None:
        raise RecordError(f"{what} {docid!r} {problem}: a TREC run cannot carry it")
    return docid


def _trec_eval_sort(docs: list[tuple[str, float]]) -> None:
    """Sort in place as trec_eval does: score descending, ties by docid descending."""
    docs.sort(key=lambda d: d[0], reverse=True)  # Python's sort is stable, reverse included
    docs.sort(key=lambda d: d[1], reverse=True)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise RecordError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _loads(path: StrPath, line: int | None, text: str) -> Any:
    try:
        return load_json(text, path, line, object_pairs_hook=_no_duplicate_keys)
    except RecordError as exc:
        raise InputFormatError(path, line, str(exc)) from None


def _json_records(path: StrPath) -> Iterator[tuple[int | None, str, Any]]:
    """Yield `(line, prefix, record)` from a JSON list, a JSONL file or one JSON object.

    For a JSON list the line is None and the prefix names the item ("item 3: ").
    """
    lines = iter_lines(path)
    for lineno, line in lines:
        text = line.strip()
        if not text:
            continue
        if text.startswith("["):
            lines.close()
            data = _loads(path, None, read_text(path))
            if not isinstance(data, list):  # pragma: no cover - '[' always parses to a list
                raise InputFormatError(path, None, "expected a JSON list")
            for i, record in enumerate(data):
                yield None, f"item {i}: ", record
            return
        try:
            first = _loads(path, lineno, text)
        except InputFormatError:
            lines.close()  # maybe one pretty-printed object rather than JSONL
            try:
                whole = _loads(path, None, read_text(path))
            except InputFormatError:
                whole = None
            if not isinstance(whole, dict):
                _loads(path, lineno, text)  # raises the error of the first line
            yield None, "", whole
            return
        yield lineno, "", first
        for n, rest in lines:
            if rest.strip():
                yield n, "", _loads(path, n, rest.strip())
        return


def _is_json(path: StrPath) -> bool:
    """JSON/JSONL by extension (.jsonl/.json/.ndjson vs .tsv/.txt/.tab), else by content."""
    name = base_name(path)
    if name.endswith(_JSON_NAMES):
        return True
    if name.endswith(_TSV_NAMES):
        return False
    with closing(iter_lines(path)) as lines:
        for _, line in lines:
            if line.strip():
                return line.lstrip().startswith(("{", "["))
    return False


def _ident(value: Any, what: str) -> str:
    """An id given as a string or an integer, as a non-empty string."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RecordError(f"{what} must be a string or an integer, got {excerpt(value)}")
    text = str(value)
    if not text:
        raise RecordError(f"{what} is empty")
    return text


def _first(record: Mapping[str, Any], fields: Sequence[str]) -> tuple[str, Any] | None:
    for name in fields:
        if record.get(name) is not None:
            return name, record[name]
    return None


def _text_of(record: Mapping[str, Any], fields: Sequence[str]) -> str | None:
    found = _first(record, fields)
    if found is None:
        return None
    name, value = found
    if not isinstance(value, str):
        raise RecordError(f"field {name!r} must be a string, got {type(value).__name__}")
    return value


def _title_of(record: Mapping[str, Any]) -> str | None:
    title = record.get("title")
    if title is not None and not isinstance(title, str):
        raise RecordError(f"field 'title' must be a string, got {type(title).__name__}")
    return title or None


def _score(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"{what} must be a number, got {excerpt(value)}")
    if isinstance(value, float) and math.isnan(value):
        raise RecordError(f"{what} is NaN")
    try:
        return float(value)
    except OverflowError:
        raise RecordError(f"{what} {excerpt(value)} is out of range") from None


def _relevance(text: str) -> int:
    value = parse_int(text, "relevance")
    if abs(value) > MAX_RELEVANCE:
        raise RecordError(f"relevance {excerpt(text)} is out of range (at most {MAX_RELEVANCE})")
    return value


def require_items(path: StrPath, items: V, what: str) -> V:
    """`items`, or `EmptyInputError` ("no queries in FILE") when there are none."""
    if not items:  # type: ignore[truthy-bool]
        raise EmptyInputError(path, what)
    return items


# --- runs -----------------------------------------------------------------------------------


def read_trec_run(path: StrPath) -> Run:
    """Read a TREC run `qid Q0 docid rank score tag` (fields separated by spaces or tabs).

    Each query's docs come back in the file's line order, never re-sorted: that is the
    first-stage order the reference reranks (`run_rank_llm.py` reads runs line by line).
    The rank column is checked: where it contradicts the line order, one warning names the
    file (the lines are still taken in file order). trec_eval's order (score descending,
    ties by doc id descending) is for scoring only: see `trec_eval_order`.

    The doc id is everything between the second field and the last three, so ids with
    spaces survive (the reference skips those lines). The second field is not checked
    (trec_eval ignores it; some tools write `0` or `Q0`), but it must be there. Blank lines
    are skipped; too few fields, a non-integer rank, a non-numeric or NaN score, a repeated
    (qid, docid), or an id a TREC run cannot carry (see `qid_problem`, `docid_problem`)
    raise `InputFormatError` naming the line.
    """
    run: Run = {}
    seen: dict[tuple[str, str], int] = {}
    last_rank: dict[str, int] = {}
    disordered: tuple[int, str] | None = None
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            qid, docid, rank, score, _tag = parse_run_line(line)
            _check_qid(qid)
            _check_docid(docid)
        except RecordError as exc:
            raise InputFormatError(path, lineno, str(exc)) from None
        first = seen.setdefault((qid, docid), lineno)
        if first != lineno:
            raise InputFormatError(
                path, lineno, f"duplicate doc {docid!r} for query {qid!r} (also on line {first})"
            )
        if disordered is None and rank < last_rank.get(qid, rank):
            disordered = (lineno, qid)
        last_rank[qid] = rank
        run.setdefault(qid, []).append((docid, score))
    if disordered is not None:
        log.warning(
            "%s: the rank column contradicts the line order (first at line %d, query %r); "
            "the candidates are taken in line order, as the reference does",
            path, *disordered,
        )
    return run


def trec_eval_order(run: Mapping[str, Sequence[tuple[str, float]]]) -> Run:
    """`run` with each query's docs sorted as trec_eval sorts them for scoring: score
    descending, ties by doc id descending."""
    out: Run = {}
    for qid, docs in run.items():
        entries = list(docs)
        _trec_eval_sort(entries)
        out[qid] = entries
    return out


def read_score_json(path: StrPath) -> Run:
    """Read `{qid: {docid: score}}` JSON; each query's docs by score descending, equal
    scores kept in the file's key order (a JSON object has no other first-stage order)."""
    data = _loads(path, None, read_text(path))
    if not isinstance(data, dict):
        raise InputFormatError(path, None, "expected a JSON object {qid: {docid: score}}")
    run: Run = {}
    for qid, docs in data.items():
        if not isinstance(docs, dict):
            reason = f"query {qid!r}: expected an object {{docid: score}}"
            raise InputFormatError(path, None, reason)
        try:
            _check_qid(qid)
            entries = [(_check_docid(d, f"query {qid!r}: doc id"),
                        _score(s, f"query {qid!r}, doc {d!r}: score")) for d, s in docs.items()]
        except RecordError as exc:
            raise InputFormatError(path, None, str(exc)) from None
        entries.sort(key=lambda d: d[1], reverse=True)  # stable: ties keep the key order
        run[qid] = entries
    return run


def read_run(path: StrPath) -> Run:
    """A first-stage run, in first-stage order: score JSON for `.json`/`.json.gz`, else a
    TREC run (see `read_trec_run` and `read_score_json`)."""
    return read_score_json(path) if base_name(path).endswith(".json") else read_trec_run(path)


# --- corpus and queries ---------------------------------------------------------------------


def read_corpus(path: StrPath) -> dict[str, Doc]:
    """Read a corpus: docid -> `Doc(text, title)`.

    JSONL (or a JSON list): the id from `_id`, `id` or `docid`; the text from the first of
    `text`, `segment`, `contents`, `body`, `passage`; `title` optional (empty means None).
    TSV (`.tsv`/`.txt`): `docid<TAB>text` or `docid<TAB>title<TAB>text`. The format comes
    from the extension, else from the first line. Duplicate ids are an error.
    """
    return _unique_ids(path, _corpus_records(path), "document")


def _corpus_records(path: StrPath) -> Iterator[tuple[int | None, str, str, Doc]]:
    if not _is_json(path):
        for lineno, line in iter_lines(path):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) not in (2, 3) or not fields[0]:
                raise InputFormatError(
                    path, lineno, "expected 'docid<TAB>text' or 'docid<TAB>title<TAB>text'"
                )
            title = fields[1] if len(fields) == 3 else None
            try:
                _check_docid(fields[0], "document id")
            except RecordError as exc:
                raise InputFormatError(path, lineno, str(exc)) from None
            yield lineno, "", fields[0], Doc(fields[-1], title or None)
        return
    for line, prefix, record in _json_records(path):
        try:
            if not isinstance(record, dict):
                raise RecordError("expected a JSON object")
            found = _first(record, DOC_ID_FIELDS)
            if found is None:
                raise RecordError(f"no document id (one of {', '.join(DOC_ID_FIELDS)})")
            doc_id = _check_docid(_ident(found[1], f"document id {found[0]!r}"), "document id")
            text = _text_of(record, TEXT_FIELDS)
            if text is None:
                raise RecordError(f"document {doc_id!r} has no text ({', '.join(TEXT_FIELDS)})")
            doc = Doc(text, _title_of(record))
        except RecordError as exc:
            raise InputFormatError(path, line, f"{prefix}{exc}") from None
        yield line, prefix, doc_id, doc


def read_queries(path: StrPath) -> dict[str, str]:
    """Read queries: qid -> text.

    TSV (`.tsv`/`.txt`): `qid<TAB>text` (the text is everything after the first tab).
    JSONL or a JSON list (`.jsonl`/`.json`): id from `_id`, `id` or `qid`, text from `text`
    or `query`. Unknown extensions are detected from the first line; duplicates are errors.
    """
    return _unique_ids(path, _query_records(path), "query")


ANSWER_FIELDS = ("answer", "gold_answer", "answers")


def read_query_answers(path: StrPath) -> dict[str, str]:
    """qid -> gold answer, from the `answer`, `gold_answer` or `answers` field of JSON query
    records (a list of answers is joined with "; "); TSV queries have none."""
    if not _is_json(path):
        return {}
    out: dict[str, str] = {}
    for line, prefix, record in _json_records(path):
        if not isinstance(record, dict):
            continue
        found = _first(record, QUERY_ID_FIELDS)
        answer = _first(record, ANSWER_FIELDS)
        if found is None or answer is None:
            continue
        value = answer[1]
        if isinstance(value, list):
            value = "; ".join(str(v) for v in value if str(v).strip())
        elif not isinstance(value, str | int | float) or isinstance(value, bool):
            raise InputFormatError(path, line, f"{prefix}field {answer[0]!r} must be a string "
                                   "or a list of strings")
        if str(value).strip():
            out[str(found[1])] = str(value).strip()
    return out


def _unique_ids(
    path: StrPath, records: Iterable[tuple[int | None, str, str, V]], what: str
) -> dict[str, V]:
    """id -> value from `(line, prefix, id, value)` records; a repeated id names its line."""
    out: dict[str, V] = {}
    for line, prefix, key, value in records:
        if key in out:
            raise InputFormatError(path, line, f"{prefix}duplicate {what} id {key!r}")
        out[key] = value
    return out


def _query_records(path: StrPath) -> Iterator[tuple[int | None, str, str, str]]:
    if not _is_json(path):
        for lineno, line in iter_lines(path):
            if not line.strip():
                continue
            qid, tab, text = line.partition("\t")
            if not tab or not qid.strip():
                raise InputFormatError(path, lineno, "expected 'qid<TAB>query text'")
            try:
                _check_qid(qid.strip(" "))
            except RecordError as exc:
                raise InputFormatError(path, lineno, str(exc)) from None
            yield lineno, "", qid.strip(" "), text
        return
    for line, prefix, record in _json_records(path):
        try:
            if not isinstance(record, dict):
                raise RecordError("expected a JSON object")
            found = _first(record, QUERY_ID_FIELDS)
            if found is None:
                raise RecordError(f"no query id (one of {', '.join(QUERY_ID_FIELDS)})")
            qid = _check_qid(_ident(found[1], f"query id {found[0]!r}"))
            text = _text_of(record, QUERY_TEXT_FIELDS)
            if text is None:
                raise RecordError(f"query {qid!r} has no text ({', '.join(QUERY_TEXT_FIELDS)})")
        except RecordError as exc:
            raise InputFormatError(path, line, f"{prefix}{exc}") from None
        yield line, prefix, qid, text


def read_id_texts(path: StrPath) -> dict[str, str]:
    """Read an id -> text table (the `id_query/` and `id_doc/` files of training data).

    Either a JSON object `{id: text, ...}` (also one such object per JSONL line) or JSONL /
    a JSON list of records with an id (`_id`, `id`, `docid`, `qid`) and a text (`text`,
    `contents`, `segment`, `body`, `passage`, `query`). Duplicate ids are an error.
    """
    return _unique_ids(path, _id_text_records(path), "text")


_ID_FIELDS = ("_id", "id", "docid", "qid")
_ID_TEXT_FIELDS = (*TEXT_FIELDS, "query")


def _id_text_records(path: StrPath) -> Iterator[tuple[int | None, str, str, str]]:
    for line, prefix, record in _json_records(path):
        try:
            if not isinstance(record, dict):
                raise RecordError("expected a JSON object")
            found = _first(record, _ID_FIELDS)
            if found is None:  # a mapping {id: text}
                for key, value in record.items():
                    if not isinstance(value, str):
                        raise RecordError(
                            f"expected {{id: text}} or a record with an id field "
                            f"({', '.join(_ID_FIELDS)}); the value of {key!r} is not a string"
                        )
                    yield line, prefix, _ident(key, "id"), value
                continue
            ident = _ident(found[1], f"id {found[0]!r}")
            text = _text_of(record, _ID_TEXT_FIELDS)
            if text is None:
                raise RecordError(f"{ident!r} has no text ({', '.join(_ID_TEXT_FIELDS)})")
        except RecordError as exc:
            raise InputFormatError(path, line, f"{prefix}{exc}") from None
        yield line, prefix, ident, text


# --- request files --------------------------------------------------------------------------


def read_requests(path: StrPath) -> list[Request]:
    """Read RankGPT / rank_llm request files: a JSON list, or JSONL with one request a line.

    A request is `{"query": str | {"text", "qid"}, "hits": [...]}` (RankGPT/pyserini) or
    `{"query": {...}, "candidates": [...]}` (rank_llm). A hit has `docid`, optional `qid`,
    `rank` and `score`, and its text in `content`, else in the hit's or its `doc` object's
    `text`/`segment`/`contents`/`body`/`passage`; `title` comes from the hit or its `doc`.
    The qid is the query object's, else the first hit's; hits naming another qid are an
    error. Hits keep their list order (the reference's first-stage order); a `rank` that
    contradicts it gets a warning. Requests and the docs of a request must be unique; ids a
    TREC run cannot carry are errors. A missing score is 0.0.
    """
    requests: list[Request] = []
    seen: dict[str, str] = {}
    disordered: str | None = None
    for line, prefix, record in _json_records(path):
        try:
            request, bad_ranks = _parse_request(record)
        except RecordError as exc:
            raise InputFormatError(path, line, f"{prefix}{exc}") from None
        qid = request.query.qid
        where = f"line {line}" if line is not None else prefix.rstrip(": ")
        if qid in seen:
            raise InputFormatError(
                path, line, f"{prefix}duplicate request for query {qid!r} (also {seen[qid]})"
            )
        seen[qid] = where
        requests.append(request)
        if bad_ranks and disordered is None:
            disordered = qid
    if disordered is not None:
        log.warning("%s: the hits' 'rank' contradicts their list order (first in query %r); "
                    "the hits are taken in list order, as the reference does", path, disordered)
    return requests


def _parse_request(record: Any) -> tuple[Request, bool]:
    """The request, and whether its hits' ranks contradict their list order."""
    if not isinstance(record, dict):
        raise RecordError("expected an object with 'query' and 'hits' (or 'candidates')")
    query = record.get("query")
    qid: str | None = None
    if isinstance(query, dict):
        text = query.get("text")
        if query.get("qid") is not None:
            qid = _check_qid(_ident(query["qid"], "query qid"))
    else:
        text = query
    if not isinstance(text, str):
        raise RecordError("'query' must be a string or an object {'text': str, 'qid': ...}")
    if "hits" in record and "candidates" in record:
        raise RecordError("give 'hits' or 'candidates', not both")
    hits = record.get("candidates", record.get("hits"))
    if not isinstance(hits, list):
        raise RecordError("expected a list of 'hits' (or 'candidates')")

    candidates: list[Candidate] = []
    ranks: list[int | None] = []
    seen: set[str] = set()
    for i, hit in enumerate(hits):
        if not isinstance(hit, dict):
            raise RecordError(f"hit {i}: expected an object")
        docid = _check_docid(_ident(hit.get("docid"), f"hit {i}: 'docid'"), f"hit {i}: doc id")
        if docid in seen:
            raise RecordError(f"hit {i}: duplicate docid {docid!r}")
        seen.add(docid)
        if hit.get("qid") is not None:
            hit_qid = _check_qid(_ident(hit["qid"], f"hit {i}: 'qid'"), f"hit {i}: qid")
            if qid is None:
                qid = hit_qid
            elif hit_qid != qid:
                raise RecordError(f"hit {i}: qid {hit_qid!r} differs from the request's {qid!r}")
        rank = hit.get("rank")
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int)):
            raise RecordError(f"hit {i}: 'rank' must be an integer, got {rank!r}")
        ranks.append(rank)
        doc = hit.get("doc")
        if doc is not None and not isinstance(doc, dict):
            raise RecordError(f"hit {i}: 'doc' must be an object")
        doc = doc or {}
        content = _text_of(hit, ("content", *TEXT_FIELDS))
        if content is None:
            content = _text_of(doc, TEXT_FIELDS)
        if content is None:
            fields = ", ".join(("content", *TEXT_FIELDS))
            raise RecordError(f"hit {i} ({docid!r}) has no text ({fields})")
        score = _score(hit["score"], f"hit {i}: 'score'") if hit.get("score") is not None else 0.0
        title = _title_of(hit) or _title_of(doc)
        candidates.append(Candidate(docid, content, score, title))

    if qid is None:
        raise RecordError("no qid: give 'query': {'text', 'qid'} or a 'qid' on the hits")
    given = [r for r in ranks if r is not None]
    disordered = any(b < a for a, b in itertools.pairwise(given))
    return Request(Query(text, qid), candidates), disordered


# --- joining --------------------------------------------------------------------------------


def _check_top_k(top_k: int | None) -> None:
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ConfigError(f"top_k must be a positive integer or None, got {top_k!r}")


def _doc(value: Doc | tuple[str, str | None] | str) -> Doc:
    if isinstance(value, str):
        return Doc(value)
    return Doc(*value)


def build_requests(
    run: Mapping[str, Sequence[tuple[str, float]]],
    corpus: Mapping[str, Doc | tuple[str, str | None] | str],
    queries: Mapping[str, str],
    top_k: int | None = None,
) -> list[Request]:
    """Join a run with its corpus and queries: one `Request` per run query, in run order.

    Only the first `top_k` docs of each query are kept (all when None). A run qid missing
    from `queries` or a kept docid missing from `corpus` raises `MissingIdsError`, listing
    a few of them; nothing is dropped silently.
    """
    return _build(run, corpus, queries, top_k, ("the run", "the queries", "the corpus"))


def _build(
    run: Mapping[str, Sequence[tuple[str, float]]],
    corpus: Mapping[str, Doc | tuple[str, str | None] | str],
    queries: Mapping[str, str],
    top_k: int | None,
    names: tuple[str, str, str],
) -> list[Request]:
    _check_top_k(top_k)
    kept = {qid: list(docs[:top_k] if top_k is not None else docs) for qid, docs in run.items()}
    missing_qids = [qid for qid in kept if qid not in queries]
    missing_docs = [(q, d) for q, docs in kept.items() for d, _ in docs if d not in corpus]
    if missing_qids or missing_docs:
        run_name, queries_name, corpus_name = names
        parts = []
        if missing_qids:
            shown = ", ".join(repr(q) for q in missing_qids[:_SHOWN])
            more = ", ..." if len(missing_qids) > _SHOWN else ""
            parts.append(
                f"{len(missing_qids)} query id(s) of {run_name} are not in {queries_name}: "
                f"{shown}{more}"
            )
        if missing_docs:
            shown = ", ".join(f"{d!r} (query {q!r})" for q, d in missing_docs[:_SHOWN])
            more = ", ..." if len(missing_docs) > _SHOWN else ""
            parts.append(
                f"{len(missing_docs)} doc id(s) of {run_name} are not in {corpus_name}: "
                f"{shown}{more}"
            )
        raise MissingIdsError("; ".join(parts), missing_qids, missing_docs)
    requests = []
    for qid, docs in kept.items():
        candidates = []
        for docid, score in docs:
            doc = _doc(corpus[docid])
            candidates.append(Candidate(docid, doc.text, float(score), doc.title))
        requests.append(Request(Query(queries[qid], qid), candidates))
    return requests


def load_requests(
    *,
    requests: StrPath | None = None,
    run: StrPath | None = None,
    corpus: StrPath | None = None,
    queries: StrPath | None = None,
    top_k: int | None = None,
) -> list[Request]:
    """Requests from a request file, or from a run joined with its corpus and queries.

    Give `requests=` alone, or all of `run=`, `corpus=` and `queries=`. The run is score
    JSON for `.json`/`.json.gz`, else TREC. `top_k` keeps the first k candidates.
    """
    _check_top_k(top_k)
    joined = {"run": run, "corpus": corpus, "queries": queries}
    if requests is not None:
        given = [name for name, value in joined.items() if value is not None]
        if given:
            raise ConfigError(f"give either a requests file or run/corpus/queries, not both "
                              f"(also given: {', '.join(given)})")
        loaded = require_items(requests, read_requests(requests), "requests")
        if top_k is not None:
            for request in loaded:
                del request.candidates[top_k:]
        return loaded
    absent = [name for name, value in joined.items() if value is None]
    if absent:
        raise ConfigError(
            "give a requests file, or a run with its corpus and queries "
            f"(missing: {', '.join(absent)})"
        )
    assert run is not None and corpus is not None and queries is not None
    names = (f"run {run}", f"queries {queries}", f"corpus {corpus}")
    first_stage = require_items(run, read_run(run), "queries")
    return _build(first_stage, read_corpus(corpus), read_queries(queries), top_k, names)


# --- qrels ----------------------------------------------------------------------------------


def read_qrels(path: StrPath) -> Qrels:
    """Read TREC qrels `qid iter docid rel` (spaces or tabs; rel an integer).

    The docid is everything between the second field and the last, so ids with spaces
    survive. A BEIR header `query-id corpus-id score` switches to three columns. A repeated
    (qid, docid) is an error.
    """
    qrels: Qrels = {}
    seen: dict[tuple[str, str], int] = {}
    head = 2
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        if not seen and head == 2 and SEPARATOR.split(line.strip()) == _BEIR_HEADER:
            head = 1
            continue
        parts = split_ends(line, head, 1)
        if parts is None:
            layout = "qid iter docid rel" if head == 2 else "query-id corpus-id score"
            raise InputFormatError(path, lineno, f"expected '{layout}', got {excerpt(line)}")
        fields, docid, (rel,) = parts
        qid = fields[0]
        try:
            relevance = _relevance(rel)
        except RecordError as exc:
            raise InputFormatError(path, lineno, str(exc)) from None
        first = seen.setdefault((qid, docid), lineno)
        if first != lineno:
            raise InputFormatError(
                path, lineno, f"duplicate judgment of {docid!r} for query {qid!r} (line {first})"
            )
        qrels.setdefault(qid, {})[docid] = relevance
    return qrels
