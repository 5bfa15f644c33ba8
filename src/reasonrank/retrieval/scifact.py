"""The BEIR SciFact corpus from the Hugging Face CSV export (`scifact_hf_csv.zip`)."""

from __future__ import annotations

import ast
import csv
import io
import json
import tokenize
import zipfile
from collections.abc import Mapping

from reasonrank.errors import InputFormatError
from reasonrank.io._files import StrPath, atomic_write
from reasonrank.io.readers import Doc

CORPUS_MEMBER = "corpus_train.csv"


def scifact_corpus(zip_path: StrPath, member: str = CORPUS_MEMBER) -> dict[str, Doc]:
    """docid -> `Doc(text, title)` from the zip's `doc_id,title,abstract,structured` CSV.

    `abstract` holds the sentences as a list literal, written either with commas or, as in
    this export, numpy-style with only whitespace between the strings; the sentences are
    joined with single spaces, as BEIR's corpus does.
    """
    try:
        with zipfile.ZipFile(zip_path) as zf, zf.open(member) as raw:
            rows = list(csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline="")))
    except (OSError, zipfile.BadZipFile, KeyError, UnicodeDecodeError) as exc:
        raise InputFormatError(zip_path, None, f"cannot read {member} ({exc})") from None
    corpus: dict[str, Doc] = {}
    for line, row in enumerate(rows, 2):
        where = f"{zip_path}!{member}"
        doc_id = (row.get("doc_id") or "").strip()
        if not doc_id or row.get("abstract") is None:
            raise InputFormatError(where, line, "expected columns doc_id,title,abstract")
        if doc_id in corpus:
            raise InputFormatError(where, line, f"duplicate document id {doc_id!r}")
        try:
            sentences = _string_literals(row["abstract"])
        except (SyntaxError, ValueError, tokenize.TokenError) as exc:
            raise InputFormatError(where, line, f"abstract is not a list of strings ({exc})") \
                from None
        corpus[doc_id] = Doc(" ".join(sentences), (row.get("title") or "").strip() or None)
    return corpus


def _string_literals(text: str) -> list[str]:
    """The string literals of a list literal, each kept apart (Python would concatenate
    adjacent literals: `['a' 'b']` is `['ab']`)."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.STRING:
            out.append(ast.literal_eval(tok.string))
        elif tok.type in (tokenize.NAME, tokenize.NUMBER) or (
            tok.type == tokenize.OP and tok.string not in ("[", "]", ",")
        ):
            raise ValueError(f"unexpected {tok.string!r}")
    return [s for s in out if isinstance(s, str)]


def write_corpus_jsonl(corpus: Mapping[str, Doc], path: StrPath) -> int:
    """Write a corpus as BEIR JSONL (`_id`, `title`, `text`); returns the document count."""
    with atomic_write(path) as fh:
        for doc_id, doc in corpus.items():
            record = {"_id": doc_id, "title": doc.title or "", "text": doc.text}
            fh.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
    return len(corpus)
