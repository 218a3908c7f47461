"""The demo's outputs: a Markdown table, a PNG plot and the raw figures as JSON.

With several seeds the table gives each cell's mean over the seeds and the worst seed, the plot
draws the mean with a band from the worst to the best seed, and `results.json` keeps every run."""

from __future__ import annotations

import json
from pathlib import Path

from v2pe.demo.experiment import DemoResult, summarise


def markdown_table(result: DemoResult) -> str:
    multiples = list(result.config.length_multiples)
    header = "| arm | " + " | ".join(f"{m}x" for m in multiples) + " |"
    lines = [header, "|---|" + "---:|" * len(multiples)]
    for arm, accuracy in result.accuracy.items():
        cells = [f"{100 * accuracy[m]:.0f}% (δ={_delta(result.deltas[arm][m])})" for m in multiples]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_table(results: list[DemoResult]) -> str:
    """Mean over seeds, the worst seed in brackets, and the test delta of each cell."""
    if len(results) == 1:
        return markdown_table(results[0])
    summary, first = summarise(results), results[0]
    multiples = list(first.config.length_multiples)
    seeds = ", ".join(str(r.config.seed) for r in results)
    lines = [f"| arm (mean of seeds {seeds}, worst seed) | " + " | ".join(f"{m}x" for m in multiples) + " |", "|---|" + "---:|" * len(multiples)]
    for arm in first.accuracy:
        cells = [f"{100 * summary['mean'][arm][m]:.0f}% ({100 * summary['worst'][arm][m]:.0f}%) δ={_delta(first.deltas[arm][m])}" for m in multiples]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def timing_lines(results: list[DemoResult]) -> list[str]:
    """Wall time and steps/s per phase (summed over seeds)."""
    phases: dict[str, list[float]] = {}
    for result in results:
        for phase, timing in result.timings.items():
            seconds, steps = phases.setdefault(phase, [0.0, 0.0])
            phases[phase] = [seconds + timing["seconds"], steps + timing["steps"]]
    lines = []
    for phase, (seconds, steps) in phases.items():
        rate = f", {steps / seconds:.2f} steps/s over {steps:.0f} steps" if steps and seconds else ""
        lines.append(f"- {phase}: {seconds:.1f} s{rate}")
    total = sum(r.total_seconds for r in results)
    lines.append(f"- total: {total:.1f} s ({total / 60:.1f} min)")
    return lines


def write_report(results: DemoResult | list[DemoResult], out_dir: str | Path, command: str) -> dict[str, Path]:
    results = [results] if isinstance(results, DemoResult) else list(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    first = results[0]
    config = first.config
    evaluation = first.timings.get("evaluation", {})
    lines = [
        "# V2PE demo: accuracy beyond the training length",
        "",
        f"Task: find the one coloured image among N grey ones and name its white quadrant (chance 25%). "
        f"Trained on {config.train_images[0]}-{config.train_images[1]} images (window {first.window} positions); "
        f"1x = {config.train_images[1]} images. Pretraining {config.pretrain_steps} steps at delta=1, then "
        f"{config.finetune_steps} fine-tuning steps per arm (batch {config.batch_size}); {config.eval_samples} test samples per cell; "
        f"{config.dtype}; seeds {', '.join(str(r.config.seed) for r in results)}.",
        "",
        (
            f"Model: hidden {config.hidden}, {config.layers} layers, {config.heads} heads, RoPE theta {config.rope_theta:g}; vision position "
            f"embeddings from {config.vision_position_init} x {config.vision_position_scale:g}. AdamW (beta2 {config.adam_beta2:g}), "
            f"one-cycle learning rate peaking at {config.pretrain_lr:g} (pretraining) and {config.finetune_lr:g} (fine-tuning); "
            f"training deltas {', '.join(_delta(d) for d in config.delta_choices)}."
        ),
        "",
        summary_table(results),
        "",
    ]
    if len(results) > 1:
        for result in results:
            lines += [f"Seed {result.config.seed}:", "", markdown_table(result), ""]
    for result in results:
        lines += [
            f"Training loss at the end of each phase, seed {result.config.seed} (mean of the last 20 steps; the answer letter and the end token): "
            + ", ".join(f"{phase} {loss:.3f}" for phase, loss in result.final_loss.items()) + ".",
            "",
        ]
    lines += [
        "Largest position per training sample (median / 99th percentile / max): "
        + ", ".join(f"{phase} {r['median']:.0f} / {r['p99']:.0f} / {r['max']:.0f}" for phase, r in first.positions_reached.items())
        + f". Automatic delta fills the window measured at delta=1 ({first.window}).",
        "",
        "Wall time per phase (an evaluation step is one forward pass over up to "
        f"{config.eval_batch} prompts; {evaluation.get('steps', 0):.0f} per seed):",
        "",
        *timing_lines(results),
        "",
        f"Reproduce: `{command}`",
        "",
    ]
    paths = {"table": out / "results.md", "plot": out / "accuracy_vs_length.png", "json": out / "results.json"}
    paths["table"].write_text("\n".join(lines))
    paths["json"].write_text(json.dumps(results_json(results, command), indent=2) + "\n")
    plot(results, paths["plot"])
    return paths


def results_json(results: list[DemoResult], command: str) -> dict:
    phases: dict[str, dict[str, float]] = {}
    for result in results:
        for phase, timing in result.timings.items():
            entry = phases.setdefault(phase, {"seconds": 0.0, "steps": 0})
            entry["seconds"] += timing["seconds"]
            entry["steps"] += timing["steps"]
    for entry in phases.values():
        entry["steps_per_s"] = entry["steps"] / entry["seconds"] if entry["steps"] and entry["seconds"] else None
    return {
        "command": command,
        "seeds": [r.config.seed for r in results],
        "window": results[0].window,
        "summary": summarise(results),
        "timings": phases,
        "total_seconds": sum(r.total_seconds for r in results),
        "runs": [r.to_dict() for r in results],
    }


def plot(results: DemoResult | list[DemoResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [results] if isinstance(results, DemoResult) else list(results)
    summary = summarise(results)
    multiples = list(results[0].config.length_multiples)
    figure, axes = plt.subplots(figsize=(7, 4.2))
    for arm in results[0].accuracy:
        mean = [100 * summary["mean"][arm][m] for m in multiples]
        line, = axes.plot(multiples, mean, marker="o", label=arm)
        if len(results) > 1:
            axes.fill_between(multiples, [100 * summary["worst"][arm][m] for m in multiples], [100 * summary["best"][arm][m] for m in multiples],
                              color=line.get_color(), alpha=0.15, linewidth=0)
    axes.axhline(25, color="grey", linestyle=":", label="chance")
    axes.set_xscale("log", base=2)
    axes.set_xticks(multiples, [f"{m}x" for m in multiples])
    axes.set_ylim(0, 105)
    axes.set_xlabel("context length (multiple of the training length)")
    axes.set_ylabel("accuracy (%)")
    seeds = ", ".join(str(r.config.seed) for r in results)
    band = "; band: worst to best seed" if len(results) > 1 else ""
    axes.set_title(f"Tiny InternVL-style model: needle accuracy vs context length\n(mean of seeds {seeds}{band})", fontsize=10)
    axes.legend(fontsize=8, loc="best")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _delta(value: float) -> str:
    if value != value:  # nan: never evaluated
        return "-"
    return "1" if value == 1 else f"1/{round(1 / value)}"
