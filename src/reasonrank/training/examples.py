"""SFT and RL examples from training records, and readers of the released SFT/RL files.

Prompts come from the engine's `PromptBuilder`, so training and inference see the same text:
the `prompt` of an example is exactly what `reasonrank prompt` prints for its query and
passages. Rows are plain dicts, written as JSONL or Parquet (by suffix):

- SFT: `dataset, qid, prompt, completion, messages`; `completion` is the assistant target
  followed by the chat template's end-of-turn token (the tokenizer's EOS, once).
- RL: `dataset, qid, prompt, messages, initial_list, final_list, relevant_docids`.

Both carry `prompt_format` (template, passage length, tokenizer and a digest of its chat
template) when the builder's settings are known; training ignores it but for a check.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from reasonrank.core.prompts import PromptBuilder, render_chat
from reasonrank.errors import ConfigError, InputFormatError, require
from reasonrank.io._files import (
    StrPath,
    atomic_write,
    base_name,
    iter_lines,
    load_json,
    read_text,
)
from reasonrank.training.prompt_format import PromptFormat, chat_template_digest
from reasonrank.training.records import TrainingRecord, TrainingSet
from reasonrank.types import Candidate, Query, Request

DEFAULT_TARGET = "<think> {reasoning} </think> <answer> {answer} </answer>"
"""The SFT target: the output format the reasoning prompt asks for (reference sections 1, 7)."""
SFT_KEYS = ("prompt", "completion")
RL_KEYS = ("prompt", "initial_list", "final_list", "relevant_docids")
_PARQUET = (".parquet", ".pq")


def answer_text(record: TrainingRecord) -> str:
    """The teacher's ranking as `[a] > [b] > ...`, identifiers numbering `initial_list`."""
    position = {docid: i for i, docid in enumerate(record.initial_list, 1)}
    try:
        return " > ".join(f"[{position[d]}]" for d in record.final_list)
    except KeyError as exc:
        raise ConfigError(f"{record.dataset}/{record.qid}: final_list id {exc.args[0]!r} is "
                          "not in initial_list (run `reasonrank data check`)") from None


def target_text(record: TrainingRecord, template: str = DEFAULT_TARGET) -> str:
    """The assistant target of a record: reasoning and ranking in `template`."""
    for name in ("{reasoning}", "{answer}"):
        if name not in template:
            raise ConfigError(f"the SFT target template must contain {name}: {template!r}")
    return template.replace("{reasoning}", record.reasoning.strip()).replace(
        "{answer}", answer_text(record))


def record_request(data: TrainingSet, record: TrainingRecord) -> Request:
    """The record as a rerank request: its query and `initial_list` passages, in order."""
    texts = data.doc_texts(record)
    return Request(Query(data.query_text(record), record.qid),
                   [Candidate(d, t, 0.0) for d, t in zip(record.initial_list, texts,
                                                          strict=True)])


def completion_text(tokenizer: Any, messages: Sequence[Mapping[str, str]], target: str) -> str:
    """What the chat template appends after the generation prompt for an assistant `target`,
    cut after the end-of-turn token (the tokenizer's EOS): the text SFT learns."""
    prompt = tokenizer.apply_chat_template(list(messages), tokenize=False,
                                           add_generation_prompt=True)
    full = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": target}], tokenize=False)
    if not full.startswith(prompt):
        raise ConfigError("the tokenizer's chat template does not render a conversation as "
                          "its prompt followed by the answer; SFT examples need one that does")
    completion = full[len(prompt):]
    eos = getattr(tokenizer, "eos_token", None)
    if eos and eos in completion:
        completion = completion[:completion.rindex(eos) + len(eos)]
    return completion


