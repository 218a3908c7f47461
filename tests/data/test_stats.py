"""Statistics: exact lengths per file, MM-NIAH records and their errors."""

from __future__ import annotations

import json

import pytest

from tests.data.conftest import write_lines, write_meta
from v2pe.data.annotations import SampleError
from v2pe.data.dataset import SupervisedDataset
from v2pe.data.stats import collect_stats

NIAH = {
    "id": 0,
    "images_list": ["images/000000.png"],
    "context": "Some text.\n<image>\nMore text.\n",
    "question": "What is the secret word?",
    "answer": "apple",
    "meta": {"placed_depth": 0.5, "context_length": 0, "choices": None, "choices_image_path": None},
}


def test_stats_lengths_equal_the_dataset_lengths(synthetic_dir, processor):
    stats = collect_stats(synthetic_dir / "meta.json", processor)
    assert stats.lengths == SupervisedDataset(synthetic_dir / "meta.json", processor).lengths()
    info = stats.files[0].to_dict()
    assert info["samples"] == 40 and info["images"] == 40 and info["format"] == "official"
    assert stats.to_dict()["histogram"]["count"] == 40


def test_repeat_time_is_reported_as_effective_samples(tmp_path, synthetic_dir, processor):
    meta = write_meta(tmp_path / "m.json", {"x": {"root": str(synthetic_dir), "annotation": str(synthetic_dir / "synthetic.jsonl"), "repeat_time": 2.5}})
    assert collect_stats(meta, processor).files[0].to_dict()["effective_samples"] == 100


def test_mmniah_records_are_measured_as_prompt_plus_answer(tmp_path, synthetic_dir, processor):
    path = write_lines(tmp_path / "niah_ok.jsonl", [{**NIAH, "images_list": [str(synthetic_dir / "images/000000.png")]}])
    stats = collect_stats(path, processor, allow_outside_root=True)
    query = NIAH["context"] + NIAH["question"] + "\nAnswer the question using a single word or phrase."
    expected = len(processor.encode([{"from": "human", "value": query}, {"from": "gpt", "value": "apple"}], [synthetic_dir / "images/000000.png"])["input_ids"])
    assert stats.files[0].format == "mmniah" and stats.lengths == [expected]


@pytest.mark.parametrize(
    ("change", "reason", "field"),
    [
        ({"answer": None}, "missing_field", "field 'answer'"),
        ({"question": 5}, "wrong_type", "field 'question'"),
        ({"answer": True}, "wrong_type", "field 'answer'"),
        ({"context": "no images here"}, "image_count_mismatch", "field 'images_list'"),
        ({"images_list": ["images/missing.png"]}, "missing_image", "field 'images_list[0]'"),
        ({"meta": {"choices": "A", "choices_image_path": None}}, "wrong_type", "field 'meta.choices'"),
    ],
)
def test_mmniah_errors_name_file_line_and_field(tmp_path, synthetic_dir, processor, change, reason, field):
    bad = {key: value for key, value in {**NIAH, **change}.items() if value is not None}
    path = tmp_path / "niah.jsonl"
    lines = [json.dumps({**NIAH, "images_list": [str(synthetic_dir / "images/000000.png")]}), json.dumps({**bad, "images_list": [str(synthetic_dir / p) for p in bad["images_list"]]})]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SampleError) as error:
        collect_stats(path, processor, skip_bad=False, allow_outside_root=True)
    assert f"{path}:2 (id 0)" in str(error.value) and field in str(error.value) and error.value.reason == reason
    stats = collect_stats(path, processor, allow_outside_root=True)
    assert len(stats.lengths) == 1 and dict(stats.report.counts) == {reason: 1}
