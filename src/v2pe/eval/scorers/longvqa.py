"""Long-VQA scoring (V2PE eval/longvqa/calculate_scores.py): metric per task, x100.

`rectify(task, .)` is applied to the prediction and every gold answer, then
the task's metric (reference-spec 5.3):

| metric | tasks | rule |
|---|---|---|
| RACC | chartqa clevr dvqa gqa ocrvqa | owl relaxed accuracy (5%, target = gold) |
| EACC | svqa tabfact | case-sensitive exact match |
| F1 | deepform kleistercharity | DUE corpus F1 (DueEvaluator normalization) |
| ANLS | docvqa infovqa | owl ANLS (lowercase, distance < 0.5) |
| TEXTVQA | okvqa textvqa vizwiz | VQA soft accuracy, 1 or 10 answers |
| BLEU4 | textcaps visualmrc | COCO corpus BLEU-4 |
| WTQ | wikitablequestions | DUE WTQ denotation accuracy |

Per-item metrics are averaged over items; F1 and BLEU-4 are corpus-level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from v2pe.eval.scorers.anls import anls_owl
from v2pe.eval.scorers.base import ScoringError, as_answer_list, require_text
from v2pe.eval.scorers.due import due_f1, due_wtq
from v2pe.eval.scorers.longvqa_rectify import rectify
from v2pe.eval.scorers.relaxed import exact_accuracy_owl, relaxed_accuracy_owl
from v2pe.eval.scorers.text_metrics import corpus_bleu
from v2pe.eval.scorers.vqa_accuracy import longvqa_textvqa_accuracy

LONGVQA_TASK_METRICS = {
    **dict.fromkeys(["chartqa", "clevr", "dvqa", "gqa", "ocrvqa"], "RACC"),
    **dict.fromkeys(["svqa", "tabfact"], "EACC"),
    **dict.fromkeys(["deepform", "kleistercharity"], "F1"),
    **dict.fromkeys(["docvqa", "infovqa"], "ANLS"),
    **dict.fromkeys(["okvqa", "textvqa", "vizwiz"], "TEXTVQA"),
    **dict.fromkeys(["textcaps", "visualmrc"], "BLEU4"),
    "wikitablequestions": "WTQ",
}

# Per-item metrics on rectified text, each returning 0..1 except WTQ (0..100).
_ITEM_METRICS: dict[str, Callable[[str, list[str]], float]] = {
    "RACC": relaxed_accuracy_owl,
    "EACC": exact_accuracy_owl,
    "ANLS": anls_owl,
    "TEXTVQA": longvqa_textvqa_accuracy,
    "WTQ": lambda prediction, answers: due_wtq(prediction, answers) / 100.0,
}


def longvqa_metric(task: str) -> str:
    """Metric name of a Long-VQA task (KeyError-free: raises ScoringError)."""
    try:
        return LONGVQA_TASK_METRICS[task]
    except KeyError:
        raise ScoringError(f"unknown Long-VQA task {task!r}; known: {sorted(LONGVQA_TASK_METRICS)}") from None


def rectified_pair(task: str, prediction: object, answer: object) -> tuple[str, list[str]]:
    """Rectified prediction and gold answers of one item."""
    pred = rectify(task, require_text(prediction, "prediction"))
    return pred, [rectify(task, gold) for gold in as_answer_list(answer)]


def longvqa_item_score(task: str, prediction: object, answer: object, metric: str | None = None) -> float:
    """Score x100 of one item as `calculate_scores` would give a 1-item file.

    `metric` overrides the task's routed metric (e.g. to score svqa with EACC
    explicitly); BLEU4 and F1 are then computed on a 1-item corpus.
    """
    metric = metric or longvqa_metric(task)
    pred, golds = rectified_pair(task, prediction, answer)
    if metric == "BLEU4":
        return 100.0 * corpus_bleu([pred], [golds])
    if metric == "F1":
        return due_f1([{"id": "0", "pr": pred, "an": golds}])
    return 100.0 * _ITEM_METRICS[metric](pred, golds)


def score_longvqa_task(task: str, items: Iterable[dict]) -> float:
    """Task score x100 over result lines {'id', 'pr', 'an'} (`result_{task}.jsonl`)."""
    metric = longvqa_metric(task)
    rectified = [(str(item.get("id", i)), *rectified_pair(task, item["pr"], item["an"]))
                 for i, item in enumerate(items)]
    if not rectified:
        raise ScoringError(f"no items to score for Long-VQA task {task!r}")
    if metric == "BLEU4":
        return 100.0 * corpus_bleu([p for _, p, _ in rectified], [g for _, _, g in rectified])
    if metric == "F1":
        return due_f1([{"id": key, "pr": p, "an": g} for key, p, g in rectified])
    scores = [_ITEM_METRICS[metric](p, g) for _, p, g in rectified]
    return 100.0 * sum(scores) / len(scores)
