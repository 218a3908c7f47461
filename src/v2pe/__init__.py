"""v2pe: Variable Visual Position Encoding for long-context vision-language models."""

__version__ = "0.1.0"
