"""Training when things go wrong, end to end on the tiny recipe: a finished run rerun, a resume
(its summary loss and logs), a checkpoint without its optimizer, a damaged checkpoint, a
truncated model, bad numbers in the config, an unwritable output folder, a disk that fills
during a save. Each bad input is one line naming the file or key, exit code 2."""

from __future__ import annotations

import errno
import json
import os

import pytest
import torch
from safetensors.torch import load_file

from tests.train.conftest import TINY_RECIPE, losses
from tests.train.test_checkpoint_checks import scalar_steps
from tests.train.test_resume import Killed, KillAtStep
from v2pe.cli import main
from v2pe.errors import CheckpointError, ConfigError
from v2pe.train import checkpoint as atomic
from v2pe.train import load_recipe
from v2pe.train.callbacks import LOG_FILE, read_log
from v2pe.train.run import train

pytestmark = pytest.mark.slow
pytest.importorskip("accelerate", reason="the HF Trainer needs accelerate: pip install 'v2pe[train]'")

RUN = {"train.max_steps": 6, "train.save_steps": 2, "train.save_total_limit": 3}
CLI_RUN = ["--config", str(TINY_RECIPE), "--train.max_steps", "6", "--train.save_steps", "2"]


def config(output_dir, **overrides):
    return load_recipe(TINY_RECIPE, {"train.output_dir": str(output_dir), **RUN, **overrides})


def has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def report_to() -> str:
    return "tensorboard" if has_tensorboard() else "jsonl"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return train(config(tmp_path_factory.mktemp("whole"), **{"train.report_to": report_to()}))


def killed_run(output_dir, step: int, **overrides):
    with pytest.raises(Killed):
        train(config(output_dir, **overrides), callbacks=[KillAtStep(step)])


def one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("v2pe train: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(needle in lines[0] for needle in needles), lines[0]
    return lines[0]


def snapshot(folder) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- 1. a finished run -------------------------------------------------------------------


def test_rerunning_a_finished_run_trains_and_rewrites_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *CLI_RUN, "--train.output_dir", str(out)]) == 0
    assert "trained 6 steps" in capsys.readouterr().out
    before = snapshot(out)
    assert main(["train", *CLI_RUN, "--train.output_dir", str(out)]) == 0
    said = capsys.readouterr().out
    assert "already holds a finished run" in said and "checkpoint-6 reached step 6 of train.max_steps 6" in said
    assert "Nothing was trained or rewritten" in said and "raise train.max_steps" in said and "new train.output_dir" in said
    assert snapshot(out) == before  # not one byte rewritten, not even recipe.yaml; no checkpoint-7
    # a final model lost while it was written comes back from the last checkpoint, untrained
    weights = load_file(out / "final" / "model.safetensors")
    import shutil

    shutil.rmtree(out / "final")
    assert main(["train", *CLI_RUN, "--train.output_dir", str(out)]) == 0
    assert "already holds a finished run" in capsys.readouterr().out
    restored = load_file(out / "final" / "model.safetensors")
    assert restored.keys() == weights.keys() and all(torch.equal(restored[k], weights[k]) for k in weights)
    assert not (out / "final" / "optimizer.pt").exists() and (out / "final" / "config.json").is_file()
    assert (out / LOG_FILE).read_bytes() == before[LOG_FILE][1]
    # a final model with no checkpoint left: training again would replace it, so it asks
    for folder in atomic.checkpoints(out):
        shutil.rmtree(folder)
    assert main(["train", *CLI_RUN, "--train.output_dir", str(out)]) == 2
    one_line_error(capsys, str(out / "final"), "no checkpoint to resume from", "train.resume never")


# ---- 2. a resumed run reads as one run ---------------------------------------------------


