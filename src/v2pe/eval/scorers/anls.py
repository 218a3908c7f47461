"""ANLS (Average Normalized Levenshtein Similarity), in the four official flavours.

All four score one prediction against several gold answers and keep the best.
They differ in normalization, in the length used to normalize the edit
distance, and in whether a similarity of exactly the threshold survives:

| function | normalization | length | similarity kept when |
|---|---|---|---|
| `anls_infographicsvqa` | strip, lowercase, collapse whitespace | len(raw.upper()) | >= threshold |
| `anls_stvqa` | lowercase, strip | normalized | >= 0.5 |
| `anls_owl` | lowercase | normalized | distance < 0.5 |
| `anls_due` | lowercase, strip, strip trailing '.' | normalized | > 0.5 |

Edit distances come from the `editdistance` package (plain Levenshtein over
code points), the same function the official code calls.
"""

from __future__ import annotations


def _edit_distance(a, b) -> int:
    import editdistance  # the eval extra; imported here so that scorers load without it

    return editdistance.eval(a, b)


def _similarity(a: str, b: str, length: int) -> float:
    """1 - levenshtein(a, b) / length; two empty strings are identical (1.0)."""
    if length == 0:
        return 1.0
    return 1.0 - _edit_distance(a, b) / length


def anls_infographicsvqa(prediction: str, answers: list[str], threshold: float = 0.5) -> float:
    """Per-question ANLS of the InfographicVQA/DocVQA RRC script (`evaluate_method`).

    Both sides are stripped, lowercased and whitespace-collapsed before the edit
    distance, but the distance is divided by the length of the *raw* strings
    (after `.upper()`), as the official script does; a result below `threshold`
    becomes 0 (a result equal to it is kept).
    """
    det = " ".join(prediction.strip().lower().split())
    distances = []
    for answer in answers:
        gold = " ".join(answer.strip().lower().split())
        length = max(len(answer.upper()), len(prediction.upper()))
        distances.append(0.0 if length == 0 else _edit_distance(gold, det) / length)
    score = 1.0 - min(distances)
    return score if score >= threshold else 0.0


def anls_stvqa(prediction: str, answers: list[str]) -> float:
    """ST-VQA ANLS (`STVQAANLSEvaluator`): lowercase+strip, keep similarity >= 0.5.

    No whitespace collapsing: "coca  cola" vs "coca cola" scores 0.9.
    """
    def one(gold: str) -> float:
        a, b = prediction.lower().strip(), gold.lower().strip()
        similarity = _similarity(a, b, max(len(a), len(b)))
        return similarity if similarity >= 0.5 else 0.0

    return max(one(gold) for gold in answers)


def anls_owl(prediction: str, answers: list[str], theta: float = 0.5) -> float:
    """mPLUG-DocOwl `anls_metric` as used by the V2PE Long-VQA OwlEvaluator.

    Lowercase only (callers apply Long-VQA `rectify` first); the normalized
    distance must be strictly below `theta`, so a similarity of exactly 0.5
    scores 0.
    """
    def one(gold: str) -> float:
        a, b = gold.lower(), prediction.lower()
        length = max(len(a), len(b))
        distance = 0.0 if length == 0 else _edit_distance(a, b) / length
        return 1.0 - distance if distance < theta else 0.0

    return max(one(gold) for gold in answers)


def due_normalize(value: str) -> str:
    """Value normalization of the V2PE Long-VQA DueEvaluator: lowercase, strip, rstrip('.')."""
    return value.lower().strip().rstrip(".")


def anls_due(prediction: str, answers: list[str], threshold: float = 0.5) -> float:
    """DUE-benchmark `AnlsScorer` on DueEvaluator-normalized values.

    Best Levenshtein similarity over the answer variants; a best score of at
    most 1 - threshold (0.5) becomes 0.
    """
    pred = due_normalize(prediction)

    def one(gold: str) -> float:
        ref = due_normalize(gold)
        return _similarity(pred, ref, max(len(pred), len(ref)))

    best = max(one(gold) for gold in answers)
    return 0.0 if best <= 1.0 - threshold else best
