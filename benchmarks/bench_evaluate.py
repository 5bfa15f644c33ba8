"""Time `reasonrank.evaluation.evaluate` over all of BRIGHT: 12 tasks, 1,384 queries.

Loads every task's queries, gold ids and excluded ids, and its ReasonIR first-stage run
(top 100) from the shared data, then times the scoring alone (NDCG@10 with the excluded ids
removed), two ways: one `evaluate` call per task, as `reasonrank bright` does, and one call over
all 1,384 queries at once (qids prefixed with the task). The budget is 1 s for the whole of
BRIGHT; the script exits 1 when the per-task total goes over it.

    python benchmarks/bench_evaluate.py [--repeats 5] [--metrics ndcg@10 ...]

Prints the load time, the first (cold) and best scoring times, the 12 NDCG@10 values (x100)
with the published ones, and the average (published: 30.59).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from reasonrank.datasets import bright
from reasonrank.evaluation import evaluate
from reasonrank.evaluation.reference import FIRST_STAGE

SHARED = Path(os.environ.get("REASONRANK_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))
BUDGET_S = 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "bright")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--metrics", nargs="+", default=["ndcg@10"])
    args = parser.parse_args()
    metrics = tuple(args.metrics)

    began = time.perf_counter()
    tasks = bright.load_tasks(args.data)
    runs = {t: bright.load_run(args.data / bright.DEFAULT_RUNS, t) for t in tasks}
    load_s = time.perf_counter() - began
    queries = sum(len(r) for r in runs.values())
    docs = sum(len(d) for r in runs.values() for d in r.values())
    excluded = sum(len(x) for t in tasks.values() for x in t.excluded.values())
    print(f"loaded {len(tasks)} tasks: {queries} queries, {docs:,} run entries, "
          f"{excluded:,} excluded ids in {load_s:.2f} s")

    # One call over everything: qids made unique across tasks.
    all_run = {f"{t}/{q}": d for t, r in runs.items() for q, d in r.items()}
    all_qrels = {f"{t}/{q}": j for t, task in tasks.items() for q, j in task.qrels.items()}
    all_excl = {f"{t}/{q}": x for t, task in tasks.items() for q, x in task.excluded.items()}

    per_task_s: list[float] = []
    combined_s: list[float] = []
    results = {}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        results = {t: evaluate(runs[t], tasks[t].qrels, metrics, exclude=tasks[t].excluded)
                   for t in tasks}
        t1 = time.perf_counter()
        combined = evaluate(all_run, all_qrels, metrics, exclude=all_excl)
        t2 = time.perf_counter()
        per_task_s.append(t1 - t0)
        combined_s.append(t2 - t1)
    assert combined.queries == sum(r.queries for r in results.values()) == queries

    print(f"evaluate, 12 calls (one per task): first {per_task_s[0]:.3f} s, "
          f"best {min(per_task_s):.3f} s of {args.repeats}")
    print(f"evaluate, 1 call over {combined.queries} queries: first {combined_s[0]:.3f} s, "
          f"best {min(combined_s):.3f} s of {args.repeats}")
    print(f"{'task':<22}{'ndcg@10':>9}{'published':>11}")
    values = []
    for t, r in results.items():
        v = 100 * r.mean["ndcg@10"] if "ndcg@10" in r.mean else float("nan")
        values.append(v)
        print(f"{t:<22}{v:>9.3f}{FIRST_STAGE[t]:>11.2f}")
    avg = sum(values) / len(values)
    print(f"{'average':<22}{avg:>9.3f}{FIRST_STAGE.avg:>11.2f}")
    worst = max(per_task_s)
    verdict = "OK" if worst < BUDGET_S else "OVER BUDGET"
    print(f"slowest full pass: {worst:.3f} s (budget {BUDGET_S:.1f} s): {verdict}")
    return 0 if worst < BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
