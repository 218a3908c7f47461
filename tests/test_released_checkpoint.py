"""A checkpoint folder exactly as the released InternVL2 / V2PE ones are downloaded, used as a new
user would: `v2pe chat`, `v2pe eval`, `v2pe train` and `v2pe convert` with no extra argument, no
remote code (every `.py` of the folder would leave a marker file if imported) and no `tokenizer=`.

The tokenizer is the official-layout SentencePiece folder of `../shared/fixtures/internlm2-tokenizer`
(`spm-no-dummy-prefix`, 3016 ids), the model an official InternViT + InternLM2 with random bf16
weights in two shards (tests/released.py).
"""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoTokenizer

from tests.conftest import fixture_dir
from tests.eval.runners.conftest import mmniah_rows, write_jsonl
from tests.released import official_config, write_released_folder
from v2pe.cli import main
from v2pe.model import load_model
from v2pe.processing import Processor

IM_END = 3005  # <|im_end|> in the fixture tokenizer


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    tokenizer_dir = fixture_dir("internlm2-tokenizer") / "spm-no-dummy-prefix"
    folder = tmp_path_factory.mktemp("InternVL2-V2PE-tiny")
    config = official_config({}, {"vocab_size": 3016}, stride=64, image_size=56, max_dynamic_patch=2)
    write_released_folder(folder, config, tokenizer_dir, eos_token_ids=[2, IM_END])
    image = folder.parent / "square.png"
    Image.new("RGB", (112, 56), "blue").save(image)
    return folder, image


@pytest.fixture
def mmniah_folder(tmp_path):
    root = tmp_path / "MM-NIAH"
    write_jsonl(root / "val" / "annotations" / "retrieval-image.jsonl", mmniah_rows(root / "val" / "images", "retrieval-image", n=1))
    return root


@pytest.fixture(autouse=True)
def no_remote_code_ran(released):
    yield
    assert not (released[0] / "REMOTE_CODE_RAN").exists(), "a remote-code .py file of the checkpoint was imported"


def test_chat_answers_with_the_checkpoint_delta_and_says_so(released, capsys):
    folder, image = released
    assert main(["chat", "--model", str(folder), "--image", str(image), "--max-new-tokens", "3", "What colour is it?"]) == 0
    captured = capsys.readouterr()
    assert captured.out.endswith("\n")
    assert "[delta 0.25, the checkpoint's: rope_pos_id_version v2pe_fix, rope_pos_id_stride 64]" in captured.err


def test_processor_and_model_read_the_folder_as_the_official_code(released):
    folder, _ = released
    processor = Processor.from_pretrained(folder)
    assert type(processor.tokenizer).__name__ == "InternLM2SentencePieceTokenizer" and processor.tokenizer.is_fast
    assert (processor.image_start_id, processor.image_end_id, processor.image_context_id) == (3007, 3008, 3009)
    assert processor.max_tiles == 2 and processor.template == "internlm2-chat"
    model = load_model(folder, dtype="auto")
    assert model.dtype == torch.bfloat16  # the checkpoint's own
    assert model.generation_config.eos_token_id == [2, IM_END]
    assert model.v2pe.delta == 0.25 and model.config.image_token_id == 3009


def test_convert_writes_a_folder_plain_transformers_loads(released, tmp_path):
    folder, image = released
    dst = tmp_path / "native"
    assert main(["convert", str(folder), str(dst), "--dtype", "float32"]) == 0
    assert not list(dst.glob("*.py")) and not (dst / "tokenizer.model").exists()
    for path in dst.glob("*.json"):
        assert "auto_map" not in path.read_text(), path.name

    tokenizer = AutoTokenizer.from_pretrained(dst)
    config = json.loads((dst / "config.json").read_text())
    assert tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>") == config["image_token_id"] == 3009
    official = Processor.from_pretrained(folder).tokenizer
    text = "<|im_start|>user\n<img><IMG_CONTEXT></img>\nWhat colour?<|im_end|>"
    assert tokenizer(text).input_ids == official(text).input_ids
    assert tokenizer.padding_side == "right" and tokenizer.pad_token_id == 2

    plain = AutoModelForImageTextToText.from_pretrained(dst).eval()
    ours = load_model(folder, dtype=torch.float32)
    inputs = Processor.from_pretrained(folder)([[{"from": "human", "value": "<image>\nWhat colour?"}]], [[image]])
    positions = ours.v2pe_position_ids(inputs["input_ids"], inputs["attention_mask"])
    with torch.no_grad():
        expected = ours(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"], attention_mask=inputs["attention_mask"]).logits
        got = plain(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"], attention_mask=inputs["attention_mask"],
                    position_ids=positions).logits
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_eval_runs_on_the_released_folder(released, mmniah_folder, tmp_path, capsys):
    folder, _ = released
    out = tmp_path / "run"
    assert main(["eval", "mm-niah", "--model", str(folder), "--data", str(mmniah_folder), "--out", str(out),
                 "--tasks", "retrieval-image", "--limit", "1", "--max-tiles", "1"]) == 0
    line = json.loads((out / "retrieval-image-val.jsonl").read_text().splitlines()[0])
    assert line["delta"] == 0.25 and isinstance(line["prediction"], str)


def test_train_fine_tunes_the_released_folder(released, tmp_path, capsys):
    folder, _ = released
    out = tmp_path / "train"
    assert main(["train", "--config", "debug", "--model.path", str(folder), "--model.tiny", "null", "--data.tokenizer", "null",
                 "--data.max_tiles", "1", "--data.synthetic.image_size", "56", "--train.max_steps", "2", "--train.save_steps", "2",
                 "--train.output_dir", str(out), "--train.report_to", "none", "--model.drop_path_rate", "0"]) == 0
    final = out / "final"
    assert (final / "tokenizer.json").is_file() and (final / "config.json").is_file()
    assert AutoTokenizer.from_pretrained(final).convert_tokens_to_ids("<IMG_CONTEXT>") == 3009
    assert load_model(final).v2pe.delta == 0.25
