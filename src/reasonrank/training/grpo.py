"""GRPO with the multi-view ranking reward, on TRL's `GRPOTrainer` (reference section 8).

Each example is one window: the exact inference prompt and the teacher's labels
(`initial_list`, `final_list`, `relevant_docids`), which TRL hands to the reward functions as
keyword arguments. Every rollout is scored once with `reasonrank.training.rewards.score_response`;
the reward TRL optimises is its `reward` (weight 1), and zero-weight monitors expose its
parts, so TRL logs `rewards/<name>/mean` and `/std` for each:

- `ranking_reward`: the reward itself (-1 bad format, 0 bad ids, else NDCG + 0.2 R + 0.1 RBO);
- `format_error`: 1.0 when the `<think>...</think> <answer>...</answer>` format fails;
- `ids_ok`: 1.0 when the answer names as many (distinct) passages as the teacher's list;
- `ndcg`, `recall`, `rbo`: the views (0.0 where the format or the ids failed).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reasonrank.backends.base import load_tokenizer
from reasonrank.errors import ConfigError, InputFormatError, require
from reasonrank.training.checkpoint import TrainResult, run_training
from reasonrank.training.settings import GRPOSettings
from reasonrank.training.sft import check_file, quiet_console

log = logging.getLogger(__name__)

__all__ = [
    "MONITORS",
    "RolloutScorer",
    "build_grpo_trainer",
    "build_reward_functions",
    "check_prompt_lengths",
    "load_rl_dataset",
    "train_grpo",
]

RL_COLUMNS = ("prompt", "initial_list", "final_list", "relevant_docids")
_LIST_COLUMNS = RL_COLUMNS[1:]
MONITORS: dict[str, Callable[[Any], float]] = {
    "format_error": lambda b: 0.0 if b.format_ok else 1.0,
    "ids_ok": lambda b: 1.0 if b.ids_ok else 0.0,
    "ndcg": lambda b: b.ndcg,
    "recall": lambda b: b.recall,
    "rbo": lambda b: b.rbo,
}
"""Zero-weight reward functions: logged by TRL, no part of the optimised reward."""


class RolloutScorer:
    """Scores a batch of rollouts once, however many reward functions ask for it.

    TRL calls every reward function with the same batch in turn; the first call scores it
    with `score_response`, the others reuse the result. With `rollouts_path`, each scored
    rollout is appended there as a JSON line (step, dataset, qid, completion, reward parts).
    """

    def __init__(self, weights: Any = None, rollouts_path: str | Path | None = None) -> None:
        from reasonrank.training.rewards import RewardWeights

        self.weights = weights if weights is not None else RewardWeights()
        self.rollouts_path = Path(rollouts_path) if rollouts_path is not None else None
        self._key: tuple[Any, ...] | None = None
        self._scores: list[Any] = []

    def __call__(self, completions: Sequence[Any], initial_list: Sequence[Sequence[str]],
                 final_list: Sequence[Sequence[str]], relevant_docids: Sequence[Sequence[str]],
                 **kwargs: Any) -> list[Any]:
        from reasonrank.training.rewards import score_response

        texts = [_completion_text(c) for c in completions]
        step = getattr(kwargs.get("trainer_state"), "global_step", None)
        key = (step, tuple(texts), _freeze(initial_list), _freeze(final_list),
               _freeze(relevant_docids))
        if key != self._key:
            self._scores = [
                score_response(text, [str(d) for d in initial], [str(d) for d in final],
                               {str(d) for d in relevant}, self.weights)
                for text, initial, final, relevant
                in zip(texts, initial_list, final_list, relevant_docids, strict=True)
            ]
            self._key = key
            if self.rollouts_path is not None:
                self._write(step, texts, self._scores, kwargs)
        return self._scores

    def _write(self, step: int | None, texts: list[str], scores: list[Any],
               kwargs: dict[str, Any]) -> None:
        datasets = kwargs.get("dataset") or [None] * len(texts)
        qids = kwargs.get("qid") or [None] * len(texts)
        assert self.rollouts_path is not None
        self.rollouts_path.parent.mkdir(parents=True, exist_ok=True)
        with self.rollouts_path.open("a", encoding="utf-8") as fh:
            for text, score, dataset, qid in zip(texts, scores, datasets, qids, strict=True):
                fh.write(json.dumps({
                    "step": step, "dataset": dataset, "qid": qid, "completion": text,
                    "reward": score.reward, "format_ok": score.format_ok,
                    "ids_ok": score.ids_ok, "ndcg": score.ndcg, "recall": score.recall,
                    "rbo": score.rbo, "ranking": list(score.ranking),
                }, ensure_ascii=False) + "\n")


def _completion_text(completion: Any) -> str:
    """A completion as text (a string, or a conversational list of messages)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


