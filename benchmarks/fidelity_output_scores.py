"""What `--output-scores` changes on the twelve released ReasonIR BRIGHT runs.

A reranker that keeps the first-stage order (every window answers its own order), written
both ways and scored with NDCG@10 (trec_eval semantics, BRIGHT's excluded ids removed):

- `rank` (the default): scores n + 1 - rank, so the evaluated order is the run's line order;
- `reference`: each position keeps its first-stage score, printed with `{score:.6f}`, as the
  released `run_rank_llm.py` writes it; the evaluator re-sorts ties by doc id descending.

Also counted: queries whose first-stage scores tie in the top 100 / top 10, and those that
tie in the top 10 only once rounded to 6 decimals; "top10 differs" counts queries whose
evaluated top 10 under the reference writing is not the reranked (here: first-stage line)
order, "resorted" those whose whole list an evaluator re-sorts. No model is involved, so this
runs in seconds on a CPU.

    python benchmarks/fidelity_output_scores.py [--data ../shared/data/bright]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from reasonrank.datasets import bright
from reasonrank.evaluation.metrics import trec_order
from reasonrank.io import read_run

SHARED = Path(os.environ.get("REASONRANK_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))


def _ties(scores: list[float]) -> bool:
    return len(set(scores)) < len(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "bright")
    args = parser.parse_args()
    runs_dir = bright.default_runs_dir(args.data)
    rows = []
    print(f"{'task':<20} {'queries':>7} {'tie@100':>7} {'tie@10':>6} {'rnd@10':>6} "
          f"{'released':>8} {'rank':>6} {'refer.':>6} {'top10 differs':>13} {'resorted':>8}")
    for task_name in bright.TASKS:
        task = bright.load_task(args.data, task_name)
        run = read_run(bright.run_path(runs_dir, task_name))  # line order
        released = {q: dict(docs) for q, docs in run.items()}
        by_rank = {q: {d: float(len(docs) - i) for i, (d, _) in enumerate(docs)}
                   for q, docs in run.items()}
        reference = {q: {d: float(f"{s:.6f}") for d, s in docs} for q, docs in run.items()}
        tie100 = sum(_ties([s for _, s in docs]) for docs in run.values())
        tie10 = sum(_ties([s for _, s in docs[:10]]) for docs in run.values())
        rounded10 = sum(_ties([float(f"{s:.6f}") for _, s in docs[:10]])
                        and not _ties([s for _, s in docs[:10]]) for docs in run.values())
        differs = sum(trec_order(reference[q])[:10] != [d for d, _ in run[q][:10]] for q in run)
        moved = sum(trec_order(released[q]) != [d for d, _ in run[q]] for q in run)
        ndcg = [100 * task.evaluate(r, ["ndcg@10"]).mean["ndcg@10"]
                for r in (released, by_rank, reference)]
        rows.append((len(run), tie100, tie10, rounded10, *ndcg, differs, moved))
        print(f"{task_name:<20} {len(run):>7} {tie100:>7} {tie10:>6} {rounded10:>6} "
              f"{ndcg[0]:>8.2f} {ndcg[1]:>6.2f} {ndcg[2]:>6.2f} {differs:>13} {moved:>8}")
    n = len(rows)
    totals = [sum(r[i] for r in rows) for i in (0, 1, 2, 3, 7, 8)]
    means = [sum(r[i] for r in rows) / n for i in (4, 5, 6)]
    print(f"{'all / mean':<20} {totals[0]:>7} {totals[1]:>7} {totals[2]:>6} {totals[3]:>6} "
          f"{means[0]:>8.2f} {means[1]:>6.2f} {means[2]:>6.2f} {totals[4]:>13} {totals[5]:>8}")
    print(f"identity reranker, mean NDCG@10 over 12 BRIGHT tasks: rank scores {means[1]:.2f}, "
          f"reference writing {means[2]:.2f} (released run {means[0]:.2f})")


if __name__ == "__main__":
    main()
