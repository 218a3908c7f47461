"""Packing: the plan, packed rows and positions, model isolation, loss weighting."""

from __future__ import annotations

import math
import random

import pytest
import torch

from tests.data.conftest import write_lines, write_meta
from v2pe.data.annotations import SampleError, SkipReport
from v2pe.data.dataset import SupervisedDataset
from v2pe.data.packing import (
    PackedDataset,
    model_inputs,
    pack_samples,
    packing_efficiency,
    plan_packs,
)
from v2pe.errors import ConfigError
from v2pe.positions import v2pe_position_ids
from v2pe.processing.collate import collate
from v2pe.train.loss import loss_weights, packed_loss

# ---- the plan -------------------------------------------------------------------------------


def test_first_fit_worked_example():
    # 5 -> P0; 3 -> P0 = 8 = budget, closed; 4 -> P1; 2 -> P1 (6); 6 does not fit P1 -> P2.
    plan = plan_packs([5, 3, 4, 2, 6], 8)
    assert plan.packs == [[0, 1], [2, 3], [4]]
    assert plan.pack_lengths == [8, 6, 6]
    assert plan.efficiency == pytest.approx(20 / 24)


def test_open_pack_limit_closes_the_fullest():
    # max_open 1: 5 -> P0; 4 opens P1, two open > 1 -> close P0 (fullest); 3 -> P1 (7).
    assert plan_packs([5, 4, 3], 8, max_open=1).packs == [[0], [1, 2]]
    # unlimited: 3 joins P0 (5 + 3 = 8)
    assert plan_packs([5, 4, 3], 8, max_open=20).packs == [[0, 2], [1]]


def test_image_limit_and_skipped_entries():
    plan = plan_packs([2, 2, 2, None, 2], 100, num_images=[2, 2, 1, 9, 1], max_images=4)
    assert plan.packs == [[0, 1], [2, 4]]  # 2 + 2 images close the first pack; index 3 was already skipped


def test_over_budget_is_an_error_or_a_counted_skip():
    with pytest.raises(SampleError, match="sample 1: 9 tokens, more than the packing budget of 8") as error:
        plan_packs([3, 9, 2], 8)
    assert error.value.reason == "over_budget"
    report = SkipReport()
    plan = plan_packs([3, 9, 2], 8, skip_over_budget=True, report=report)
    assert plan.packs == [[0, 2]] and report.counts == {"over_budget": 1}
    with pytest.raises(ConfigError):
        plan_packs([1], 0)


def test_random_plans_never_split_or_overfill():
    rng = random.Random(0)
    lengths = [rng.randint(1, 100) for _ in range(500)]
    plan = plan_packs(lengths, 128, max_open=5)
    flat = sorted(i for pack in plan.packs for i in pack)
    assert flat == list(range(500))
    assert all(sum(lengths[i] for i in pack) == n <= 128 for pack, n in zip(plan.packs, plan.pack_lengths))
    assert plan.efficiency == pytest.approx(sum(lengths) / (len(plan.packs) * 128))
    assert packing_efficiency([], 10) == 0.0


# ---- packed rows ------------------------------------------------------------------------------


@pytest.fixture()
def dataset(synthetic_dir, processor):
    return SupervisedDataset(synthetic_dir / "meta.json", processor, delta="random", seed=5)


def test_packed_row_positions_equal_each_samples_own(dataset, model):
    """The model computes a packed row's positions from the ids, the per-image deltas and
    sequence_ids: every sample gets exactly the positions it gets alone, restarting at 0."""
    samples = [dataset[i] for i in range(6)]
    row = pack_samples(samples)
    lengths = [len(s["input_ids"]) for s in samples]
    assert row["sequence_ids"].tolist() == [k for k, n in enumerate(lengths) for _ in range(n)]
    assert "position_ids" not in row and torch.equal(row["image_deltas"], torch.cat([s["image_deltas"] for s in samples]))
    packed = model.v2pe_position_ids(row["input_ids"], delta=row["image_deltas"], sequence_ids=row["sequence_ids"])[0]
    alone = torch.cat([model.v2pe_position_ids(s["input_ids"], delta=s["image_deltas"])[0] for s in samples])
    assert torch.equal(packed, alone)
    starts = [sum(lengths[:k]) for k in range(6)]
    assert packed[starts].tolist() == [0.0] * 6
    assert (packed.frac() != 0).any()  # random deltas: fractional visual positions
    assert torch.equal(row["pixel_values"], torch.cat([s["pixel_values"] for s in samples]))
    assert row["num_tiles"].tolist() == [t for s in samples for t in s["num_tiles"].tolist()]


