"""The generic pieces of reports, shared by the benchmark modules: percentages, means, number
formatting, Markdown tables and line plots (matplotlib, optional, imported only when plotting)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path


def pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def mean(values: Sequence[float | None]) -> float | None:
    """The mean of the values that are not None (None when there are none)."""
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence], align_first_left: bool = True) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---" if align_first_left else "---:"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def headline_table(numbers: dict) -> str:
    return table(["", "score"], [[label, fmt(value)] for label, value in numbers["headline"].items()])


def task_rows(tasks: Mapping[str, Sequence[Mapping]]) -> dict:
    """{task: {"score" (mean x100), "samples", "errors"}}: a failed sample scores 0."""
    return {name: {"score": pct(sum(float(r.get("score") or 0.0) for r in records) / len(records)),
                   "samples": len(records), "errors": sum(1 for r in records if r.get("error"))}
            for name, records in tasks.items()}


def errors(records: Sequence[Mapping]) -> int:
    return sum(1 for r in records if r.get("error"))


def pyplot():
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_lines(series: Mapping[str, Sequence[float | None]], labels: Sequence[str], path: Path, title: str,
               xlabel: str, ylabel: str = "score (%)") -> Path:
    """One line per series over `labels` (None values skipped; a series named 'avg' dashed)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    xs = list(range(len(labels)))
    for name, values in series.items():
        points = [(x, v) for x, v in zip(xs, values) if v is not None]
        if points:
            style = {"color": "black", "linestyle": "--", "linewidth": 2.2, "zorder": 3} if name == "avg" else {"linewidth": 1.3, "alpha": 0.85}
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name, **style)
    ax.set_xticks(xs, labels, rotation=30, ha="right")
    ax.set_ylim(-2, 102)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
