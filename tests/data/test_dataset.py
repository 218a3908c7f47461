"""SupervisedDataset: processing, seeded deltas, order, tile overrides, errors and skips."""

from __future__ import annotations

import json

import pytest
import torch

from tests.data.conftest import make_processor, write_lines, write_meta
from v2pe.data.dataset import SupervisedDataset, sample_generator
from v2pe.positions import DEFAULT_DELTA_CHOICES, resolve_deltas
from v2pe.processing.collate import collate


@pytest.fixture()
def meta(synthetic_dir):
    return synthetic_dir / "meta.json"


def _records(synthetic_dir):
    return [json.loads(line) for line in (synthetic_dir / "synthetic.jsonl").read_text().splitlines()]


def test_items_are_the_processor_output_with_a_fixed_delta(meta, synthetic_dir, processor):
    dataset = SupervisedDataset(meta, processor, delta=0.5)
    assert len(dataset) == 40
    record = _records(synthetic_dir)[3]
    expected = processor.encode(record["conversations"], [synthetic_dir / record["image"]])
    item = dataset[3]
    for key in ("input_ids", "labels", "attention_mask", "pixel_values", "num_tiles"):
        assert torch.equal(item[key], expected[key]), key
    assert "position_ids" not in item  # the model computes them from the ids and image_deltas
    assert item["id"] == record["id"] and item["index"] == 3 and item["skipped"] == []
    assert item["image_deltas"].tolist() == [0.5]


def test_random_deltas_are_seeded_per_index(meta, processor):
    dataset = SupervisedDataset(meta, processor, delta="random", seed=11)
    later_first = dataset[7]
    for i in range(7):
        dataset[i]
    again = dataset[7]  # same draw whatever was loaded before: resumable at any index
    assert torch.equal(later_first["image_deltas"], again["image_deltas"])
    other = SupervisedDataset(meta, processor, delta="random", seed=11)[7]
    assert torch.equal(other["image_deltas"], later_first["image_deltas"])
    draws = torch.cat([dataset[i]["image_deltas"] for i in range(40)])
    assert set(draws.tolist()) <= set(DEFAULT_DELTA_CHOICES) and len(set(draws.tolist())) > 3
    reseeded = torch.cat([SupervisedDataset(meta, processor, seed=12)[i]["image_deltas"] for i in range(40)])
    assert not torch.equal(draws, reseeded)
    # the draws are the ones the position function makes with the sample's generator
    item = dataset[5]
    drawn = resolve_deltas("random", len(item["image_deltas"]), generator=sample_generator(11, 5))
    assert item["image_deltas"].dtype == torch.float32 and torch.equal(item["image_deltas"], drawn.float())


def test_repeat_time_and_shuffle(tmp_path, synthetic_dir, processor):
    meta = write_meta(tmp_path / "meta.json", {
        "twice": {"root": str(synthetic_dir), "annotation": str(synthetic_dir / "synthetic.jsonl"), "repeat_time": 2},
        "quarter": {"root": str(synthetic_dir), "annotation": str(synthetic_dir / "synthetic.jsonl"), "repeat_time": 0.25},
    })
    plain = SupervisedDataset(meta, processor, seed=3)
    assert len(plain) == 80 + 10
    assert [plain.sample(i).line for i in range(80)] == list(range(1, 41)) * 2
    shuffled = SupervisedDataset(meta, processor, shuffle=True, seed=3)
    order = [tuple(row) for row in shuffled.index.tolist()]  # (dataset, line index)
    plain_order = [tuple(row) for row in plain.index.tolist()]
    assert sorted(order) == sorted(plain_order) and order != plain_order
    assert order == [tuple(row) for row in SupervisedDataset(meta, processor, shuffle=True, seed=3).index.tolist()]


def test_per_dataset_tile_limits(tmp_path, synthetic_dir, processor):
    records = _records(synthetic_dir)
    wide = next(i for i, r in enumerate(records) if r["metadata"]["size"] == [112, 56])
    base = {"root": str(synthetic_dir), "annotation": str(synthetic_dir / "synthetic.jsonl")}
    meta = write_meta(tmp_path / "meta.json", {"default": base, "one": {**base, "max_dynamic_patch": 1}, "static": {**base, "dynamic_image_size": False}})
    dataset = SupervisedDataset(meta, processor, delta=1.0)
    tiles = [dataset[wide + 40 * k]["num_tiles"].tolist() for k in range(3)]
    assert tiles == [[3], [1], [1]]  # 2 x 1 grid + thumbnail, then single tiles
    assert dataset[wide]["pixel_values"].shape == (3, 3, 56, 56)


