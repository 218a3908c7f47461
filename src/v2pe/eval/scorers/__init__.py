"""Evaluation scorers: pure functions reproducing the official benchmark scoring rules.

Per-item scorers are reached by name through `get_scorer(name, source=...)`; the Long-VQA
metric routing and corpus-level task score are in `longvqa`, POPE's per-category metrics in
`pope`. Benchmark-level aggregation (MM-NIAH length x depth tables, MileBench groups, ...) lives
in each benchmark's module, `v2pe.eval.benchmarks.<name>`.
"""

from v2pe.eval.scorers.base import ScoringError
from v2pe.eval.scorers.registry import Scorer, get_scorer, scorer_names, variant_from_source

__all__ = ["Scorer", "ScoringError", "get_scorer", "scorer_names", "variant_from_source"]
