"""Scorer registry: `get_scorer(name, source=...)` -> a callable `(prediction, answer, extra) -> float`.

Names are the `scorer` values of the reference fixture (shared/fixtures/scorers)
plus the general multiple-choice / POPE scorers. Scores are on the scale the
official code reports for a single item: 0..1, or x100 for the Long-VQA and
DUE paths (`Scorer.scale`).

`source` picks the variant where the official benchmark repository and the
V2PE copy differ (MM-NIAH `is_correct`, MileBench multi-choice). It may be a
fixture `source` string ("v2pe:eval/...", "mmniah:...", "milebench:..."), a
bare prefix, or "official"; None means the benchmark's own definition.

A scorer whose name ends in an answer type (`mmniah_is_correct_int|list|str`) scores only
answers of that JSON type: the official `is_correct` picks its rule from the answer's type,
so an int answer under `_str` would silently be scored by the int rule. `Scorer.answer_problem`
says what is wrong; calling the scorer with such an answer raises ScoringError, and
`v2pe eval score` stops at the line, naming file:line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from v2pe.eval.scorers.anls import anls_due, anls_infographicsvqa, anls_stvqa
from v2pe.eval.scorers.base import ScoringError, as_answer_list, require_text
from v2pe.eval.scorers.due import due_f1
from v2pe.eval.scorers.longvqa import longvqa_item_score
from v2pe.eval.scorers.milebench import milebench_mmcoqa, milebench_multichoice, milebench_needle, milebench_rouge_l
from v2pe.eval.scorers.mmmu import mmmu_choice_correct_post_process, mmmu_open_correct
from v2pe.eval.scorers.mmniah import mmniah_is_correct, mmniah_teacher_forced_correct
from v2pe.eval.scorers.multiple_choice import ai2d_correct, choice_correct, mmmu_correct, seed_correct
from v2pe.eval.scorers.pope import pope_item_correct
from v2pe.eval.scorers.relaxed import exact_match_vqa, relaxed_accuracy_owl, relaxed_accuracy_vqa
from v2pe.eval.scorers.video import mvbench_check_ans, videomme_correct
from v2pe.eval.scorers.vqa_accuracy import textvqa_accuracy

ScoreFn = Callable[[Any, Any, dict, str], float]
# Source prefixes naming the benchmark's own repository.
OFFICIAL_PREFIXES = ("official", "mmniah", "milebench")


@dataclass(frozen=True)
class Scorer:
    """A registered per-item scorer bound to one variant."""

    name: str
    variant: str  # "official" or "v2pe"
    scale: str  # "0-1" or "0-100"
    description: str
    fn: ScoreFn
    answer_type: type | None = None  # the type the name's suffix promises, if any

    def answer_problem(self, answer: Any) -> str | None:
        """Why `answer` does not fit this scorer's type suffix (None: it fits, or no suffix)."""
        if self.answer_type is None:
            return None
        if isinstance(answer, self.answer_type) and not isinstance(answer, bool):
            return None
        return (f"the answer must be {TYPE_WORDS[self.answer_type]} for scorer {self.name!r} (its name's type suffix), "
                f"got {type(answer).__name__} {_preview(answer)}; {_scorer_for_answer(self.name, answer)}")

    def __call__(self, prediction: Any, answer: Any, extra: dict | None = None) -> float:
        problem = self.answer_problem(answer)
        if problem is not None:
            raise ScoringError(problem)
        return float(self.fn(prediction, answer, extra or {}, self.variant))


@dataclass(frozen=True)
class _Entry:
    fn: ScoreFn
    scale: str
    description: str
    variants: tuple[str, ...] = ("v2pe",)  # the only implementation is the V2PE one
    answer_type: type | None = None


#: Answer-type suffixes of scorer names and the JSON type each promises.
ANSWER_TYPE_SUFFIXES: dict[str, type] = {"int": int, "list": list, "str": str}
TYPE_WORDS = {int: "an integer", list: "a list", str: "a string"}


