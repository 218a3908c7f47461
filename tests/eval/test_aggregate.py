"""MM-NIAH length x depth tables and MileBench groups, on hand-worked examples."""

from __future__ import annotations

import pytest

from v2pe.errors import DataError
from v2pe.eval.benchmarks import milebench, mmniah


@pytest.mark.parametrize(("length", "expected"), [
    (999, 0), (1000, 1), (1999, 1), (2000, 2), (63999, 10), (64000, 11), (1_000_000, 11),
])
def test_mmniah_length_bins_follow_np_digitize(length, expected):
    assert mmniah.length_bin(length) == expected


@pytest.mark.parametrize(("depth", "expected"), [
    (0.0, 0), (0.19, 0), (0.2, 1), (0.4, 2),
    (0.6, 2),  # 0.6 / 0.2 == 2.9999999999999996 in floating point -> bin 2, as upstream
    (0.8, 4), (1.0, 4), ([0.2, 0.4], 1),
])
def test_mmniah_depth_bins(depth, expected):
    assert mmniah.depth_bin(depth) == expected


def test_mmniah_depth_outside_unit_interval_is_a_data_error():
    with pytest.raises(DataError):
        mmniah.depth_bin(1.2)


def test_mmniah_task_table_hand_worked():
    samples = [
        {"context_length": 500, "placed_depth": 0.5, "score": 1},  # < 1K: dropped
        {"context_length": 1500, "placed_depth": 0.1, "score": 1},  # bin 1, depth 0
        {"context_length": 1500, "placed_depth": 0.1, "score": 0},  # same cell -> 0.5
        {"context_length": 1999, "placed_depth": [0.2, 0.4], "score": 1},  # bin 1, depth 1
        {"context_length": 2000, "placed_depth": 1.0, "score": 1},  # bin 2, depth 4
        {"context_length": 2000, "placed_depth": 0.6, "score": 1},  # bin 2, depth 2
        {"context_length": 70000, "placed_depth": 0.0, "score": 0.5},  # last bin, depth 0
    ]
    table = mmniah.task_scores(samples)
    assert table.cells[0] == [0.5, 1.0, 0.0, 0.0, 0.0]
    assert table.cells[1] == [0.0, 0.0, 1.0, 0.0, 1.0]
    # Mean over the 5 depth cells, empty cells counting as 0.
    assert table.scores == [0.3, 0.4] + [0.0] * 8 + [0.1]
    assert table.sample_numbers == [3, 2] + [0] * 8 + [1]
    assert table.weighted_acc == pytest.approx([2 / 3, 1.0] + [0.0] * 8 + [0.5])
    assert table.weighted_avg_acc == pytest.approx((2 + 2 + 0.5) / 6)


def test_mmniah_overall_needs_six_tasks():
    six = {f"task{i}": [i / 10, 1.0] for i in range(6)}
    assert mmniah.overall(six) == pytest.approx([0.25, 1.0])
    five = dict(list(six.items())[:5])
    assert mmniah.overall(five) is None


def test_milebench_groups_cover_29_datasets():
    sizes = {group: len(datasets) for group, datasets in milebench.GROUPS.items()}
    assert sizes == {"T": 13, "S": 13, "NI": 2, "IR": 1}


def test_milebench_summary_means_and_avg():
    scores = {d: 0.5 for d in milebench.GROUPS["T"]}
    scores["StateChange"] = 1.0
    scores.update({d: 0.2 for d in milebench.GROUPS["S"]})
    scores.update({"TextNeedleInAHaystack": 1.0, "ImageNeedleInAHaystack": 0.0, "GPR1200": 0.3})
    summary = milebench.summary(scores)
    t = 100 * (12 * 0.5 + 1.0) / 13
    assert summary["T"] == pytest.approx(t)
    assert summary["S"] == pytest.approx(20.0)
    assert summary["NI"] == pytest.approx(50.0)
    assert summary["IR"] == pytest.approx(30.0)
    assert summary["Avg"] == pytest.approx((t + 20.0 + 50.0) / 3)
    assert summary["missing"] == []


def test_milebench_summary_reports_missing_datasets():
    summary = milebench.summary({"GPR1200": 1.0})
    assert summary["T"] is None and summary["Avg"] is None
    assert len(summary["missing"]) == 28


def test_milebench_dataset_scores_by_image_quantity_level():
    samples = [
        {"score": 1, "image_quantity_level": "Few"},
        {"score": 0, "image_quantity_level": "Few"},
        {"score": 1, "num_images": 40},  # V2PE: level from the image count -> Many
    ]
    result = milebench.dataset_scores(samples)
    assert result["score"] == pytest.approx(2 / 3)
    assert result["image_quantity_level"] == {"Few": 0.5, "Medium": 0, "Many": 1.0}


@pytest.mark.parametrize(("dataset", "question_type", "expected"), [
    ("TextNeedleInAHaystack", "open-ended", "needle"),
    ("MMCoQA", "open-ended", "mmcoqa"),
    ("ALFRED", "open-ended", "rouge_l"),
    ("ActionSequence", "multi-choice", "multichoice"),
])
def test_milebench_metric_routing(dataset, question_type, expected):
    assert milebench.metric_of(dataset, question_type) == expected