def _freeze(lists: Sequence[Sequence[Any]]) -> tuple[tuple[Any, ...], ...]:
    return tuple(tuple(x) for x in lists)


class _RewardView:
    """One reward function TRL calls: a view of the scorer's breakdowns, named for logging."""

    def __init__(self, name: str, scorer: RolloutScorer, view: Callable[[Any], float]) -> None:
        self.__name__ = name
        self.scorer = scorer
        self.view = view

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any],
                 **kwargs: Any) -> list[float]:
        try:
            labels = {name: kwargs.pop(name) for name in _LIST_COLUMNS}
        except KeyError as exc:
            raise ConfigError(f"the RL examples lack the {exc.args[0]!r} column the ranking "
                              "reward needs") from None
        return [float(self.view(b)) for b in self.scorer(completions, **labels, **kwargs)]


def build_reward_functions(weights: Any = None, rollouts_path: str | Path | None = None,
                           ) -> tuple[list[Callable[..., list[float]]], list[float]]:
    """The reward functions for `GRPOTrainer` and their weights: `ranking_reward` (1.0) and
    the zero-weight `MONITORS`, all reading one `RolloutScorer`."""
    scorer = RolloutScorer(weights, rollouts_path)
    functions = [_RewardView("ranking_reward", scorer, lambda b: b.reward)]
    functions += [_RewardView(name, scorer, view) for name, view in MONITORS.items()]
    return functions, [1.0] + [0.0] * len(MONITORS)


def load_rl_dataset(path: str, tokenizer: Any = None, model: str = "") -> Any:
    """A `datasets.Dataset` of RL examples: prompt, the three id lists (as strings), and
    dataset/qid when present (with `tokenizer`, the model's: warnings when the rows'
    `prompt_format` does not fit it)."""
    from reasonrank.training.examples import read_examples
    from reasonrank.training.prompt_format import check_examples

    datasets = require("datasets", "train", "GRPO training")
    rows = read_examples(check_file(path, "RL examples file"), RL_COLUMNS)
    if not rows:
        raise InputFormatError(path, None, "no examples")
    if tokenizer is not None:
        for warning in check_examples(rows, tokenizer, model, path):
            log.warning("%s", warning)
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row["prompt"], str) or not row["prompt"]:
            raise InputFormatError(path, None, f"row {i + 1}: prompt must be a non-empty string")
        item: dict[str, Any] = {"prompt": row["prompt"],
                                "dataset": str(row.get("dataset", "")),
                                "qid": str(row.get("qid", i))}
        for key in _LIST_COLUMNS:
            value = row[key]
            if not isinstance(value, list | tuple):
                raise InputFormatError(path, None, f"row {i + 1}: {key} must be a list of ids")
            item[key] = [str(d) for d in value]
        if not item["initial_list"] or not item["final_list"]:
            raise InputFormatError(path, None, f"row {i + 1}: empty initial_list or final_list")
        out.append(item)
    return datasets.Dataset.from_list(out)