def test_data_augment_is_a_seeded_jpeg_reencode(tmp_path, synthetic_dir, processor):
    base = {"root": str(synthetic_dir), "annotation": str(synthetic_dir / "synthetic.jsonl")}
    meta = write_meta(tmp_path / "meta.json", {"aug": {**base, "data_augment": True}})
    plain = SupervisedDataset(synthetic_dir / "meta.json", processor, delta=1.0)[0]["pixel_values"]
    first = SupervisedDataset(meta, processor, delta=1.0, seed=1)[0]["pixel_values"]
    second = SupervisedDataset(meta, processor, delta=1.0, seed=1)[0]["pixel_values"]
    assert torch.equal(first, second) and not torch.equal(first, plain)
    assert (first - plain).abs().mean() < 0.2  # a re-encode, not a different image


@pytest.fixture()
def broken(tmp_path, synthetic_dir):
    """Line 1 good, line 2 a missing image, line 3 a corrupt image, line 4 good."""
    records = _records(synthetic_dir)[:4]
    records[1]["image"] = "images/does-not-exist.png"
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    records[2]["image"] = str(tmp_path / "corrupt.png")
    annotation = write_lines(tmp_path / "broken.jsonl", records)
    entry = {"root": str(synthetic_dir), "annotation": str(annotation), "allow_outside_root": True}  # corrupt.png is elsewhere
    return write_meta(tmp_path / "meta.json", {"broken": entry}), annotation


def test_missing_and_corrupt_images_name_file_line_and_field(broken, processor):
    meta, annotation = broken
    dataset = SupervisedDataset(meta, processor)
    dataset[0]
    with pytest.raises(Exception) as missing:
        dataset[1]
    assert f"{annotation}:2" in str(missing.value) and "field 'image'" in str(missing.value) and "not found" in str(missing.value)
    assert missing.value.reason == "missing_image"
    with pytest.raises(Exception) as corrupt:
        dataset[2]
    assert f"{annotation}:3" in str(corrupt.value) and "field 'image'" in str(corrupt.value) and corrupt.value.reason == "corrupt_image"


def test_skip_bad_substitutes_the_next_sample_and_counts(broken, processor):
    meta, _ = broken
    dataset = SupervisedDataset(meta, processor, skip_bad=True)
    item = dataset[1]
    assert item["index"] == 3 and item["skipped"] == ["missing_image", "corrupt_image"]
    assert dataset.report.counts == {"missing_image": 1, "corrupt_image": 1}
    assert dataset.load(2) is None and dataset.report.counts["corrupt_image"] == 2
    assert "skipped 3 samples" in dataset.report.summary()
    batch = collate([dataset[0], dataset[1]])
    assert batch["skipped"] == {"missing_image": 1, "corrupt_image": 1} and batch["index"].tolist() == [0, 3]


def test_too_long_samples_are_errors_or_counted_skips(meta, synthetic_dir, processor):
    lengths = SupervisedDataset(meta, processor).lengths()
    limit = sorted(lengths)[20]
    short = make_processor(max_length=limit)
    dataset = SupervisedDataset(meta, short)
    too_long = next(i for i, n in enumerate(lengths) if n > limit)
    with pytest.raises(Exception) as error:
        dataset[too_long]
    assert f"synthetic.jsonl:{too_long + 1}" in str(error.value) and "field 'conversations'" in str(error.value)
    assert error.value.reason == "too_long" and f"max_length={limit}" in str(error.value)
    skipping = SupervisedDataset(meta, short, skip_bad=True)
    measured = skipping.lengths()
    assert [m is None for m in measured] == [n > limit for n in lengths]
    assert skipping.report.counts == {"too_long": sum(n > limit for n in lengths)}
    assert skipping.load(too_long) is None


