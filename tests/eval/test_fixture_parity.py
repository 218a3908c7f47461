"""Every case of shared/fixtures/scorers/items.jsonl (scores computed by the official code).

Each line names a scorer, the source it was computed with (which picks the
variant) and the official score; our scorer must agree to 1e-6.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import shared_dir
from v2pe.eval.scorers import get_scorer
from v2pe.eval.scorers.longvqa_rectify import rectify

pytestmark = pytest.mark.filterwarnings("ignore:NLTK 'words' corpus not found")

FIXTURE = shared_dir() / "fixtures" / "scorers" / "items.jsonl"


def _cases() -> list:
    if not FIXTURE.is_file():
        reason = f"scorer fixture {FIXTURE} is absent (set V2PE_SHARED to the shared/ folder)"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="fixture-absent")]
    cases = []
    for number, line in enumerate(FIXTURE.read_text(encoding="utf-8").splitlines(), start=1):
        case = json.loads(line)  # Long-VQA cases need WordNet: packaged, so always available
        source = case["source"].split(":", 1)[0]
        cases.append(pytest.param(case, id=f"L{number}-{case['scorer']}-{source}"))
    return cases


@pytest.mark.parametrize("case", _cases())
def test_scorer_matches_official_score(case):
    scorer = get_scorer(case["scorer"], source=case["source"])
    score = scorer(case["prediction"], case["answer"], case["extra"])
    assert score == pytest.approx(case["score"], abs=1e-6)


def _rectified_cases() -> list:
    cases = [c for c in _cases() if c.values[0] is not None and "rectified_prediction" in c.values[0]["extra"]]
    return cases or [pytest.param(None, marks=pytest.mark.skip(reason="scorer fixture absent"), id="absent")]


@pytest.mark.parametrize("case", _rectified_cases())
def test_rectify_matches_official_preprocessing(case):
    extra = case["extra"]
    expected_prediction = extra["rectified_prediction"]
    if isinstance(expected_prediction, list):  # the DUE path wraps values in lists
        expected_prediction = expected_prediction[0]
    assert rectify(extra["task"], case["prediction"]) == expected_prediction
    if "rectified_answer" in extra:
        answers = case["answer"] if isinstance(case["answer"], list) else [case["answer"]]
        assert [rectify(extra["task"], a) for a in answers] == extra["rectified_answer"]
