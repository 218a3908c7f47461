"""MMMU answer checking (MMMU `eval/eval_utils.py` at 51ce7f3, as InternVL `eval/mmmu` ships it).

Two official paths score an MMMU validation answer:

* InternVL `evaluate_mmmu.py` + `main_eval_only.py` (what V2PE reports, reference-spec 5.4): a
  multiple-choice answer goes through InternVL's `post_process` (the option-letter rule shared
  with MMBench/ScienceQA: one character kept as is, else a leading option letter, else the first
  option whose text occurs in the answer, else the answer unchanged) and is then compared
  exactly with the gold letter (`eval_multi_choice`); MMMU's own `parse_multi_choice_response`
  is not used. An open answer is kept raw and scored by `parse_open_response` + `eval_open`.
* MMMU's own pipeline: `parse_multi_choice_response` (`multiple_choice.mmmu_parse_choice`,
  scorer `mc_mmmu`) for multiple choice; the same open rule.

`parse_open_response`: lower-case the stripped response (also stripping '.'), split into
sentences on `. ` before a capital letter or on a newline (the split runs after lower-casing,
so in fact only newlines split: an official quirk kept here), take from each sentence the shortest tail after
an indicator ('could be ', 'so ', 'is ', 'thus ', 'therefore ', 'final ', 'answer ', 'result ',
and '=' in the last sentence), keep the whole response when none is found; add every number
found in those tails; normalise each candidate (numbers -> float rounded to 2 digits, commas
removed; strings lower-cased, a 1-character string becomes [' c', 'c ']); deduplicate.
`eval_open`: a string candidate is right when a normalised gold string occurs in it; a number
candidate when it equals a normalised gold number. A gold list is the union of its answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from v2pe.eval.scorers.multiple_choice import mmbench_answer

_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")
_TRIVIAL = (":", ",", ".", "!", "?", ";", ":", "'")


def mmmu_extract_numbers(text: str) -> list[str]:
    """MMMU `extract_numbers`: numbers with thousands commas, scientific, then simple numbers."""
    with_commas = re.findall(r"-?\b\d{1,3}(?:,\d{3})+\b", text)
    scientific = re.findall(r"-?\d+(?:\.\d+)?[eE][+-]?\d+", text)
    simple = re.findall(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])", text)
    return with_commas + scientific + simple


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
        return True
    except ValueError:
        return False


def mmmu_normalize_str(text: str) -> list:
    """MMMU `normalize_str`: [float rounded to 2 digits] or [lower-cased string] ([' c', 'c '] for one character)."""
    text = text.strip()
    if _is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    if len(text) == 1:
        return [" " + text, text + " "]
    return [text]


def _key_subresponses(response: str) -> list[str]:
    response = response.strip().strip(".").lower()
    sentences = re.split(r"\.\s(?=[A-Z])|\n", response)
    indicators = list(_INDICATORS)
    keys = []
    for index, sentence in enumerate(sentences):
        if index == len(sentences) - 1:
            indicators.append("=")
        shortest = None
        for indicator in indicators:
            if indicator in sentence:
                tail = sentence.split(indicator)[-1].strip()
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in _TRIVIAL:
            keys.append(shortest)
    return keys or [response]


def mmmu_parse_open_response(response: str) -> list:
    """MMMU `parse_open_response`: the normalised candidate answers of a free-form response."""
    keys = _key_subresponses(response)
    candidates = list(keys)
    for key in keys:
        candidates.extend(mmmu_extract_numbers(key))
    normalised = []
    for candidate in candidates:
        normalised.extend(mmmu_normalize_str(candidate))
    return list(dict.fromkeys(normalised))  # the official set() has no order; membership is all that counts


def mmmu_eval_open(gold: str | list[str], parsed: list) -> bool:
    """MMMU `eval_open`."""
    golds = []
    for answer in gold if isinstance(gold, list) else [gold]:
        golds.extend(mmmu_normalize_str(answer))
    for prediction in parsed:
        if isinstance(prediction, str):
            if any(isinstance(g, str) and g in prediction for g in golds):
                return True
        elif prediction in golds:
            return True
    return False


def mmmu_open_correct(prediction: str, gold: str | list[str], options: Mapping[str, str] | None = None) -> float:
    """1.0 when `parse_open_response` + `eval_open` accept the prediction. With options (an
    open question that has some), InternVL's `post_process` runs first, as the official code."""
    if options:
        prediction = mmbench_answer(prediction, dict(options))
    return float(mmmu_eval_open(gold, mmmu_parse_open_response(prediction)))


def mmmu_choice_correct_post_process(prediction: str, gold: str | list[str], options: Mapping[str, str]) -> float:
    """InternVL `post_process` letter, then MMMU `eval_multi_choice` (exact, any of a gold list)."""
    letter = mmbench_answer(prediction, dict(options))
    golds = gold if isinstance(gold, list) else [gold]
    return float(letter in golds)
