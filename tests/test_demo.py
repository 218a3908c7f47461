"""The demo pipeline end to end at a toy scale (the science needs `v2pe demo`, minutes of CPU)."""

from __future__ import annotations

import json

from v2pe.cli import main
from v2pe.demo.experiment import ARMS, DemoConfig, run_demo
from v2pe.demo.report import write_report
from v2pe.demo.task import TOKENS_PER_IMAGE, demo_processor, encode_batch, make_sample


def test_task_samples_have_one_needle_and_answer_labels():
    import random

    processor = demo_processor()
    sample = make_sample(5, random.Random(3))
    batch = encode_batch(processor, [sample])
    ids = batch["input_ids"][0]
    assert int((ids == processor.image_context_id).sum()) == 5 * TOKENS_PER_IMAGE
    labelled = batch["labels"][0][batch["labels"][0] != -100]
    assert processor.tokenizer.decode(labelled[:1]) == "ABCD"[sample.answer]
    centres = [(c, r) for r in (16, 48) for c in (16, 48)]  # quadrant centres, in A-D order
    grey = [all(img.getpixel(xy) == (128, 128, 128) for xy in centres) for img in sample.images]
    assert grey.count(False) == 1 and grey.index(False) == sample.needle_index
    needle = sample.images[sample.needle_index]
    assert [needle.getpixel(xy) == (255, 255, 255) for xy in centres] == [q == sample.answer for q in range(4)]


def test_demo_runs_every_arm_at_every_length(tmp_path):
    config = DemoConfig(pretrain_steps=3, finetune_steps=2, batch_size=2, length_multiples=(1, 4), eval_samples=2)
    result = run_demo(config)
    assert set(result.accuracy) == {arm.name for arm in ARMS}
    assert all(0 <= acc <= 1 for row in result.accuracy.values() for acc in row.values())
    deltas = result.deltas
    assert deltas["A: delta=1"] == {1: 1.0, 4: 1.0}
    assert set(deltas["C: fixed small delta"].values()) == {config.fixed_delta}
    # 4x the training images do not fit the trained window at delta 1: automatic delta shrinks.
    assert deltas["B: V2PE (random delta, auto at test)"][1] == 1.0 and deltas["B: V2PE (random delta, auto at test)"][4] < 1.0
    phases = ["pretrain (delta=1)", "fine-tune delta1", "fine-tune v2pe", "fine-tune fixed"]
    assert list(result.final_loss) == phases and list(result.positions_reached) == phases
    # delta=1 training reaches the window; random delta compresses the same samples
    assert result.positions_reached["fine-tune v2pe"]["median"] < result.positions_reached["fine-tune delta1"]["median"]
    paths = write_report(result, tmp_path, "v2pe demo --quick")
    table = paths["table"].read_text()
    assert "| A: delta=1 |" in table and "fine-tune v2pe" in table
    assert paths["plot"].stat().st_size > 10_000
    assert json.loads(paths["json"].read_text())["window"] == result.window


def test_demo_cli_help_lists_quick(capsys):
    try:
        main(["demo", "--help"])
    except SystemExit:
        pass
    assert "--quick" in capsys.readouterr().out


def test_vision_position_embeddings_start_like_a_vit():
    from v2pe.demo.experiment import build_model

    config = DemoConfig.quick()
    embeddings = build_model(config).model.vision_tower.embeddings.position_embeddings
    assert abs(embeddings.std().item() - config.vision_position_init_std) < 0.003
    config.vision_position_init_std = 0.0
    assert build_model(config).model.vision_tower.embeddings.position_embeddings.abs().max().item() == 0.0
