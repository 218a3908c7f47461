"""DDP, DeepSpeed ZeRO 1/2/3 and Ulysses sequence parallelism on 2 CPU processes (gloo), each
against a one-process run of the same global batch."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.train.conftest import HERE, cpu_bf16, losses, needs_deepspeed, torchrun

pytestmark = pytest.mark.slow


def final_weights(folder) -> dict[str, torch.Tensor]:
    return load_file(f"{folder}/model.safetensors")


@pytest.mark.parametrize("setup", ["ddp", "zero1", "zero2", "zero3"])
def test_data_parallel_matches_one_process(setup, distributed_runs, reference_batch2):
    """2 processes x 1 packed row = 1 process x 2 rows: same losses every step, same weights after."""
    run = distributed_runs[setup]
    expected = losses(reference_batch2)
    assert len(run["losses"]) == len(expected) == 3
    torch.testing.assert_close(torch.tensor(run["losses"]), torch.tensor(expected), rtol=1e-5, atol=1e-6)
    assert run["losses"][0] != run["losses"][-1]  # it trained
    mine, ref = final_weights(run["final_model"]), final_weights(reference_batch2.final_model)
    assert mine.keys() == ref.keys()
    for key in ref:
        torch.testing.assert_close(mine[key], ref[key], rtol=1e-4, atol=1e-5, msg=lambda m, key=key: f"{key}: {m}")


def test_ulysses_training_matches_one_process(distributed_runs, reference_batch1):
    """A 2-rank sequence-parallel group trains on one row exactly like one process does."""
    run = distributed_runs["ulysses"]
    torch.testing.assert_close(torch.tensor(run["losses"]), torch.tensor(losses(reference_batch1)), rtol=1e-5, atol=1e-6)
    mine, ref = final_weights(run["final_model"]), final_weights(reference_batch1.final_model)
    for key in ref:
        torch.testing.assert_close(mine[key], ref[key], rtol=1e-4, atol=1e-5)


def test_positions_stay_float32_under_deepspeed_bf16(distributed_runs):
    """DeepSpeed bf16 casts every float input to bf16; the per-image deltas must reach the model,
    and the positions it computes from them its language model, in float32."""
    if not cpu_bf16():
        pytest.skip("this CPU has no bf16 (AVX512-BF16 / AMX): DeepSpeed bf16 is not run")
    probe = distributed_runs["zero2_bf16"]["probe"]
    assert probe["parameters"] == "torch.bfloat16"
    assert probe["pixel_values"] == "torch.bfloat16"
    assert probe["delta"] == "torch.float32"
    assert probe["position_ids"] == "torch.float32"


def test_sequence_parallel_forward_and_gradients_match_one_process(tmp_path):
    """Sharded logits, the loss and the rank-averaged gradients equal the one-process run to 1e-5,
    on a packed row of 3 samples with random (fractional) deltas, for sdpa and eager kernels."""
    needs_deepspeed()
    torchrun(HERE / "sp_worker.py", str(tmp_path / "sp.json"))
    results = json.loads((tmp_path / "sp.json").read_text())
    ring = results.pop("ring_reference_kernel")
    for implementation, result in results.items():
        assert result["attention_calls"] == 2, implementation  # one all-to-all attention per decoder layer
        assert result["query_tokens_per_rank"] == result["local_tokens"] == (result["row_tokens"] + 1) // 2
        assert result["images"] == 3 and result["deltas_fractional"]
        assert result["logits"] <= 1e-5, (implementation, result)
        assert result["loss"] <= 1e-5, (implementation, result)
        assert result["grad"] <= 1e-5 * max(1.0, result["grad_scale"]), (implementation, result)

    # ring: zigzag layout per sample, per-sample padding, local cu_seqlens, positions sharded
    # with the tokens, around an exact CPU stand-in for the CUDA kernel (forward only)
    assert ring["attention_calls"] == 2
    assert ring["local_tokens"] > ring["row_tokens"] // 2  # every sample padded to a multiple of 4
    assert ring["logits"] <= 1e-5 and ring["loss"] <= 1e-5, ring
