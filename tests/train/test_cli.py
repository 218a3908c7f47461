"""`v2pe train` end to end on CPU: a short run writes a native HF checkpoint and logs."""

from __future__ import annotations

import pytest
import torch

from tests.train.conftest import TINY_RECIPE
from v2pe.cli import main
from v2pe.train.callbacks import read_log

pytestmark = pytest.mark.slow
pytest.importorskip("accelerate", reason="the HF Trainer needs accelerate: pip install 'v2pe[train]'")


def test_train_cli_writes_a_native_checkpoint_and_logs(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--config", str(TINY_RECIPE), "--train.output_dir", str(out), "--train.max_steps", "2",
                 "--train.progress_bar", "true", "--train.report_to", "auto"])
    assert code == 0
    assert f"model saved to {out / 'final'}" in capsys.readouterr().out
    records = [r for r in read_log(out) if "loss" in r]
    assert [r["step"] for r in records] == [1, 2]
    assert all(r["tokens"] > 0 and r["learning_rate"] >= 0 for r in records) and "tokens_per_s" in records[1]
    assert (out / "recipe.yaml").is_file() and (out / "checkpoint-2" / "trainer_state.json").is_file()
    # a native checkpoint: transformers loads it without v2pe, and so does v2pe
    from transformers import AutoModelForImageTextToText

    from v2pe.model import load_model

    native = AutoModelForImageTextToText.from_pretrained(out / "final")
    ours = load_model(out / "final")
    assert type(native).__name__ == "InternVLForConditionalGeneration"
    for (name, a), b in zip(native.state_dict().items(), ours.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return
    assert any((out / "tensorboard").rglob("events.out.tfevents.*"))


def test_train_cli_errors_are_one_line(capsys):
    assert main(["train", "--config", "debug", "--train.max_stepz", "3"]) == 2
    err = capsys.readouterr().err
    assert "v2pe train: error:" in err and "did you mean 'train.max_steps'" in err and "Traceback" not in err


def test_print_config(capsys):
    assert main(["train", "--config", "debug", "--train.max_steps", "3", "--print-config"]) == 0
    text = capsys.readouterr().out
    assert "max_steps: 3" in text and "loss_reduction: square" in text
