"""Evaluation: official-rule scorers (`v2pe.eval.scorers`) and JSONL scoring (`score_file`)."""
