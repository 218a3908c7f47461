"""Run several short trainings in one multi-process launch (torchrun), one after the other.

    torchrun --nproc_per_node 2 tests/train/dist_worker.py JOBS.json RESULTS.json

JOBS.json: [{"name": ..., "output_dir": ..., "overrides": {"parallel.zero_stage": 2, ...}}, ...].
Each job trains tests/train/tiny.yaml with its overrides through `v2pe.train.train`; a probe
records the dtype of the per-image deltas and pixel values that reach the model, of the
positions the model computes from them (at its language model), and the model's parameter dtype. Rank 0 writes {name: {"losses": [...], "final_model": ..., "probe": {...}}}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

HERE = Path(__file__).resolve().parent


class Probe(TrainerCallback):
    def __init__(self):
        self.seen: dict[str, str] = {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        def record(keys):
            def hook(module, call_args, call_kwargs):
                for key in keys:
                    if call_kwargs.get(key) is not None:
                        self.seen[key] = str(call_kwargs[key].dtype)
                self.seen.setdefault("parameters", str(next(module.parameters()).dtype))
            return hook

        target = model.module if hasattr(model, "module") else model
        target.register_forward_pre_hook(record(("delta", "pixel_values")), with_kwargs=True)
        target.model.language_model.register_forward_pre_hook(record(("position_ids",)), with_kwargs=True)


def main() -> None:
    from accelerate.state import AcceleratorState

    from v2pe.train import load_recipe, train

    jobs = json.loads(Path(sys.argv[1]).read_text())
    results = {}
    for job in jobs:
        AcceleratorState._reset_state(reset_partial_state=False)
        config = load_recipe(HERE / "tiny.yaml", {"train.output_dir": job["output_dir"], **job.get("overrides", {})})
        probe = Probe()
        result = train(config, callbacks=[probe])
        losses = [entry["loss"] for entry in result.log_history if "loss" in entry]
        results[job["name"]] = {"losses": losses, "final_model": str(result.final_model), "probe": probe.seen}
    if torch.distributed.get_rank() == 0:
        Path(sys.argv[2]).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
