"""Checkpoint validity checks and the choice of the checkpoint to resume from, on folders made
by hand (no training): every damage is found and named, a damaged newest checkpoint is
skipped loudly, a missing optimizer state is refused unless asked for."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from v2pe.errors import CheckpointError, ConfigError
from v2pe.train import checkpoint as atomic
from v2pe.train.run import resolve_resume
from v2pe.train.trainer import whole_run_loss


def make_checkpoint(folder, step: int):
    """A checkpoint folder with every file a single-process resume reads."""
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    (folder / "config.json").write_text("{}")
    save_file({"a": torch.arange(64, dtype=torch.float32), "b": torch.ones(8, 8)}, str(folder / "model.safetensors"))
    torch.save({"state": {}}, folder / "optimizer.pt")
    torch.save({"last_epoch": step}, folder / "scheduler.pt")
    torch.save({"python": 1}, folder / "rng_state.pth")
    return folder


def cut(path, keep: float = 0.5) -> None:
    os.truncate(path, int(path.stat().st_size * keep))


def recipe(output_dir, resume="auto"):
    from tests.train.conftest import TINY_RECIPE
    from v2pe.train import load_recipe

    return load_recipe(TINY_RECIPE, {"train.output_dir": str(output_dir), "train.resume": resume, "train.max_steps": 10})


def test_a_whole_checkpoint_has_no_damage(tmp_path):
    assert atomic.checkpoint_damage(make_checkpoint(tmp_path / "checkpoint-2", 2)) is None
    assert atomic.checkpoint_step(tmp_path / "checkpoint-2") == 2


@pytest.mark.parametrize(
    ("damage", "named", "says"),
    [
        (lambda f: cut(f / "model.safetensors"), "model.safetensors", "truncated"),
        (lambda f: cut(f / "model.safetensors", keep=0.0), "model.safetensors", "truncated"),
        (lambda f: (f / "model.safetensors").write_bytes((10**9).to_bytes(8, "little") + b"{}"), "model.safetensors", "truncated"),
        (lambda f: (f / "model.safetensors").write_bytes((2).to_bytes(8, "little") + b"[]"), "model.safetensors", "header"),
        (lambda f: (f / "model.safetensors").unlink(), "model.safetensors", "missing"),
        (lambda f: (f / "trainer_state.json").write_text(""), "trainer_state.json", "empty"),
        (lambda f: (f / "trainer_state.json").write_text('{"global_st'), "trainer_state.json", "not valid JSON"),
        (lambda f: (f / "trainer_state.json").write_text("{}"), "trainer_state.json", "global_step"),
        (lambda f: (f / "rng_state.pth").unlink(), "rng_state.pth", "missing"),
        (lambda f: cut(f / "rng_state.pth"), "rng_state.pth", "truncated"),
        (lambda f: cut(f / "optimizer.pt"), "optimizer.pt", "truncated"),
        (lambda f: (f / "scheduler.pt").unlink(), "scheduler.pt", "missing"),
    ],
)
def test_every_damage_is_named(tmp_path, damage, named, says):
    folder = make_checkpoint(tmp_path / "checkpoint-4", 4)
    damage(folder)
    problem = atomic.checkpoint_damage(folder)
    assert problem is not None and str(folder / named) in problem and says in problem


def test_sharded_weights_are_checked_shard_by_shard(tmp_path):
    folder = make_checkpoint(tmp_path / "checkpoint-2", 2)
    (folder / "model.safetensors").rename(folder / "model-00002-of-00002.safetensors")
    save_file({"c": torch.zeros(4)}, str(folder / "model-00001-of-00002.safetensors"))
    index = {"weight_map": {"a": "model-00002-of-00002.safetensors", "b": "model-00002-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert atomic.checkpoint_damage(folder) is None
    cut(folder / "model-00002-of-00002.safetensors")
    assert "model-00002-of-00002.safetensors: truncated" in atomic.checkpoint_damage(folder)


def test_damaged_newest_checkpoint_is_skipped_with_a_warning(tmp_path):
    make_checkpoint(tmp_path / "checkpoint-2", 2)
    cut(make_checkpoint(tmp_path / "checkpoint-4", 4) / "model.safetensors")
    with pytest.warns(UserWarning, match=r"checkpoint-4/model.safetensors: truncated.*resuming from checkpoint-2"):
        resume = resolve_resume(recipe(tmp_path))
    assert resume.folder == tmp_path / "checkpoint-2" and resume.step == 2
    assert "checkpoint-4/model.safetensors" in resume.notes[0]  # recorded in the run's log too


def test_no_whole_checkpoint_is_an_error_naming_the_newest_damage(tmp_path):
    (make_checkpoint(tmp_path / "checkpoint-2", 2) / "trainer_state.json").write_text("")
    cut(make_checkpoint(tmp_path / "checkpoint-4", 4) / "model.safetensors")
    with pytest.raises(CheckpointError) as error:
        resolve_resume(recipe(tmp_path))
    message = str(error.value)
    assert "checkpoint-4/model.safetensors: truncated" in message and "1 older damaged" in message
    assert "train.resume never" in message


def test_an_explicit_damaged_checkpoint_is_refused(tmp_path):
    folder = make_checkpoint(tmp_path / "checkpoint-4", 4)
    (folder / "trainer_state.json").write_text("")
    with pytest.raises(CheckpointError, match=r"train.resume = .*checkpoint-4: cannot resume from it, .*trainer_state.json: empty file"):
        resolve_resume(recipe(tmp_path, resume=str(folder)))


def test_missing_optimizer_is_refused_unless_weights_only(tmp_path):
    make_checkpoint(tmp_path / "checkpoint-2", 2)
    (make_checkpoint(tmp_path / "checkpoint-4", 4) / "optimizer.pt").unlink()
    with pytest.raises(CheckpointError) as error:
        resolve_resume(recipe(tmp_path))  # not a silent fall-back to checkpoint-2 either
    message = str(error.value)
    assert message.startswith(str(tmp_path / "checkpoint-4" / "optimizer.pt")) and "--resume-weights-only" in message
    with pytest.warns(UserWarning, match="weights only"):
        resume = resolve_resume(recipe(tmp_path), weights_only=True)
    assert resume.folder.name == "checkpoint-4" and resume.weights_only and "optimizer.pt is missing" in resume.notes[0]


def test_weights_only_is_refused_with_deepspeed(tmp_path):
    from v2pe.train.config import RuntimeEnv
    from v2pe.train.run import train

    config = recipe(tmp_path)
    config.parallel.zero_stage = 2
    with pytest.raises(ConfigError, match="--resume-weights-only is not supported with DeepSpeed"):
        train(config, env=RuntimeEnv(deepspeed=True), resume_weights_only=True)


def test_storage_failures_are_recognised(tmp_path):
    import errno

    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))
    assert atomic.storage_failure(full, tmp_path).startswith(f"No space left on device: {tmp_path / 'x'}; ")
    torch_full = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert "torch.save failed" in atomic.storage_failure(torch_full, tmp_path) and "MiB free" in atomic.storage_failure(torch_full, tmp_path)

    class SafetensorError(Exception):
        pass

    assert atomic.storage_failure(SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"), tmp_path)
    assert atomic.storage_failure(RuntimeError("CUDA out of memory"), tmp_path) is None  # not hidden as a disk error
    assert atomic.storage_failure(KeyError("x"), tmp_path) is None


def test_whole_run_loss_combines_the_logged_steps_with_the_new_ones():
    history = [{"step": 1, "loss": 4.0}, {"step": 3, "loss": 2.0}, {"step": 3, "train_loss": 9.0}, {"step": 4, "loss": 1.0}, {"step": 6, "loss": 7.0}]
    # resumed at 4: steps 1..4 sum to 4 + 2*2 + 1 = 9; two new steps of mean 0.5
    assert whole_run_loss(history, 4, 0.5, 2) == pytest.approx((9 + 1) / 6)
    assert whole_run_loss([], 4, 0.5, 2) == pytest.approx(0.5)  # nothing logged before: the new steps only


def test_drop_events_after_keeps_each_step_once(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    from v2pe.train.callbacks import drop_events_after

    first = SummaryWriter(tmp_path / "tb")
    for step in range(1, 6):
        first.add_scalar("train/loss", float(step), step)
    first.add_text("args", "{}", 0)
    first.close()
    drop_events_after(tmp_path / "tb", 3)
    assert scalar_steps(tmp_path / "tb") == {"train/loss": [1, 2, 3]}
    drop_events_after(tmp_path / "tb", None)
    assert not list((tmp_path / "tb").rglob("events.out.tfevents.*"))


def scalar_steps(folder) -> dict[str, list[int]]:
    """Every scalar event in the event files of `folder`, as TensorBoard would read them without
    its own purging of out-of-order steps."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event

    steps: dict[str, list[int]] = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        for record in RawEventFileLoader(str(path)).Load():
            event = Event.FromString(record)
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    steps.setdefault(value.tag, []).append(event.step)
    return steps
