"""DeepSpeed ZeRO configs: the official `zero_stage{1,2,3}_config.json` (reference-spec 4.8).

"auto" values are filled in by the HF Trainer from the recipe (precision, batch sizes,
gradient clipping). The optimizer is left out on purpose: the Trainer builds torch AdamW
(betas 0.9 / 0.999, eps 1e-8, as the official configs) and hands it to DeepSpeed, so no
DeepSpeed C++/CUDA op is compiled (FusedAdam / CPUAdam would be JIT-built on first use);
`zero_allow_untested_optimizer` lets ZeRO take it.
"""

from __future__ import annotations

from typing import Any

from v2pe.errors import ConfigError
from v2pe.files import read_json_object


def zero_config(stage: int) -> dict[str, Any]:
    """The official ZeRO config of `stage` (1, 2 or 3)."""
    common: dict[str, Any] = {
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto", "loss_scale": 0, "initial_scale_power": 32, "loss_scale_window": 1000, "hysteresis": 2, "min_loss_scale": 1},
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "steps_per_print": 2000,
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
    }
    if stage == 1:
        zero = {"stage": 1, "allgather_partitions": True, "allgather_bucket_size": 1e9, "overlap_comm": True,
                "reduce_scatter": True, "reduce_bucket_size": 1e9, "contiguous_gradients": True}
    elif stage == 2:
        zero = {"stage": 2, "allgather_partitions": True, "allgather_bucket_size": 1e8, "overlap_comm": True,
                "reduce_scatter": True, "reduce_bucket_size": 1e8, "contiguous_gradients": True}
    elif stage == 3:
        zero = {"stage": 3, "overlap_comm": True, "contiguous_gradients": True, "sub_group_size": 1e9,
                "reduce_bucket_size": 1e9, "stage3_prefetch_bucket_size": 1e9, "stage3_param_persistence_threshold": 1e7,
                "stage3_max_live_parameters": 1e9, "stage3_max_reuse_distance": 1e9,
                "stage3_gather_16bit_weights_on_model_save": True}
    else:
        raise ConfigError(f"parallel.zero_stage must be 1, 2 or 3 for a DeepSpeed config, got {stage}")
    return {**common, "zero_optimization": zero}


def deepspeed_config(zero_stage: int, config_file: str | None = None, on_cpu: bool = False) -> dict[str, Any] | None:
    """The config the Trainer gets: a user file if given, else the official one of zero_stage
    (None for stage 0: no DeepSpeed). On CPU, communication overlap is turned off (it needs
    CUDA streams)."""
    if config_file is not None:
        config = read_json_object(config_file, "parallel.deepspeed_config file", ConfigError)
    elif zero_stage == 0:
        return None
    else:
        config = zero_config(zero_stage)
    if on_cpu:
        config.get("zero_optimization", {})["overlap_comm"] = False
    return config


def skip_cpu_shm_comm_build() -> None:
    """On CPU, keep DeepSpeed from JIT-compiling its shared-memory all-reduce kernel.

    DeepSpeed's communication backend builds `deepspeed_shm_comm` (C++, about 2 minutes on two
    cores, cached in ~/.cache/torch_extensions) the first time it starts on a CPU accelerator.
    It only speeds up intra-node CPU all-reduce; gloo does the same work without it. DeepSpeed
    re-probes `deepspeed.ops.__compatible_ops__` per process and reads this dict before building.
    Set `parallel.deepspeed_cpu_shm_comm true` to build and use it.
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
