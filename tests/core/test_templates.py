"""Prompt templates as data: the built-in YAML files, rank_llm-format user files, bad files.

`data/rank_llm/*.yaml` are verbatim copies of castorini/rank_llm's
`src/rank_llm/rerank/prompt_templates/` at commit 1b3cabbc (Apache-2.0). The byte-identity of the
built-in templates with the reference is tested in test_prompts.py.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from reasonrank.config import RerankConfig
from reasonrank.core.prompt_template import (
    BUILTIN_TEMPLATES,
    PromptTemplate,
    get_template,
    load_template,
    parse_template,
    register_template,
)
from reasonrank.core.prompts import PromptBuilder
from reasonrank.errors import ConfigError
from reference_impl import PREFIX, reference_prompt, to_request

RANK_LLM = Path(__file__).parent / "data" / "rank_llm"
DOCS = [{"text": "alpha [2] one"}, {"text": "beta", "title": "B"}, {"text": "gamma"}]
QUERY = "which [1] letter?"


def write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = (
    'method: singleturn_listwise\nsystem_message: "Rank."\nprefix: "{num} passages for {query}\\n"'
    '\nbody: "<{rank}> {candidate}\\n"\nsuffix: "Answer for {query}."\n'
)


# --- built-ins -----------------------------------------------------------------------------------


def test_builtin_files_are_the_registry():
    folder = resources.files("reasonrank.core") / "templates"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".yaml"))
    assert names == sorted(f"{n}.yaml" for n in BUILTIN_TEMPLATES)
    assert BUILTIN_TEMPLATES[0] == "reasoning" == RerankConfig().template


def test_builtin_budget_forcing_tags():
    assert (get_template("reasoning").close_thought, get_template("reasoning").open_answer) == (
        "</think>", "<answer>")
    assert get_template("qwen3").open_answer == "<answer>"
    assert get_template("rankgpt").open_answer is None
    assert get_template("rankgpt").forced_answer_suffix("x") is None


def test_builtin_file_copied_to_a_path_is_the_same_template(tmp_path):
    text = (resources.files("reasonrank.core") / "templates" / "reasoning.yaml").read_text()
    path = write(tmp_path, text, "mine.yaml")
    loaded = get_template(str(path))
    builtin = get_template("reasoning")
    assert loaded.name == str(path)
    assert (loaded.system, loaded.prefix, loaded.body, loaded.suffix, loaded.open_answer) == (
        builtin.system, builtin.prefix, builtin.body, builtin.suffix, builtin.open_answer)


# --- rank_llm's files -----------------------------------------------------------------------------


def test_rank_llm_reasonrank_template_differs_by_one_blank_line(qwen_tokenizer):
    # rank_llm's reasonrank_template.yaml has the reference's system message, passage lines and
    # closing instruction, but no blank line between the opening instruction and passage [1]
    path = RANK_LLM / "reasonrank_template.yaml"
    ours = PromptBuilder(qwen_tokenizer, "reasoning", 512).render_request(to_request(QUERY, DOCS))
    theirs = PromptBuilder(qwen_tokenizer, get_template(str(path)), 512).render_request(
        to_request(QUERY, DOCS))
    assert theirs.messages[0] == ours.messages[0]
    blank = ".\n\n[1] alpha (2) one\n"
    assert blank in ours.messages[1]["content"]
    assert theirs.messages[1]["content"] == ours.messages[1]["content"].replace(
        blank, ".\n[1] alpha (2) one\n")
    assert theirs.text != ours.text
    # with the blank line restored, it is the reference prompt byte for byte
    fixed = load_template(path)
    assert fixed.prefix + "\n" == PREFIX + "\n" == get_template("reasoning").prefix
    fixed_builder = PromptBuilder(qwen_tokenizer, PromptTemplate(
        name="fixed", system=fixed.system, prefix=fixed.prefix + "\n", body=fixed.body,
        suffix=fixed.suffix, close_thought="</think>", open_answer="<answer>"), 512)
    assert fixed_builder.render_request(to_request(QUERY, DOCS)).text == reference_prompt(
        qwen_tokenizer, QUERY, DOCS, 512) == ours.text
    # rank_llm's file has no budget-forcing tags
    assert fixed.open_answer is None
    with pytest.raises(ConfigError, match="no answer tag to force"):
        RerankConfig(template=str(path), force_answer_tokens=64)
    assert RerankConfig(template=str(path)).template == str(path)


def test_rank_llm_zephyr_template_renders_prefix_body_suffix():
    template = load_template(RANK_LLM / "rank_zephyr_template.yaml")
    user = template.user_message("q", ["a", "b"])
    assert user.startswith("I will provide you with 2 passages, each indicated by a numerical "
                           "identifier []. Rank the passages based on their relevance to the "
                           "search query: q.\n[1] a\n[2] b\nSearch Query: q.\nRank the 2 ")
    assert user.endswith("do not say any word or explain.")
    assert template.system.endswith("relevancy to the query")


def test_rank_llm_multiturn_template_is_a_conversation(qwen_tokenizer):
    # rank_gpt_template.yaml: the prefix as a user turn answered by the assistant, then each
    # passage as a user turn answered "Received passage [n].", then the closing instruction
    template = get_template(str(RANK_LLM / "rank_gpt_template.yaml"))
    messages = template.messages("q", ["a", "b"])
    assert [(m["role"], m["content"][:24]) for m in messages] == [
        ("system", "You are RankGPT, an inte"),
        ("user", "I will provide you with "),
        ("assistant", "Okay, please provide the"),
        ("user", "[1] a"),
        ("assistant", "Received passage [1]."),
        ("user", "[2] b"),
        ("assistant", "Received passage [2]."),
        ("user", "Search Query: q.\nRank th"),
    ]
    assert messages[1]["content"] == ("I will provide you with 2 passages, each indicated by "
                                      "number identifier [].\nRank the passages based on their "
                                      "relevance to query: q.")
    assert messages[-1]["content"].startswith("Search Query: q.\nRank the 2 passages above")
    assert messages[-1]["content"].endswith("do not say any word or explain.")
    prompt = PromptBuilder(qwen_tokenizer, template, 512).render_request(
        to_request("q", [{"text": "a [3]"}, {"text": "b"}]))
    assert prompt.messages[3]["content"] == "[1] a (3)"
    assert ("<|im_start|>user\n[1] a (3)<|im_end|>\n<|im_start|>assistant\nReceived passage "
            "[1].<|im_end|>\n<|im_start|>user\n[2] b<|im_end|>\n") in prompt.text
    assert prompt.text.endswith("explain.<|im_end|>\n<|im_start|>assistant\n")


def test_multiturn_without_body_assistant(tmp_path):
    path = write(tmp_path, (
        "method: multiturn_listwise\n"
        "prefix_user: 'Rank {num} for {query}.'\n"
        "prefix_assistant: 'Go on.'\n"
        'body_user: "[{rank}] {candidate}\\n"\n'
        "suffix_user: 'Order them.'\n"
    ))
    assert get_template(str(path)).messages("q", ["a", "b"]) == (
        {"role": "user", "content": "Rank 2 for q."},
        {"role": "assistant", "content": "Go on."},
        {"role": "user", "content": "[1] a\n[2] b\nOrder them."},
    )


def test_custom_body_and_no_system_message(tmp_path, qwen_tokenizer):
    path = write(tmp_path, GOOD.replace('system_message: "Rank."\n', ""))
    template = get_template(str(path))
    assert template.user_message("q {x}", ["a {rank}", "b"]) == (
        "2 passages for q {x}\n<1> a {rank}\n<2> b\nAnswer for q {x}.")
    builder = PromptBuilder(qwen_tokenizer, template, 512)
    messages = builder.render_request(to_request("q", [{"text": "a"}])).messages
    assert [m["role"] for m in messages] == ["user"]  # rank_llm sends no empty system message


def test_registered_template_by_name():
    template = register_template(PromptTemplate(
        name="test-registered", system="", prefix="", body="[{rank}] {candidate}\n",
        suffix="{query}"))
    assert get_template("test-registered") is template
    assert RerankConfig(template="test-registered").template == "test-registered"


# --- bad templates: one ConfigError that names the file and the problem ---------------------------


@pytest.mark.parametrize(("text", "words"), [
    ("method: singleturn_listwise\nbody: \"[{rank}] {candidate}\n  prefix: [unclosed\n",
     ["YAML syntax error at line 4", "quoted scalar that starts at line 2"]),
    ("method: singleturn_listwise\n  body: x\n", ["YAML syntax error at line 2, column 7"]),
    ("method: singleturn_listwise\nprefix: '{query}'\n", ["missing field", "body"]),
    (GOOD.replace("Answer for {query}.", "Answer {foo}."), ["suffix", "{foo}", "{num}, {query}"]),
    (GOOD.replace("<{rank}> {candidate}", "[{rank}] {candidate} {score}"),
     ["body", "{score}", "first-stage score"]),
    (GOOD.replace("<{rank}> {candidate}", "{candidate}"), ["body must show {rank}"]),
    (GOOD.replace("{query}", "q"), ["{query}"]),
    (GOOD + "sufix: x\n", ["unknown field", "sufix", "system_message", "output_extraction_regex"]),
    (GOOD.replace("Answer for {query}.", "Answer {query} {"), ["suffix", "format string"]),
    (GOOD + "open_answer: 3\n", ["open_answer", "must be a string"]),
    (GOOD.replace("singleturn_listwise", "pointwise"), ["method 'pointwise'"]),
    ("- a\n- b\n", ["YAML mapping"]),
    ("method: multiturn_listwise\nbody_user: '[{rank}] {candidate}'\nsuffix_user: '{query}'\n",
     ["prefix_assistant or body_assistant"]),
    ("method: multiturn_listwise\nbody_user: '[{rank}] {candidate}'\nsuffix_user: '{query}'\n"
     "body_assistant: 'Got {candidate}'\n", ["body_assistant", "{candidate}", "allowed in "
                                             "body_assistant: {rank}"]),
    ("method: multiturn_listwise\nbody_user: '[{rank}] {candidate}'\nsuffix_user: '{query}'\n"
     "prefix_assistant: 'ok'\n", ["prefix_assistant answers prefix_user"]),
    ("method: multiturn_listwise\nbody_user: '[{rank}]'\nsuffix_user: '{query}'\n"
     "body_assistant: 'ok'\n", ["body_user must show {candidate}"]),
    (GOOD + "body_assistant: x\n", ["unknown field", "body_assistant", "singleturn_listwise"]),
])
def test_bad_template_file(tmp_path, text, words):
    path = write(tmp_path, text, "bad.yaml")
    with pytest.raises(ConfigError) as err:
        get_template(str(path))
    message = str(err.value)
    assert str(path) in message
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        get_template(str(tmp_path / "none.yaml"))
    with pytest.raises(ConfigError, match=r"one of: reasoning, rankgpt, qwen3, .*or give the path"):
        get_template("nope")
    with pytest.raises(ConfigError, match="nope"):
        RerankConfig(template="nope")


def test_parse_template_names_its_source():
    with pytest.raises(ConfigError, match=r"^somewhere: missing field"):
        parse_template("method: singleturn_listwise\n", name="x", source="somewhere")
