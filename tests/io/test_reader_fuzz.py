"""Fuzzing the readers: random bytes, random JSON (deep, huge numbers, record-shaped) and random
TREC-like lines either parse or raise the project's own error, never anything else, quickly."""

from __future__ import annotations

import contextlib
import gzip
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reasonrank.datasets._layout import iter_json_lines
from reasonrank.errors import InputFormatError, ReasonRankError
from reasonrank.io import _files
from reasonrank.io.readers import (
    read_corpus,
    read_id_texts,
    read_qrels,
    read_queries,
    read_query_answers,
    read_requests,
    read_run,
    read_score_json,
    read_trec_run,
)
from reasonrank.training.records import read_records

SECONDS_PER_READ = 5.0  # generous: a tiny file must never take long, on a busy machine too

READERS: dict[str, list[Callable[[Path], Any]]] = {
    "run.trec": [read_trec_run, read_run],
    "run.json": [read_score_json, read_run],
    "corpus.jsonl": [read_corpus, read_queries, read_query_answers, read_id_texts, read_requests,
                     read_records, lambda p: list(iter_json_lines(p))],
    "corpus.tsv": [read_corpus, read_queries],
    "requests.json": [read_requests, read_corpus],
    "qrels.txt": [read_qrels],
    "unknown.dat": [read_corpus, read_queries],
}
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _read_everything(data: bytes) -> None:
    """Write `data` under every name (and gzipped) and call each reader on it."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, readers in READERS.items():
            for suffix, payload in (("", data), (".gz", gzip.compress(data, mtime=0))):
                path = Path(tmp) / (name + suffix)
                path.write_bytes(payload)
                for reader in readers:
                    start = time.perf_counter()
                    with contextlib.suppress(ReasonRankError):  # anything else fails the test
                        reader(path)
                    assert time.perf_counter() - start < SECONDS_PER_READ, (reader, name)


FIELDS = ["_id", "id", "docid", "qid", "text", "query", "title", "contents", "content", "hits",
          "candidates", "score", "rank", "doc", "answer", "dataset", "initial_list",
          "final_list", "reasoning", "relevant_docids", "segment"]
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.integers(-(10**30), 10**30).map(lambda n: n * 10**300)  # beyond a float
           | st.text(max_size=20))
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), inner, max_size=5),
    max_leaves=20,
)
DEEP = st.integers(0, 5000).map(lambda n: "[" * n + "]" * n)
EDGES = st.sampled_from([10**400, -(10**400), 2**63, 2**31, float("inf"), float("nan"), 1e308,
                         -0.0, "", " ", "\n", "\x00"])
VALUE = EDGES | SCALARS | JSON
SHAPED = st.one_of(  # what the readers expect, with random values: reaches their checks
    st.dictionaries(st.text(max_size=3), st.dictionaries(st.text(max_size=3), VALUE)),  # run
    st.fixed_dictionaries({"query": VALUE | st.fixed_dictionaries({"text": VALUE, "qid": VALUE}),
                           "hits": st.lists(st.fixed_dictionaries(
                               {"docid": VALUE, "content": VALUE},
                               optional={"score": VALUE, "rank": VALUE, "qid": VALUE,
                                         "title": VALUE, "doc": VALUE}), max_size=4)}),
    st.fixed_dictionaries({"_id": VALUE, "text": VALUE}, optional={"title": VALUE}),
)


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(data: bytes) -> None:
    _read_everything(data)


@FUZZ
@given(st.lists(JSON, max_size=5), st.booleans(), DEEP)
def test_random_json(values: list[Any], as_list: bool, deep: str) -> None:
    text = _dumps(values) if as_list else "\n".join(_dumps(v) for v in values)
    _read_everything(text.encode())
    _read_everything((deep + "\n" + text).encode())


@FUZZ
@given(SHAPED, st.lists(SHAPED, max_size=3))
def test_random_json_of_the_expected_shapes(first: Any, more: list[Any]) -> None:
    _read_everything(_dumps(first).encode())  # one object: a score JSON run, a request
    _read_everything("\n".join(_dumps(v) for v in [first, *more]).encode())  # JSONL


TREC_FIELDS = st.sampled_from(["q1", "Q0", "0", "d 1", "d1", "1", "-3", "2.5", "1e999", "nan",
                               "inf", "-inf", "99999999999999999999", "9" * 5000, "x" * 300,
                               "\u00e9", "\x00", "query-id", "corpus-id", "score", ""])
TREC_LINE = st.tuples(st.lists(TREC_FIELDS, max_size=8), st.sampled_from([" ", "\t", "  "])
                      ).map(lambda t: t[1].join(t[0]))


@FUZZ
@given(st.lists(TREC_LINE, max_size=12), st.sampled_from(["\n", "\r\n"]))
def test_random_trec_like_lines(lines: list[str], end: str) -> None:
    _read_everything(end.join(lines).encode())


def test_a_line_over_the_limit_is_refused_with_an_excerpt(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(_files, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "run.trec"
    path.write_text("q1 Q0 d1 1 1.0 t\n" + "y" * 5000 + "\nq1 Q0 d2 2 0.5 t\n")
    with pytest.raises(InputFormatError, match=r"run.trec:2: line longer than 1,000 bytes") as e:
        read_trec_run(path)
    assert len(str(e.value)) < 400


def test_huge_numbers_and_depth_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"q1": {"d1": 10**400}}))
    with pytest.raises(InputFormatError, match="out of range"):
        read_score_json(path)
    path.write_text('{"q1": {"d1": ' + "1" * 5000 + "}}")
    with pytest.raises(InputFormatError, match="invalid JSON"):
        read_score_json(path)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "d1", "text": "t"}\n{"_id": ' + "[" * 100_000 + "\n")
    with pytest.raises(InputFormatError, match=r"corpus.jsonl:2: JSON nested too deeply"):
        read_corpus(corpus)
