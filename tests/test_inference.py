"""Chat: automatic delta, batches equal single prompts, streaming equals ask, errors before compute."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from v2pe.errors import DataError, PositionError
from v2pe.inference import Chat
from v2pe.model.tiny import tiny_model
from v2pe.processing import Processor
from v2pe.processing.tokenizer import byte_tokenizer


@pytest.fixture(scope="module")
def chat():
    processor = Processor(byte_tokenizer(), tokens_per_tile=4, tile_size=56, max_tiles=4)
    return Chat(tiny_model(seed=4), processor, max_new_tokens=6)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for index, colour in enumerate(["red", "blue", "green"]):
        path = folder / f"{index}.png"
        Image.new("RGB", (112, 56), colour).save(path)  # 2:1 -> 2 tiles + thumbnail
        paths.append(str(path))
    return paths


def test_ask_answers_and_keeps_history(chat, images):
    answer = chat.ask("<image> What colour?", images=images[:1], history=[])
    assert isinstance(answer, str)
    assert [turn["from"] for turn in chat.history] == ["human", "gpt"]
    follow_up = chat.generate([chat.history + [{"from": "human", "value": "Sure?"}]], [images[:1]])[0]
    assert follow_up.prompt_tokens > 30


def test_auto_delta_is_the_largest_that_fits(chat, images):
    conversation = [{"from": "human", "value": "<image><image><image> Which is blue?"}]
    full = chat.prepare([conversation], [images], max_new_tokens=6)
    length = full["input_ids"].shape[1]
    assert full["delta"] == 1.0  # the default window (32768) holds everything
    narrow = Chat(chat.model, chat.processor, delta="auto", window=length - 20, max_new_tokens=6)
    inputs = narrow.prepare([conversation], [images], max_new_tokens=6)
    # 3 images x 3 tiles x 4 tokens = 36 visual tokens; halving them frees 18 positions: not enough
    # for a window 20 shorter than the sequence plus 6 new tokens, so delta drops to 1/4.
    assert inputs["delta"] == 0.25
    positions = narrow.model.v2pe_position_ids(inputs["input_ids"], inputs["attention_mask"], delta=inputs["delta"])
    assert positions.max() + 6 < length - 20


def test_window_too_small_fails_before_any_compute(chat, images, monkeypatch):
    monkeypatch.setattr(chat.model, "generate", lambda *a, **k: pytest.fail("generate must not run"))
    tiny_window = Chat(chat.model, chat.processor, delta="auto", window=10)
    with pytest.raises(PositionError, match="beyond the window of 10"):
        tiny_window.ask("<image> hi", images=images[:1], history=[])


def test_unreadable_image_fails_before_any_compute(chat, tmp_path, monkeypatch):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    monkeypatch.setattr(chat.model, "generate", lambda *a, **k: pytest.fail("generate must not run"))
    with pytest.raises(DataError, match="broken.png"):
        chat.ask("<image> hi", images=[str(broken)], history=[])


def test_batch_equals_single_prompts(chat, images):
    conversations = [
        [{"from": "human", "value": "<image> Short?"}],
        [{"from": "human", "value": "<image> A much longer question about <image> two pictures?"}],
    ]
    image_lists = [images[:1], images[1:]]
    batched = chat.generate(conversations, image_lists)
    single = [chat.generate([c], [i])[0] for c, i in zip(conversations, image_lists)]
    assert [r.text for r in batched] == [r.text for r in single]


def test_stream_yields_the_same_answer(chat, images):
    asked = chat.ask("<image> Name it.", images=images[2:], history=[])
    streamed = "".join(chat.stream("<image> Name it.", images=images[2:], history=[]))
    assert streamed.strip() == asked


def test_fixed_delta_is_used(chat, images):
    fixed = Chat(chat.model, chat.processor, delta=0.5)
    conversation = [{"from": "human", "value": "<image> x"}]
    inputs = fixed.prepare([conversation], [images[:1]], max_new_tokens=2)
    assert inputs["delta"] == 0.5 and "position_ids" not in inputs  # the model computes them from the delta
    seen = []
    hook = chat.model.model.language_model.register_forward_pre_hook(lambda m, a, k: seen.append(k["position_ids"].clone()), with_kwargs=True)
    try:
        fixed.generate([conversation], [images[:1]], max_new_tokens=2)
    finally:
        hook.remove()
    steps = torch.diff(seen[0][0])
    assert (steps == 0.5).sum() == 12  # <img> to each of the 12 visual tokens: 12 steps of delta


def test_prompt_text_is_used_as_given_like_official_chat(chat, images):
    # Official chat() (reference-spec 3.6/3.7): no history + an image + no <image> in the question ->
    # '<image>\n' + question, otherwise untouched; MPT: role + message + '<|im_end|>', no newline after it.
    from v2pe.processing.templates import INTERNLM2_SYSTEM_MESSAGE

    question = "  What colour is it?\n"
    conversation = chat._conversation(question, [], images[:1])
    assert conversation == [{"from": "human", "value": "<image>\n  What colour is it?\n"}]
    inputs = chat.prepare([conversation], [images[:1]], max_new_tokens=2)
    image = "<img>" + "<IMG_CONTEXT>" * 12 + "</img>"  # 2 tiles + thumbnail, 4 tokens each
    expected = (
        f"<|im_start|>system\n{INTERNLM2_SYSTEM_MESSAGE}<|im_end|>"
        f"<|im_start|>user\n{image}\n  What colour is it?\n<|im_end|><|im_start|>assistant\n"
    )
    assert inputs["input_ids"][0].tolist() == chat.processor.tokenizer(expected)["input_ids"]


def test_history_is_stored_as_official_chat_stores_it(chat, images):
    # Official: history.append((question, response)) with the question as sent (placeholder
    # included) and the response split at '<|im_end|>' and stripped.
    answer = chat.ask(" Colour?\n", images=images[:1], history=[])
    assert chat.history == [{"from": "human", "value": "<image>\n Colour?\n"}, {"from": "gpt", "value": answer}]
    assert answer == answer.strip()
    follow_up = chat._conversation("\nSure? ", None, images[:1])
    assert follow_up[-1] == {"from": "human", "value": "\nSure? "} and follow_up[:2] == chat.history
    text = chat.processor.tokenizer.decode(chat.prepare([follow_up], [images[:1]], max_new_tokens=2)["input_ids"][0].tolist())
    assert text.count("<img>") == 1 and text.endswith(f"{answer}<|im_end|><|im_start|>user\n\nSure? <|im_end|><|im_start|>assistant\n")