def sft_row(tokenizer: Any, messages: Sequence[Mapping[str, str]], target: str,
            dataset: str, qid: str, prompt: str | None = None) -> dict[str, Any]:
    """One SFT example from chat messages (system, user) and the assistant target; `prompt`
    is their rendering when the caller has it already."""
    if prompt is None:
        prompt = render_chat(tokenizer, messages)
    return {"dataset": dataset, "qid": qid, "prompt": prompt,
            "completion": completion_text(tokenizer, messages, target),
            "messages": [*map(dict, messages), {"role": "assistant", "content": target}]}


def builder_format(builder: PromptBuilder, tokenizer: str) -> PromptFormat:
    """The `PromptFormat` of a prompt builder whose tokenizer is named `tokenizer`."""
    return PromptFormat(builder.template.name, builder.truncator.max_tokens, tokenizer,
                        chat_template_digest(builder.tokenizer))


def sft_examples(data: TrainingSet, builder: PromptBuilder, target: str = DEFAULT_TARGET,
                 prompt_format: PromptFormat | None = None) -> Iterator[dict[str, Any]]:
    """SFT examples of every record: the engine's prompt, the teacher's reasoning and list
    (and `prompt_format`, the builder's settings, when given)."""
    extra = {"prompt_format": prompt_format.to_dict()} if prompt_format is not None else {}
    for record in data.records:
        prompt = builder.render_request(record_request(data, record))
        yield {**sft_row(builder.tokenizer, prompt.messages, target_text(record, target),
                         record.dataset, record.qid, prompt.text), **extra}


def rl_examples(data: TrainingSet, builder: PromptBuilder,
                prompt_format: PromptFormat | None = None) -> Iterator[dict[str, Any]]:
    """RL examples of every record: the prompt with the labels the reward needs."""
    extra = {"prompt_format": prompt_format.to_dict()} if prompt_format is not None else {}
    for record in data.records:
        prompt = builder.render_request(record_request(data, record))
        yield {"dataset": record.dataset, "qid": record.qid, "prompt": prompt.text,
               "messages": [dict(m) for m in prompt.messages],
               "initial_list": list(record.initial_list), "final_list": list(record.final_list),
               "relevant_docids": list(record.relevant_docids), **extra}


# --- the released SFT (alpaca JSON) and RL (parquet) files ----------------------------------


def _alpaca_messages(item: Mapping[str, Any]) -> list[dict[str, str]]:
    user = item["instruction"]
    if item.get("input"):
        user = f"{user}\n{item['input']}"  # how LLaMA-Factory joins instruction and input
    messages = [{"role": "system", "content": item["system"]}] if item.get("system") else []
    return [*messages, {"role": "user", "content": user}]


def sft_release_examples(path: StrPath, tokenizer: Any) -> Iterator[dict[str, Any]]:
    """SFT examples from the released alpaca-style file (`system`, `instruction`, `output`)."""
    for n, item in enumerate(_json_items(path)):
        missing = [k for k in ("instruction", "output") if not isinstance(item.get(k), str)]
        if missing:
            raise InputFormatError(path, None, f"item {n}: missing or non-string "
                                   f"{', '.join(missing)} (expected alpaca-style records)")
        yield sft_row(tokenizer, _alpaca_messages(item), item["output"],
                      str(item.get("dataset", "")), str(item.get("qid", n)))


def _json_items(path: StrPath) -> list[dict[str, Any]]:
    if base_name(path).endswith(".jsonl"):
        return read_examples(path)
    data = load_json(read_text(path), path)
    if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
        raise InputFormatError(path, None, "expected a JSON list of objects")
    return data


def _object(path: StrPath, line: int, text: str) -> dict[str, Any]:
    data = load_json(text, path, line)
    if not isinstance(data, dict):
        raise InputFormatError(path, line, "expected a JSON object")
    return data


