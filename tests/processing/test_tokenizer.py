"""The tiny byte-level tokenizer matches the fixture vocabulary and behaves like a real one."""

from __future__ import annotations

import json

from transformers import AutoTokenizer

from v2pe.processing import byte_tokenizer

TEXT = "<|im_start|>user\nhé 世<img><IMG_CONTEXT></img>?<|im_end|>"


def test_encoding_follows_byte_rule(tokenizer):
    # BOS, then <|im_start|>=293, "user\n" and "hé 世" byte by byte (3 + byte), the image
    # tokens 295/297/296, "?" and <|im_end|>=294. "é" is bytes C3 A9, "世" is E4 B8 96.
    expected = [1, 293]
    expected += [3 + ord(c) for c in "user\nh"] + [3 + 0xC3, 3 + 0xA9, 3 + 0x20, 3 + 0xE4, 3 + 0xB8, 3 + 0x96]
    expected += [295, 297, 296, 3 + ord("?"), 294]
    assert tokenizer(TEXT)["input_ids"] == expected


def test_specials_match_fixture(internvl2_tiny_dir, tokenizer):
    spec = json.loads((internvl2_tiny_dir / "special_tokens.json").read_text())
    for token, token_id in spec.items():
        if token.startswith("<"):
            assert tokenizer.convert_tokens_to_ids(token) == token_id, token
    assert len(tokenizer) == spec["vocab_size"] == 300
    assert tokenizer.bos_token_id == spec["bos"]


def test_every_id_is_one_distinct_token(tokenizer):
    tokens = tokenizer.convert_ids_to_tokens(list(range(300)))
    assert len(set(tokens)) == 300
    assert tokens[259:265] == ["<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>"]
    assert tokenizer.pad_token_id == 2 and tokenizer.eos_token_id == 2 and tokenizer.unk_token_id == 0


def test_literal_image_placeholder_is_plain_bytes(tokenizer):
    # "<image>" is not a token: it must be expanded by the processor, never matched whole.
    assert tokenizer("<image>", add_special_tokens=False)["input_ids"] == [3 + b for b in b"<image>"]


def test_decode_round_trip(tokenizer):
    ids = tokenizer(TEXT)["input_ids"]
    assert tokenizer.decode(ids) == "<s>" + TEXT
    assert tokenizer.decode(tokenizer("héllo, 世界 👋")["input_ids"], skip_special_tokens=True) == "héllo, 世界 👋"


def test_save_and_reload(tmp_path):
    original = byte_tokenizer(chat_template="{{ messages[0]['content'] }}")
    original.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(TEXT)["input_ids"] == original(TEXT)["input_ids"]
    assert reloaded.decode(reloaded(TEXT)["input_ids"]) == "<s>" + TEXT
    assert reloaded.convert_ids_to_tokens(list(range(300))) == original.convert_ids_to_tokens(list(range(300)))
    assert (reloaded.bos_token, reloaded.eos_token, reloaded.pad_token) == ("<s>", "</s>", "</s>")
    assert reloaded.chat_template == original.chat_template
