"""Processor: image blocks, labels, lengths, collation, checkpoint settings (no positions: the model computes them)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from v2pe.errors import CheckpointError, ConfigError, DataError
from v2pe.model.tiny import tiny_model
from v2pe.processing import INTERNLM2_SYSTEM_MESSAGE, Processor, byte_tokenizer, collate

SYSTEM_PREFIX = ("<|im_start|>", "system\n" + INTERNLM2_SYSTEM_MESSAGE, "<|im_end|>")
CHATML_JINJA = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def processor(tokenizer):
    return Processor(tokenizer)


@pytest.fixture(scope="module")
def small_processor(tokenizer):
    """4 visual tokens per tile keeps hand-written expectations short."""
    return Processor(tokenizer, tokens_per_tile=4)


def _labelled(batch, row=0):
    labels = batch["labels"][row]
    return labels[labels != -100].tolist()


def test_single_image_without_placeholder_gets_one_prepended(small_processor, piece_ids, solid_image):
    batch = small_processor([{"from": "human", "value": "What?"}, {"from": "gpt", "value": "Red."}], [solid_image(100, 100)])
    expected = [1] + piece_ids(*SYSTEM_PREFIX, "<|im_start|>", "user\n", ("img", 4), "\nWhat?", "<|im_end|>",
                               "<|im_start|>", "assistant\n", "Red.", "<|im_end|>")
    assert batch["input_ids"][0].tolist() == expected
    assert batch["num_tiles"].tolist() == [1]
    assert batch["pixel_values"].shape == (1, 3, 448, 448)
    assert _labelled(batch) == piece_ids("Red.", "<|im_end|>")
    # Every label that is kept equals its input id (no shift inside the processor).
    kept = batch["labels"][0] != -100
    assert torch.equal(batch["labels"][0][kept], batch["input_ids"][0][kept])


def test_second_image_of_three_tiles_gets_768_context_tokens(processor, solid_image):
    conversation = [{"from": "human", "value": "<image> then <image>"}, {"from": "gpt", "value": "ok"}]
    batch = processor(conversation, [solid_image(100, 100), solid_image(896, 448)])  # 1 tile; 2 tiles + thumbnail
    ids = batch["input_ids"][0].tolist()
    starts = [i for i, t in enumerate(ids) if t == 295]
    ends = [i for i, t in enumerate(ids) if t == 296]
    assert [e - s - 1 for s, e in zip(starts, ends)] == [256, 256 * 3]
    assert all(t == 297 for s, e in zip(starts, ends) for t in ids[s + 1 : e])
    assert ids[ends[0] + 1 : starts[1]] == [3 + b for b in b" then "]
    assert batch["num_tiles"].tolist() == [1, 3]
    assert batch["pixel_values"].shape == (4, 3, 448, 448)


def test_interleaved_multi_turn_labels(small_processor, piece_ids, tokenizer, solid_image):
    conversation = [
        {"from": "human", "value": "<image>\nFirst?"},
        {"from": "gpt", "value": "A 日本"},
        {"from": "human", "value": "And <image> now?"},
        {"from": "gpt", "value": "B."},
    ]
    batch = small_processor(conversation, [solid_image(896, 448), solid_image(50, 50)])  # 3 tiles, 1 tile
    pieces = [
        (*SYSTEM_PREFIX, "<|im_start|>", "user\n", ("img", 12), "\nFirst?", "<|im_end|>", "<|im_start|>", "assistant\n"),
        ("A 日本", "<|im_end|>"),
        ("<|im_start|>", "user\nAnd ", ("img", 4), " now?", "<|im_end|>", "<|im_start|>", "assistant\n"),
        ("B.", "<|im_end|>"),
    ]
    expected_ids, expected_labels = [1], [-100]
    for index, group in enumerate(pieces):
        ids = piece_ids(*group)
        expected_ids += ids
        expected_labels += ids if index % 2 else [-100] * len(ids)
    assert batch["input_ids"][0].tolist() == expected_ids
    assert batch["labels"][0].tolist() == expected_labels
    assert tokenizer.decode(_labelled(batch)) == "A 日本<|im_end|>B.<|im_end|>"
    assert batch["num_tiles"].tolist() == [3, 1]


def test_tokenizer_template_labels_skip_newline_glue(tokenizer, piece_ids):
    processor = Processor(byte_tokenizer(chat_template=CHATML_JINJA), template="tokenizer", tokens_per_tile=4)
    conversation = [{"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"}, {"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A2"}]
    batch = processor(conversation)
    assert _labelled(batch) == piece_ids("A1", "<|im_end|>", "A2", "<|im_end|>")
    assert batch["input_ids"][0].tolist()[-2:] == piece_ids("<|im_end|>", "\n")


def test_official_fixture_inputs_and_positions(internvl2_tiny_dir, solid_image):
    # The fixture's prompts are ChatML without a system turn; stride 64 / 256 tokens = delta 0.25.
    # The processor makes the ids; the positions the model computes from them are the official ones.
    processor = Processor(byte_tokenizer(chat_template=CHATML_JINJA), template="tokenizer")
    model = tiny_model(seed=0)  # its config.v2pe names the byte tokenizer's <img> / </img>
    stored = load_file(str(internvl2_tiny_dir / "logits.safetensors"))
    cases = [("one_image_1tile", (448, 448), "Describe the image."), ("one_image_3tiles", (896, 448), "What is in it?")]
    for name, size, question in cases:
        batch = processor([{"from": "human", "value": question}], [solid_image(*size)])
        assert torch.equal(batch["input_ids"], stored[f"{name}.input_ids"]), name
        assert "position_ids" not in batch, name
        positions = model.v2pe_position_ids(batch["input_ids"], batch["attention_mask"], delta=64 / 256)
        assert torch.equal(positions, stored[f"{name}.v2pe_fix_stride64.position_ids"]), name
        default = model.v2pe_position_ids(batch["input_ids"], batch["attention_mask"], delta=1.0)
        assert torch.equal(default.long(), stored[f"{name}.default.position_ids"]), name


def test_plan_is_encode_without_the_pixels(small_processor, solid_image, tmp_path, monkeypatch):
    path = tmp_path / "wide.png"
    solid_image(896, 448).save(path)  # 2 tiles + thumbnail
    conversation = [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "Red."}]
    encoded = small_processor.encode(conversation, [path])
    monkeypatch.setattr("v2pe.processing.processor.load_image", lambda image: pytest.fail("plan decodes no image"))
    plan = small_processor.plan(conversation, [path])
    assert plan.input_ids == encoded["input_ids"].tolist() and plan.labels == encoded["labels"].tolist()
    assert plan.num_tiles == (3,) and plan.image_tokens == 3 * 4 + 2


def test_text_only_sample(processor):
    batch = processor([{"from": "human", "value": "hello"}])
    assert batch["pixel_values"].shape == (0, 3, 448, 448)
    assert batch["num_tiles"].tolist() == []
    assert (batch["labels"] == -100).all()  # a prompt has no answer to train on


def test_collate_pads_right(small_processor, solid_image):
    short = small_processor.encode("<image>hi", [solid_image(10, 10)])
    long = small_processor.encode([{"from": "human", "value": "a much longer question"}, {"from": "gpt", "value": "yes"}], [])
    batch = collate([short, long], pad_token_id=2)
    n, length = len(short["input_ids"]), len(long["input_ids"])
    assert batch["input_ids"].shape == (2, length) and n < length
    assert batch["input_ids"][0, n:].eq(2).all() and batch["attention_mask"][0, n:].eq(0).all()
    assert batch["labels"][0, n:].eq(-100).all()
    assert batch["pixel_values"].shape == (1, 3, 448, 448) and batch["num_tiles"].tolist() == [1]
    direct = small_processor(["<image>hi", [{"from": "human", "value": "a much longer question"}, {"from": "gpt", "value": "yes"}]],
                             [[solid_image(10, 10)], []])
    for key in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(direct[key], batch[key]), key
    left = collate([short, long], pad_token_id=2, padding_side="left")
    assert torch.equal(left["input_ids"][0, length - n:], short["input_ids"]) and left["attention_mask"][0, : length - n].eq(0).all()


@pytest.mark.parametrize(
    ("value", "num_images", "message"),
    [
        ("<image> <image>", 1, "2 `<image>` placeholders but 1 images"),
        ("no placeholder", 2, "0 `<image>` placeholders but 2 images"),
        ("<image>", 0, "1 `<image>` placeholders but 0 images"),
    ],
)
def test_image_count_mismatch(small_processor, solid_image, value, num_images, message):
    with pytest.raises(DataError, match=f"sample id-9: {message}"):
        small_processor.encode([{"from": "human", "value": value}], [solid_image(10, 10)] * num_images, sample_id="id-9")


def test_too_long_sample_is_an_error_not_truncated(tokenizer, solid_image):
    exact = len(Processor(tokenizer, tokens_per_tile=4).encode("<image>q", [solid_image(10, 10)])["input_ids"])
    assert len(Processor(tokenizer, tokens_per_tile=4, max_length=exact).encode("<image>q", [solid_image(10, 10)])["input_ids"]) == exact
    with pytest.raises(DataError, match=f"sample s1 has {exact} tokens, more than max_length={exact - 1}"):
        Processor(tokenizer, tokens_per_tile=4, max_length=exact - 1).encode("<image>q", [solid_image(10, 10)], sample_id="s1")


def test_missing_image_file_names_path(small_processor, tmp_path):
    with pytest.raises(DataError, match="missing.png"):
        small_processor("<image>", [tmp_path / "missing.png"])


def test_tokenizer_without_image_tokens_is_rejected():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    plain = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>")), unk_token="<unk>")
    with pytest.raises(ConfigError, match="<img>"):
        Processor(plain)


def test_from_pretrained_official_config(internvl2_tiny_dir, tokenizer):
    processor = Processor.from_pretrained(internvl2_tiny_dir, tokenizer=tokenizer)
    # config.json: template internlm2-chat, 448 px / patch 14 / downsample 0.5 -> 256, tiles 1..12, thumbnail.
    assert (processor.template, processor.tokens_per_tile, processor.min_tiles, processor.max_tiles, processor.use_thumbnail) == (
        "internlm2-chat", 256, 1, 12, True)
    assert Processor.from_pretrained(internvl2_tiny_dir, tokenizer=tokenizer, max_tiles=4).max_tiles == 4


def test_from_pretrained_native_folder(tmp_path):
    byte_tokenizer(chat_template=CHATML_JINJA).save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "internvl", "image_seq_length": 64}))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"crop_to_patches": True, "min_patches": 2, "max_patches": 6, "size": {"height": 448, "width": 448}}))
    processor = Processor.from_pretrained(tmp_path)
    assert (processor.template, processor.tokens_per_tile, processor.min_tiles, processor.max_tiles) == ("tokenizer", 64, 2, 6)
    assert processor.tokenizer("a")["input_ids"] == [1, 3 + ord("a")]


def test_from_pretrained_without_tokenizer(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="tokenizer"):
        Processor.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"template": "vicuna"}, "vicuna"), ({"tokens_per_tile": 0}, "tokens_per_tile"), ({"min_tiles": 3, "max_tiles": 2}, "min_tiles"), ({"max_length": 0}, "max_length")],
)
def test_bad_settings(tokenizer, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Processor(tokenizer, **kwargs)


# --- prompt text (official chat()) vs training text (official preprocessing) -------------------


def test_prompt_question_is_kept_as_given_with_image_prepended(small_processor, piece_ids, solid_image):
    # Official chat(): no history, an image, no <image> in the question -> '<image>\n' + question,
    # the question otherwise untouched (reference-spec 3.6).
    sample = small_processor.encode("  What is it?\n", [solid_image(100, 100)])
    expected = [1] + piece_ids(*SYSTEM_PREFIX, "<|im_start|>", "user\n", ("img", 4), "\n  What is it?\n", "<|im_end|>", "<|im_start|>", "assistant\n")
    assert sample["input_ids"].tolist() == expected


def test_prompt_history_is_kept_as_given(small_processor, piece_ids, solid_image):
    conversation = [
        {"from": "human", "value": "<image>\n Q1 \n"},
        {"from": "gpt", "value": "A1"},
        {"from": "human", "value": "\nQ2 "},
    ]
    sample = small_processor.encode(conversation, [solid_image(100, 100)])
    expected = [1] + piece_ids(*SYSTEM_PREFIX, "<|im_start|>", "user\n", ("img", 4), "\n Q1 \n", "<|im_end|>",
                               "<|im_start|>", "assistant\n", "A1", "<|im_end|>", "<|im_start|>", "user\n", "\nQ2 ", "<|im_end|>",
                               "<|im_start|>", "assistant\n")
    assert sample["input_ids"].tolist() == expected


def test_training_sample_is_stripped_after_the_placeholder_is_prepended(small_processor, piece_ids, solid_image):
    # Official training: '<image>\n' + value, then strip: the leading spaces of the value survive.
    sample = small_processor.encode([{"from": "human", "value": "  What?\n"}, {"from": "gpt", "value": " Red. \n"}], [solid_image(100, 100)])
    expected = [1] + piece_ids(*SYSTEM_PREFIX, "<|im_start|>", "user\n", ("img", 4), "\n  What?", "<|im_end|>",
                               "<|im_start|>", "assistant\n", "Red.", "<|im_end|>")
    assert sample["input_ids"].tolist() == expected
    labels = sample["labels"][sample["labels"] != -100].tolist()
    assert labels == piece_ids("Red.", "<|im_end|>")


LATER_TURN_IMAGE = [
    {"from": "human", "value": "Describe."},
    {"from": "gpt", "value": "Nothing yet."},
    {"from": "human", "value": "<image> And now?"},
    {"from": "gpt", "value": "A square."},
]


def test_training_placeholder_rule_looks_only_at_the_first_human_turn():
    from v2pe.processing.processor import add_missing_image_placeholder

    prepared = add_missing_image_placeholder(LATER_TURN_IMAGE, 1)
    assert [t["value"] for t in prepared] == ["<image>\nDescribe.", "Nothing yet.", "<image> And now?", "A square."]
    assert LATER_TURN_IMAGE[0]["value"] == "Describe."  # a copy
    # Multi-image samples never get one (official multi-image path); a prompt only when no turn has one.
    assert add_missing_image_placeholder([{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], 2)[0]["value"] == "q"
    assert add_missing_image_placeholder(LATER_TURN_IMAGE[:3], 1)[0]["value"] == "Describe."
    assert add_missing_image_placeholder(LATER_TURN_IMAGE[:3], 1, training=True)[0]["value"] == "<image>\nDescribe."
    assert add_missing_image_placeholder(LATER_TURN_IMAGE, 1, training=False)[0]["value"] == "Describe."


def test_one_image_training_sample_with_image_only_in_a_later_turn_is_refused(small_processor, solid_image):
    # The official code would put the image at the start of turn 1 and keep the later <image> as text.
    with pytest.raises(DataError, match=r"sample s3: 2 `<image>` placeholders but 1 images \(if the first human turn had no `<image>`"):
        small_processor.encode(LATER_TURN_IMAGE, [solid_image(10, 10)], sample_id="s3")


def test_prompt_with_image_in_the_question_after_history(small_processor, piece_ids, solid_image):
    # Official chat() with history adds no placeholder: the image stays where the question puts it.
    sample = small_processor.encode(LATER_TURN_IMAGE[:3], [solid_image(10, 10)])
    expected = [1] + piece_ids(*SYSTEM_PREFIX, "<|im_start|>", "user\n", "Describe.", "<|im_end|>", "<|im_start|>", "assistant\n",
                               "Nothing yet.", "<|im_end|>", "<|im_start|>", "user\n", ("img", 4), " And now?", "<|im_end|>",
                               "<|im_start|>", "assistant\n")
    assert sample["input_ids"].tolist() == expected


def test_expand_image_placeholders_checks_the_count():
    from v2pe.processing import Segment, expand_image_placeholders

    with pytest.raises(DataError, match="2 `<image>` placeholders but 1 images"):
        expand_image_placeholders([Segment("<image><image>", False)], ["<img></img>"])


def test_settings_are_immutable_and_with_tiles_copies(small_processor):
    import copy
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        small_processor.template = "tokenizer"
    with pytest.raises(dataclasses.FrozenInstanceError, match="with_tiles"):
        copy.copy(small_processor).max_tiles = 2
    fewer = small_processor.with_tiles(2)
    assert (fewer.max_tiles, fewer.min_tiles, small_processor.max_tiles) == (2, 1, 12)
    assert fewer.image_start_id == small_processor.image_start_id and fewer.tokenizer is small_processor.tokenizer
    assert small_processor.with_tiles(12) is small_processor
    single = dataclasses.replace(small_processor, min_tiles=4).with_tiles(1)
    assert (single.min_tiles, single.max_tiles) == (1, 1)
    with pytest.raises(ConfigError, match="min_tiles <= max_tiles"):
        dataclasses.replace(small_processor, max_tiles=0)


def test_an_over_long_sample_is_its_own_error_type(tokenizer):
    from v2pe.errors import SampleTooLongError

    with pytest.raises(SampleTooLongError, match="more than max_length=3"):
        Processor(tokenizer, max_length=3).encode("a question longer than three tokens")
