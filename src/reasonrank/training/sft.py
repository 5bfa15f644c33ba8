"""Cold-start SFT with TRL's `SFTTrainer` (reference section 7).

Examples are prompt-completion rows: `prompt` is the exact inference prompt (chat template
with the generation prompt) and `completion` the teacher's `<think> ... </think> <answer> ...
</answer>` followed by the end-of-turn token. TRL tokenizes `prompt + completion`, and with
`completion_only_loss` every prompt token gets label -100, so the loss covers the completion
and its end-of-turn token only. TRL appends the EOS to a completion that does not already end
with it, so each sequence ends with exactly one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reasonrank.backends.base import load_tokenizer
from reasonrank.errors import ConfigError, InputFormatError, require
from reasonrank.training.checkpoint import TrainResult, run_training
from reasonrank.training.settings import SFTSettings

log = logging.getLogger(__name__)

__all__ = ["build_sft_trainer", "load_sft_dataset", "train_sft"]

SFT_COLUMNS = ("prompt", "completion")


def check_file(path: str, name: str) -> Path:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{name} {file} does not exist (write examples with `reasonrank data`)")
    return file


def load_sft_dataset(path: str, eos_token: str, tokenizer: Any = None, model: str = "") -> Any:
    """A `datasets.Dataset` with the `prompt` and `completion` columns of an example file
    (with `tokenizer`, the model's: warnings when the rows' `prompt_format` does not fit it)."""
    from reasonrank.training.examples import read_examples
    from reasonrank.training.prompt_format import check_examples

    datasets = require("datasets", "train", "SFT training")
    rows = read_examples(check_file(path, "SFT examples file"), SFT_COLUMNS)
    if not rows:
        raise InputFormatError(path, None, "no examples")
    for i, row in enumerate(rows):
        for key in SFT_COLUMNS:
            if not isinstance(row[key], str) or not row[key]:
                raise InputFormatError(path, None, f"row {i + 1}: {key} must be a non-empty "
                                       f"string, got {type(row[key]).__name__}")
    if tokenizer is not None:
        for warning in check_examples(rows, tokenizer, model, path):
            log.warning("%s", warning)
    unterminated = sum(not row["completion"].endswith(eos_token) for row in rows)
    if unterminated:
        log.info("%d of %d completions do not end with %s; TRL appends it", unterminated,
                 len(rows), eos_token)
    return datasets.Dataset.from_list([{k: row[k] for k in SFT_COLUMNS} for row in rows])


def build_sft_trainer(settings: SFTSettings, callbacks: Sequence[Any] = ()) -> Any:
    """The `trl.SFTTrainer` of `settings`, its datasets tokenized and labelled (prompt tokens
    -100). `trainer.get_train_dataloader()` yields the batches training sees."""
    trl = require("trl", "train", "SFT training")
    settings.check_required()
    check_file(settings.train_file, "train_file")
    if settings.eval_file:
        check_file(settings.eval_file, "eval_file")
    tokenizer = load_tokenizer(settings.model, "SFT training", extra="train")
    eos = settings.eos_token or tokenizer.eos_token
    if eos is None or eos not in tokenizer.get_vocab():
        raise ConfigError(f"eos_token {eos!r} is not a token of {settings.model}'s tokenizer")
    train = load_sft_dataset(settings.train_file, eos, tokenizer, settings.model)
    evaluation = load_sft_dataset(settings.eval_file, eos) if settings.eval_file else None
    args = settings.to_trl()
    args.eos_token = eos
    try:
        trainer = trl.SFTTrainer(
            model=settings.model, args=args, train_dataset=train, eval_dataset=evaluation,
            processing_class=tokenizer, peft_config=settings.lora_config(),
            callbacks=list(callbacks) or None,
        )
    except OSError as exc:
        raise ConfigError(f"could not load model {settings.model!r}: {exc}") from exc
    _warn_truncated(trainer.train_dataset, settings.max_length)
    quiet_console(trainer, settings.progress)
    return trainer


def quiet_console(trainer: Any, progress: str) -> None:
    """With `progress: none`, drop the callback that prints each log line."""
    if progress == "none":
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)


def _warn_truncated(dataset: Any, max_length: int) -> None:
    pc = require("pyarrow.compute", "train", "SFT training")
    try:
        column = dataset.with_format("arrow")["input_ids"]
    except (AttributeError, KeyError):  # an iterable dataset
        return
    cut = pc.sum(pc.greater_equal(pc.list_value_length(column), max_length)).as_py() or 0
    if cut:
        log.warning("%d of %d examples reach max_length %d and are cut at the end (their "
                    "completion loses its end-of-turn token)", cut, len(dataset), max_length)


def train_sft(settings: SFTSettings, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Run SFT; save the model the reranker loads (`output_dir/final`, or `merged` for LoRA)."""
    return run_training(build_sft_trainer, settings, callbacks)
