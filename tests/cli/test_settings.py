"""One settings mechanism: flags built from dataclass metadata, `--config` YAML and `--set`
for rerank, serve, train and synth (flags > --set > file > defaults), unknown keys refused
with the valid ones, backend flag groups from each backend's options dataclass, and the
files each command declares."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from reasonrank.backends import registry
from reasonrank.backends.fake import FakeBackend
from reasonrank.backends.hf import HFOptions
from reasonrank.backends.vllm import VLLMOptions
from reasonrank.cli.main import build_parser, config_from_args, main
from reasonrank.config import BackendOptions, RerankConfig, field_choices
from reasonrank.core.options import AT_LEAST_1
from reasonrank.errors import ConfigError
from reasonrank.settings import given_values, option


def _subparser(parser: argparse.ArgumentParser, *path: str) -> argparse.ArgumentParser:
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


def _action(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return next(a for a in parser._actions if flag in a.option_strings)


def _group_of(parser: argparse.ArgumentParser, flag: str) -> str | None:
    for group in parser._action_groups:
        if any(flag in a.option_strings for a in group._group_actions):
            return group.title
    raise AssertionError(f"{flag} not in any group")


def _field(cls: type, name: str) -> dataclasses.Field[Any]:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# --- flags from metadata ---------------------------------------------------------------------


def test_flags_take_help_choices_and_group_from_the_field_metadata() -> None:
    parser = build_parser()
    rerank = _subparser(parser, "rerank")
    window = _action(rerank, "--window-size")
    assert window.help is not None
    assert window.help.startswith(_field(RerankConfig, "window_size").metadata["help"])
    assert "(default: 20)" in window.help and window.default is argparse.SUPPRESS
    assert tuple(_action(rerank, "--policy").choices or ()) == field_choices("policy")
    assert _group_of(rerank, "--window-size") == "rerank options"
    # prompt and parse reuse the rerank fields they share, with the same choices
    prompt = _subparser(parser, "prompt")
    assert tuple(_action(prompt, "--preset").choices or ()) == field_choices("preset")
    assert _action(prompt, "--tokenizer").required
    parse = _subparser(parser, "parse")
    assert tuple(_action(parse, "--policy").choices or ()) == field_choices("policy")
    assert parser.parse_args(["parse", "--num", "3"]).policy == "reproduce"


def test_backend_flag_groups_come_from_each_backends_options() -> None:
    rerank = _subparser(build_parser(), "rerank")
    for cls, backend in ((HFOptions, "hf"), (VLLMOptions, "vllm")):
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            assert _group_of(rerank, flag) in (f"{backend} options", "hf options")
    max_seqs = _action(rerank, "--max-num-seqs")
    assert max_seqs.help == _field(VLLMOptions, "max_num_seqs").metadata["help"]
    # an option two backends declare is one flag whose help names both
    assert "[also vllm]" in (_action(rerank, "--dtype").help or "")
    # the ranges of backend options are checked when the flag is read
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["rerank", "--output", "o", "--max-num-seqs", "0"])
    assert exc.value.code == 2


def test_serve_train_and_synth_flags_are_generated(tmp_path: Path) -> None:
    parser = build_parser()
    serve = _subparser(parser, "serve")
    assert _action(serve, "--server-timeout").dest == "server_timeout"
    assert _group_of(serve, "--max-documents") == "server options"
    assert _group_of(serve, "--api-base") == "openai options"
    grpo = _subparser(parser, "train", "grpo")
    assert tuple(_action(grpo, "--loss-type").choices or ()) == ("dapo", "grpo", "bnpo", "dr_grpo")
    assert "--learning-rate" in _subparser(parser, "train", "sft")._option_string_actions
    synth = _subparser(parser, "synth")
    assert tuple(_action(synth, "--retriever").choices or ()) == ("bm25", "dense", "rrf")


# --- precedence: flags > --set > file > defaults ---------------------------------------------


def test_rerank_config_file_set_and_flags(tmp_path: Path) -> None:
    config = _write(tmp_path / "rr.yaml", "window_size: 4\nstep: 3\nmax_new_tokens: 9\n"
                                          "device: cpu\nbatch_size: 2\n")
    args = build_parser().parse_args(["rerank", "--output", "o", "--config", config,
                                      "--set", "step=2", "--set", "batch_size=5",
                                      "--window-size", "7", "--batch-size", "6"])
    result = config_from_args(args)
    assert (result.window_size, result.step, result.max_new_tokens) == (7, 2, 9)
    assert isinstance(result.backend_options, HFOptions)
    assert (result.backend_options.device, result.backend_options.batch_size) == ("cpu", 6)
    assert result.concurrency == 24  # the hf default follows the batch size
    assert result.top_k == RerankConfig().top_k  # untouched: the default


def test_serve_splits_server_and_rerank_settings(tmp_path: Path) -> None:
    from reasonrank.cli.serve import server_values, settings_from_args

    config = _write(tmp_path / "serve.yaml", "port: 9001\nserver_timeout: 5\nwindow_size: 4\n"
                                             "backend: openai\nrequest_timeout: 7\n")
    args = build_parser().parse_args(["serve", "--config", config, "--port", "9002",
                                      "--cors-origin", "https://a.example"])
    server, rerank, _ = server_values(args)
    settings = settings_from_args(args, server)
    assert (settings.port, settings.request_timeout) == (9002, 5.0)
    assert settings.cors_origins == ("https://a.example",)
    result = config_from_args(args, rerank)
    assert result.window_size == 4 and result.backend == "openai"
    assert result.backend_options.request_timeout == 7.0  # type: ignore[attr-defined]


def test_train_config_file_set_and_flags(tmp_path: Path) -> None:
    from reasonrank.training.settings import SFTSettings, load_settings

    config = _write(tmp_path / "sft.yaml", "model: m\ntrain_file: t.jsonl\noutput_dir: out\n"
                                           "learning_rate: 1.0e-5\nepochs: 2\nlora_r: 8\n")
    args = build_parser().parse_args(["train", "sft", "--config", config, "--set", "lora=true",
                                      "--set", "lora_r=16", "--lora-r", "4",
                                      "--learning-rate", "1e-4"])
    settings = load_settings(args.config, "sft", args.overrides,
                             given_values(args, SFTSettings))
    assert (settings.learning_rate, settings.epochs, settings.lora, settings.lora_r) == (
        1e-4, 2.0, True, 4)


def test_synth_config_file_set_and_flags(tmp_path: Path) -> None:
    from reasonrank.cli.synth import _flags
    from reasonrank.synth.settings import merge_settings

    config = _write(tmp_path / "synth.yaml", "corpus: corpus.jsonl\nconcurrency: 3\n"
                                             "pool_depth: 20\nthreshold: 0.5\n")
    args = build_parser().parse_args(["synth", "candidates", "--workdir", "w", "--config",
                                      config, "--set", "concurrency=4", "--set",
                                      "pool_depth=30", "--pool-depth", "40"])
    settings = merge_settings(None, args.config, args.overrides, _flags(args))
    assert (settings.concurrency, settings.pool_depth, settings.threshold) == (4, 40, 0.5)
    assert settings.corpus == str((tmp_path / "corpus.jsonl").resolve())  # relative to file


# --- unknown keys ----------------------------------------------------------------------------


def test_unknown_rerank_key_is_one_line_listing_the_valid_ones(tmp_path: Path,
                                                               capsys: Any) -> None:
    config = _write(tmp_path / "bad.yaml", "window_sise: 4\n")
    requests = _write(tmp_path / "requests.jsonl", "")
    code = main(["rerank", "--requests", requests, "--output", str(tmp_path / "o.trec"),
                 "--config", config])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "unknown option(s) window_sise" in err and "window_size" in err
    assert "batch_size" in err  # the selected backend's options are valid keys too
    assert not (tmp_path / "o.trec").exists()


def test_unknown_synth_and_train_keys_list_the_valid_ones(tmp_path: Path, capsys: Any) -> None:
    from reasonrank.training.settings import load_settings

    config = _write(tmp_path / "bad.yaml", "corpus: c.jsonl\nqueries: q.jsonl\nconcurency: 4\n")
    code = main(["synth", "candidates", "--workdir", str(tmp_path / "w"), "--config", config])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "unknown setting(s) concurency" in err and "concurrency" in err
    assert not (tmp_path / "w").exists()
    with pytest.raises(ConfigError, match=r"unknown setting.*epoks.*valid settings.*epochs"):
        load_settings(None, "sft", ["epoks=2"])


def test_unknown_serve_key_lists_server_and_rerank_settings(tmp_path: Path,
                                                            capsys: Any) -> None:
    config = _write(tmp_path / "serve.yaml", "port: 9001\nmax_document: 5\n")
    code = main(["serve", "--config", config])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "unknown setting(s) max_document;" in err
    assert all(key in err for key in ("max_documents", "server_timeout", "window_size",
                                      "batch_size"))


def test_an_option_of_another_backend_names_its_backend() -> None:
    with pytest.raises(ConfigError, match="device is an option of backend hf, not of 'openai'"):
        RerankConfig(backend="openai", device="cpu")
    with pytest.raises(ConfigError, match=r"unknown option.*devise.*valid options.*device"):
        RerankConfig(devise="cpu")


# --- backends own their options --------------------------------------------------------------


@dataclasses.dataclass
class ToyOptions(BackendOptions):
    toy_depth: int = option(3, "how deep the toy looks", range=AT_LEAST_1)
    toy_mode: str = option("calm", "the toy's mood", choices=("calm", "wild"))

    def default_concurrency(self) -> int:
        return 7 * self.toy_depth


class ToyBackend(FakeBackend):
    name = "toy"
    Options = ToyOptions


def test_a_registered_backend_gets_its_flag_group_and_options(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(registry._BACKENDS._targets, "toy", ToyBackend)
    parser = build_parser()
    rerank = _subparser(parser, "rerank")
    assert _group_of(rerank, "--toy-depth") == "toy options"
    assert tuple(_action(rerank, "--toy-mode").choices or ()) == ("calm", "wild")
    assert "toy" in (_action(rerank, "--backend").choices or ())
    args = parser.parse_args(["rerank", "--output", "o", "--backend", "toy", "--toy-depth", "5",
                              "--set", "toy_mode=wild"])
    config = config_from_args(args)
    assert config.backend_options == ToyOptions(toy_depth=5, toy_mode="wild")
    assert config.concurrency == 35
    assert RerankConfig(backend="toy", toy_depth=2).replace(toy_depth=4).concurrency == 28
    with pytest.raises(ConfigError, match="toy_mode must be one of calm, wild"):
        RerankConfig(backend="toy", toy_mode="sleepy")
    with pytest.raises(SystemExit):
        parser.parse_args(["rerank", "--output", "o", "--toy-depth", "0"])


def test_public_api_routes_backend_keywords() -> None:
    config = RerankConfig(model="m", backend="hf", device="cpu", batch_size=4)
    assert config.backend_options == HFOptions(device="cpu", batch_size=4)
    assert config.to_dict()["device"] == "cpu" and config.to_dict()["window_size"] == 20
    moved = config.replace(backend="vllm")
    assert isinstance(moved.backend_options, VLLMOptions) and moved.concurrency == 256
    assert RerankConfig.from_options(backend="vllm", max_num_seqs="12").backend_options \
        == VLLMOptions(max_num_seqs=12)


# --- the files a command declares ------------------------------------------------------------


def test_derived_output_paths_are_checked_against_inputs(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "o.trec"
    requests = _write(tmp_path / "o.trec.traces.jsonl", "")  # the default traces path
    code = main(["rerank", "--backend", "fake", "--requests", requests, "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "--traces" in err and "--requests input" in err
    assert Path(requests).read_text() == ""


def test_data_outputs_never_replace_the_source_records(tmp_path: Path, capsys: Any) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    records = _write(folder / "training_data_all.jsonl", "")
    code = main(["data", "filter", str(folder), "--output", records])
    err = capsys.readouterr().err
    assert code == 2 and "SOURCE input" in err


def test_building_the_flags_imports_no_model_library() -> None:
    import subprocess
    import sys

    code = ("import sys; from reasonrank.cli.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'vllm', 'transformers', 'trl') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_shipped_rerank_and_serve_configs_load() -> None:
    from reasonrank.cli.serve import server_values, settings_from_args

    root = Path(__file__).resolve().parents[2] / "configs" / "rerank"
    args = build_parser().parse_args(["rerank", "--output", "o", "--config",
                                      str(root / "bright-vllm-7b.yaml")])
    config = config_from_args(args)
    assert isinstance(config.backend_options, VLLMOptions)
    assert (config.passage_tokens, config.concurrency) == (512, 256)
    args = build_parser().parse_args(["serve", "--config", str(root / "serve-openai.yaml")])
    server, rerank, _ = server_values(args)
    assert settings_from_args(args, server).request_timeout == 600.0
    assert config_from_args(args, rerank).backend == "openai"