def test_measure_equals_the_loaded_length(meta, processor):
    dataset = SupervisedDataset(meta, processor)
    assert dataset.lengths() == [len(dataset[i]["input_ids"]) for i in range(len(dataset))]


def test_bad_lines_are_found_when_the_dataset_is_built(tmp_path, synthetic_dir, processor):
    annotation = write_lines(tmp_path / "b.jsonl", [_records(synthetic_dir)[0], "{broken"])
    meta = write_meta(tmp_path / "meta.json", {"b": {"root": str(synthetic_dir), "annotation": str(annotation)}})
    with pytest.raises(Exception, match=r"b\.jsonl:2: not valid JSON"):
        SupervisedDataset(meta, processor)
    dataset = SupervisedDataset(meta, processor, skip_bad=True)
    assert len(dataset) == 1 and dataset.report.counts == {"invalid_json": 1}


def test_bad_delta_is_a_config_error(meta, processor):
    from v2pe.errors import ConfigError

    with pytest.raises(ConfigError, match="delta must be 'random' or a number"):
        SupervisedDataset(meta, processor, delta="rnd")
    with pytest.raises(ConfigError, match=r"delta must lie in \(0, 1\]"):
        SupervisedDataset(meta, processor, delta=2.0)


# --- conversation text as the official training code prepares it ------------------------------


def _one_sample_meta(tmp_path, synthetic_dir, record):
    annotation = write_lines(tmp_path / "one.jsonl", [record])
    return write_meta(tmp_path / "meta.json", {"one": {"root": str(synthetic_dir), "annotation": str(annotation)}}), annotation


def test_image_only_in_a_later_human_turn_is_refused_naming_the_sample(tmp_path, synthetic_dir, processor):
    # Official training (one image): '<image>\n' goes before the FIRST human turn whenever that turn
    # has none, even if a later turn has one; that sample would have 2 placeholders for 1 image.
    record = {**_records(synthetic_dir)[0], "id": "late-7", "conversations": [
        {"from": "human", "value": "Look at this."},
        {"from": "gpt", "value": "Ok."},
        {"from": "human", "value": "<image>\nHow many objects are drawn?"},
        {"from": "gpt", "value": "3"},
    ]}
    meta, annotation = _one_sample_meta(tmp_path, synthetic_dir, record)
    dataset = SupervisedDataset(meta, processor)
    for load in (lambda: dataset[0], lambda: dataset.measure(0)):
        with pytest.raises(Exception) as error:
            load()
        assert error.value.reason == "image_count_mismatch"
        assert f"{annotation}:1 (id late-7), field 'conversations'" in str(error.value)
        assert "first human turn" in str(error.value)
    skipping = SupervisedDataset(meta, processor, skip_bad=True)
    assert skipping.load(0) is None and skipping.measure(0) is None
    assert skipping.report.counts == {"image_count_mismatch": 2}


def test_training_text_is_prepended_then_stripped_even_when_it_ends_with_a_question(tmp_path, synthetic_dir, processor):
    record = {**_records(synthetic_dir)[0], "conversations": [
        {"from": "human", "value": "  How many objects are drawn?\n"},
        {"from": "gpt", "value": " 3\n"},
        {"from": "human", "value": " And colours? "},
    ]}
    meta, _ = _one_sample_meta(tmp_path, synthetic_dir, record)
    dataset = SupervisedDataset(meta, processor, delta=1.0)
    item = dataset[0]
    stripped = [
        {"from": "human", "value": "<image>\n  How many objects are drawn?"},
        {"from": "gpt", "value": "3"},
        {"from": "human", "value": "And colours?"},
    ]
    expected = processor.encode(stripped, [synthetic_dir / record["image"]])
    assert torch.equal(item["input_ids"], expected["input_ids"]) and torch.equal(item["labels"], expected["labels"])
    assert dataset.measure(0) == len(item["input_ids"])
    text = processor.tokenizer.decode(item["input_ids"].tolist())
    assert "<|im_start|>user\n<img>" in text and "</img>\n  How many objects are drawn?<|im_end|>" in text
    assert "<|im_start|>assistant\n3<|im_end|><|im_start|>user\nAnd colours?<|im_end|>" in text
