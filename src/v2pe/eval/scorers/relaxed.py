"""Relaxed accuracy (ChartQA; pix2struct rule) and exact-match accuracies.

Relaxed correctness: when both strings parse as floats (a trailing '%' divides
by 100) and the *target* is non-zero, the prediction is correct if
|prediction - target| / |target| <= 5%; otherwise the strings must be equal
ignoring case. NaN never matches (every comparison with NaN is false).

Which string plays the *target* matters, because the tolerance is relative to
it. The V2PE/InternVL `evaluate_vqa.py` passes the model answer as the target
and the annotation as the prediction (so 9.5 vs gold 10 fails: |10-9.5|/9.5 >
5%), while the Long-VQA `owl_scorer` uses the gold answer as the target.
"""

from __future__ import annotations

MAX_RELATIVE_CHANGE = 0.05


def _to_float(text: str) -> float | None:
    """float(text), with a trailing '%' meaning /100; None when unparseable."""
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def relaxed_correctness(target: str, prediction: str, max_relative_change: float = MAX_RELATIVE_CHANGE) -> bool:
    """pix2struct relaxed correctness with the tolerance relative to `target`."""
    prediction_float = _to_float(prediction)
    target_float = _to_float(target)
    # A zero (or unparseable) target falls back to string equality, as upstream.
    if prediction_float is not None and target_float:
        return abs(prediction_float - target_float) / abs(target_float) <= max_relative_change
    return prediction.lower() == target.lower()


def relaxed_accuracy_vqa(prediction: str, answers: list[str]) -> float:
    """V2PE `evaluate_vqa.py::evaluate_relaxed_accuracy` for one item (0 or 1).

    The stripped model answer is the *target* and each annotation the
    prediction (the upstream argument order); best over annotations.
    """
    model_answer = prediction.strip()
    return float(max(relaxed_correctness(model_answer, gold) for gold in answers))


def relaxed_accuracy_owl(prediction: str, answers: list[str]) -> float:
    """Long-VQA `owl_scorer.relaxed_accuracy(target=gold, prediction)`, best over golds."""
    return float(max(relaxed_correctness(gold, prediction) for gold in answers))


def exact_match_vqa(prediction: str, answers: list[str]) -> float:
    """V2PE `evaluate_exact_match_accuracy` (AI2D, OCR-VQA): strip+lowercase equality."""
    pred = prediction.strip().lower()
    return float(any(pred == gold.strip().lower() for gold in answers))


def exact_accuracy_owl(prediction: str, answers: list[str]) -> float:
    """Long-VQA `owl_scorer.exact_match`: case-sensitive equality, best over golds."""
    return float(any(prediction == gold for gold in answers))
