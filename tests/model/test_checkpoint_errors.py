"""Broken checkpoint folders fail with an error that names the file and the key."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from v2pe.errors import CheckpointError
from v2pe.model import load_model
from v2pe.model.tiny import tiny_model


@pytest.fixture
def official_copy(internvl2_tiny_dir, tmp_path):
    folder = tmp_path / "official"
    shutil.copytree(internvl2_tiny_dir, folder)
    for path in folder.iterdir():
        path.chmod(0o644)
    return folder


def edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope")


def test_missing_config(official_copy):
    (official_copy / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json: file not found"):
        load_model(official_copy)


def test_corrupt_config(official_copy):
    (official_copy / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json:1: not valid JSON"):
        load_model(official_copy)


def test_unknown_model_type(official_copy):
    edit_json(official_copy / "config.json", lambda c: c.update(model_type="llava"))
    with pytest.raises(CheckpointError, match=r"config\.json: model_type 'llava' is not supported"):
        load_model(official_copy)


def test_pickled_weights_are_refused(official_copy):
    (official_copy / "model.safetensors").rename(official_copy / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin.*only safetensors"):
        load_model(official_copy)


def test_shape_that_contradicts_the_config_names_file_and_key(official_copy):
    edit_json(official_copy / "config.json", lambda c: c["vision_config"].update(intermediate_size=48))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: key 'vision_model\.encoder\.layers\.0\.mlp\.fc1\.(weight|bias)' has shape"):
        load_model(official_copy)


def test_missing_weight(official_copy):
    weights = load_file(official_copy / "model.safetensors")
    del weights["mlp1.3.weight"]
    save_file(weights, official_copy / "model.safetensors")
    with pytest.raises(CheckpointError, match="missing 1 weights.*multi_modal_projector.linear_2.weight"):
        load_model(official_copy)


def test_index_with_missing_shard(official_copy):
    (official_copy / "model.safetensors").unlink()
    (official_copy / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"mlp1.0.weight": "model-00001-of-00002.safetensors"}}))
    with pytest.raises(CheckpointError, match="model-00001-of-00002.safetensors: shard listed"):
        load_model(official_copy)


def test_unsupported_language_model(official_copy):
    edit_json(official_copy / "config.json", lambda c: c["llm_config"].update(architectures=["Phi3ForCausalLM"]))
    with pytest.raises(CheckpointError, match="Phi3ForCausalLM.*not supported"):
        load_model(official_copy)


def test_marker_ids_without_tokenizer_files_must_be_given(official_copy):
    (official_copy / "special_tokens.json").unlink()
    with pytest.raises(CheckpointError, match="cannot find the ids"):
        load_model(official_copy)
    model = load_model(official_copy, image_start_token_id=295, image_end_token_id=296, image_token_id=297)
    assert model.config.image_token_id == 297


def test_native_checkpoint_with_wrong_config(tmp_path):
    tiny_model().save_pretrained(tmp_path / "native")
    edit_json(tmp_path / "native" / "config.json", lambda c: c["text_config"].update(intermediate_size=96))
    with pytest.raises(CheckpointError, match=r"mlp\.(gate|up|down)_proj\.weight"):
        load_model(tmp_path / "native")


def test_native_checkpoint_loads(tmp_path):
    model = tiny_model(seed=3)
    model.save_pretrained(tmp_path / "native")
    reloaded = load_model(tmp_path / "native")
    ids = torch.tensor([[1, 40, 295, 297, 297, 297, 297, 296, 41]])
    pixels = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids, pixel_values=pixels).logits, model(input_ids=ids, pixel_values=pixels).logits)


def truncate(path, fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def test_truncated_weights_are_named_by_load_model_and_convert(official_copy, tmp_path, capsys):
    from v2pe.cli import main

    truncate(official_copy / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors file, truncated or corrupt"):
        load_model(official_copy)
    assert main(["convert", str(official_copy), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.safetensors: not a readable safetensors file" in err[0]


def test_truncated_shard_of_a_native_checkpoint_is_named(tmp_path):
    folder = tmp_path / "native"
    tiny_model(seed=0).save_pretrained(folder, max_shard_size="100KB")
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 1
    truncate(shards[-1], 0.3)
    with pytest.raises(CheckpointError, match=rf"{shards[-1].name}: not a readable safetensors file"):
        load_model(folder)