def test_resumed_run_summary_loss_and_logs_describe_the_whole_run(tmp_path, uninterrupted):
    killed_run(tmp_path, 6, **{"train.report_to": report_to()})  # checkpoint-4; step 5 logged, then killed
    assert 5 in [r["step"] for r in read_log(tmp_path) if "loss" in r]
    resumed = train(config(tmp_path, **{"train.report_to": report_to()}))
    assert resumed.resumed_from.name == "checkpoint-4"
    assert resumed.metrics["train_loss"] == pytest.approx(uninterrupted.metrics["train_loss"], rel=1e-6)
    records = read_log(tmp_path)
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5, 6]  # step 5 once
    summary = [r for r in records if "train_loss" in r]
    assert len(summary) == 1 and summary[0]["train_loss"] == pytest.approx(uninterrupted.metrics["train_loss"], rel=1e-6)
    assert losses(resumed) == pytest.approx(losses(uninterrupted), rel=1e-6, abs=1e-7)
    if has_tensorboard():
        steps = scalar_steps(tmp_path / "tensorboard")
        assert steps["train/loss"] == [1, 2, 3, 4, 5, 6] and steps == scalar_steps(uninterrupted.output_dir / "tensorboard")


def test_a_checkpoint_always_holds_the_log_of_every_step_before_it(tmp_path):
    # logging every 3 steps, saving every 2: the save steps are logged too, so a resume from
    # checkpoint-4 knows the loss of steps 1-4 and the summary covers all six steps
    killed_run(tmp_path, 5, **{"train.logging_steps": 3})
    state = json.loads((tmp_path / "checkpoint-4" / "trainer_state.json").read_text())
    assert [r["step"] for r in state["log_history"] if "loss" in r] == [2, 3, 4]
    resumed = train(config(tmp_path, **{"train.logging_steps": 3}))
    whole = train(config(tmp_path / "whole", **{"train.logging_steps": 3}))
    assert [r["step"] for r in whole.log_history if "loss" in r] == [2, 3, 4, 6]
    assert resumed.metrics["train_loss"] == pytest.approx(whole.metrics["train_loss"], rel=1e-6)


# ---- 3. a checkpoint without its optimizer -----------------------------------------------


def test_missing_optimizer_is_refused_then_resumed_on_purpose(tmp_path, capsys, uninterrupted):
    killed_run(tmp_path, 3)  # checkpoint-2
    (tmp_path / "checkpoint-2" / "optimizer.pt").unlink()
    assert main(["train", *CLI_RUN, "--train.output_dir", str(tmp_path)]) == 2
    one_line_error(capsys, str(tmp_path / "checkpoint-2" / "optimizer.pt"), "--resume-weights-only")
    assert atomic.last_checkpoint(tmp_path).name == "checkpoint-2"  # nothing trained
    assert main(["train", *CLI_RUN, "--train.output_dir", str(tmp_path), "--resume-weights-only"]) == 0
    captured = capsys.readouterr()
    assert "v2pe: warning: resuming" in captured.err and "weights only" in captured.err and "trained 6 steps" in captured.out
    records = read_log(tmp_path)
    assert any("optimizer.pt is missing" in r.get("note", "") for r in records)  # recorded in the log
    # a fresh optimizer, but the LR schedule continues where checkpoint-2 left it
    expected = {r["step"]: r["learning_rate"] for r in uninterrupted.log_history if "loss" in r}
    assert {r["step"]: r["learning_rate"] for r in records if "loss" in r} == pytest.approx(expected)


# ---- 4. a damaged checkpoint -------------------------------------------------------------


def test_damaged_latest_checkpoint_resumes_from_the_newest_whole_one(tmp_path, capsys, uninterrupted):
    killed_run(tmp_path, 5)  # checkpoint-2, checkpoint-4
    weights = tmp_path / "checkpoint-4" / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    with pytest.warns(UserWarning, match=f"{weights}: truncated.*resuming from checkpoint-2"):
        resumed = train(config(tmp_path))
    assert resumed.resumed_from.name == "checkpoint-2" and resumed.global_step == 6
    assert losses(resumed) == pytest.approx(losses(uninterrupted), rel=1e-6, abs=1e-7)
    assert atomic.checkpoint_damage(tmp_path / "checkpoint-4") is None  # saved again, whole
    # nothing whole left: a clear stop
    for folder in atomic.checkpoints(tmp_path):
        (folder / "trainer_state.json").write_text("")
    assert main(["train", *CLI_RUN, "--train.max_steps", "8", "--train.output_dir", str(tmp_path)]) == 2
    one_line_error(capsys, str(tmp_path / "checkpoint-6" / "trainer_state.json"), "empty file", "no whole checkpoint")


