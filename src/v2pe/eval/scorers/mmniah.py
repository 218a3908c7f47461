"""MM-NIAH per-sample correctness `is_correct(answer, response)`.

The answer's JSON type picks the rule (the response first loses surrounding
periods, ``response.strip('.')``):

* **int** (multiple choice; option index): an all-digit response is compared
  as an integer. Otherwise it is lowercased, "the answer is" and '*' are
  removed, text after the first '.' is dropped (commas removed), and it is
  stripped; "none" scores 0; a response containing "the camera is moving
  left/right" means option a/b; the rest must be one letter whose alphabet
  index equals the answer.
* **list** (counting): "json" and backticks are removed and the rest parsed as
  JSON; a dict is flattened to the concatenation of its (list) values; the
  score is the number of positions where prediction and answer agree (Python
  ``==``, so ``true == 1`` and ``1.0 == 1``) divided by the answer length
  (partial credit; extra predicted items are ignored). Unparseable -> 0.
* **str** (open answer): VQA-normalized whole-word match of the answer inside
  the response (`VQAEval.evaluate`).

Variants: ``"official"`` is github OpenGVLab/MM-NIAH `calculate_scores.py`
(the benchmark's definition, default). ``"v2pe"`` is the copy in V2PE
`eval/mm_niah/calculate_scores.py` (used for the paper's numbers), which also
maps a bare "left"/"right" to option a/b, and for string answers first
accepts an exact match after lowercasing and removing "the answer is"/'*'
(and text after a first '.').
"""

from __future__ import annotations

import json
from typing import Any

from v2pe.eval.scorers.base import ScoringError, require_text
from v2pe.eval.scorers.normalize import contains_whole_words, vqa_eval_normalize

VARIANTS = ("official", "v2pe")


def _simplify_response(text: str) -> str:
    """Lowercase, drop 'the answer is' and '*', keep text before a first '.', strip."""
    text = text.lower().replace("the answer is", "").replace("*", "")
    if "." in text:
        text = text.split(".")[0].replace(",", "").strip()
    return text


def _option_index_correct(answer: int, response: str, variant: str) -> float:
    if response.isdigit():
        try:
            return float(int(response) == answer)
        except ValueError:  # non-ASCII digits such as superscripts
            return 0.0
    text = _simplify_response(response).strip()
    if text == "none":
        return 0.0
    if "the camera is moving left" in text or (variant == "v2pe" and text == "left"):
        text = "a"
    elif "the camera is moving right" in text or (variant == "v2pe" and text == "right"):
        text = "b"
    if len(text) != 1:
        return 0.0
    return float(ord(text) - ord("a") == answer)


def _parse_counting_response(response: str) -> list | tuple | None:
    """JSON list from the response, or None when it is not one."""
    try:
        parsed = json.loads(response.replace("json", "").replace("```", "").strip())
        if isinstance(parsed, dict):
            parsed = sum(list(parsed.values()), start=[])
    except (ValueError, TypeError, RecursionError):  # the official catches everything
        return None
    return parsed if isinstance(parsed, (list, tuple)) else None


def _counting_score(answer: list, response: str) -> float:
    if not answer:
        raise ScoringError("a counting answer must be a non-empty list")
    predicted = _parse_counting_response(response)
    if predicted is None:
        return 0.0
    # zip stops at the shorter list: extra predicted items are ignored.
    return sum(p == a for p, a in zip(predicted, answer, strict=False)) / len(answer)


def vqa_eval_match(response: str, answer: str) -> float:
    """`VQAEval.evaluate`: 1 if the normalized answer is a whole-word part of the response."""
    return float(contains_whole_words(vqa_eval_normalize(response), vqa_eval_normalize(answer)))


def _open_answer_score(answer: str, response: str, variant: str) -> float:
    if variant == "v2pe":
        simplified_answer = answer.lower().replace("the answer is", "").replace("*", "")
        if "." in simplified_answer:
            simplified_answer = simplified_answer.split(".")[0].replace(",", "").strip()
        if _simplify_response(response).strip() == simplified_answer:
            return 1.0
    return vqa_eval_match(response, answer)


def mmniah_is_correct(answer: Any, response: Any, variant: str = "official") -> float:
    """Score of one MM-NIAH response (0..1); see the module docstring for the rules."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown MM-NIAH variant {variant!r}; expected one of {VARIANTS}")
    response = require_text(response, "MM-NIAH response").strip(".")
    if isinstance(answer, int):  # bool too, as in the official isinstance check
        return _option_index_correct(answer, response, variant)
    if isinstance(answer, list):
        return _counting_score(answer, response)
    return _open_answer_score(require_text(answer, "MM-NIAH answer"), response, variant)


def mmniah_teacher_forced_correct(answer: Any, response: Any, predicted_ids: Any, answer_ids: Any) -> float:
    """The verdict of the official MM-NIAH long evaluation (`eval_mm_niah_long.py`), which scores
    one teacher-forced pass: `predicted_ids` are the argmax tokens at the positions of
    `answer_ids` (the gold answer's tokens and its end-of-turn token). An int answer (option
    index) is right when the decoded prediction but its last token, stripped (`response`), is
    the option letter `chr(ord('A') + answer)`; any other answer when every predicted token but
    the last equals the gold one (`(pred[:, :-1] == answer_ids[:, :-1]).all()`)."""
    if isinstance(answer, int) and not isinstance(answer, bool):
        return float(require_text(response, "MM-NIAH response").strip() == chr(ord("A") + answer))
    for name, ids in (("predicted_ids", predicted_ids), ("answer_ids", answer_ids)):
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise ScoringError(f"mmniah_teacher_forced needs extra.{name}: a list of token ids, got {ids!r}")
    if len(predicted_ids) != len(answer_ids):
        raise ScoringError(f"mmniah_teacher_forced: {len(predicted_ids)} predicted ids for {len(answer_ids)} answer ids")
    return float(predicted_ids[:-1] == answer_ids[:-1])
