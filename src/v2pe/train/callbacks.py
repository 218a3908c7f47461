"""Progress bar (loss, learning rate, tokens/s) and a JSONL log of every logging step."""

from __future__ import annotations

import json
import math
from pathlib import Path

from transformers import TrainerCallback

LOG_FILE = "train_log.jsonl"


class ProgressBar(TrainerCallback):
    """One tqdm bar over the optimisation steps with the latest loss, lr and tokens/s."""

    def __init__(self):
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train", unit="step", dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs or "loss" not in logs:
            return
        postfix = {"loss": f"{logs['loss']:.4f}", "lr": f"{logs.get('learning_rate', 0.0):.2e}"}
        if "tokens_per_s" in logs:
            postfix["tok/s"] = f"{logs['tokens_per_s']:,.0f}"
        self.bar.set_postfix(postfix, refresh=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class JsonlLogger(TrainerCallback):
    """Appends every log record (with its step) to <output_dir>/train_log.jsonl on the main process.

    On resume from checkpoint-N, records of steps after N (written by the interrupted run) are
    dropped first, so the file reads as one uninterrupted run.
    """

    def __init__(self, output_dir: str | Path, resume_step: int | None = None):
        self.path = Path(output_dir) / LOG_FILE
        self.resume_step = resume_step

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            if self.resume_step is None:
                self.path.unlink()
            else:
                kept = [line for line in self.path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= self.resume_step]
                self.path.write_text("".join(line + "\n" for line in kept))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, **{k: _plain(v) for k, v in logs.items()}}
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def _plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    return value


def read_log(output_dir: str | Path) -> list[dict]:
    """The records of a run's JSONL log."""
    path = Path(output_dir) / LOG_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
