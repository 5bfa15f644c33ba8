"""Training settings: one dataclass per stage, defaults = the paper's (reference sections 7, 8).

`SFTSettings` (cold-start SFT) and `GRPOSettings` (RL) are plain dataclasses, loaded from YAML
with `load_settings(path, kind, overrides)` and mapped onto TRL's configs with `to_trl()`.
GRPO settings speak verl's language (prompts per step, mini-batches of prompts, rollout
steps), as the paper does; `GRPOSettings.to_trl` converts them to TRL's completion counts:

==============================  ============================================================
verl / paper                    TRL `GRPOConfig`
==============================  ============================================================
rollout.n = 8                   num_generations = 8
train_batch_size = 16 prompts   generation_batch_size = 16 x 8 = 128 completions
ppo_mini_batch_size = 8 prompts one optimizer step = 8 x 8 = 64 completions =
                                per_device_train_batch_size x world x gradient_accumulation
(2 updates per rollout batch)   steps_per_generation = gradient_accumulation x 16 / 8
total_training_steps = 200      max_steps = 200 x 16 / 8 = 400 optimizer steps
kl_loss_coef 0.001, low_var_kl  beta = 0.001 (TRL's k3 estimator is verl's low_var_kl),
                                use_bias_correction_kl = False (verl does not reweight it)
loss_agg_mode = token-mean      loss_type = "dapo" (mean over every completion token of
                                the optimizer step's mini-batch, across devices)
clip_ratio 0.2                  epsilon = 0.2
entropy_coeff 0                 entropy_coef = 0.0
norm_adv_by_std_in_grpo         scale_rewards = "group"
max_prompt_length 20480         checked here before training (TRL has no prompt limit)
==============================  ============================================================

`logging_steps` and `save_steps` count TRL optimizer steps (two per rollout step by default).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from reasonrank.errors import ConfigError, require
from reasonrank.settings import build_settings, option, parse_overrides, read_yaml

log = logging.getLogger(__name__)

__all__ = [
    "GRPOSettings",
    "SFTSettings",
    "TrainSettings",
    "load_settings",
    "resolve_precision",
    "settings_class",
]

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
MODEL_DTYPES = ("auto", "bfloat16", "float16", "float32")
_PRECISION_DTYPE = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def _f(default: Any, help: str, **extra: Any) -> Any:
    return option(default, help, **extra)


@dataclass
class TrainSettings:
    """Settings both stages share. `model`, `train_file` and `output_dir` are required."""

    model: str = _f("", "base model: hub id or local path (GRPO: the SFT checkpoint)")
    train_file: str = _f("", "training examples, JSONL or Parquet (`reasonrank data` writes them)")
    output_dir: str = _f("", "checkpoints, the final model and logs go here")
    eval_file: str | None = _f(None, "optional held-out examples, evaluated every save_steps")
    # LoRA (the 32B recipe)
    lora: bool = _f(False, "train a LoRA adapter instead of every weight")
    lora_r: int = _f(32, "LoRA rank")
    lora_alpha: int = _f(32, "LoRA alpha")
    lora_dropout: float = _f(0.0, "LoRA dropout")
    lora_target: str = _f("all-linear", "LoRA target modules: all-linear, or comma-separated "
                                        "module names")
    merge_lora: bool = _f(True, "after LoRA training, merge the adapter into output_dir/merged")
    # numerics
    precision: str = _f(
        "auto", "mixed precision: bf16, fp16, fp32, or auto (bf16 on a CUDA GPU that supports "
        "it, else fp32)", choices=PRECISIONS)
    model_dtype: str = _f(
        "auto", "dtype the weights load in: auto (LoRA: the compute precision, since frozen "
        "weights need no fp32 master copy; full fine-tune: float32 master weights)",
        choices=MODEL_DTYPES)
    attn_implementation: str = _f("sdpa", "attention kernel: sdpa, eager, flash_attention_2")
    gradient_checkpointing: bool = _f(True, "recompute activations to save memory")
    use_cpu: bool = _f(False, "train on the CPU even when a GPU is present")
    # batches and schedule
    per_device_batch_size: int = _f(1, "sequences per forward pass per device")
    seed: int = _f(42, "random seed")
    # bookkeeping
    save_steps: int = _f(100, "save a checkpoint every N optimizer steps")
    save_total_limit: int | None = _f(3, "keep at most N checkpoints (null: keep all)")
    resume: bool | str = _f(
        False, "true: continue from the latest checkpoint in output_dir (or start fresh when "
        "there is none); a path: continue from that checkpoint")
    report_to: str = _f("none", "experiment tracker: none, tensorboard, wandb, ... (comma list)")
    dataloader_workers: int = _f(0, "data loader worker processes")
    progress: str = _f("bar", "console output: bar (progress bar), log (a line of metrics per "
                              "log step, for log files), none", choices=("bar", "log", "none"))

    # -- validation ------------------------------------------------------------------------

    def __post_init__(self) -> None:
        for name in ("lora_r", "lora_alpha", "per_device_batch_size", "save_steps"):
            _at_least(self, name, 1)
        _at_least(self, "dataloader_workers", 0)
        if self.save_total_limit is not None:
            _at_least(self, "save_total_limit", 1)
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(choices)}; got {value!r}")
        learning_rate = getattr(self, "learning_rate", 1.0)
        if not learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0, got {learning_rate}")

    def check_required(self) -> None:
        """Raise `ConfigError` when `model`, `train_file` or `output_dir` is unset."""
        missing = [n for n in ("model", "train_file", "output_dir") if not getattr(self, n)]
        if missing:
            raise ConfigError(f"missing required setting(s): {', '.join(missing)} "
                              "(set them in the config file or with --set key=value)")

    # -- helpers shared by the stages ------------------------------------------------------

    def resolved_precision(self) -> str:
        return resolve_precision(self.precision, use_cpu=self.use_cpu)

    def load_dtype(self) -> str:
        """The dtype the weights load in (`model_dtype`, with "auto" resolved)."""
        if self.model_dtype != "auto":
            return self.model_dtype
        return _PRECISION_DTYPE[self.resolved_precision()] if self.lora else "float32"

    def lora_config(self) -> Any:
        """The `peft.LoraConfig` of these settings, or None without LoRA."""
        if not self.lora:
            return None
        peft = require("peft", "train", "LoRA training")
        target: str | list[str] = self.lora_target
        if target != "all-linear":
            target = [t.strip() for t in target.split(",") if t.strip()]
        return peft.LoraConfig(r=self.lora_r, lora_alpha=self.lora_alpha,
                               lora_dropout=self.lora_dropout, target_modules=target,
                               bias="none", task_type="CAUSAL_LM")

    def _common_trl_kwargs(self, config_class: type) -> dict[str, Any]:
        precision = self.resolved_precision()
        # transformers 5 renamed gradient_checkpointing (now a deprecated alias)
        names = {f.name for f in dataclasses.fields(config_class)}
        checkpointing = ("activation_checkpointing" if "activation_checkpointing" in names
                         else "gradient_checkpointing")
        return {
            checkpointing: self.gradient_checkpointing,
            "output_dir": self.output_dir,
            "learning_rate": self.learning_rate,  # type: ignore[attr-defined]
            "lr_scheduler_type": self.lr_scheduler,  # type: ignore[attr-defined]
            "warmup_steps": self.warmup_ratio,  # type: ignore[attr-defined] # < 1: a ratio
            "per_device_train_batch_size": self.per_device_batch_size,
            "per_device_eval_batch_size": self.per_device_batch_size,
            "bf16": precision == "bf16",
            "fp16": precision == "fp16",
            "use_cpu": self.use_cpu,
            "seed": self.seed,
            "logging_steps": self.logging_steps,  # type: ignore[attr-defined]
            "save_strategy": "steps",
            "save_steps": self.save_steps,
            "save_total_limit": self.save_total_limit,
            "report_to": [] if self.report_to == "none" else
            [r.strip() for r in self.report_to.split(",") if r.strip()],
            "dataloader_num_workers": self.dataloader_workers,
            "dataloader_pin_memory": not self.use_cpu and _has_accelerator(),
            "disable_tqdm": self.progress != "bar",
            "eval_strategy": "steps" if self.eval_file else "no",
            "eval_steps": self.save_steps if self.eval_file else None,
            "model_init_kwargs": {"dtype": self.load_dtype(),
                                  "attn_implementation": self.attn_implementation},
        }


@dataclass
class SFTSettings(TrainSettings):
    """Cold-start SFT (reference section 7). Defaults: the 7B full fine-tune; the 32B recipe
    sets `lora: true` and `learning_rate: 1e-4` (configs/train/sft-32b-lora.yaml)."""

    learning_rate: float = _f(5e-6, "peak learning rate (paper: 5e-6 full fine-tune, 1e-4 LoRA)")
    epochs: float = _f(5.0, "passes over the training data")
    max_steps: int | None = _f(None, "stop after N optimizer steps (overrides epochs)")
    gradient_accumulation: int = _f(8, "micro-batches per optimizer step, per device")
    lr_scheduler: str = _f("cosine", "learning-rate schedule (transformers' names)")
    warmup_ratio: float = _f(0.1, "fraction of the steps spent warming up")
    max_length: int = _f(23_552, "longest prompt+completion in tokens (20,480 + 3,072); longer "
                                 "examples are cut at the end, losing their EOS (logged)")
    eos_token: str | None = _f(None, "end-of-turn token that ends every completion (default: "
                                     "the tokenizer's EOS, <|im_end|> for Qwen2.5-Instruct)")
    logging_steps: int = _f(10, "log every N optimizer steps")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("gradient_accumulation", "max_length", "logging_steps"):
            _at_least(self, name, 1)
        if self.max_steps is not None:
            _at_least(self, "max_steps", 1)
        if not self.epochs > 0:
            raise ConfigError(f"epochs must be > 0, got {self.epochs}")
        _ratio(self.warmup_ratio)

    def to_trl(self) -> Any:
        """The `trl.SFTConfig`: prompt-completion data, loss on the completion only."""
        trl = require("trl", "train", "SFT training")
        return trl.SFTConfig(
            **self._common_trl_kwargs(trl.SFTConfig),
            num_train_epochs=self.epochs,
            max_steps=self.max_steps or -1,
            gradient_accumulation_steps=self.gradient_accumulation,
            max_length=self.max_length,
            completion_only_loss=True,
            packing=False,
            eos_token=self.eos_token,
        )


@dataclass
class GRPOSettings(TrainSettings):
    """GRPO with the multi-view ranking reward (reference section 8). Defaults: the 7B run;
    the 32B recipe sets `lora: true` and `learning_rate: 1e-5`. Batch sizes count prompts,
    as verl does; `max_steps` counts rollout steps (see the module docstring for TRL's)."""

    learning_rate: float = _f(1e-6, "learning rate (paper: 1e-6 full fine-tune, 1e-5 LoRA)")
    max_steps: int = _f(200, "rollout steps: batches of prompts_per_step prompts (paper: 200)")
    lr_scheduler: str = _f("constant", "learning-rate schedule (verl's default: constant)")
    warmup_ratio: float = _f(0.0, "fraction of the steps spent warming up (verl's default: 0)")
    num_generations: int = _f(8, "rollouts per prompt (the group)")
    prompts_per_step: int = _f(16, "prompts per rollout step (verl data.train_batch_size)")
    mini_batch_prompts: int = _f(8, "prompts per optimizer step (verl ppo_mini_batch_size)")
    beta: float = _f(0.001, "KL loss coefficient against the initial policy (k3 estimator)")
    epsilon: float = _f(0.2, "PPO clip ratio")
    entropy_coef: float = _f(0.0, "entropy bonus coefficient (paper: none)")
    temperature: float = _f(1.0, "rollout sampling temperature")
    max_completion_length: int = _f(3072, "most new tokens per rollout")
    max_prompt_length: int = _f(20_480, "longest prompt in tokens, checked before training")
    overlong_prompts: str = _f(
        "error", "a prompt over max_prompt_length: error (name it; verl's default) or drop "
        "(skip it, logging the count)", choices=("error", "drop"))
    scale_rewards: str = _f("group", "advantage scaling: group (GRPO), batch, none",
                            choices=("group", "batch", "none"))
    loss_type: str = _f("dapo", "TRL loss aggregation; dapo = verl's token-mean",
                        choices=("dapo", "grpo", "bnpo", "dr_grpo"))
    reward_ndcg: float = _f(1.0, "weight of NDCG@k in the reward")
    reward_recall: float = _f(0.2, "weight of Recall@k in the reward")
    reward_rbo: float = _f(0.1, "weight of RBO against the teacher's list in the reward")
    reward_k: int = _f(10, "cutoff of NDCG and Recall")
    reward_rbo_p: float = _f(1.0, "RBO persistence (1.0 = average overlap, as released)")
    use_vllm: bool = _f(False, "generate rollouts with vLLM (pip install 'reasonrank[grpo-vllm]')")
    vllm_mode: str = _f("colocate", "colocate (in the training processes) or server "
                                    "(`trl vllm-serve`)", choices=("colocate", "server"))
    vllm_gpu_memory_utilization: float = _f(0.3, "GPU memory share of colocated vLLM")
    vllm_tensor_parallel_size: int = _f(1, "tensor parallelism of colocated vLLM")
    logging_steps: int = _f(1, "log every N optimizer steps")
    log_completions: bool = _f(False, "print a sample of rollouts at each log")
    save_rollouts: bool = _f(False, "append every scored rollout to output_dir/rollouts*.jsonl")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("max_steps", "prompts_per_step", "mini_batch_prompts",
                     "max_completion_length", "max_prompt_length", "reward_k",
                     "logging_steps", "vllm_tensor_parallel_size"):
            _at_least(self, name, 1)
        _at_least(self, "num_generations", 2)
        if self.prompts_per_step % self.mini_batch_prompts:
            raise ConfigError(f"prompts_per_step ({self.prompts_per_step}) must be a multiple of "
                              f"mini_batch_prompts ({self.mini_batch_prompts})")
        for name in ("beta", "entropy_coef"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0 for sampled rollouts, got "
                              f"{self.temperature}")
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            raise ConfigError("vllm_gpu_memory_utilization must be in (0, 1], got "
                              f"{self.vllm_gpu_memory_utilization}")
        _ratio(self.warmup_ratio)
        self.reward_weights()  # validates the reward settings

    @property
    def updates_per_step(self) -> int:
        """Optimizer steps per rollout step (verl: train batch / mini-batch)."""
        return self.prompts_per_step // self.mini_batch_prompts

    def reward_weights(self) -> Any:
        """The `reasonrank.training.rewards.RewardWeights` of these settings."""
        from reasonrank.training.rewards import RewardWeights

        return RewardWeights(ndcg=self.reward_ndcg, recall=self.reward_recall,
                             rbo=self.reward_rbo, k=self.reward_k, rbo_p=self.reward_rbo_p)

    def gradient_accumulation(self, world_size: int) -> int:
        """Micro-batches per optimizer step on each of `world_size` devices."""
        completions = self.mini_batch_prompts * self.num_generations
        per_pass = self.per_device_batch_size * world_size
        if completions % per_pass:
            raise ConfigError(
                f"an optimizer step holds mini_batch_prompts x num_generations = {completions} "
                f"completions, which {world_size} device(s) x per_device_batch_size "
                f"{self.per_device_batch_size} = {per_pass} does not divide; change "
                "per_device_batch_size or the number of processes")
        return completions // per_pass

    def to_trl(self, world_size: int | None = None) -> Any:
        """The `trl.GRPOConfig` (world size: `WORLD_SIZE`, as accelerate sets it, else 1)."""
        trl = require("trl", "train", "GRPO training")
        world = world_size or int(os.environ.get("WORLD_SIZE", "1"))
        accumulation = self.gradient_accumulation(world)
        kwargs = self._common_trl_kwargs(trl.GRPOConfig)
        # evaluation samples a full group per prompt on each device
        kwargs["per_device_eval_batch_size"] = self.num_generations
        return trl.GRPOConfig(
            **kwargs,
            max_steps=self.max_steps * self.updates_per_step,
            gradient_accumulation_steps=accumulation,
            steps_per_generation=accumulation * self.updates_per_step,
            num_generations=self.num_generations,
            num_iterations=1,
            beta=self.beta,
            use_bias_correction_kl=False,
            epsilon=self.epsilon,
            entropy_coef=self.entropy_coef,
            temperature=self.temperature,
            top_p=1.0,
            top_k=0,
            max_completion_length=self.max_completion_length,
            scale_rewards=self.scale_rewards,
            loss_type=self.loss_type,
            mask_truncated_completions=False,
            remove_unused_columns=False,
            shuffle_dataset=True,
            use_vllm=self.use_vllm,
            vllm_mode=self.vllm_mode,
            vllm_gpu_memory_utilization=self.vllm_gpu_memory_utilization,
            vllm_tensor_parallel_size=self.vllm_tensor_parallel_size,
            vllm_max_model_length=self.max_prompt_length + self.max_completion_length,
            log_completions=self.log_completions,
        )


# --- helpers ----------------------------------------------------------------------------------


def resolve_precision(precision: str, use_cpu: bool = False) -> str:
    """`precision` with "auto" resolved: bf16 on a CUDA GPU that supports it, else fp32."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision != "auto":
        return precision
    if use_cpu:
        return "fp32"
    torch = require("torch", "train", "training")
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def _has_accelerator() -> bool:
    torch = require("torch", "train", "training")
    return bool(torch.cuda.is_available())


def _at_least(settings: Any, name: str, minimum: int) -> None:
    value = getattr(settings, name)
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")


def _ratio(value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"warmup_ratio must be in [0, 1), got {value}")


_KINDS: dict[str, type[TrainSettings]] = {"sft": SFTSettings, "grpo": GRPOSettings}


def settings_class(kind: str) -> type[TrainSettings]:
    try:
        return _KINDS[kind]
    except KeyError:
        raise ConfigError(f"unknown training kind {kind!r}; choose one of: "
                          f"{', '.join(_KINDS)}") from None


def load_settings(path: str | Path | None, kind: Literal["sft", "grpo"] | str,
                  overrides: typing.Sequence[str] = (),
                  flags: typing.Mapping[str, Any] | None = None) -> Any:
    """Settings of `kind` from a YAML mapping at `path` (None: defaults only), then
    `overrides` ("key=value", the value read as YAML: `lora=true`, `learning_rate=1e-4`),
    then `flags` (the command-line flags given, by setting name).

    Unknown keys and values of the wrong type raise `ConfigError`; so does a missing
    required setting (model, train_file, output_dir).
    """
    cls = settings_class(kind)
    values: dict[str, Any] = {}
    if path is not None:
        values.update(read_yaml(Path(path), "train"))
    values.update(parse_overrides(overrides, "train"))
    values.update(flags or {})
    settings = build_settings(cls, values, source=str(path) if path else "overrides")
    settings.check_required()
    return settings
