"""Recipes: loading, dotted overrides with type checks, and every impossible combination failing
at load time with the key and the fix in the message."""

from __future__ import annotations

import pytest

from v2pe.errors import ConfigError
from v2pe.train.config import RuntimeEnv, config_from_dict, list_recipes, load_recipe, parse_override_args

CPU = RuntimeEnv(world_size=1, cpu_bf16=True, deepspeed=True, tensorboard=True)
GPU = RuntimeEnv(world_size=8, cuda=True, cuda_bf16=True, deepspeed=True, flash_attn=True, ring_flash_attn=True, tensorboard=True)


def test_packaged_recipes_carry_the_paper_hyperparameters():
    assert list_recipes() == ["debug", "internvl2-2b-256k", "internvl2-2b-32k"]
    paper = load_recipe("internvl2-2b-32k", env=GPU)
    assert (paper.train.learning_rate, paper.train.max_steps, paper.train.lr_scheduler) == (5e-6, 20000, "cosine")
    assert (paper.train.warmup_ratio, paper.train.weight_decay, paper.train.precision) == (0.03, 0.05, "bf16")
    assert (paper.data.max_packed_tokens, paper.data.num_images_expected, paper.data.max_buffer_size) == (34000, 135, 20)
    assert (paper.data.loss_reduction, paper.data.loss_reduction_all_gather) == ("square", True)
    assert (paper.model.drop_path_rate, paper.model.gradient_checkpointing, paper.parallel.zero_stage) == (0.1, True, 3)
    assert not (paper.model.freeze_vision or paper.model.freeze_projector or paper.model.freeze_language_model)
    assert paper.v2pe.delta == "random" and paper.v2pe.delta_choices == [1 / 2**k for k in range(9)]
    long = load_recipe("internvl2-2b-256k", env=GPU)
    assert (long.parallel.sequence_parallel_size, long.parallel.sequence_parallel_backend) == (8, "ring")
    assert long.train.learning_rate == 5e-6 and long.train.output_dir.endswith("256k")  # inherited + overridden
    debug = load_recipe("debug", env=CPU)
    assert debug.model.tiny is not None and debug.data.source == "synthetic"


