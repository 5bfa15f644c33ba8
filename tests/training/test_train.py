"""Training: settings, SFT (labels, loss, checkpoints, LoRA, resume), GRPO rewards, CLI.

Everything runs on the CPU with the tiny random Qwen2 model and tiny prompts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

from reasonrank.cli.main import main as cli_main
from reasonrank.errors import ConfigError
from reasonrank.training.rewards import RewardWeights, score_response
from reasonrank.training.settings import (
    GRPOSettings,
    SFTSettings,
    load_settings,
)

REPO = Path(__file__).resolve().parents[2]
QUERIES = ["why is the sky blue", "how do vaccines work", "what makes bread rise",
           "why do cats purr"]
PASSAGES = [
    ["Rayleigh scattering of sunlight by air molecules favours short wavelengths.",
     "The ocean reflects the colour of the sky on clear days.",
     "Sunsets look red because light crosses more atmosphere."],
    ["Vaccines train the immune system with a harmless antigen.",
     "Antibodies bind to pathogens and mark them for removal.",
     "Some vaccines need booster doses after several years."],
    ["Yeast ferments sugars and releases carbon dioxide gas.",
     "Gluten networks trap the gas bubbles in the dough.",
     "Ovens bake bread at around two hundred degrees."],
    ["Cats purr through rapid twitching of the laryngeal muscles.",
     "Purring may help bones heal through low frequencies.",
     "Lions cannot purr but they can roar loudly."],
]
ORDERS = [[1, 3, 2], [1, 2, 3], [2, 1, 3], [1, 2, 3]]
FAST = {"precision": "fp32", "gradient_checkpointing": False, "use_cpu": True,
        "progress": "none", "warmup_ratio": 0.0}


@pytest.fixture(scope="module")
def builder(qwen_tokenizer: Any) -> Any:
    from reasonrank.core.prompts import PromptBuilder

    return PromptBuilder(qwen_tokenizer, max_passage_tokens=24)


@pytest.fixture(scope="module")
def sft_file(tmp_path_factory: pytest.TempPathFactory, builder: Any) -> Path:
    from reasonrank.training.examples import sft_row, write_examples

    rows = []
    for i, (query, passages, order) in enumerate(zip(QUERIES, PASSAGES, ORDERS, strict=True)):
        prompt = builder.render(query, passages)
        answer = " > ".join(f"[{n}]" for n in order)
        target = f"<think> passage {order[0]} answers it </think> <answer> {answer} </answer>"
        row = sft_row(builder.tokenizer, prompt.messages, target, "demo", str(i))
        assert row["prompt"] == prompt.text
        rows.append(row)
    path = tmp_path_factory.mktemp("sft_data") / "sft.jsonl"
    write_examples(rows, path)
    return path


@pytest.fixture(scope="module")
def rl_rows(builder: Any) -> list[dict[str, Any]]:
    rows = []
    for i, (query, passages, order) in enumerate(zip(QUERIES, PASSAGES, ORDERS, strict=True)):
        ids = [f"q{i}d{j}" for j in range(len(passages))]
        prompt = builder.render(query, passages).text
        rows.append({"dataset": "demo", "qid": str(i), "prompt": prompt, "initial_list": ids,
                     "final_list": [ids[n - 1] for n in order],
                     "relevant_docids": [ids[order[0] - 1]]})
    return rows


@pytest.fixture(scope="module")
def rl_file(tmp_path_factory: pytest.TempPathFactory, rl_rows: list[dict[str, Any]]) -> Path:
    from reasonrank.training.examples import write_examples

    path = tmp_path_factory.mktemp("rl_data") / "rl.parquet"
    write_examples(rl_rows, path)
    return path


def sft_settings(model: Path, train: Path, out: Path, **changes: Any) -> SFTSettings:
    values = {**FAST, "max_length": 1024, "per_device_batch_size": 1, "gradient_accumulation": 1,
              "logging_steps": 1, "save_steps": 1000, "learning_rate": 1e-3, **changes}
    return SFTSettings(model=str(model), train_file=str(train), output_dir=str(out), **values)


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory: pytest.TempPathFactory, tiny_qwen_dir: Path, sft_file: Path) -> Any:
    from reasonrank.training.sft import train_sft

    out = tmp_path_factory.mktemp("sft_run")
    return train_sft(sft_settings(tiny_qwen_dir, sft_file, out, max_steps=20,
                                  learning_rate=3e-3, lr_scheduler="constant"))


def rerank_permutation(model_dir: Path) -> None:
    from reasonrank.reranker import Reranker

    docs = PASSAGES[0]
    with Reranker(str(model_dir), backend="hf", max_new_tokens=8, max_passage_tokens=24,
                  device="cpu", batch_size=2) as rr:
        result = rr.rerank(QUERIES[0], docs)
    assert sorted(result.docids) == ["0", "1", "2"]


# --- settings -------------------------------------------------------------------------------


def test_defaults_are_the_papers() -> None:
    sft = SFTSettings(model="m", train_file="t", output_dir="o")
    assert (sft.learning_rate, sft.epochs, sft.per_device_batch_size,
            sft.gradient_accumulation) == (5e-6, 5.0, 1, 8)
    assert (sft.lr_scheduler, sft.warmup_ratio, sft.max_length) == ("cosine", 0.1, 23_552)
    assert (sft.lora, sft.lora_r, sft.lora_alpha, sft.lora_target) == (False, 32, 32,
                                                                        "all-linear")
    assert sft.precision == "auto" and sft.merge_lora and sft.report_to == "none"
    grpo = GRPOSettings(model="m", train_file="t", output_dir="o")
    assert (grpo.learning_rate, grpo.num_generations, grpo.prompts_per_step,
            grpo.mini_batch_prompts, grpo.max_steps) == (1e-6, 8, 16, 8, 200)
    assert (grpo.beta, grpo.temperature, grpo.entropy_coef, grpo.epsilon) == (0.001, 1.0, 0.0,
                                                                              0.2)
    assert (grpo.max_completion_length, grpo.max_prompt_length) == (3072, 20_480)
    assert (grpo.scale_rewards, grpo.loss_type, grpo.use_vllm) == ("group", "dapo", False)
    assert grpo.reward_weights() == RewardWeights()
    assert (grpo.reward_ndcg, grpo.reward_recall, grpo.reward_rbo, grpo.reward_k,
            grpo.reward_rbo_p) == (1.0, 0.2, 0.1, 10, 1.0)


def test_verl_batches_map_to_trl() -> None:
    grpo = GRPOSettings(model="m", train_file="t", output_dir="o", use_cpu=True)
    assert grpo.updates_per_step == 2
    assert grpo.gradient_accumulation(1) == 64 and grpo.gradient_accumulation(8) == 8
    with pytest.raises(ConfigError, match="per_device_batch_size"):
        grpo.gradient_accumulation(3)
    cfg = grpo.to_trl(world_size=1)
    assert cfg.generation_batch_size == 16 * 8  # completions per rollout step
    assert cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps == 8 * 8
    assert cfg.steps_per_generation == 2 * cfg.gradient_accumulation_steps
    assert cfg.max_steps == 400 and cfg.num_generations == 8 and cfg.beta == 0.001
    assert cfg.loss_type == "dapo" and cfg.scale_rewards == "group"
    assert cfg.use_bias_correction_kl is False and cfg.entropy_coef == 0.0
    assert not cfg.bf16 and not cfg.fp16  # auto on the CPU = fp32
    sft = SFTSettings(model="m", train_file="t", output_dir="o", use_cpu=True).to_trl()
    assert sft.completion_only_loss is True and sft.max_length == 23_552
    assert (sft.learning_rate, sft.num_train_epochs, sft.gradient_accumulation_steps,
            sft.warmup_steps, sft.lr_scheduler_type.value) == (5e-6, 5.0, 8, 0.1, "cosine")


def test_load_settings_with_overrides(tmp_path: Path) -> None:
    config = tmp_path / "sft.yaml"
    config.write_text("model: some/model\ntrain_file: t.jsonl\noutput_dir: out\n"
                      "learning_rate: 5e-6\nepochs: 2\nresume: false\n")
    s = load_settings(config, "sft", ["lora=true", "learning_rate=1e-4", "max_steps=10",
                                      "resume=out/checkpoint-4", "save_total_limit=null"])
    assert isinstance(s, SFTSettings)
    assert s.lora is True and s.learning_rate == 1e-4 and s.max_steps == 10
    assert s.epochs == 2.0 and isinstance(s.epochs, float)
    assert s.resume == "out/checkpoint-4" and s.save_total_limit is None
    # "5e-6" is a string to YAML 1.1; it still becomes a float
    assert load_settings(config, "sft").learning_rate == 5e-6


def test_shipped_configs_load() -> None:
    files = sorted((REPO / "configs" / "train").glob("*.yaml"))
    assert len(files) >= 4
    for path in files:
        kind = "grpo" if path.name.startswith("grpo") else "sft"
        settings = load_settings(path, kind)
        assert settings.lora == ("lora" in path.name)
    assert load_settings(REPO / "configs/train/sft-32b-lora.yaml", "sft").learning_rate == 1e-4
    assert load_settings(REPO / "configs/train/grpo-32b-lora.yaml", "grpo").learning_rate == 1e-5


@pytest.mark.parametrize(("overrides", "message"), [
    (["learning_rat=1e-4"], "unknown setting.*learning_rat.*valid settings.*learning_rate"),
    (["epochs=many"], "epochs must be float"),
    (["lora=maybe"], "lora must be bool"),
    (["max_steps=1.5"], "max_steps must be int or null"),
    (["precision=bf8"], "precision must be one of"),
    (["gradient_accumulation=0"], "at least 1"),
    (["oops"], "not key=value"),
    (["model="], "missing required setting.*model"),
])
def test_bad_settings_raise_config_error(tmp_path: Path, overrides: list[str],
                                         message: str) -> None:
    config = tmp_path / "sft.yaml"
    config.write_text("model: m\ntrain_file: t.jsonl\noutput_dir: out\n")
    with pytest.raises(ConfigError, match=message):
        load_settings(config, "sft", overrides)


def test_grpo_settings_checks() -> None:
    with pytest.raises(ConfigError, match="multiple of mini_batch_prompts"):
        GRPOSettings(model="m", train_file="t", output_dir="o", prompts_per_step=12,
                     mini_batch_prompts=8)
    with pytest.raises(ConfigError, match="num_generations must be at least 2"):
        GRPOSettings(model="m", train_file="t", output_dir="o", num_generations=1)
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(None, "grpo", ["model=m", "train_file=t", "output_dir=o",
                                     "gradient_accumulation=2"])


# --- SFT ------------------------------------------------------------------------------------


def test_sft_labels_cover_the_completion_only(tiny_qwen_dir: Path, sft_file: Path,
                                              tmp_path: Path, qwen_tokenizer: Any) -> None:
    from reasonrank.training.examples import read_examples
    from reasonrank.training.sft import build_sft_trainer

    trainer = build_sft_trainer(sft_settings(tiny_qwen_dir, sft_file, tmp_path, max_steps=1,
                                             per_device_batch_size=4))
    batch = next(iter(trainer.get_train_dataloader()))  # what training sees, padded
    by_prompt = {r["prompt"]: r for r in read_examples(sft_file)}
    eos = qwen_tokenizer.eos_token_id
    assert eos == qwen_tokenizer.convert_tokens_to_ids("<|im_end|>")
    for ids, labels, mask in zip(batch["input_ids"].tolist(), batch["labels"].tolist(),
                                 batch["attention_mask"].tolist(), strict=True):
        n = sum(mask)
        ids, labels, pad = ids[:n], labels[:n], labels[n:]
        assert all(label == -100 for label in pad)
        start = next(i for i, label in enumerate(labels) if label != -100)
        row = by_prompt[qwen_tokenizer.decode(ids[:start])]
        assert ids[:start] == qwen_tokenizer(row["prompt"])["input_ids"]
        assert labels[start:] == ids[start:]  # every completion token counts
        assert qwen_tokenizer.decode(ids[start:]) == row["completion"]
        assert labels[-1] == eos and ids.count(eos) == row["prompt"].count("<|im_end|>") + 1


def test_sft_loss_falls_and_checkpoint_reranks(sft_run: Any) -> None:
    losses = sft_run.history("loss")
    assert sft_run.global_step == 20 and len(losses) == 20
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 1.0, losses
    final = sft_run.final_checkpoint
    assert final == sft_run.output_dir / "final" and sft_run.adapter_dir is None
    from reasonrank.training.checkpoint import check_causal_lm

    summary = check_causal_lm(final)
    assert 151_645 in summary["eos_token_id"]  # <|im_end|> stops generation
    rerank_permutation(final)


def test_sft_lora_merges_and_reranks(tiny_qwen_dir: Path, sft_file: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from reasonrank.training.sft import train_sft

    result = train_sft(sft_settings(tiny_qwen_dir, sft_file, tmp_path, max_steps=2, lora=True,
                                    lora_r=4, lora_alpha=8))
    assert result.adapter_dir == tmp_path / "adapter"
    assert (result.adapter_dir / "adapter_config.json").is_file()
    assert result.final_checkpoint == tmp_path / "merged"
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    rerank_permutation(result.final_checkpoint)
    # the same merge from the command line, into another directory
    again = tmp_path / "merged-again"
    assert run_cli(["train", "merge", str(result.adapter_dir), "--output", str(again)],
                   monkeypatch) == 0
    assert (again / "generation_config.json").is_file()
    assert (again / "tokenizer_config.json").is_file()


def test_sft_resumes_from_the_latest_checkpoint(tiny_qwen_dir: Path, sft_file: Path,
                                                tmp_path: Path) -> None:
    from reasonrank.training.sft import train_sft

    first = train_sft(sft_settings(tiny_qwen_dir, sft_file, tmp_path, max_steps=4,
                                   save_steps=2, lr_scheduler="constant"))
    assert first.global_step == 4 and first.resumed_from is None
    assert (tmp_path / "checkpoint-2").is_dir() and (tmp_path / "checkpoint-4").is_dir()
    second = train_sft(sft_settings(tiny_qwen_dir, sft_file, tmp_path, max_steps=6,
                                    save_steps=2, lr_scheduler="constant", resume=True))
    assert second.resumed_from == str(tmp_path / "checkpoint-4")
    assert second.global_step == 6
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3, 4, 5, 6]
    assert first.history("loss")[:4] == second.history("loss")[:4]  # restored, not redone
    with pytest.raises(ConfigError, match="not a Trainer checkpoint"):
        train_sft(sft_settings(tiny_qwen_dir, sft_file, tmp_path, max_steps=7,
                               resume=str(tmp_path / "nope")))


# --- GRPO -----------------------------------------------------------------------------------


def test_reward_functions_score_with_score_response(rl_rows: list[dict[str, Any]]) -> None:
    from reasonrank.training.grpo import MONITORS, build_reward_functions

    weights = RewardWeights(recall=0.5)
    functions, reward_weights = build_reward_functions(weights)
    assert [f.__name__ for f in functions] == ["ranking_reward", *MONITORS]
    assert reward_weights == [1.0] + [0.0] * len(MONITORS)
    row = rl_rows[0]
    completions = ["<think> x </think> <answer> [1] > [3] > [2] </answer>",
                   "<think> x </think> <answer> [2] > [1] > [3] </answer>",
                   "<think> x </think> <answer> [1] > [1] </answer>",
                   "no format at all [1] > [2] > [3]"]
    labels = {k: [row[k]] * len(completions)
              for k in ("initial_list", "final_list", "relevant_docids")}
    values = {f.__name__: f(prompts=[row["prompt"]] * 4, completions=completions, **labels)
              for f in functions}
    for i, text in enumerate(completions):
        b = score_response(text, row["initial_list"], row["final_list"],
                           row["relevant_docids"], weights)
        assert values["ranking_reward"][i] == pytest.approx(b.reward)
        assert values["format_error"][i] == (0.0 if b.format_ok else 1.0)
        assert values["ids_ok"][i] == float(b.ids_ok)
        assert values["ndcg"][i] == pytest.approx(b.ndcg)
    assert values["ranking_reward"][0] == pytest.approx(1.0 + 0.5 + 0.1)  # the teacher's order
    assert values["ranking_reward"][2:] == [0.0, -1.0]


def test_prompt_length_check(rl_file: Path, qwen_tokenizer: Any) -> None:
    from reasonrank.training.grpo import check_prompt_lengths, load_rl_dataset

    data = load_rl_dataset(str(rl_file))
    lengths = [len(qwen_tokenizer(p)["input_ids"]) for p in data["prompt"]]
    limit = sorted(lengths)[1]
    with pytest.raises(ConfigError, match=rf"longest is row {lengths.index(max(lengths)) + 1}"):
        check_prompt_lengths(data, qwen_tokenizer, limit)
    kept = check_prompt_lengths(data, qwen_tokenizer, limit, overlong="drop")
    assert len(kept) == sum(n <= limit for n in lengths)


def test_grpo_vllm_needs_the_extra(rl_file: Path, tmp_path: Path) -> None:
    import importlib.util

    from reasonrank.errors import MissingDependencyError
    from reasonrank.training.grpo import build_grpo_trainer

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed")
    settings = GRPOSettings(model="unused", train_file=str(rl_file), output_dir=str(tmp_path),
                            use_vllm=True)
    with pytest.raises(MissingDependencyError, match=r"pip install 'reasonrank\[grpo-vllm\]'"):
        build_grpo_trainer(settings)


def test_grpo_rewards_real_rollouts(tiny_qwen_dir: Path, rl_file: Path,
                                    rl_rows: list[dict[str, Any]], tmp_path: Path) -> None:
    from reasonrank.training.grpo import train_grpo

    settings = GRPOSettings(
        model=str(tiny_qwen_dir), train_file=str(rl_file), output_dir=str(tmp_path),
        **FAST, max_steps=2, num_generations=2, prompts_per_step=2, mini_batch_prompts=2,
        per_device_batch_size=4, max_completion_length=12, learning_rate=1e-4, save_steps=1000,
        save_rollouts=True, logging_steps=1,
    )
    result = train_grpo(settings)
    assert result.global_step == 2
    logs = [e for e in result.log_history if "reward" in e]
    assert len(logs) == 2
    for entry in logs:
        for key in ("reward", "reward_std", "rewards/ranking_reward/mean",
                    "rewards/format_error/mean", "rewards/ndcg/mean", "rewards/ids_ok/mean"):
            assert key in entry, key
    rollouts = [json.loads(line) for line in (tmp_path / "rollouts.jsonl").open()]
    assert len(rollouts) == 2 * 2 * 2  # steps x prompts x generations
    by_qid = {r["qid"]: r for r in rl_rows}
    for r in rollouts:
        row = by_qid[r["qid"]]
        expected = score_response(r["completion"], row["initial_list"], row["final_list"],
                                  row["relevant_docids"])
        assert r["reward"] == pytest.approx(expected.reward)
        assert r["format_ok"] == expected.format_ok
    for step, entry in enumerate(logs):
        batch = [r for r in rollouts if r["step"] == step]
        assert len(batch) == 4
        mean = sum(r["reward"] for r in batch) / 4
        assert entry["reward"] == pytest.approx(mean)
        assert entry["rewards/format_error/mean"] == pytest.approx(
            sum(not r["format_ok"] for r in batch) / 4)
    assert (result.final_checkpoint / "config.json").is_file()


# --- CLI ------------------------------------------------------------------------------------


def run_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    import transformers

    import datasets

    verbosity = transformers.logging.get_verbosity()
    try:
        return cli_main(argv)
    finally:  # -q silences the libraries process-wide; restore them for the other tests
        transformers.logging.set_verbosity(verbosity)
        transformers.logging.enable_progress_bar()
        datasets.enable_progress_bars()


def test_cli_train_sft(tiny_qwen_dir: Path, sft_file: Path, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "sft.yaml"
    out = tmp_path / "out"
    config.write_text(
        f"model: {tiny_qwen_dir}\ntrain_file: {sft_file}\noutput_dir: {out}\n"
        "precision: fp32\ngradient_checkpointing: false\nmax_length: 1024\nuse_cpu: true\n"
        "gradient_accumulation: 1\nlearning_rate: 1.0e-3\nlogging_steps: 1\n")
    assert run_cli(["train", "sft", "--config", str(config), "--set", "max_steps=2", "-q"],
                   monkeypatch) == 0
    assert (out / "final" / "config.json").is_file()
    assert (out / "final" / "generation_config.json").is_file()
    printed = capsys.readouterr().out
    assert str(out / "final") in printed and "final loss" in printed
    assert "{'loss'" not in printed  # -q: the summary only

    missing = tmp_path / "missing.jsonl"
    code = run_cli(["train", "sft", "--config", str(config), "--set", f"train_file={missing}"],
                   monkeypatch)
    assert code == 2
    assert str(missing) in capsys.readouterr().err
