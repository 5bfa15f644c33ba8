"""Start-up cost of exact truncation: a `Truncator` for the real Qwen2.5 tokenizer (rebuilt
offline), with an empty plan cache (the merge-by-merge verification, then the cache written) and
with a warm one (the plan read from disk), each in a fresh process as `reasonrank prompt` pays it.

    python benchmarks/bench_truncator_load.py [--tokenizer DIR] [--repeat 3]

The last line reads `truncator load: cold X s, warm Y s (xZ)` (medians, CPU seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, sys, time
from transformers import AutoTokenizer
from reasonrank.core.truncation import Truncator
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
start = time.process_time()
truncator = Truncator(tokenizer, 512)
print(json.dumps({"cpu": time.process_time() - start, "path": truncator.path}))
"""


def load_once(tok_dir: Path, cache: Path) -> tuple[float, str]:
    env = {**os.environ, "REASONRANK_CACHE_DIR": str(cache), "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(tok_dir)], env=env, check=True,
                         capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return float(result["cpu"]), str(result["path"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", help="tokenizer dir (default: Qwen2.5 rebuilt offline)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tok_dir = args.tokenizer
    if tok_dir is None:
        from reasonrank.offline import build_qwen25_tokenizer

        tok_dir = build_qwen25_tokenizer(Path(tempfile.gettempdir()) / "reasonrank-qwen25-tok")
    cold, warm = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as cache:
            seconds, path = load_once(Path(tok_dir), Path(cache))
            cold.append(seconds)
            seconds, warm_path = load_once(Path(tok_dir), Path(cache))
            warm.append(seconds)
            if (path, warm_path) != ("tiktoken", "tiktoken"):
                print(f"ERROR: truncation paths {path}, {warm_path}", file=sys.stderr)
                return 1
    c, w = statistics.median(cold), statistics.median(warm)
    print(f"cold: {', '.join(f'{s:.2f}' for s in cold)} s; warm: "
          f"{', '.join(f'{s:.2f}' for s in warm)} s")
    print(f"truncator load: cold {c:.2f} s, warm {w:.2f} s (x{c / w:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
