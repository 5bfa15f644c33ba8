"""A small data folder in the ReasonRank 13k layout, written by the tests themselves.

Three domains; each record's teacher list puts its relevant passages at chosen ranks, so the
self-consistency NDCG@10 of every record is known in closed form (`expected_ndcg`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

# (dataset, ranks of the relevant passages in final_list (1-based), list length)
LAYOUT = [
    ("biology", (1,), 5),        # 1.0
    ("biology", (1, 2), 6),      # 1.0
    ("biology", (5,), 5),        # 1/log2(6) = 0.387 -> dropped at 0.4
    ("biology", (4,), 7),        # 1/log2(5) = 0.431
    ("math-qa", (3,), 4),        # 0.5
    ("math-qa", (), 3),          # no relevant passage: 0.0
    ("math-qa", (9, 10), 12),    # the paper's 0.36
    ("math-qa", (1, 11), 12),    # the paper's 0.61
    ("msmarco", (2, 3), 20),     # (1/log2 3 + 1/2) / (1 + 1/log2 3) = 0.693
    ("msmarco", (11,), 15),      # outside the top 10: 0.0
]


def expected_ndcg(ranks: tuple[int, ...]) -> float:
    """Binary NDCG@10, written out independently of reasonrank.training.rewards."""
    dcg = sum(1 / math.log2(r + 1) for r in ranks if r <= 10)
    ideal = sum(1 / math.log2(r + 1) for r in range(1, min(len(ranks), 10) + 1))
    return dcg / ideal if ideal else 0.0


def record_dicts() -> list[dict]:
    """The records: initial_list in first-stage order, final_list a known permutation."""
    out = []
    for n, (dataset, ranks, size) in enumerate(LAYOUT):
        docs = [f"{dataset[:3]}{n}d{i}" for i in range(size)]
        final = docs[::-1] if n % 2 else docs[2:] + docs[:2]
        relevant = [final[r - 1] for r in ranks]
        out.append({"dataset": dataset, "qid": f"q{n}", "initial_list": docs,
                    "final_list": final, "relevant_docids": relevant,
                    "reasoning": f"Passage [{1 + n % size}] answers the question best; "
                                 "the others only share words with it."})
    return out


def write_fixture(root: Path) -> Path:
    """Write the layout: records, id_query/ as one JSON object, id_doc/ as JSONL tables (one
    per-dataset file named after its dataset, using `contents`, and one shared file)."""
    records = record_dicts()
    root.mkdir(parents=True, exist_ok=True)
    (root / "id_query").mkdir(exist_ok=True)
    (root / "id_doc").mkdir(exist_ok=True)
    with open(root / "training_data_all.jsonl", "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
    queries = {r["qid"]: f"What explains [1] effect number {r['qid']} in {r['dataset']}?"
               for r in records}
    (root / "id_query" / "queries.json").write_text(json.dumps(queries, indent=1),
                                                    encoding="utf-8")
    with open(root / "id_doc" / "biology.jsonl", "w", encoding="utf-8") as bio, \
            open(root / "id_doc" / "docs.jsonl", "w", encoding="utf-8") as rest:
        for record in records:
            for i, docid in enumerate(record["initial_list"]):
                text = f"Passage {docid} about {record['dataset']} topic {i}: cells & caf\u00e9."
                if record["dataset"] == "biology":
                    bio.write(json.dumps({"id": docid, "contents": text}) + "\n")
                else:
                    rest.write(json.dumps({"_id": docid, "text": text}) + "\n")
    return root