def test_overrides_are_dotted_and_type_checked():
    config = load_recipe(
        "debug",
        ["--train.learning_rate", "2e-4", "--train.max_steps=7", "--model.tiny.hidden", "32", "--v2pe.delta", "0.25",
         "--data.packing", "false", "--train.save_total_limit", "null", "--v2pe.delta_choices", "[1, 0.5]"],
        env=CPU,
    )
    assert config.train.learning_rate == 2e-4 and config.train.max_steps == 7
    assert config.model.tiny["hidden"] == 32 and config.model.tiny["layers"] == 4  # merged into the mapping
    assert config.v2pe.delta == 0.25 and config.data.packing is False and config.train.save_total_limit is None
    assert config.v2pe.delta_choices == [1.0, 0.5]
    assert load_recipe("debug", {"v2pe.delta": "random"}, env=CPU).v2pe.delta == "random"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["--train.learnig_rate", "1"], "did you mean 'train.learning_rate'"),
        (["--trian.max_steps", "1"], "did you mean 'train'"),
        (["--train.max_steps", "ten"], "train.max_steps"),
        (["--train.max_steps", "1.5"], "expected an integer"),
        (["--data.packing", "maybe"], "expected true or false"),
        (["--train.precision", "int8"], "['auto', 'fp32', 'bf16', 'fp16']"),
        (["--train.max_steps"], "has no value"),
        (["train.max_steps", "3"], "--section.key value"),
        (["--model.freeze_vision.x", "1"], "is not a mapping"),
    ],
)
def test_bad_overrides_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=None) as error:
        load_recipe("debug", overrides, env=CPU)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("overrides", "env", "key", "fix"),
    [
        ({"parallel.sequence_parallel_size": 3}, RuntimeEnv(world_size=4, deepspeed=True), "parallel.sequence_parallel_size", "multiple of 3"),
        ({"parallel.sequence_parallel_size": 2, "parallel.sequence_parallel_backend": "ring"}, RuntimeEnv(world_size=2, deepspeed=True), "ring needs a CUDA GPU, flash-attn, ring-flash-attn", "ulysses"),
        ({"parallel.sequence_parallel_size": 2, "train.per_device_batch_size": 2}, RuntimeEnv(world_size=2, deepspeed=True), "train.per_device_batch_size", "1"),
        ({"parallel.sequence_parallel_size": 2}, RuntimeEnv(world_size=2), "ulysses", "v2pe[deepspeed]"),
        ({"train.precision": "bf16"}, RuntimeEnv(cpu_bf16=False), "train.precision = bf16", "fp32"),
        ({"train.precision": "fp16"}, CPU, "train.precision = fp16", "fp32"),
        ({"data.max_packed_tokens": None}, CPU, "data.max_packed_tokens", "data.packing false"),
        ({"parallel.zero_stage": 2}, RuntimeEnv(), "parallel.zero_stage", "v2pe[deepspeed]"),
        ({"parallel.zero_stage": 4}, CPU, "parallel.zero_stage", "1, 2 or 3"),
        ({"model.freeze_vision": True, "model.freeze_projector": True, "model.freeze_language_model": True}, CPU, "nothing would train", "unfreeze"),
        ({"model.path": "somewhere"}, CPU, "model.path", "model.tiny"),
        ({"model.tiny.hiden": 3}, CPU, "model.tiny.hiden", "did you mean 'hidden'"),
        ({"v2pe.delta": 1.5}, CPU, "v2pe.delta", "(0, 1]"),
        ({"v2pe.delta": "sometimes"}, CPU, "v2pe.delta", "random"),
        ({"data.source": "meta"}, CPU, "data.meta_path", "synthetic"),
        ({"train.resume": "/no/such/checkpoint"}, CPU, "train.resume", "auto"),
        ({"train.report_to": "tensorboard"}, RuntimeEnv(), "tensorboard", "jsonl"),
    ],
)
def test_impossible_combinations_fail_at_load_time(overrides, env, key, fix):
    with pytest.raises(ConfigError) as error:
        load_recipe("debug", overrides, env=env)
    assert key in str(error.value) and fix in str(error.value)


def test_ring_backend_needs_flash_attention_kernel_on_gpu():
    with pytest.raises(ConfigError, match="model.attn_implementation flash_attention_2"):
        load_recipe("internvl2-2b-256k", {"model.attn_implementation": "sdpa"}, env=GPU)
    assert load_recipe("internvl2-2b-256k", {"parallel.sequence_parallel_backend": "ulysses"}, env=GPU).parallel.sequence_parallel_size == 8


def test_yaml_recipe_with_base_and_unknown_section(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("base: debug\ntrain:\n  learning_rate: 5e-6\n  max_steps: 2\n")
    config = load_recipe(good, env=CPU)
    assert config.train.learning_rate == 5e-6 and config.train.max_steps == 2 and config.model.tiny is not None
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: debug\ntrainer:\n  max_steps: 2\n")
    with pytest.raises(ConfigError, match="unknown section 'trainer'.*did you mean 'train'"):
        load_recipe(bad, env=CPU)
    with pytest.raises(ConfigError, match="unknown recipe 'nope'"):
        load_recipe("nope")
    cycle = tmp_path / "cycle.yaml"
    cycle.write_text(f"base: {cycle}\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_recipe(cycle)


def test_round_trip_through_yaml():
    config = load_recipe("internvl2-2b-32k", env=GPU)
    import yaml

    again = config_from_dict(yaml.safe_load(config.to_yaml()))
    assert again.to_dict() == config.to_dict()


def test_parse_override_args_accepts_negative_numbers():
    assert parse_override_args(["--train.weight_decay", "-1", "--a.b=c"]) == {"train.weight_decay": "-1", "a.b": "c"}
