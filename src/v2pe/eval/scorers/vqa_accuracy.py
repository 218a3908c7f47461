"""VQA soft accuracy (TextVQA / OK-VQA / VizWiz) with EvalAI answer normalization.

Rule (VQA v2 / TextVQA): normalize the prediction and the 10 human answers
with the EvalAI processor; for each of the 10 leave-one-out subsets of 9
answers the prediction earns min(1, #matches / 3); the score is the mean over
the 10 subsets. So 3 or more matching humans give 1.0, 2 give 0.6, 1 gives 0.3.
"""

from __future__ import annotations

from v2pe.eval.scorers.base import ScoringError
from v2pe.eval.scorers.normalize import evalai_normalize


def _leave_one_out_accuracy(prediction: str, answers: list[str]) -> float:
    """Mean over leave-one-out subsets of min(1, matches/3)."""
    total = 0.0
    for left_out in range(len(answers)):
        matches = sum(1 for i, gold in enumerate(answers) if i != left_out and gold == prediction)
        total += min(1.0, matches / 3)
    return total / len(answers)


def textvqa_accuracy(prediction: str, answers: list[str]) -> float:
    """`TextVQAAccuracyEvaluator` of V2PE eval/vqa/textvqa_eval.py: exactly 10 answers."""
    if len(answers) != 10:
        raise ScoringError(f"TextVQA accuracy needs exactly 10 gold answers, got {len(answers)}")
    golds = [evalai_normalize(gold) for gold in answers]
    return _leave_one_out_accuracy(evalai_normalize(prediction), golds)


def longvqa_textvqa_accuracy(prediction: str, answers: list[str]) -> float:
    """Long-VQA `TextVQAScorer`: 10 answers as TextVQA, a single answer as exact match.

    Both sides go through the EvalAI processor. Long-VQA items carry either one
    gold answer or the 10 human answers; other counts use the leave-one-out
    rule over the answers given (an extension: upstream only sees 1 or 10).
    """
    pred = evalai_normalize(prediction)
    golds = [evalai_normalize(gold) for gold in answers]
    if len(golds) == 1:
        return float(pred == golds[0])
    return _leave_one_out_accuracy(pred, golds)
