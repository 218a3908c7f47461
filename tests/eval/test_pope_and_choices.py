"""POPE metrics and multiple-choice option matching (AI2D, ScienceQA, MMBench, SEED, MMMU)."""

from __future__ import annotations

import random

import pytest

from v2pe.eval.scorers.multiple_choice import (
    ai2d_correct,
    choice_correct,
    mmbench_answer,
    mmmu_correct,
    mmmu_parse_choice,
    scienceqa_answer,
    seed_correct,
)
from v2pe.eval.scorers.pope import pope_metrics, pope_says_yes


@pytest.mark.parametrize(("text", "yes"), [
    ("Yes, there is.", True),
    ("No.", False),
    ("There is not a dog. No doubt.", False),
    ("Yes. No.", True),  # only the first sentence counts
    ("Nope", True),  # only the exact words No / not / no say no
    ("no, it is", False),  # commas are removed before splitting
])
def test_pope_parsing(text, yes):
    assert pope_says_yes(text) is yes


def test_pope_metrics_hand_worked():
    predictions = ["Yes, there is.", "No.", "There is not a dog.", "yes", "Nope", "no, it is not"]
    labels = ["yes", "no", "yes", "no", "no", "no"]
    # parsed: Y N N Y Y N -> TP 1, FP 2, TN 2, FN 1
    metrics = pope_metrics(predictions, labels)
    assert (metrics["tp"], metrics["fp"], metrics["tn"], metrics["fn"]) == (1, 2, 2, 1)
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert metrics["precision"] == pytest.approx(1 / 3)
    assert metrics["recall"] == pytest.approx(1 / 2)
    assert metrics["f1"] == pytest.approx(0.4)
    assert metrics["yes_ratio"] == pytest.approx(0.5)


def test_pope_metrics_without_positive_predictions():
    metrics = pope_metrics(["no"], ["yes"])
    assert metrics["precision"] == 0.0 and metrics["f1"] == 0.0


OPTIONS = {"A": "cat", "B": "dog", "C": "bird"}


@pytest.mark.parametrize(("prediction", "letter"), [
    ("B", "B"),
    (" C. bird", "C"),  # first character is an option letter
    ("It is a dog", "B"),  # option text contained
    ("A dog", "A"),  # the letter rule comes first
    ("fish", "fish"),  # no match: MMBench submits the answer itself
])
def test_mmbench_post_process(prediction, letter):
    assert mmbench_answer(prediction, OPTIONS) == letter


def test_scienceqa_random_fallback_only_with_a_generator():
    assert scienceqa_answer("fish", OPTIONS) is None
    expected = random.Random(7).choice(["A", "B", "C"])
    assert scienceqa_answer("fish", OPTIONS, random.Random(7)) == expected
    assert choice_correct("It is a dog", "B", OPTIONS, "scienceqa") == 1.0


@pytest.mark.parametrize(("prediction", "gold", "correct"), [
    ("B", "B", 1.0), ("B. dog", "B", 1.0), ("", "B", 0.0), ("C", "B", 0.0),
])
def test_seed_first_character(prediction, gold, correct):
    assert seed_correct(prediction, gold) == correct


def test_ai2d_exact_match():
    assert ai2d_correct(" b ", "B") == 1.0
    assert ai2d_correct("B.", "B") == 0.0


MMMU_OPTIONS = {"A": "red", "B": "green", "C": "blue", "D": "yellow"}


@pytest.mark.parametrize(("response", "letter"), [
    ("The answer is (B).", "B"),
    ("A", "A"),
    ("I think A or C", "C"),  # several letters: the last one
    ("(A) red or (B) green", "B"),
    ("The color of the sky is blue today", "C"),  # > 5 words: option text
    ("blue", None),  # short and no letter: nothing (upstream picks at random)
])
def test_mmmu_parse_choice(response, letter):
    assert mmmu_parse_choice(response, MMMU_OPTIONS) == letter


def test_mmmu_correct_accepts_a_list_of_golds():
    assert mmmu_correct("(C)", ["B", "C"], MMMU_OPTIONS) == 1.0
    assert mmmu_correct("blue", "C", MMMU_OPTIONS) == 0.0
