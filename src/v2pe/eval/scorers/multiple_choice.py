"""Option matching of the general multiple-choice benchmarks (reference-spec 5.4).

* MMBench / ScienceQA `post_process(pred, options)` (V2PE eval/mmbench and
  eval/scienceqa): strip; a one-character answer is taken as is; an answer
  starting with an option letter gives that letter; otherwise the first option
  (in option order) whose text occurs in the answer. MMBench returns the
  answer unchanged when nothing matches; ScienceQA draws a random option in
  early InternVL versions, while the version V2PE forked returns the answer
  unchanged like MMBench (benchmarks.md section 6) - scored wrong either way
  here, since no random generator is given by the runners.
* SEED `calculation.py`: the first character of the prediction must equal the
  gold letter.
* AI2D (`evaluate_vqa.py`, metric "accuracy"): exact match after strip + lowercase.
* MMMU `parse_multi_choice_response` + `eval_multi_choice` (MMMU eval utils).

The random fallbacks (ScienceQA, MMMU) take an explicit `random.Random`; with
none given, an unmatched answer matches no option (scored wrong).
"""

from __future__ import annotations

import random

from v2pe.eval.scorers.relaxed import exact_match_vqa


def post_process_choice(prediction: str, options: dict[str, str]) -> str | None:
    """MMBench/ScienceQA letter extraction; None when no rule applies."""
    pred = prediction.strip()
    if len(pred) == 1:
        return pred
    if pred and pred[0] in options:
        return pred[0]
    for letter, text in options.items():
        if pred and text in pred:
            return letter
    return None


def mmbench_answer(prediction: str, options: dict[str, str]) -> str:
    """MMBench submission letter: the matched letter, else the stripped answer itself."""
    letter = post_process_choice(prediction, options)
    return prediction.strip() if letter is None else letter


def scienceqa_answer(prediction: str, options: dict[str, str], rng: random.Random | None = None) -> str | None:
    """ScienceQA letter; unmatched answers get a random option when `rng` is given."""
    letter = post_process_choice(prediction, options)
    if letter is None and rng is not None:
        return rng.choice(list(options))
    return letter


def choice_correct(prediction: str, gold_letter: str, options: dict[str, str], benchmark: str = "mmbench",
                   rng: random.Random | None = None) -> float:
    """1.0 when the extracted letter (MMBench or ScienceQA rule) equals the gold letter."""
    if benchmark == "scienceqa":
        letter = scienceqa_answer(prediction, options, rng)
    else:
        letter = mmbench_answer(prediction, options)
    return float(letter == gold_letter)


def seed_correct(prediction: str, gold_letter: str) -> float:
    """SEED `calculation.py`: first character of the prediction equals the gold letter."""
    return float(prediction[:1] == gold_letter)


def ai2d_correct(prediction: str, gold: str | list[str]) -> float:
    """AI2D as evaluated by `evaluate_vqa.py` (exact match, strip + lowercase)."""
    return exact_match_vqa(prediction, [gold] if isinstance(gold, str) else gold)


def mmmu_parse_choice(response: str, options: dict[str, str], rng: random.Random | None = None) -> str | None:
    """MMMU `parse_multi_choice_response`: which option letter a free-form response picks.

    Surrounding , . ! ? ; : ' are stripped and the response padded with spaces.
    Candidates are letters written "(A)"; else letters standing alone " A ";
    else, for responses of more than 5 words, options whose text occurs
    (case-insensitively). Several candidates: the one occurring last wins.
    None found: a random option when `rng` is given, else None.
    """
    for mark in (",", ".", "!", "?", ";", ":", "'"):
        response = response.strip(mark)
    padded = f" {response} "
    letters = list(options)
    candidates = [c for c in letters if f"({c})" in padded]
    position = lambda c: padded.rfind(f"({c})")  # noqa: E731
    if not candidates:
        candidates = [c for c in letters if f" {c} " in padded]
        position = lambda c: padded.rfind(f" {c} ")  # noqa: E731
    if not candidates and len(padded.split()) > 5:
        lowered = padded.lower()
        candidates = [c for c in letters if options[c].lower() in lowered]
        position = lambda c: lowered.rfind(options[c].lower())  # noqa: E731
    if not candidates:
        return rng.choice(letters) if rng is not None else None
    if len(candidates) == 1:
        return candidates[0]
    positions = [position(c) for c in candidates]
    return candidates[positions.index(max(positions))]  # first of equal maxima, like argmax


def mmmu_correct(response: str, gold: str | list[str], options: dict[str, str],
                 rng: random.Random | None = None) -> float:
    """MMMU `eval_multi_choice`: parsed letter equals the gold letter (or one of them)."""
    letter = mmmu_parse_choice(response, options, rng)
    golds = [gold] if isinstance(gold, str) else gold
    return float(letter is not None and letter in golds)
