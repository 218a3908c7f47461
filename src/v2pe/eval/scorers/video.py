"""Video benchmark scorers: MVBench `check_ans` (InternVL `eval/mvbench/evaluate_mvbench.py`) and
Video-MME `extract_characters_regex` (Video-MME `evaluation/eval_your_results.py`), as written."""

from __future__ import annotations

import re

from v2pe.eval.scorers.base import ScoringError, require_text

# Video-MME's list, with its two missing commas: "The best option is" + "The correct option is"
# and "Best answer:" + "Best option:" are one string each, so those phrases are never removed alone.
VIDEOMME_ANSWER_PREFIXES = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    ("The best option is" "The correct option is"),
    ("Best answer:" "Best option:"),
)


def mvbench_check_ans(pred: str, gt: str) -> bool:
    """The official check_ans: drop 'Answer: ', lowercase, split on single spaces; correct iff the
    first word of the prediction without dots is contained in the gold option '(x)', or the gold
    option in that first word. So an empty prediction counts as right, 'A' and '(A) text' match
    '(a)', and a first word like '(' matches every option."""
    pred = require_text(pred, "prediction").replace("Answer: ", "")
    gt = require_text(gt, "answer")
    pred_option = pred.lower().split(" ")[0]
    gt_list = gt.lower().split(" ")
    gt_option, gt_content = gt_list[0], " ".join(gt_list[1:])
    if not gt_content:  # the official `gt_content[-1]` raises IndexError here
        raise ScoringError(f"the gold answer {gt!r} has no option text after the letter (the official check_ans fails on it)")
    return pred_option.replace(".", "") in gt_option or gt_option in pred_option


def videomme_extract(prediction: str) -> str:
    """Video-MME's extract_characters_regex: strip, remove the answer prefixes, then the first
    A-D anywhere (so 'Answer: B' gives 'A'); '' when none, or when more than 10 words hold none."""
    s = require_text(prediction, "prediction").strip()
    for prefix in VIDEOMME_ANSWER_PREFIXES:
        s = s.replace(prefix, "")
    if len(s.split()) > 10 and not re.search("[ABCD]", s):
        return ""
    matches = re.search(r"[ABCD]", s)
    return "" if matches is None else matches[0]


def videomme_correct(prediction: str, answer: str) -> bool:
    """The extracted letter equals the gold letter (an empty extraction is 'not answered' in the
    official accuracy; it scores 0 here)."""
    return videomme_extract(prediction) == require_text(answer, "answer")
