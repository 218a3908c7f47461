"""internlm2-chat rendering, tokenizer chat templates, conversation validation."""

from __future__ import annotations

import pytest

from v2pe.errors import ConfigError, DataError
from v2pe.processing import INTERNLM2_CHAT_JINJA, INTERNLM2_SYSTEM_MESSAGE, byte_tokenizer, parse_conversation, render
from v2pe.processing.templates import Segment

SYS = "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, 是一个有用无害的人工智能助手。"
MULTI_TURN = [
    {"from": "human", "value": "<image>\nWhat is it? "},
    {"from": "gpt", "value": " A cat.\n"},
    {"from": "human", "value": "Colour?"},
    {"from": "gpt", "value": "Black."},
]
# A ChatML-style template with a newline after every <|im_end|> (Qwen2 / native InternVL style).
CHATML_JINJA = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _text(segments):
    return "".join(s.text for s in segments)


def test_internlm2_chat_exact_text():
    system, turns = parse_conversation(MULTI_TURN)
    segments = render("internlm2-chat", turns, system)
    assert SYS == INTERNLM2_SYSTEM_MESSAGE
    # MPT style: no newline after <|im_end|>; values stripped as in official training.
    assert _text(segments) == (
        f"<|im_start|>system\n{SYS}<|im_end|>"
        "<|im_start|>user\n<image>\nWhat is it?<|im_end|>"
        "<|im_start|>assistant\nA cat.<|im_end|>"
        "<|im_start|>user\nColour?<|im_end|>"
        "<|im_start|>assistant\nBlack.<|im_end|>"
    )
    assert [s.text for s in segments if s.is_answer] == ["A cat.<|im_end|>", "Black.<|im_end|>"]