def _decoded(value: Any) -> Any:
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _field(row: Mapping[str, Any], name: str) -> Any:
    """`name` at the top level or inside verl's `reward_model` (and its `ground_truth`) or
    `extra_info` columns (values that are JSON strings are decoded)."""
    places: list[Any] = [row]
    for outer in ("reward_model", "extra_info"):
        inner = _decoded(row.get(outer))
        if isinstance(inner, Mapping):
            places.append(inner)
            truth = _decoded(inner.get("ground_truth"))
            if isinstance(truth, Mapping):
                places.append(truth)
    for place in places:
        if place.get(name) is not None:
            return _decoded(place[name])
    return None


def _labels_from_answer(answer: str, initial_list: Sequence[str]) -> list[str]:
    from reasonrank.training.rewards import answer_ids

    ids = answer_ids(answer, initial_list)
    if ids is None:
        raise ValueError(f"label {answer[:60]!r} names passages outside initial_list")
    return ids


def rl_release_examples(path: StrPath, tokenizer: Any) -> Iterator[dict[str, Any]]:
    """RL examples from the released parquet: a chat `prompt`, `initial_list`, the teacher's
    `final_list` (or a `[a] > [b]` label), `relevant_docids`; also found nested in verl's
    `reward_model` / `extra_info` columns."""
    for n, row in enumerate(read_examples(path)):
        try:
            prompt = row.get("prompt")
            if isinstance(prompt, list | tuple):
                messages = [dict(m) for m in prompt]
                prompt = render_chat(tokenizer, messages)
            elif isinstance(prompt, str):
                messages = []
            else:
                raise ValueError("no prompt (a chat message list or a rendered string)")
            lists = {name: _field(row, name) for name in RL_KEYS[1:]}
            if lists["final_list"] is None and lists["initial_list"] is not None:
                label = _field(row, "label") or _field(row, "ground_truth")
                if isinstance(label, str):
                    lists["final_list"] = _labels_from_answer(label, lists["initial_list"])
            for name, value in lists.items():
                if not isinstance(value, list | tuple):
                    raise ValueError(f"no {name} list")
            yield {"dataset": str(_field(row, "dataset") or row.get("data_source") or ""),
                   "qid": str(_field(row, "qid") or n), "prompt": prompt, "messages": messages,
                   **{k: [str(x) for x in v] for k, v in lists.items()}}
        except ValueError as exc:
            raise InputFormatError(path, None, f"row {n}: {exc}") from None


# --- example files --------------------------------------------------------------------------


def _is_parquet(path: StrPath) -> bool:
    return base_name(path).endswith(_PARQUET)


def write_examples(rows: Iterable[Mapping[str, Any]], path: StrPath) -> int:
    """Write example rows as Parquet (`.parquet`) or JSONL (otherwise), atomically."""
    if _is_parquet(path):
        pa = require("pyarrow", "train", "writing Parquet examples")
        pq = require("pyarrow.parquet", "train", "writing Parquet examples")
        rows = list(rows)
        columns = dict.fromkeys(key for row in rows for key in row)  # every row's keys
        table = pa.table({key: [row.get(key) for row in rows] for key in columns})
        with atomic_write(path, compress=False) as fh:
            pq.write_table(table, fh)
        return table.num_rows
    n = 0
    with atomic_write(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
            n += 1
    return n


def read_examples(path: StrPath, required: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Read example rows (Parquet or JSONL); a row without a `required` key names its line."""
    if _is_parquet(path):
        pq = require("pyarrow.parquet", "train", "reading Parquet examples")
        rows = pq.read_table(path).to_pylist()
        lines: list[int | None] = [None] * len(rows)
    else:
        pairs = [(n, _object(path, n, t)) for n, t in iter_lines(path) if t.strip()]
        lines = [n for n, _ in pairs]
        rows = [r for _, r in pairs]
    for i, (line, row) in enumerate(zip(lines, rows, strict=True)):
        missing = [k for k in required if k not in row]
        if missing:
            where = "" if line is not None else f"row {i}: "
            raise InputFormatError(path, line, f"{where}missing {', '.join(missing)} "
                                   f"(expected keys: {', '.join(required)})")
    return rows
