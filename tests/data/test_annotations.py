"""The official meta JSON and JSONL format: parsing, every error case, skips, repeat_time."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from PIL import Image

from tests.data.conftest import write_lines, write_meta
from v2pe.data.annotations import SampleError, SkipReport, load_meta, read_annotations, repeat_indices
from v2pe.errors import ConfigError, DataError

GOOD = {"id": "a", "image": "x.png", "conversations": [{"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": "A"}]}


# ---- meta JSON ---------------------------------------------------------------------------


def test_meta_entries_resolve_paths_against_the_meta_folder(tmp_path):
    write_lines(tmp_path / "data" / "a.jsonl", [GOOD])
    meta = write_meta(tmp_path / "data" / "meta.json", {
        "first": {"root": "imgs", "annotation": "a.jsonl", "data_augment": True, "repeat_time": 0.5, "length": 1, "max_dynamic_patch": 3, "dynamic_image_size": True},
        "second": {"root": str(tmp_path), "annotation": str(tmp_path / "data" / "a.jsonl")},
    })
    first, second = load_meta(meta)
    assert first.name == "first" and first.annotation == tmp_path / "data" / "a.jsonl" and first.root == tmp_path / "data" / "imgs"
    assert (first.data_augment, first.repeat_time, first.length, first.max_dynamic_patch, first.dynamic_image_size) == (True, 0.5, 1, 3, True)
    assert second.root == tmp_path and second.repeat_time == 1.0 and second.data_augment is False
    assert second.max_dynamic_patch is None and second.dynamic_image_size is None


@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        ({"annotation": "a.jsonl", "repeat_times": 2}, "unknown key 'repeat_times'"),
        ({"annotation": "a.jsonl", "root": "", "video_root": "v"}, "unknown key 'video_root'"),
        ({"root": "x"}, "missing key 'annotation'"),
        ({"annotation": "a.json"}, "must name a .jsonl file"),
        ({"annotation": "missing.jsonl"}, "file not found"),
        ({"annotation": "a.jsonl", "repeat_time": "2"}, "key 'repeat_time' must be int or float"),
        ({"annotation": "a.jsonl", "repeat_time": 0}, "key 'repeat_time' must be a number > 0"),
        ({"annotation": "a.jsonl", "length": True}, "key 'length' must be int"),
        ({"annotation": "a.jsonl", "data_augment": 1}, "key 'data_augment' must be bool"),
        ({"annotation": "a.jsonl", "max_dynamic_patch": 0}, "key 'max_dynamic_patch' must be >= 1"),
    ],
)
def test_meta_errors_name_file_dataset_and_key(tmp_path, entry, needle):
    write_lines(tmp_path / "a.jsonl", [GOOD])
    meta = write_meta(tmp_path / "meta.json", {"ds": entry})
    with pytest.raises(ConfigError) as error:
        load_meta(meta)
    assert str(meta) in str(error.value) and "dataset 'ds'" in str(error.value) and needle in str(error.value)


def test_meta_file_itself_must_be_a_json_object(tmp_path):
    (tmp_path / "m.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="non-empty JSON object"):
        load_meta(tmp_path / "m.json")
    (tmp_path / "n.json").write_text("{oops")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_meta(tmp_path / "n.json")


# ---- JSONL samples -----------------------------------------------------------------------


def test_good_samples_single_multi_pure_text_and_missing_placeholder(tmp_path):
    lines = [
        GOOD,
        {"image": ["a.png", "b.png"], "conversations": [{"from": "human", "value": "<image> and <image>"}, {"from": "gpt", "value": "x"}], "metadata": {"k": 1}},
        {"id": 5, "conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]},
        {"image": "c.png", "conversations": [{"from": "human", "value": "no placeholder"}, {"from": "gpt", "value": "ok"}]},
    ]
    path = write_lines(tmp_path / "s.jsonl", lines)
    samples = read_annotations(path, root=tmp_path / "r")
    assert [s.line for s in samples] == [1, 2, 3, 4]
    assert samples[0].images == [tmp_path / "r" / "x.png"] and samples[0].id == "a"
    assert samples[1].images == [tmp_path / "r" / "a.png", tmp_path / "r" / "b.png"] and samples[1].metadata == {"k": 1}
    assert samples[2].images == [] and samples[2].id == "5"
    assert len(samples[3].images) == 1
    # default root: the annotation file's folder
    assert read_annotations(path)[0].images == [tmp_path / "x.png"]


BAD_LINES = [
    # (line, reason, field in the message)
    ("{not json", "invalid_json", None),
    ("[1, 2]", "not_an_object", None),
    ({"image": "x.png"}, "missing_field", "field 'conversations'"),
    ({"image": 3, "conversations": GOOD["conversations"]}, "wrong_type", "field 'image'"),
    ({"image": ["x.png", 4], "conversations": [{"from": "human", "value": "<image><image>"}, {"from": "gpt", "value": "a"}]}, "wrong_type", "field 'image[1]'"),
    ({"image": ["x.png"], "conversations": [{"from": "human", "value": "<image><image>"}, {"from": "gpt", "value": "a"}]}, "image_count_mismatch", "field 'image'"),
    ({"conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "a"}]}, "image_count_mismatch", "field 'image'"),
    ({"image": ["a.png", "b.png"], "conversations": [{"from": "human", "value": "none"}, {"from": "gpt", "value": "a"}]}, "image_count_mismatch", "field 'image'"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt"}]}, "missing_field", "field 'conversations[1].value'"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": 3}]}, "wrong_type", "field 'conversations[1].value'"),
    ({"conversations": "hello"}, "wrong_type", "field 'conversations'"),
    ({"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]}, "invalid_conversation", "field 'conversations'"),
    ({"conversations": [{"from": "human", "value": "q"}]}, "invalid_conversation", "field 'conversations'"),
    ({"video": "v.mp4", "conversations": GOOD["conversations"]}, "unsupported", "field 'video'"),
    ({"image": "http://x/y.png", "conversations": GOOD["conversations"]}, "unsupported", "field 'image'"),
    ({"metadata": [1], "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}, "wrong_type", "field 'metadata'"),
    ({"id": [1], "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}, "wrong_type", "field 'id'"),
]


@pytest.mark.parametrize(("line", "reason", "field"), BAD_LINES)
def test_each_bad_line_names_file_line_and_field(tmp_path, line, reason, field):
    path = write_lines(tmp_path / "bad.jsonl", [GOOD, GOOD, line])
    with pytest.raises(SampleError) as error:
        read_annotations(path)
    message = str(error.value)
    assert f"{path}:3" in message
    assert error.value.reason == reason
    if field:
        assert field in message
    assert isinstance(error.value, DataError)


def test_skip_bad_counts_every_bad_line_by_reason(tmp_path):
    lines = [GOOD] + [line for line, _, _ in BAD_LINES] + [GOOD]
    path = write_lines(tmp_path / "mixed.jsonl", lines)
    report = SkipReport()
    samples = read_annotations(path, skip_bad=True, report=report)
    assert [s.line for s in samples] == [1, len(lines)]
    assert report.total == len(BAD_LINES)
    assert dict(report.counts) == dict(Counter(reason for _, reason, _ in BAD_LINES))
    summary = report.summary()
    assert summary.startswith(f"skipped {len(BAD_LINES)} samples") and "image_count_mismatch 3" in summary and f"{path}:2" in summary


def test_check_images_reports_missing_files(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    path = write_lines(tmp_path / "s.jsonl", [GOOD, {**GOOD, "image": "gone.png"}])
    with pytest.raises(SampleError, match=r"s\.jsonl:2 \(id a\), field 'image': image file not found"):
        read_annotations(path, check_images=True)
    report = SkipReport()
    assert len(read_annotations(path, check_images=True, skip_bad=True, report=report)) == 1
    assert report.counts == {"missing_image": 1}


def test_missing_annotation_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="annotation file not found"):
        read_annotations(tmp_path / "nope.jsonl")


# ---- repeat_time ---------------------------------------------------------------------------


def test_repeat_time_whole_and_fractional_parts():
    rng = random.Random(0)
    indices = repeat_indices(10, 2.5, rng)
    counts = Counter(indices)
    assert len(indices) == 25 and set(counts) == set(range(10))
    assert sorted(counts.values()) == [2] * 5 + [3] * 5  # int(10 * 0.5) = 5 lines drawn a third time
    assert indices[:20] == list(range(10)) * 2


def test_repeat_time_below_one_subsamples_without_replacement():
    indices = repeat_indices(10, 0.35, random.Random(1))
    assert len(indices) == 3 and len(set(indices)) == 3 and indices == sorted(indices)  # int(3.5) = 3
    assert repeat_indices(7, 1, random.Random(0)) == list(range(7))
    assert repeat_indices(7, 3, random.Random(0)) == list(range(7)) * 3


def test_repeat_time_is_deterministic_given_the_seed():
    draws = {tuple(repeat_indices(100, 0.5, random.Random(seed))) for seed in (3, 3)}
    assert len(draws) == 1
    assert repeat_indices(100, 0.5, random.Random(3)) != repeat_indices(100, 0.5, random.Random(4))
    with pytest.raises(ConfigError):
        repeat_indices(5, 0, random.Random(0))
