"""MileBench per-sample scorers (`evaluate.py::Eval`).

Every string first goes through `milebench_process` (newlines/tabs to spaces,
VQA punctuation, quotes stripped, lowercased).

* multi-choice: the processed prediction is matched to an option letter by
  `match_choice` (below) and must equal the gold option's letter;
* open-ended: ROUGE-L F of the `rouge` package; an empty prediction scores 0;
* TextNeedleInAHaystack / ImageNeedleInAHaystack: 1 when the gold answer is one
  of the whitespace-separated tokens of the prediction;
* MMCoQA: 1 when the gold answer is a substring of the prediction.

Multi-choice variants: ``"official"`` (github MileBench/MileBench at the fixture
commit 9583e1fe) and ``"v2pe"`` (V2PE eval/milebench/evaluate.py) apply the same
rule: `Eval.char(i)` letters options A..Z, then 'A'+chr(65+i-26) (AA..AZ), then
'B'+chr(65+i-52) (BA.., 'B[' past BZ), and step 3 of `match_choice` accepts a
1- or 2-character letter answer. (An older MileBench evaluate.py used
``chr(65 + i)``, i.e. '[', '\\', ... past 'Z'; the official scores in
shared/fixtures/scorers -- 30 options, prediction "opt27" extracted as 'C' by
both sources -- are only reproduced by the char() lettering.) Any exception
inside `match_choice` (an invalid pattern, or an empty match when an option
text is empty) returns the processed prediction, as the official `except
Exception`.
"""

from __future__ import annotations

import re

from v2pe.eval.scorers.base import ScoringError, require_text
from v2pe.eval.scorers.normalize import milebench_process
from v2pe.eval.scorers.text_metrics import rouge_l_f

VARIANTS = ("official", "v2pe")
# match_choice escapes only these regex characters (not '-', '#', spaces...).
_ESCAPED_REGEX_CHARACTERS = ("\\", ".", "^", "$", "*", "+", "?", "{", "}", "[", "]", "|", "(", ")")


def option_letter(index: int, variant: str = "official") -> str:
    """Letter of the option at `index` (MileBench `Eval.char`): A..Z, AA..AZ, then 'B'+chr(65+i-52)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown MileBench variant {variant!r}; expected one of {VARIANTS}")
    if index < 26:
        return chr(65 + index)
    if index < 52:
        return "A" + chr(65 + index - 26)
    return "B" + chr(65 + index - 52)


def _option_pattern_text(option_text: str) -> str:
    """Processed option text with the partial regex escaping of the official code."""
    text = milebench_process(option_text)
    for character in _ESCAPED_REGEX_CHARACTERS:
        text = text.replace(character, "\\" + character)
    return text


def match_choice(text: str, options: dict[str, str], variant: str = "official") -> str:
    """Option letter named by a processed prediction (MileBench `match_choice`).

    1. the first "<letter> <option text>" found (regex alternation in option order);
    2. else the first option text found, spaces ignored;
    3. else the prediction itself when it is an option letter of 1 or 2 characters;
    4. else the concatenation of the prediction's characters that are letters.
    An empty prediction gives 'C'; an invalid regex gives the prediction back.
    """
    if text == "":
        return "C"
    try:
        pattern = "|".join(_option_pattern_text(f"{k} {v}") for k, v in options.items())
        found = re.search(f"({pattern})", text, re.S)
        if found:
            return found.group(0)[0].upper()
        compact = {k: _option_pattern_text(v).replace(" ", "") for k, v in options.items()}
        found = re.search(f"({'|'.join(compact.values())})", text.replace(" ", ""), re.S)
        if found:
            for k, v in compact.items():
                if found[0].strip() == v:
                    return k.upper()
        if len(text) in (1, 2) and text.upper() in options:
            return text.upper()
    except (re.error, IndexError):  # official: `except Exception` -> the processed prediction
        return text
    return "".join(c.upper() for c in text if c.upper() in options)


def milebench_multichoice(prediction: str, answer: str, choice_list: list[str],
                          variant: str = "official") -> tuple[float, str]:
    """(score, extracted letter) of one multi-choice sample (`judge_multi_choice`)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown MileBench variant {variant!r}; expected one of {VARIANTS}")
    if not isinstance(choice_list, list) or not all(isinstance(c, str) for c in choice_list):
        raise ScoringError(f"choice_list must be a list of strings, got {choice_list!r}")
    choices = [milebench_process(c) for c in choice_list]
    gold = milebench_process(require_text(answer, "MileBench answer"))
    if gold not in choices:
        raise ScoringError(f"gold answer {answer!r} is not one of the choices {choice_list!r}")
    options = {option_letter(i, variant): c for i, c in enumerate(choices)}
    extracted = match_choice(milebench_process(require_text(prediction, "prediction")), options, variant)
    return float(extracted == option_letter(choices.index(gold), variant)), extracted


def milebench_rouge_l(prediction: str, answer: str) -> float:
    """ROUGE-L F of processed prediction vs processed gold; empty prediction -> 0."""
    gold = milebench_process(require_text(answer, "MileBench answer"))
    if gold == "":
        raise ScoringError("MileBench open-ended gold answer is empty after processing")
    pred = milebench_process(require_text(prediction, "prediction"))
    if pred == "":
        return 0.0
    try:
        return rouge_l_f(pred, gold)
    except ValueError as error:  # the rouge package rejects texts without words
        raise ScoringError(f"ROUGE-L cannot score {pred!r}: {error}") from error


def milebench_needle(prediction: str, answer: str) -> float:
    """NeedleInAHaystack rule: gold is one whitespace token of the prediction."""
    gold = milebench_process(require_text(answer, "MileBench answer"))
    return float(gold in milebench_process(require_text(prediction, "prediction")).split())


def milebench_mmcoqa(prediction: str, answer: str) -> float:
    """MMCoQA rule: gold is a substring of the prediction."""
    gold = milebench_process(require_text(answer, "MileBench answer"))
    return float(gold in milebench_process(require_text(prediction, "prediction")))
