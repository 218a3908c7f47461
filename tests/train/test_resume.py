"""Resume and atomic checkpoints: a run killed mid-way continues exactly as if never stopped,
and a kill during a save never leaves a checkpoint that looks complete."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from tests.train.conftest import TINY_RECIPE, losses
from v2pe.train import checkpoint as atomic
from v2pe.train import load_recipe, train
from v2pe.train.callbacks import read_log

pytestmark = pytest.mark.slow
pytest.importorskip("accelerate", reason="the HF Trainer needs accelerate: pip install 'v2pe[train]'")

# drop path on: the resumed run must also restore the RNG streams, not only weights and data order
RESUME = {"train.max_steps": 6, "train.save_steps": 2, "model.drop_path_rate": 0.1, "train.save_total_limit": 3}


class Killed(RuntimeError):
    pass


class KillAtStep(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed(f"killed at step {self.step}")


def config(output_dir, **overrides):
    return load_recipe(TINY_RECIPE, {"train.output_dir": str(output_dir), **RESUME, **overrides})


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return train(config(tmp_path_factory.mktemp("whole")))


def steps_after(result, step: int) -> list[float]:
    return [e["loss"] for e in result.log_history if "loss" in e and e["step"] > step]


def logged_losses(output_dir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_log(output_dir) if "loss" in r}


def test_killed_run_resumes_with_the_same_data_and_losses(tmp_path, uninterrupted):
    with pytest.raises(Killed):
        train(config(tmp_path), callbacks=[KillAtStep(5)])  # dies after checkpoint-4, during step 6's run-up
    assert atomic.last_checkpoint(tmp_path).name == "checkpoint-4"
    resumed = train(config(tmp_path))
    assert resumed.resumed_from.name == "checkpoint-4"
    expected = losses(uninterrupted)
    # the trainer state (log history) comes back with checkpoint-4; steps 5 and 6 are trained
    # again from it and must match the uninterrupted run
    assert losses(resumed) == pytest.approx(expected, rel=1e-6, abs=1e-7)
    assert steps_after(resumed, 4) == pytest.approx(expected[4:], rel=1e-6, abs=1e-7)
    # the JSONL log reads as one run: steps 1-4 of the first process, 5-6 of the resumed one
    assert logged_losses(tmp_path) == pytest.approx(dict(enumerate(expected, start=1)), rel=1e-6, abs=1e-7)
    mine, ref = load_file(resumed.final_model / "model.safetensors"), load_file(uninterrupted.final_model / "model.safetensors")
    for key in ref:
        torch.testing.assert_close(mine[key], ref[key], rtol=1e-5, atol=1e-6)


def test_kill_during_save_leaves_no_checkpoint_and_resume_ignores_it(tmp_path, monkeypatch, uninterrupted):
    from v2pe.train.trainer import V2PETrainer

    original = V2PETrainer._save_optimizer_and_scheduler

    def dies_at_step_4(self, output_dir):
        if self.state.global_step == 4:
            raise Killed("killed while writing checkpoint-4")
        return original(self, output_dir)

    monkeypatch.setattr(V2PETrainer, "_save_optimizer_and_scheduler", dies_at_step_4)
    with pytest.raises(Killed):
        train(config(tmp_path))
    monkeypatch.undo()
    # the half-written checkpoint-4 exists only in staging, with weights that would load
    staged = tmp_path / atomic.STAGING / "checkpoint-4"
    assert (staged / "model.safetensors").is_file() and not (staged / "optimizer.pt").exists()
    assert not (tmp_path / "checkpoint-4").exists()
    assert atomic.last_checkpoint(tmp_path).name == "checkpoint-2"
    resumed = train(config(tmp_path))
    assert resumed.resumed_from.name == "checkpoint-2"
    assert not (tmp_path / atomic.STAGING).exists()  # cleaned by the new run
    assert steps_after(resumed, 2) == pytest.approx(losses(uninterrupted)[2:], rel=1e-6, abs=1e-7)


def test_partial_staging_folder_is_ignored(tmp_path):
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text("{}")
    fake = tmp_path / atomic.STAGING / "checkpoint-9"
    fake.mkdir(parents=True)
    (fake / "model.safetensors").write_bytes(b"partial")
    (tmp_path / "checkpoint-10.tmp").mkdir()
    assert atomic.last_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    removed = atomic.clean_staging(tmp_path)
    assert removed == [tmp_path / atomic.STAGING] and not fake.exists()


def test_commit_replaces_an_older_folder_atomically(tmp_path):
    staged, final = tmp_path / atomic.STAGING / "checkpoint-3", tmp_path / "checkpoint-3"
    final.mkdir()
    (final / "old").write_text("old")
    staged.mkdir(parents=True)
    (staged / "new").write_text("new")
    atomic.commit(staged, final)
    assert sorted(p.name for p in final.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-3"]