def test_packed_positions_with_a_fixed_delta(synthetic_dir, processor, model):
    fixed = SupervisedDataset(synthetic_dir / "meta.json", processor, delta=0.25)
    row = pack_samples([fixed[i] for i in range(4)])
    from_deltas = model.v2pe_position_ids(row["input_ids"], delta=row["image_deltas"], sequence_ids=row["sequence_ids"])
    expected = v2pe_position_ids(row["input_ids"], image_start_id=processor.image_start_id, image_end_id=processor.image_end_id, delta=0.25, sequence_ids=row["sequence_ids"])
    assert torch.equal(from_deltas, expected)


def test_collate_packed_pads_rows(dataset):
    a, b = pack_samples([dataset[0], dataset[1]]), pack_samples([dataset[2]])
    batch = collate([a, b], pad_to=len(a["input_ids"]) + 3)
    n = len(b["input_ids"])
    assert batch["input_ids"].shape == (2, len(a["input_ids"]) + 3)
    assert batch["labels"][1, n:].eq(-100).all() and batch["attention_mask"][1, n:].eq(0).all()
    assert batch["sequence_ids"][1, n:].eq(-1).all()
    assert batch["image_deltas"].dtype == torch.float32 and len(batch["image_deltas"]) == int(batch["num_tiles"].numel())
    with pytest.raises(Exception, match="more than pad_to"):
        collate([a], pad_to=3)


# ---- the model keeps packed samples apart -----------------------------------------------------


@pytest.fixture(scope="module")
def model():
    from v2pe.model.tiny import tiny_model

    return tiny_model(seed=0)


def _alone(model, sample):
    return model(
        input_ids=sample["input_ids"][None], attention_mask=sample["attention_mask"][None],
        delta=sample["image_deltas"], pixel_values=sample["pixel_values"],
    ).logits[0]


def test_packed_forward_equals_separate_forwards(model, dataset):
    samples = [dataset[i] for i in range(4)]
    batch = collate([pack_samples(samples)])
    with torch.no_grad():
        packed = model(**model_inputs(batch)).logits[0]
        start = 0
        for sample in samples:
            n = len(sample["input_ids"])
            torch.testing.assert_close(packed[start : start + n], _alone(model, sample), atol=2e-5, rtol=1e-4)
            start += n


def test_padded_batch_of_packed_rows_equals_separate_forwards(model, dataset):
    rows = [pack_samples([dataset[0], dataset[1]]), pack_samples([dataset[2]])]
    with torch.no_grad():
        logits = model(**model_inputs(collate(rows))).logits
        n = len(dataset[2]["input_ids"])
        torch.testing.assert_close(logits[1, :n], _alone(model, dataset[2]), atol=2e-5, rtol=1e-4)
        assert torch.isfinite(logits).all()


def test_no_gradient_crosses_samples(model, dataset):
    samples = [dataset[i] for i in range(3)]
    batch = collate([pack_samples(samples)])
    captured = {}

    def keep_embeddings(module, args, kwargs):
        kwargs["inputs_embeds"].retain_grad()
        captured["embeds"] = kwargs["inputs_embeds"]

    pixels = batch["pixel_values"].clone().requires_grad_(True)
    handle = model.model.language_model.register_forward_pre_hook(keep_embeddings, with_kwargs=True)
    try:
        logits = model(**{**model_inputs(batch), "pixel_values": pixels}).logits
    finally:
        handle.remove()
    seq = batch["sequence_ids"][0]
    labels = batch["labels"].clone()
    labels[0, seq != 1] = -100  # the loss of sample 1 only
    torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100).backward()
    grad = captured["embeds"].grad[0].abs().sum(-1)
    assert grad[seq == 1].sum() > 0
    assert grad[seq == 0].max() == 0 and grad[seq == 2].max() == 0
    tiles = batch["num_tiles"].tolist()
    first = sum(samples[0]["num_tiles"].tolist())
    second = first + sum(samples[1]["num_tiles"].tolist())
    pixel_grad = pixels.grad.flatten(1).abs().sum(1)
    assert pixel_grad[first:second].sum() > 0
    assert pixel_grad[:first].max() == 0 and pixel_grad[second:].max() == 0 and len(tiles) == 3


# ---- loss weighting ---------------------------------------------------------------------------