def test_prompt_with_system_turn_gets_generation_role():
    conversation = [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"}]
    system, turns = parse_conversation(conversation)
    segments = render("internlm2-chat", turns, system)
    assert segments == [Segment("<|im_start|>system\nBe brief.<|im_end|><|im_start|>user\nHi<|im_end|><|im_start|>assistant\n", False)]


def test_empty_answer_renders_role_only():
    # MPT skips falsy messages: an empty answer is just the role, no <|im_end|>, nothing to train.
    _, turns = parse_conversation([{"from": "human", "value": "Hi"}, {"from": "gpt", "value": ""}])
    segments = render("internlm2-chat", turns)
    assert _text(segments).endswith("<|im_start|>user\nHi<|im_end|><|im_start|>assistant\n")
    assert not any(s.is_answer for s in segments)


@pytest.mark.parametrize("system", [None, "Custom."])
@pytest.mark.parametrize("num_turns", [1, 2, 3, 4])
def test_jinja_internlm2_matches_builtin(system, num_turns):
    tokenizer = byte_tokenizer(chat_template=INTERNLM2_CHAT_JINJA)
    _, turns = parse_conversation(MULTI_TURN[:num_turns])
    assert render("tokenizer", turns, system, tokenizer) == render("internlm2-chat", turns, system)


def test_tokenizer_template_answers_end_at_im_end():
    tokenizer = byte_tokenizer(chat_template=CHATML_JINJA)
    _, turns = parse_conversation(MULTI_TURN)
    segments = render("tokenizer", turns, None, tokenizer)
    assert _text(segments) == (
        "<|im_start|>user\n<image>\nWhat is it?<|im_end|>\n<|im_start|>assistant\nA cat.<|im_end|>\n"
        "<|im_start|>user\nColour?<|im_end|>\n<|im_start|>assistant\nBlack.<|im_end|>\n"
    )
    # The newline after <|im_end|> is template glue, not part of the answer.
    assert [s.text for s in segments if s.is_answer] == ["A cat.<|im_end|>", "Black.<|im_end|>"]


def test_tokenizer_template_needs_a_template(tokenizer):
    _, turns = parse_conversation(MULTI_TURN[:1])
    with pytest.raises(ConfigError, match="chat_template"):
        render("tokenizer", turns, None, tokenizer)


def test_non_prefix_template_is_rejected():
    # Renders only the last message: earlier answers cannot be located.
    tokenizer = byte_tokenizer(chat_template="{{ messages[-1]['content'] }}")
    _, turns = parse_conversation(MULTI_TURN)
    with pytest.raises(ConfigError, match="prefix"):
        render("tokenizer", turns, None, tokenizer)


def test_unknown_template():
    _, turns = parse_conversation(MULTI_TURN[:1])
    with pytest.raises(ConfigError, match="vicuna"):
        render("vicuna", turns)


@pytest.mark.parametrize(
    ("conversation", "message"),
    [
        ([], "no human turn"),
        ([{"from": "gpt", "value": "x"}], "turn 0"),
        ([{"from": "human", "value": "a"}, {"from": "human", "value": "b"}], "turn 1"),
        ([{"from": "human", "value": 3}], "'value'"),
        ([{"value": "hi"}], "'from'"),
        (["not a dict"], "turn 0"),
    ],
)
def test_malformed_conversations(conversation, message):
    with pytest.raises(DataError, match=message):
        parse_conversation(conversation, sample_id="s7")


def test_error_names_sample():
    with pytest.raises(DataError, match="sample s7"):
        parse_conversation([{"from": "gpt", "value": "x"}], sample_id="s7")


# --- whitespace: official chat() keeps prompt text as given, official training strips ---------

# Official internlm2-chat rules (reference-spec 3.7): system_prompt + sep, then role + message + sep
# per message, role only for the empty generation turn; roles '<|im_start|>user\n' /
# '<|im_start|>assistant\n', sep '<|im_end|>'. chat() (3.6) appends the history turns and the
# question to the template as they are; preprocess_internlm (4.4) strips every value first.
CHAT_WITH_HISTORY = [
    {"from": "human", "value": "<image>\n  What is it? \n"},
    {"from": "gpt", "value": "A cat."},
    {"from": "human", "value": " \nColour?\n\n"},
]


def test_prompt_keeps_question_and_history_text_as_given():
    system, turns = parse_conversation(CHAT_WITH_HISTORY)
    assert _text(render("internlm2-chat", turns, system)) == (
        f"<|im_start|>system\n{SYS}<|im_end|>"
        "<|im_start|>user\n<image>\n  What is it? \n<|im_end|>"
        "<|im_start|>assistant\nA cat.<|im_end|>"
        "<|im_start|>user\n \nColour?\n\n<|im_end|>"
        "<|im_start|>assistant\n"
    )


def test_prompt_system_turn_is_kept_as_given():
    system, turns = parse_conversation([{"from": "system", "value": " Be brief.\n"}, {"from": "human", "value": "Hi "}])
    assert _text(render("internlm2-chat", turns, system)) == "<|im_start|>system\n Be brief.\n<|im_end|><|im_start|>user\nHi <|im_end|><|im_start|>assistant\n"


def test_training_sample_text_is_stripped():
    sample = [{"from": "human", "value": "<image>\n  What is it? \n"}, {"from": "gpt", "value": " \nA cat.\n"}]
    system, turns = parse_conversation(sample)
    segments = render("internlm2-chat", turns, system)
    assert _text(segments) == (
        f"<|im_start|>system\n{SYS}<|im_end|>"
        "<|im_start|>user\n<image>\n  What is it?<|im_end|>"
        "<|im_start|>assistant\nA cat.<|im_end|>"
    )
    assert [s.text for s in segments if s.is_answer] == ["A cat.<|im_end|>"]


def test_strip_can_be_forced_either_way():
    _, kept = parse_conversation([{"from": "human", "value": " Q\n"}, {"from": "gpt", "value": " A\n"}], strip=False)
    assert [t.text for t in kept] == [" Q\n", " A\n"]
    _, stripped = parse_conversation(CHAT_WITH_HISTORY, strip=True)
    assert [t.text for t in stripped] == ["<image>\n  What is it?", "A cat.", "Colour?"]


def test_whitespace_only_prompt_is_a_message_not_an_empty_turn():
    # MPT renders role + message + sep for any non-empty message, whitespace included.
    _, turns = parse_conversation([{"from": "human", "value": " "}])
    assert _text(render("internlm2-chat", turns)).endswith("<|im_start|>user\n <|im_end|><|im_start|>assistant\n")
