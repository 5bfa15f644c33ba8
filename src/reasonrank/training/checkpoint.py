"""Checkpoints: resuming, saving the final model, merging LoRA adapters, checking the result.

What a training run leaves in `output_dir`:

- `checkpoint-N/`: Trainer checkpoints every `save_steps` (optimizer state included), what
  `resume` continues from;
- `final/` (full fine-tune) or `adapter/` + `merged/` (LoRA): the model the reranker loads,
  with its tokenizer and a generation config whose EOS ids include the end-of-turn token
  (`<|im_end|>`), so generation stops where the training targets ended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonrank.errors import ConfigError, require

log = logging.getLogger(__name__)

__all__ = [
    "TrainResult",
    "check_causal_lm",
    "ensure_eos",
    "merge_lora",
    "resolve_resume",
    "save_final",
]

FINAL_DIR = "final"
ADAPTER_DIR = "adapter"
MERGED_DIR = "merged"


@dataclass
class TrainResult:
    """What a training run produced."""

    output_dir: Path
    final_checkpoint: Path | None  # the directory `Reranker(model=...)` loads (None off rank 0)
    global_step: int  # optimizer steps
    metrics: dict[str, float] = field(default_factory=dict)
    log_history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: str | None = None
    adapter_dir: Path | None = None

    def last(self, key: str) -> float | None:
        """The last logged value of `key` (e.g. "loss", "reward"), or None."""
        for entry in reversed(self.log_history):
            if key in entry:
                return float(entry[key])
        return None

    def history(self, key: str) -> list[float]:
        """Every logged value of `key`, in order."""
        return [float(e[key]) for e in self.log_history if key in e]


def resolve_resume(resume: bool | str, output_dir: str | Path) -> str | None:
    """The checkpoint to resume from: `resume` true -> the latest `checkpoint-N` in
    `output_dir` (None when there is none yet); a path -> that checkpoint; false -> None."""
    from transformers.trainer_utils import get_last_checkpoint

    out = Path(output_dir)
    if resume is False:
        if out.is_dir() and get_last_checkpoint(str(out)):
            log.warning("%s already holds checkpoints; training starts from scratch (set "
                        "resume: true to continue from the latest)", out)
        return None
    if resume is True:
        last = get_last_checkpoint(str(out)) if out.is_dir() else None
        if last is None:
            log.info("resume: no checkpoint in %s yet, starting from scratch", out)
        else:
            log.info("resuming from %s", last)
        return last
    path = Path(resume)
    if not (path / "trainer_state.json").is_file():
        raise ConfigError(f"resume: {path} is not a Trainer checkpoint (no trainer_state.json); "
                          "use resume: true for the latest checkpoint in output_dir")
    return str(path)


def run_training(build: Callable[[Any, Sequence[Any]], Any], settings: Any,
                 callbacks: Sequence[Any] = ()) -> TrainResult:
    """Build a trainer with `build(settings, callbacks)`, train (resuming as `settings.resume`
    says), save its state and the checkpoint the reranker loads."""
    resume = resolve_resume(settings.resume, settings.output_dir)  # fail before loading
    trainer = build(settings, callbacks)
    output = trainer.train(resume_from_checkpoint=resume)
    trainer.save_state()
    final, adapter = save_final(trainer, settings, trainer.processing_class)
    return TrainResult(
        output_dir=Path(settings.output_dir), final_checkpoint=final,
        global_step=trainer.state.global_step, metrics=dict(output.metrics),
        log_history=list(trainer.state.log_history), resumed_from=resume, adapter_dir=adapter,
    )


def ensure_eos(model: Any, tokenizer: Any, extra: Iterable[int] = ()) -> list[int]:
    """Make `model.generation_config.eos_token_id` include the tokenizer's EOS (the end-of-turn
    token the completions end with) and `extra`; returns the ids."""
    gen = getattr(model, "generation_config", None)
    if gen is None:
        transformers = require("transformers", "train", "saving a model")
        gen = model.generation_config = transformers.GenerationConfig()
    current = gen.eos_token_id
    ids = [] if current is None else [current] if isinstance(current, int) else list(current)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.insert(0, tokenizer.eos_token_id)
    ids += [token_id for token_id in extra if token_id not in ids]
    gen.eos_token_id = ids
    if gen.pad_token_id is None and tokenizer.pad_token_id is not None:
        gen.pad_token_id = tokenizer.pad_token_id
    return ids


def save_final(trainer: Any, settings: Any, tokenizer: Any) -> tuple[Path | None, Path | None]:
    """Save the trained model for inference; returns `(final_checkpoint, adapter_dir)`.

    Full fine-tune: `output_dir/final`. LoRA: the adapter to `output_dir/adapter`, merged into
    `output_dir/merged` when `settings.merge_lora` (on the main process; the others get None).
    """
    out = Path(settings.output_dir)
    model = trainer.accelerator.unwrap_model(trainer.model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    ensure_eos(base, tokenizer)
    base.config.use_cache = True  # gradient checkpointing turned it off
    main = trainer.is_world_process_zero()
    if not settings.lora:
        final = out / FINAL_DIR
        trainer.save_model(str(final))
        if main:
            base.generation_config.save_pretrained(final)
        return (final if main else None), None
    adapter = out / ADAPTER_DIR
    trainer.save_model(str(adapter))
    if main:
        base.generation_config.save_pretrained(adapter)
    trainer.accelerator.wait_for_everyone()
    if not settings.merge_lora:
        return (adapter if main else None), adapter
    merged = out / MERGED_DIR
    if main:
        merge_lora(adapter, merged, base_model=settings.model)
    trainer.accelerator.wait_for_everyone()
    return (merged if main else None), adapter


def merge_lora(adapter_dir: str | Path, output_dir: str | Path, *,
               base_model: str | None = None, dtype: str = "auto") -> Path:
    """Merge a LoRA adapter into its base model and save a plain causal LM to `output_dir`,
    with the tokenizer (the adapter's, else the base's) and a generation config that stops at
    the tokenizer's EOS. `base_model` defaults to the adapter config's base."""
    peft = require("peft", "train", "merging a LoRA adapter")
    transformers = require("transformers", "train", "merging a LoRA adapter")
    adapter = Path(adapter_dir)
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(f"{adapter} is not a LoRA adapter (no adapter_config.json)")
    config = peft.PeftConfig.from_pretrained(str(adapter))
    base_name = base_model or config.base_model_name_or_path
    if not base_name:
        raise ConfigError(f"{adapter}: the adapter does not name its base model; pass it")
    try:
        base = transformers.AutoModelForCausalLM.from_pretrained(base_name, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"could not load the base model {base_name!r}: {exc}") from exc
    model = peft.PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    has_tokenizer = (adapter / "tokenizer_config.json").is_file()
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        str(adapter) if has_tokenizer else base_name)
    if (adapter / "generation_config.json").is_file():
        model.generation_config = transformers.GenerationConfig.from_pretrained(str(adapter))
    ensure_eos(model, tokenizer)
    model.config.use_cache = True
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    log.info("merged %s into %s: %s", adapter, base_name, out)
    return out


def check_causal_lm(path: str | Path) -> dict[str, Any]:
    """Check that `path` is a causal LM the reranker can load: a causal-LM config, weight
    files, a tokenizer with a chat template, and generation stopping at the tokenizer's EOS.
    Returns a short summary; raises `ConfigError` naming the first problem."""
    transformers = require("transformers", "train", "checking a model directory")
    directory = Path(path)
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory")
    try:
        config = transformers.AutoConfig.from_pretrained(str(directory))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{directory}: no loadable model config: {exc}") from exc
    architectures = list(getattr(config, "architectures", None) or [])
    if not any(a.endswith("ForCausalLM") for a in architectures):
        raise ConfigError(f"{directory}: not a causal LM (architectures: {architectures})")
    weights = sorted(p.name for p in directory.iterdir()
                     if p.suffix in (".safetensors", ".bin") and "adapter" not in p.name)
    if not weights:
        raise ConfigError(f"{directory}: no model weights (*.safetensors or *.bin)")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory))
    if getattr(tokenizer, "chat_template", None) is None:
        raise ConfigError(f"{directory}: the tokenizer has no chat template")
    try:
        gen = transformers.GenerationConfig.from_pretrained(str(directory))
        eos = gen.eos_token_id
    except OSError:
        eos = config.eos_token_id
    eos_ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    if tokenizer.eos_token_id not in eos_ids:
        raise ConfigError(f"{directory}: generation does not stop at the tokenizer's EOS "
                          f"{tokenizer.eos_token!r} (eos_token_id: {eos_ids})")
    summary: dict[str, Any] = {"path": str(directory), "architectures": architectures,
                               "weights": weights, "eos_token_id": eos_ids}
    return summary
