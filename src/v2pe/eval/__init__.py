"""Evaluation: one module per benchmark in one registry (`v2pe.eval.benchmarks`), the resumable
runner (`runners`), reports (`reports`), official-rule scorers (`scorers`) and JSONL scoring (`score_file`)."""