def _preview(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _scorer_for_answer(name: str, answer: Any) -> str:
    """Advice: the sibling scorer whose suffix fits `answer`, or the types there are."""
    stem = name.rsplit("_", 1)[0]
    for suffix, kind in ANSWER_TYPE_SUFFIXES.items():
        if isinstance(answer, kind) and not isinstance(answer, bool) and f"{stem}_{suffix}" in _REGISTRY:
            return f"use {stem}_{suffix} for such answers"
    return "no scorer of this family scores such answers (" + ", ".join(f"{stem}_{s}" for s in ANSWER_TYPE_SUFFIXES) + ")"


def _text_and_answers(prediction: Any, answer: Any) -> tuple[str, list[str]]:
    return require_text(prediction, "prediction"), as_answer_list(answer)


def _longvqa(default_task: str, metric: str) -> ScoreFn:
    def score(prediction, answer, extra, variant):
        return longvqa_item_score(extra.get("task", default_task), prediction, answer, metric)
    return score


def _exact_accuracy_longvqa(prediction, answer, extra, variant):
    if "task" not in extra:
        raise ScoringError("exact_accuracy_longvqa needs extra.task (svqa or tabfact) for rectify")
    return longvqa_item_score(extra["task"], prediction, answer, "EACC")


def _annotations(extra: dict) -> list:
    annotations = extra.get("annotations")
    if not isinstance(annotations, list) or not annotations:
        raise ScoringError("due_f1 needs extra.annotations: a non-empty list of {id, pr, an}")
    return annotations


def _options(extra: dict) -> dict[str, str]:
    options = extra.get("options")
    if not isinstance(options, dict):
        raise ScoringError("this scorer needs extra.options: {letter: option text}")
    return options


_REGISTRY: dict[str, _Entry] = {
    "anls_infographicsvqa": _Entry(
        lambda p, a, e, v: anls_infographicsvqa(*_text_and_answers(p, a), e.get("threshold", 0.5)),
        "0-1", "InfographicVQA/DocVQA ANLS (RRC script, threshold kept)"),
    "anls_stvqa": _Entry(
        lambda p, a, e, v: anls_stvqa(*_text_and_answers(p, a)), "0-1", "ST-VQA ANLS"),
    "anls_longvqa_owl": _Entry(_longvqa("docvqa", "ANLS"), "0-100", "Long-VQA rectify + owl ANLS"),
    "anls_longvqa_due": _Entry(
        lambda p, a, e, v: 100.0 * anls_due(*_text_and_answers(p, a)), "0-100", "DUE AnlsScorer"),
    "relaxed_accuracy_vqa": _Entry(
        lambda p, a, e, v: relaxed_accuracy_vqa(*_text_and_answers(p, a)), "0-1",
        "ChartQA relaxed accuracy of evaluate_vqa.py (model answer as target)"),
    "relaxed_accuracy_longvqa": _Entry(_longvqa("chartqa", "RACC"), "0-100", "Long-VQA rectify + owl RACC"),
    "relaxed_accuracy_owl_raw": _Entry(
        lambda p, a, e, v: relaxed_accuracy_owl(*_text_and_answers(p, a)), "0-1",
        "owl relaxed accuracy, no preprocessing"),
    "vqa_accuracy_textvqa": _Entry(
        lambda p, a, e, v: textvqa_accuracy(*_text_and_answers(p, a)), "0-1", "TextVQA soft accuracy (10 answers)"),
    "vqa_accuracy_longvqa": _Entry(_longvqa("textvqa", "TEXTVQA"), "0-100", "Long-VQA rectify + TextVQAScorer"),
    "exact_accuracy_longvqa": _Entry(_exact_accuracy_longvqa, "0-100", "Long-VQA rectify + owl exact accuracy"),
    "exact_match_vqa": _Entry(
        lambda p, a, e, v: exact_match_vqa(*_text_and_answers(p, a)), "0-1", "strip+lowercase exact match"),
    "due_f1": _Entry(lambda p, a, e, v: due_f1(_annotations(e)), "0-100",
                     "DUE corpus F1 over extra.annotations [{id, pr, an}]"),
    "wtq": _Entry(_longvqa("wikitablequestions", "WTQ"), "0-100", "Long-VQA rectify + DUE WtqScorer"),
    "bleu4_longvqa": _Entry(_longvqa("textcaps", "BLEU4"), "0-100", "Long-VQA rectify + COCO BLEU-4"),
    **{
        f"mmniah_is_correct_{kind}": _Entry(
            lambda p, a, e, v: mmniah_is_correct(a, p, v), "0-1", f"MM-NIAH is_correct ({kind} answers)",
            ("official", "v2pe"), ANSWER_TYPE_SUFFIXES[kind])
        for kind in ANSWER_TYPE_SUFFIXES
    },
    "mmniah_teacher_forced": _Entry(
        lambda p, a, e, v: mmniah_teacher_forced_correct(a, p, e.get("predicted_ids"), e.get("answer_ids")), "0-1",
        "MM-NIAH long (eval_mm_niah_long.py): teacher-forced argmax tokens == answer tokens (int answers: letter)",
        ("official",)),
    "milebench_multichoice": _Entry(
        lambda p, a, e, v: milebench_multichoice(p, a, e.get("choice_list"), v)[0], "0-1",
        "MileBench multi-choice (extra.choice_list)", ("official", "v2pe")),
    "milebench_rouge_l": _Entry(lambda p, a, e, v: milebench_rouge_l(p, a), "0-1", "MileBench ROUGE-L F",
                                ("official", "v2pe")),
    "milebench_needle": _Entry(lambda p, a, e, v: milebench_needle(p, a), "0-1", "MileBench needle token match",
                               ("official", "v2pe")),
    "milebench_mmcoqa": _Entry(lambda p, a, e, v: milebench_mmcoqa(p, a), "0-1", "MileBench MMCoQA substring",
                               ("official", "v2pe")),
    "pope": _Entry(lambda p, a, e, v: pope_item_correct(require_text(p, "prediction"), require_text(a, "label")),
                   "0-1", "POPE yes/no correctness"),
    "mc_mmbench": _Entry(
        lambda p, a, e, v: choice_correct(require_text(p, "prediction"), a, _options(e), "mmbench"),
        "0-1", "MMBench post_process letter == gold (extra.options)"),
    "mc_scienceqa": _Entry(
        lambda p, a, e, v: choice_correct(require_text(p, "prediction"), a, _options(e), "scienceqa"),
        "0-1", "ScienceQA post_process letter == gold (no random fallback)"),
    "mc_seed": _Entry(lambda p, a, e, v: seed_correct(require_text(p, "prediction"), a), "0-1",
                      "SEED first character == gold letter"),
    "mc_ai2d": _Entry(lambda p, a, e, v: ai2d_correct(*_text_and_answers(p, a)), "0-1",
                      "AI2D exact match (strip+lowercase)"),
    "mvbench_check_ans": _Entry(lambda p, a, e, v: mvbench_check_ans(p, a), "0-1",
                                "MVBench check_ans: first word vs '(X) text' by containment", ("official",)),
    "videomme_choice": _Entry(lambda p, a, e, v: videomme_correct(p, a), "0-1",
                              "Video-MME extract_characters_regex letter == gold", ("official",)),
    "mc_mmmu": _Entry(lambda p, a, e, v: mmmu_correct(require_text(p, "prediction"), a, _options(e)), "0-1",
                      "MMMU multiple-choice parse == gold (no random fallback)"),
    "mc_mmmu_post_process": _Entry(
        lambda p, a, e, v: mmmu_choice_correct_post_process(require_text(p, "prediction"), _gold(a), _options(e)), "0-1",
        "MMMU multiple choice as InternVL scores it: post_process letter == gold (extra.options)"),
    "mmmu_open": _Entry(
        lambda p, a, e, v: mmmu_open_correct(require_text(p, "prediction"), _gold(a), e.get("options")), "0-1",
        "MMMU open answer: parse_open_response + eval_open"),
}


def _gold(answer: Any) -> str | list[str]:
    if isinstance(answer, str) or (isinstance(answer, list) and answer and all(isinstance(a, str) for a in answer)):
        return answer
    raise ScoringError(f"the gold answer must be a string or a non-empty list of strings, got {answer!r}")


def scorer_names() -> list[str]:
    """All registered scorer names."""
    return sorted(_REGISTRY)


def variant_from_source(source: str | None) -> str:
    """'official' or 'v2pe' from a fixture-style source string or prefix (None -> official)."""
    if not source:
        return "official"
    prefix = source.split(":", 1)[0].strip().lower()
    if prefix == "v2pe":
        return "v2pe"
    if prefix in OFFICIAL_PREFIXES:
        return "official"
    raise ValueError(f"unknown scorer source {source!r}: expected a 'v2pe:', 'mmniah:', 'milebench:' "
                     "or 'official' prefix")


def get_scorer(name: str, source: str | None = None) -> Scorer:
    """The scorer `name` in the variant chosen by `source` (see module docstring).

    Scorers with a single implementation (the V2PE evaluation code) ignore
    the variant request.
    """
    try:
        entry = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown scorer {name!r}; known scorers: {', '.join(scorer_names())}") from None
    wanted = variant_from_source(source)
    variant = wanted if wanted in entry.variants else entry.variants[0]
    return Scorer(name, variant, entry.scale, entry.description, entry.fn, entry.answer_type)
