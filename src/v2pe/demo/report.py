"""The demo's outputs: a Markdown table, a PNG plot and the raw figures as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from v2pe.demo.experiment import DemoResult


def markdown_table(result: DemoResult) -> str:
    multiples = list(result.config.length_multiples)
    header = "| arm | " + " | ".join(f"{m}x" for m in multiples) + " |"
    lines = [header, "|---|" + "---:|" * len(multiples)]
    for arm, accuracy in result.accuracy.items():
        cells = [f"{100 * accuracy[m]:.0f}% (δ={_delta(result.deltas[arm][m])})" for m in multiples]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(result: DemoResult, out_dir: str | Path, command: str) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = result.config
    text = "\n".join([
        "# V2PE demo: accuracy beyond the training length",
        "",
        f"Task: find the one coloured image among N grey ones and name its white quadrant (chance 25%). "
        f"Trained on {config.train_images[0]}-{config.train_images[1]} images (window {result.window} positions); "
        f"1x = {config.train_images[1]} images. Pretraining {config.pretrain_steps} steps at delta=1, then "
        f"{config.finetune_steps} fine-tuning steps per arm; {config.eval_samples} test samples per cell.",
        "",
        markdown_table(result),
        "",
        "Training loss at the end of each phase (mean of the last 20 steps; the answer letter and the end token): "
        + ", ".join(f"{phase} {loss:.3f}" for phase, loss in result.final_loss.items()) + ".",
        "",
        "Largest position per training sample (median / 99th percentile / max): "
        + ", ".join(f"{phase} {r['median']:.0f} / {r['p99']:.0f} / {r['max']:.0f}" for phase, r in result.positions_reached.items())
        + f". Automatic delta fills the window measured at delta=1 ({result.window}).",
        "",
        f"Training {result.train_seconds:.0f} s, total {result.total_seconds:.0f} s. Reproduce: `{command}`",
        "",
    ])
    paths = {"table": out / "results.md", "plot": out / "accuracy_vs_length.png", "json": out / "results.json"}
    paths["table"].write_text(text)
    paths["json"].write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    plot(result, paths["plot"])
    return paths


def plot(result: DemoResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    multiples = list(result.config.length_multiples)
    figure, axes = plt.subplots(figsize=(7, 4.2))
    for arm, accuracy in result.accuracy.items():
        axes.plot(multiples, [100 * accuracy[m] for m in multiples], marker="o", label=arm)
    axes.axhline(25, color="grey", linestyle=":", label="chance")
    axes.set_xscale("log", base=2)
    axes.set_xticks(multiples, [f"{m}x" for m in multiples])
    axes.set_ylim(0, 105)
    axes.set_xlabel("context length (multiple of the training length)")
    axes.set_ylabel("accuracy (%)")
    axes.set_title("Tiny InternVL-style model: needle accuracy vs context length")
    axes.legend(fontsize=8, loc="best")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _delta(value: float) -> str:
    if value != value:  # nan: never evaluated
        return "-"
    return "1" if value == 1 else f"1/{round(1 / value)}"
