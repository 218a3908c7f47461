"""Official rules for MileBench >26 options and DUE F1 with list values.

Expected values are worked by hand from the official code (MileBench
`Eval.char` / `match_choice` / `judge_multi_choice`; V2PE due_evaluator +
due_scorer `FScorer` / `Annotation.__eq__`), not from the code under test.
"""

from __future__ import annotations

import pytest

from v2pe.eval.scorers import get_scorer
from v2pe.eval.scorers.due import due_f1
from v2pe.eval.scorers.milebench import milebench_multichoice, option_letter

CHOICES = [f"opt{i}" for i in range(30)]


@pytest.mark.parametrize("variant", ["official", "v2pe"])
def test_char_letters_past_z(variant):
    # char(i): i<26 chr(i+65); i<52 'A'+chr(i+65-26); else 'B'+chr(i+65-52)
    assert [option_letter(i, variant) for i in (0, 25, 26, 27, 51, 52, 77, 78)] == [
        "A", "Z", "AA", "AB", "AZ", "BA", "BZ", "B["]


@pytest.mark.parametrize("variant", ["official", "v2pe"])
def test_opt27_is_read_as_opt2(variant):
    # step 1 ("aa opt26"...) finds nothing in "opt27"; step 2 alternation "opt0|opt1|opt2|..."
    # matches "opt2" first -> 'C'; gold opt27 is 'AB' -> 0 (fixture: extracted 'C' for both sources)
    assert milebench_multichoice("opt27", "opt27", CHOICES, variant) == (0.0, "C")


@pytest.mark.parametrize("variant", ["official", "v2pe"])
def test_two_letter_answer(variant):
    # step 3: len(text) in [1, 2] and 'AB' in option keys -> 'AB' == char(27)
    assert milebench_multichoice("AB", "opt27", CHOICES, variant) == (1.0, "AB")
    assert milebench_multichoice("ab", "opt28", CHOICES, variant) == (0.0, "AB")  # opt28 is 'AC'


def test_letter_plus_text_past_z_returns_first_character():
    # step 1: "ab opt27" matches the alternative "ab opt27"; group(0)[0].upper() == 'A' != 'AB'
    assert milebench_multichoice("AB opt27", "opt27", CHOICES) == (0.0, "A")


def test_registry_official_source_uses_char_letters():
    scorer = get_scorer("milebench_multichoice", source="milebench:evaluate.py")
    assert scorer("AB", "opt27", {"choice_list": CHOICES}) == 1.0


def test_due_list_prediction_matches_any_gold():
    # Annotation.__eq__: same key and some pr value in the an list
    assert due_f1([{"id": "k", "pr": ["x", "y"], "an": ["y"]}]) == pytest.approx(100.0)
    assert due_f1([{"id": "k", "pr": ["x"], "an": ["z", "X."]}]) == pytest.approx(100.0)


def test_due_one_annotation_per_item():
    # k1 matches (any overlap), k2 does not: P = R = 1/2 -> F1 50
    items = [{"id": "k1", "pr": ["a", "b"], "an": ["b", "c"]}, {"id": "k2", "pr": ["d", "e"], "an": ["f"]}]
    assert due_f1(items) == pytest.approx(50.0)


def test_due_empty_prediction_list_still_counts():
    # [] is one prediction annotation that equals nothing: P = 1/2, R = 1/2 -> 50
    items = [{"id": "k1", "pr": [], "an": ["a"]}, {"id": "k2", "pr": "b", "an": "b"}]
    assert due_f1(items) == pytest.approx(50.0)


def test_due_ids_are_compared_as_given():
    # key 1 (int) != "1" (str): each prediction can only match its own item
    assert due_f1([{"id": 1, "pr": "a", "an": "a"}, {"id": "1", "pr": "b", "an": "b"}]) == pytest.approx(100.0)
    assert due_f1([{"id": 1, "pr": "a", "an": "b"}, {"id": "1", "pr": "b", "an": "a"}]) == 0.0