def _reference_loss(logits, labels, sequence_ids, reduction):
    """Per-token CE by hand; weight 1, 1/x or 1/sqrt(x), x = label tokens of the sub-sample."""
    counts = {}
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1]):
            if labels[b, t] != -100:
                key = (b, int(sequence_ids[b, t]))
                counts[key] = counts.get(key, 0) + 1
    num, den = 0.0, 0.0
    for b in range(labels.shape[0]):
        for t in range(1, labels.shape[1]):
            if labels[b, t] == -100 or sequence_ids[b, t] != sequence_ids[b, t - 1]:
                continue
            x = counts[(b, int(sequence_ids[b, t]))]
            w = {"token": 1.0, "sample": 1.0 / x, "square": 1.0 / math.sqrt(x)}[reduction]
            ce = -torch.log_softmax(logits[b, t - 1].double(), -1)[labels[b, t]].item()
            num += w * ce
            den += w
    return num / den


@pytest.mark.parametrize("reduction", ["token", "sample", "square"])
def test_weighted_loss_matches_a_hand_computation(reduction):
    torch.manual_seed(0)
    sequence_ids = torch.tensor([[0] * 4 + [1] * 9 + [2] * 3, [0] * 10 + [-1] * 6])
    labels = torch.randint(0, 11, (2, 16))
    labels[:, 0] = -100
    labels[0, 4] = labels[0, 13] = -100  # first token of each sub-sample
    labels[0, 5:8] = -100
    labels[1, 10:] = -100  # padding
    logits = torch.randn(2, 16, 11)
    got = packed_loss(logits, labels, sequence_ids, reduction).item()
    assert got == pytest.approx(_reference_loss(logits, labels, sequence_ids, reduction), rel=1e-5)


def test_weights_worked_example():
    # sub-sample 0 has 4 label tokens, sub-sample 1 has 1
    labels = torch.tensor([[-100, 5, 5, 5, 5, -100, 7]])
    seq = torch.tensor([[0, 0, 0, 0, 0, 1, 1]])
    assert loss_weights(labels, seq, "token").tolist() == [[0, 1, 1, 1, 1, 0, 1]]
    assert loss_weights(labels, seq, "sample").tolist() == [[0, 0.25, 0.25, 0.25, 0.25, 0, 1]]
    assert loss_weights(labels, seq, "square").tolist() == [[0, 0.5, 0.5, 0.5, 0.5, 0, 1]]
    with pytest.raises(ConfigError):
        loss_weights(labels, seq, "mean")


def test_token_reduction_is_the_usual_mean_loss():
    torch.manual_seed(1)
    logits, labels = torch.randn(1, 12, 7), torch.randint(0, 7, (1, 12))
    labels[0, :3] = -100
    expected = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100)
    assert packed_loss(logits, labels, None, "token").item() == pytest.approx(expected.item(), rel=1e-6)


# ---- PackedDataset -----------------------------------------------------------------------------


def test_packed_dataset_covers_every_sample_once(dataset):
    budget = 1200  # samples are about 265 tokens: four fit a pack
    packed = PackedDataset(dataset, budget)
    seen = []
    for p in range(len(packed)):
        row = packed[p]
        assert len(row["input_ids"]) <= budget and len(row["input_ids"]) == packed.plan.pack_lengths[p]
        seen += row["index"].tolist()
    assert sorted(seen) == list(range(len(dataset)))
    assert packed.efficiency == pytest.approx(sum(packed.lengths) / (len(packed) * budget))
    assert 0.75 < packed.efficiency <= 1.0


def test_packed_dataset_counts_skips(tmp_path, synthetic_dir, processor):
    import json

    records = [json.loads(line) for line in (synthetic_dir / "synthetic.jsonl").read_text().splitlines()][:6]
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    records[1]["image"] = str(tmp_path / "corrupt.png")  # header unreadable: found when measuring
    records[4]["image"] = "images/gone.png"
    entry = {"root": str(synthetic_dir), "annotation": str(write_lines(tmp_path / "d.jsonl", records)), "allow_outside_root": True}
    meta = write_meta(tmp_path / "meta.json", {"d": entry})
    with pytest.raises(SampleError, match=r"d\.jsonl:2 \(id synthetic-000001\), field 'image': cannot read image"):
        PackedDataset(SupervisedDataset(meta, processor), 10_000)
    data = SupervisedDataset(meta, processor, skip_bad=True)
    packed = PackedDataset(data, 10_000)
    assert data.report.counts == {"corrupt_image": 1, "missing_image": 1}
    assert len(packed) == 1 and packed[0]["index"].tolist() == [0, 2, 3, 5]