# ---- 5. a truncated model ----------------------------------------------------------------


def test_truncated_model_path_is_one_line_naming_the_file(tmp_path, capsys):
    from v2pe.model.tiny import tiny_model

    folder = tmp_path / "model"
    tiny = load_recipe(TINY_RECIPE).model.tiny
    tiny_model(**tiny).save_pretrained(folder)
    os.truncate(folder / "model.safetensors", (folder / "model.safetensors").stat().st_size // 2)
    code = main(["train", "--config", str(TINY_RECIPE), "--train.output_dir", str(tmp_path / "run"), "--model.tiny", "null", "--model.path", str(folder)])
    assert code == 2
    one_line_error(capsys, str(folder / "model.safetensors"), "truncated")


# ---- 6. numbers that are not numbers -----------------------------------------------------


@pytest.mark.parametrize("key", ["learning_rate", "weight_decay", "max_grad_norm", "warmup_ratio", "adam_beta1", "adam_beta2", "adam_epsilon"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1"])
def test_float_fields_refuse_nan_inf_and_negatives(key, value, capsys):
    assert main(["train", "--config", "debug", f"--train.{key}", value]) == 2
    one_line_error(capsys, f"train.{key}")


@pytest.mark.parametrize("key", ["model.drop_path_rate", "v2pe.delta"])
def test_other_float_fields_refuse_nan(key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_recipe("debug", {key: "nan"})


def test_a_config_built_in_python_is_checked_too():
    config = load_recipe("debug", validate_config=False)
    config.train.learning_rate = float("nan")
    with pytest.raises(ConfigError, match=r"train.learning_rate must be a finite number >= 0, got nan"):
        config.validate()


# ---- 7. an output folder that cannot be written ------------------------------------------


def test_unwritable_output_folder_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "run"  # as root, chmod does not stop writes; a path under a file does
    assert main(["train", "--config", str(TINY_RECIPE), "--train.output_dir", str(out)]) == 2
    one_line_error(capsys, str(out), "cannot create or write the output folder", "Not a directory")


def test_disk_full_during_a_save_leaves_no_half_checkpoint_and_says_so(tmp_path, monkeypatch, uninterrupted):
    from v2pe.train.trainer import V2PETrainer

    original = V2PETrainer._save_optimizer_and_scheduler

    def disk_fills_at_step_4(self, output_dir):
        if self.state.global_step == 4:
            raise OSError(errno.ENOSPC, "No space left on device", os.path.join(output_dir, "optimizer.pt"))
        return original(self, output_dir)

    monkeypatch.setattr(V2PETrainer, "_save_optimizer_and_scheduler", disk_fills_at_step_4)
    with pytest.raises(CheckpointError) as error:
        train(config(tmp_path))
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'checkpoint-4'}: cannot write it (No space left on device")
    assert "nothing half-written is left" in message and "checkpoint-2 is the last complete checkpoint" in message
    assert not (tmp_path / "checkpoint-4").exists() and not (tmp_path / atomic.STAGING).exists()
    monkeypatch.undo()
    resumed = train(config(tmp_path))  # once there is space, the same command resumes
    assert resumed.resumed_from.name == "checkpoint-2"
    assert losses(resumed) == pytest.approx(losses(uninterrupted), rel=1e-6, abs=1e-7)


def test_disk_full_while_logging_is_one_clear_error(tmp_path):
    from v2pe.errors import V2PEError
    from v2pe.train.callbacks import JsonlLogger

    (tmp_path / LOG_FILE).mkdir()  # writing the log fails with an OSError (IsADirectoryError)

    class State:
        is_world_process_zero, global_step = True, 3

    with pytest.raises(V2PEError, match=f"{tmp_path / LOG_FILE}: cannot write the training log"):
        JsonlLogger(tmp_path).on_log(None, State(), None, logs={"loss": 1.0})
