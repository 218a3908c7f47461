"""Evaluation scorers: pure functions reproducing the official benchmark scoring rules.

Per-item scorers are reached by name through `get_scorer(name, source=...)`;
benchmark-level aggregation lives in `aggregate` (MM-NIAH, MileBench) and
`longvqa` (Long-VQA metric routing); POPE metrics in `pope`.
"""

from v2pe.eval.scorers.base import ScoringError
from v2pe.eval.scorers.registry import Scorer, get_scorer, scorer_names, variant_from_source

__all__ = ["Scorer", "ScoringError", "get_scorer", "scorer_names", "variant_from_source"]