def check_prompt_lengths(dataset: Any, tokenizer: Any, max_prompt_length: int,
                         overlong: str = "error", name: str = "train_file") -> Any:
    """Enforce `max_prompt_length` (TRL has no prompt limit): with "error", raise `ConfigError`
    naming the longest prompt; with "drop", remove the overlong ones, logging the count."""
    prompts = dataset["prompt"]
    lengths: list[int] = []
    for start in range(0, len(prompts), 256):
        lengths += [len(ids) for ids in tokenizer(text=prompts[start:start + 256])["input_ids"]]
    over = [i for i, n in enumerate(lengths) if n > max_prompt_length]
    if not over:
        return dataset
    if overlong == "drop":
        log.warning("%s: dropping %d of %d prompts longer than max_prompt_length %d", name,
                    len(over), len(lengths), max_prompt_length)
        keep = sorted(set(range(len(lengths))) - set(over))
        if not keep:
            raise ConfigError(f"{name}: every prompt is longer than max_prompt_length "
                              f"{max_prompt_length}")
        return dataset.select(keep)
    worst = max(over, key=lengths.__getitem__)
    row = dataset[worst]
    raise ConfigError(
        f"{name}: {len(over)} prompt(s) exceed max_prompt_length {max_prompt_length}; the "
        f"longest is row {worst + 1} (dataset {row.get('dataset')!r}, qid {row.get('qid')!r}) "
        f"with {lengths[worst]} tokens. Raise max_prompt_length or set overlong_prompts: drop")


def _rollouts_path(settings: GRPOSettings) -> Path | None:
    if not settings.save_rollouts:
        return None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    name = "rollouts.jsonl" if world == 1 else f"rollouts.rank{rank}.jsonl"
    return Path(settings.output_dir) / name


def build_grpo_trainer(settings: GRPOSettings, callbacks: Sequence[Any] = ()) -> Any:
    """The `trl.GRPOTrainer` of `settings`, with the ranking reward and its monitors."""
    trl = require("trl", "train", "GRPO training")
    settings.check_required()
    check_file(settings.train_file, "train_file")
    if settings.eval_file:
        check_file(settings.eval_file, "eval_file")
    if settings.use_vllm:
        require("vllm", "grpo-vllm", "GRPO rollouts with vLLM (use_vllm: true)")
    tokenizer = load_tokenizer(settings.model, "GRPO training", extra="train")
    train = check_prompt_lengths(load_rl_dataset(settings.train_file, tokenizer, settings.model),
                                 tokenizer,
                                 settings.max_prompt_length, settings.overlong_prompts)
    evaluation = None
    if settings.eval_file:
        evaluation = check_prompt_lengths(load_rl_dataset(settings.eval_file), tokenizer,
                                          settings.max_prompt_length,
                                          settings.overlong_prompts, "eval_file")
    functions, weights = build_reward_functions(settings.reward_weights(),
                                                _rollouts_path(settings))
    args = settings.to_trl()
    args.reward_weights = weights
    try:
        trainer = trl.GRPOTrainer(
            model=settings.model, reward_funcs=functions, args=args, train_dataset=train,
            eval_dataset=evaluation, processing_class=tokenizer,
            peft_config=settings.lora_config(), callbacks=list(callbacks) or None,
        )
    except OSError as exc:
        raise ConfigError(f"could not load model {settings.model!r}: {exc}") from exc
    if trainer.accelerator.num_processes != int(os.environ.get("WORLD_SIZE", "1")):
        raise ConfigError(f"{trainer.accelerator.num_processes} processes run, but WORLD_SIZE "
                          "says otherwise; launch with `accelerate launch`")
    quiet_console(trainer, settings.progress)
    return trainer


def train_grpo(settings: GRPOSettings, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Run GRPO; save the model the reranker loads (`output_dir/final`, or `merged` for
    LoRA). `global_step` counts optimizer steps (`updates_per_step` per rollout step)."""
    return run_training(build_grpo_trainer, settings, callbacks)
