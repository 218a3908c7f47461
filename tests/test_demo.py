"""The demo pipeline end to end at a toy scale (the science needs `v2pe demo`, minutes of CPU)."""

from __future__ import annotations

import json
import random

import pytest
import torch

from v2pe.cli import main
from v2pe.demo.experiment import ARMS, DemoConfig, build_model, embed_inputs, run_demo, run_demos, summarise
from v2pe.demo.report import summary_table, write_report
from v2pe.demo.task import TOKENS_PER_IMAGE, TaskEncoder, demo_processor, encode_batch, make_sample


def test_task_samples_have_one_needle_and_answer_labels():
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


def test_task_encoder_matches_the_processor_and_the_model_forward():
    """The demo's cached encoding and once-per-distinct-image vision pass give exactly what the
    processor and the model's own forward (pixel_values) give."""
    processor = demo_processor()
    encoder = TaskEncoder(processor)
    samples = [make_sample(n, random.Random(n)) for n in (3, 1, 4, 2)]  # padded like encode_batch
    reference, fast = encode_batch(processor, samples), encoder.batch(samples)
    for key in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(reference[key], fast[key]), key
    assert torch.equal(reference["pixel_values"], encoder.library_pixels[fast["image_keys"]])
    prompts = encoder.batch(samples, with_answer=False)
    assert torch.equal(prompts["input_ids"], encode_batch(processor, samples, with_answer=False)["input_ids"])
    model = build_model(DemoConfig.quick()).eval()
    positions = model.v2pe_position_ids(reference["input_ids"], reference["attention_mask"], delta=0.25)
    with torch.no_grad():
        expected = model(input_ids=reference["input_ids"], pixel_values=reference["pixel_values"], attention_mask=reference["attention_mask"], position_ids=positions).logits
        embeds = embed_inputs(model, fast["input_ids"], fast["image_keys"], library_pixels=encoder.library_pixels)
        got = model(inputs_embeds=embeds, attention_mask=fast["attention_mask"], position_ids=positions).logits
    real = reference["attention_mask"].bool()
    torch.testing.assert_close(got[real], expected[real], rtol=1e-5, atol=1e-5)


def test_demo_runs_every_arm_at_every_length(tmp_path):
    config = DemoConfig(pretrain_steps=3, finetune_steps=2, batch_size=2, length_multiples=(1, 4), eval_samples=3, eval_batch=2)
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
    # every phase is timed; evaluation counts its forward passes (2 per cell: 3 samples in batches of 2)
    assert list(result.timings) == ["setup", *phases, "evaluation"]
    assert result.timings["pretrain (delta=1)"]["steps"] == 3 and result.timings["evaluation"]["steps"] == 2 * len(ARMS) * 2
    assert all(t["seconds"] > 0 for t in result.timings.values())
    # delta=1 training reaches the window; random delta compresses the same samples
    assert result.positions_reached["fine-tune v2pe"]["median"] < result.positions_reached["fine-tune delta1"]["median"]
    paths = write_report(result, tmp_path, "v2pe demo --quick")
    table = paths["table"].read_text()
    assert "| A: delta=1 |" in table and "fine-tune v2pe" in table and "steps/s" in table
    assert paths["plot"].stat().st_size > 10_000
    written = json.loads(paths["json"].read_text())
    assert written["window"] == result.window and written["seeds"] == [0]
    assert written["timings"]["fine-tune v2pe"]["steps"] == 2 and written["timings"]["evaluation"]["steps_per_s"] > 0


def test_several_seeds_give_mean_and_worst(tmp_path):
    config = DemoConfig(pretrain_steps=2, finetune_steps=2, batch_size=2, length_multiples=(1, 2), eval_samples=2, dtype="float64")
    results = run_demos(config, [0, 1])
    assert [r.config.seed for r in results] == [0, 1] and config.seed == 0
    summary = summarise(results)
    arm = ARMS[0].name
    for m in (1, 2):
        values = [r.accuracy[arm][m] for r in results]
        assert summary["mean"][arm][m] == sum(values) / 2 and summary["worst"][arm][m] == min(values)
    assert "worst seed" in summary_table(results)
    paths = write_report(results, tmp_path, "v2pe demo --seeds 0 1")
    written = json.loads(paths["json"].read_text())
    assert written["seeds"] == [0, 1] and len(written["runs"]) == 2 and written["runs"][0]["config"]["dtype"] == "float64"


def test_demo_cli_help_lists_quick_seeds_and_float64(capsys):
    try:
        main(["demo", "--help"])
    except SystemExit:
        pass
    out = capsys.readouterr().out
    assert "--quick" in out and "--seeds" in out and "--float64" in out


def test_vision_position_embeddings_start_as_a_2d_sincos_table():
    """The table against the formula written out per patch, independently of `sincos_table`."""
    import math

    from v2pe.demo.task import IMAGE_SIZE, PATCH_SIZE

    config = DemoConfig.quick()
    table = build_model(config).model.vision_tower.embeddings.position_embeddings.detach()[0]
    grid, dim = IMAGE_SIZE // PATCH_SIZE, table.shape[-1]
    quarter = dim // 4
    assert table.shape == (1 + grid * grid, dim) and table[0].abs().max() == 0  # the class token's row
    for y, x in ((0, 0), (0, 5), (7, 3), (grid - 1, grid - 1)):
        row = table[1 + y * grid + x]
        for k in range(quarter):
            w = 10000 ** (-k / quarter)
            expected = [math.sin(y * w), math.cos(y * w), math.sin(x * w), math.cos(x * w)]
            got = [row[part * quarter + k].item() for part in range(4)]
            assert all(abs(g - config.vision_position_scale * e) < 1e-5 for g, e in zip(got, expected)), (y, x, k)
    # the "normal" table (truncated normal, std = the scale) and zeros remain available
    config.vision_position_init, config.vision_position_scale = "normal", 0.5
    normal = build_model(config).model.vision_tower.embeddings.position_embeddings
    assert abs(normal.std().item() - 0.5) < 0.03 * 0.5  # sampling error ~1%
    config.vision_position_scale = 0.0
    assert build_model(config).model.vision_tower.embeddings.position_embeddings.abs().max().item() == 0.0
    config.vision_position_init = "learned"
    with pytest.raises(ValueError, match="vision_position_init must be 'sincos' or 'normal'"):
        build_model(config)
    assert build_model(DemoConfig.quick()).dtype == torch.float32
    config.vision_position_init, config.dtype = "sincos", "float64"
    assert build_model(config).dtype == torch.float64
