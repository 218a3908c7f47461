"""Training recipes: one dataclass config, loaded from YAML, overridden with dotted keys, validated.

A recipe is a YAML file with five sections (`model`, `v2pe`, `data`, `train`, `parallel`); the
packaged recipes live in `v2pe/train/recipes/` and are named without the extension
(`debug`, `internvl2-2b-32k`, `internvl2-2b-256k`). A recipe may start from another with
`base: NAME-OR-PATH`; its sections are merged key by key over the base.

Every value is checked against its field's type (by pydantic, against the section dataclasses)
when the recipe is read and again after the `--section.key value` overrides, and impossible combinations (a sequence-parallel size that
does not divide the world size, the ring backend without CUDA, bf16 on a CPU without bf16,
packing without a token budget, ...) fail at load time with a `ConfigError` that names the
key and the fix. Nothing is silently ignored: an unknown key is an error with a suggestion.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import inspect
import math
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from v2pe.errors import ConfigError
from v2pe.positions import DEFAULT_DELTA_CHOICES, TRAINING_DELTA_WORDS, parse_delta

RECIPES_DIR = Path(__file__).with_name("recipes")


# --------------------------------------------------------------------------------------------
# sections


@dataclass
class ModelConfig:
    """What to train.

    path: a checkpoint folder, official (`internvl_chat`) or native (`internvl`).
    tiny: instead of `path`, make a tiny model from scratch with these `v2pe.model.tiny.tiny_config`
        keyword arguments (the debug recipe); `init_seed` seeds its initialisation.
    attn_implementation: eager | sdpa | flash_attention_2 (the inner kernel under sequence parallelism).
    drop_path_rate: stochastic depth of the vision tower, linearly rising over its layers (InternViT).
    freeze_*: keep that part fixed; `unfreeze_lm_head` trains the output layer of a frozen LM.
    gradient_checkpointing: recompute activations in the backward pass (vision tower and LM).
    """

    path: str | None = None
    tiny: dict[str, Any] | None = None
    init_seed: int = 0
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] = "sdpa"
    drop_path_rate: float = 0.0
    freeze_vision: bool = False
    freeze_projector: bool = False
    freeze_language_model: bool = False
    unfreeze_lm_head: bool = False
    gradient_checkpointing: bool = False


@dataclass
class V2PEConfig:
    """Positions in training.

    delta: "random" (one draw per image from `delta_choices`, the paper's v2pe_rnd) or a fixed
        increment per visual token in (0, 1].
    delta_choices: the values "random" draws from (default 1, 1/2, ..., 1/256).
    seed: seeds the per-sample generator (sample index i draws with seed + i), so a sample gets
        the same deltas however the data is sharded, shuffled or resumed.
    """

    delta: float | str = "random"
    delta_choices: list[float] = field(default_factory=lambda: list(DEFAULT_DELTA_CHOICES))
    seed: int = 0


@dataclass
class DataConfig:
    """Training data.

    source: "meta" (the official meta JSON + JSONL annotations at `meta_path`) or "synthetic"
        (images drawn on the fly, with `synthetic` as keyword arguments of the synthetic source).
    tokenizer: a tokenizer folder; None uses the model folder's, "byte" the tiny byte tokenizer.
    template, min_tiles, max_tiles, use_thumbnail, max_seq_length: the processor's settings
        (max_seq_length None: no per-sample limit; samples are never truncated).
    packing: pack samples into rows of at most `max_packed_tokens` tokens and
        `num_images_expected` images (official PackedDataset); `max_buffer_size` open buffers.
    loss_reduction: token | sample | square: each token of a sample with n answer tokens weighs
        1, 1/n or 1/sqrt(n); the loss is sum(w * CE) / sum(w).
    loss_reduction_all_gather: sum(w) is averaged over all ranks (official), so the loss is the
        weighted mean over the whole global batch.
    skip_bad_samples: drop broken samples (counted and reported) instead of stopping.
    """

    source: Literal["meta", "synthetic"] = "meta"
    meta_path: str | None = None
    synthetic: dict[str, Any] = field(default_factory=dict)
    tokenizer: str | None = None
    template: str = "internlm2-chat"
    min_tiles: int = 1
    max_tiles: int = 12
    use_thumbnail: bool = True
    max_seq_length: int | None = None
    packing: bool = True
    max_packed_tokens: int | None = None
    num_images_expected: int = 135
    max_buffer_size: int = 20
    loss_reduction: Literal["token", "sample", "square"] = "token"
    loss_reduction_all_gather: bool = False
    skip_bad_samples: bool = False
    num_workers: int = 0


@dataclass
class TrainingConfig:
    """The optimisation loop (HF Trainer underneath).

    precision: auto (bf16 on a CUDA GPU with bf16, else fp32) | fp32 | bf16 | fp16.
    report_to: auto (TensorBoard when installed, always a JSONL log) | tensorboard | jsonl | none.
    resume: auto (continue from the last complete checkpoint in output_dir if there is one) |
        never | a checkpoint folder.
    """

    output_dir: str = "runs/v2pe"
    max_steps: int = 100
    per_device_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-6
    weight_decay: float = 0.05
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = 0.03
    max_grad_norm: float = 1.0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    seed: int = 42
    save_steps: int = 2500
    save_total_limit: int | None = 5
    save_final_model: bool = True
    logging_steps: int = 1
    report_to: Literal["auto", "tensorboard", "jsonl", "none"] = "auto"
    resume: str = "auto"
    progress_bar: bool = True


@dataclass
class ParallelConfig:
    """How the work is spread over processes (launched with torchrun, accelerate or deepspeed).

    zero_stage: 0 = plain DDP (or one process); 1, 2, 3 = DeepSpeed ZeRO (the official configs).
    deepspeed_config: a DeepSpeed JSON file used instead of the generated one.
    sequence_parallel_size: processes that share one sequence (1 = off); must divide the world size.
    sequence_parallel_backend: ulysses (DeepSpeed all-to-all over heads; CPU and GPU) |
        ring (zigzag ring flash attention; CUDA + flash-attn + ring-flash-attn).
    ddp_find_unused_parameters: for DDP steps where a part of the model gets no gradient.
    deepspeed_cpu_shm_comm: on CPU, let DeepSpeed JIT-compile its shared-memory all-reduce
        kernel (about 2 minutes the first time); off, gloo carries the collectives.
    """

    zero_stage: int = 0
    deepspeed_config: str | None = None
    sequence_parallel_size: int = 1
    sequence_parallel_backend: Literal["ulysses", "ring"] = "ulysses"
    ddp_find_unused_parameters: bool = False
    deepspeed_cpu_shm_comm: bool = False


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "v2pe": V2PEConfig,
    "data": DataConfig,
    "train": TrainingConfig,
    "parallel": ParallelConfig,
}


@dataclass
class TrainConfig:
    """A whole recipe. `name` is where it came from (recipe name or file)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    v2pe: V2PEConfig = field(default_factory=V2PEConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainingConfig = field(default_factory=TrainingConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    name: str = "custom"

    def to_dict(self) -> dict[str, Any]:
        return {section: dataclasses.asdict(getattr(self, section)) for section in SECTIONS}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def validate(self, env: RuntimeEnv | None = None) -> TrainConfig:
        validate(self, env or RuntimeEnv.detect())
        return self


# --------------------------------------------------------------------------------------------
# the machine a config is checked against


@dataclass(frozen=True)
class RuntimeEnv:
    """What the launch offers: world size (from the launcher's WORLD_SIZE) and available kernels."""

    world_size: int = 1
    cuda: bool = False
    cuda_bf16: bool = False
    cpu_bf16: bool = False
    deepspeed: bool = False
    flash_attn: bool = False
    ring_flash_attn: bool = False
    tensorboard: bool = False

    @classmethod
    def detect(cls) -> RuntimeEnv:
        import torch

        cuda = torch.cuda.is_available()
        return cls(
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            cuda=cuda,
            cuda_bf16=cuda and torch.cuda.is_bf16_supported(),
            cpu_bf16=_cpu_has_bf16(),
            deepspeed=_importable("deepspeed"),
            flash_attn=_importable("flash_attn"),
            ring_flash_attn=_importable("ring_flash_attn"),
            tensorboard=_importable("tensorboard") or _importable("tensorboardX"),
        )


def _importable(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _cpu_has_bf16() -> bool:
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # pragma: no cover - older torch
        return False


# --------------------------------------------------------------------------------------------
# loading: YAML recipes (with `base`) and `--section.key value` overrides. Names are checked
# here (with a suggestion); values are typed by pydantic against the section dataclasses.


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_path(name_or_path: str | os.PathLike) -> Path:
    """A packaged recipe name (`debug`) or a YAML file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"recipe file {path} does not exist")
        return path
    packaged = RECIPES_DIR / f"{name_or_path}.yaml"
    if not packaged.is_file():
        raise ConfigError(f"unknown recipe {str(name_or_path)!r}: give a YAML file or one of {list_recipes()}")
    return packaged


def load_recipe(
    name_or_path: str | os.PathLike,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    env: RuntimeEnv | None = None,
    validate_config: bool = True,
) -> TrainConfig:
    """Read a recipe, apply overrides (a {dotted.key: value} mapping or ["--a.b", "v", ...]), validate."""
    path = recipe_path(name_or_path)
    config = config_from_dict(_read_with_bases(path, seen=()), source=str(path))
    if overrides:
        pairs = parse_override_args(overrides) if _is_arg_list(overrides) else dict(overrides)
        tree = config.to_dict()
        for key, value in pairs.items():
            _set_dotted(tree, key, value)
        config = config_from_dict(tree, source="override")
    config.name = path.stem if path.parent == RECIPES_DIR else str(path)
    if validate_config:
        config.validate(env)
    return config


def _is_arg_list(overrides) -> bool:
    return isinstance(overrides, Sequence) and not isinstance(overrides, (str, bytes, Mapping))


def _read_with_bases(path: Path, seen: tuple[Path, ...]) -> dict:
    if path.resolve() in seen:
        raise ConfigError(f"{path}: `base` recipes form a cycle ({' -> '.join(str(p) for p in seen)})")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML ({error})") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of sections, got {type(raw).__name__}")
    base = raw.pop("base", None)
    if base is None:
        return raw
    base_path = Path(base) if Path(base).suffix in (".yaml", ".yml") else None
    if base_path is not None and not base_path.is_absolute():
        base_path = path.parent / base_path
    merged = _read_with_bases(base_path or recipe_path(base), seen + (path.resolve(),))
    for section, values in raw.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = values
    return merged


def config_from_dict(raw: Mapping[str, Any], source: str = "config") -> TrainConfig:
    """A TrainConfig from nested mappings: unknown names are a ConfigError with a suggestion,
    values are checked against the field types (one ConfigError naming the key)."""
    from pydantic import TypeAdapter, ValidationError

    for section, values in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown section {section!r}{_suggest(section, SECTIONS)} (sections: {list(SECTIONS)})")
        if values is not None and not isinstance(values, Mapping):
            raise ConfigError(f"{source}: section {section!r} must be a mapping of keys, got {values!r}")
        for key, value in (values or {}).items():
            members = _members(_field_hint(section, key, source))
            if isinstance(value, bool) and bool not in members and members & {int, float}:  # pydantic would read true as 1
                raise ConfigError(f"{source}: {section}.{key} = {value!r}: {_PHRASES['int' if int in members else 'float']}")
    try:
        return TypeAdapter(TrainConfig).validate_python({k: v for k, v in raw.items() if v is not None})
    except ValidationError as error:
        problems = error.errors()
        section, key = problems[0]["loc"][:2]
        phrases = dict.fromkeys(_phrase(p["type"], _field_hint(section, key, source), p["msg"]) for p in problems if p["loc"][:2] == (section, key))
        wanted = " or ".join(phrase.removeprefix("expected ") for phrase in phrases)
        raise ConfigError(f"{source}: {section}.{key} = {raw[section][key]!r}: {'' if wanted == next(iter(phrases)) else 'expected '}{wanted}") from None


def parse_override_args(args: Sequence[str]) -> dict[str, str]:
    """["--train.max_steps", "10", "--model.tiny.hidden=32"] -> {"train.max_steps": "10", ...}."""
    pairs: dict[str, str] = {}
    items, index = list(args), 0
    while index < len(items):
        item = items[index]
        if not item.startswith("--") or len(item) <= 2:
            raise ConfigError(f"expected an override `--section.key value`, got {item!r}")
        key = item[2:]
        if "=" in key:
            key, value = key.split("=", 1)
        else:
            if index + 1 >= len(items) or (items[index + 1].startswith("--") and not _is_number(items[index + 1])):
                raise ConfigError(f"override --{key} has no value (write --{key} VALUE)")
            index += 1
            value = items[index]
        pairs[key.replace("-", "_")] = value
        index += 1
    return pairs


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    """tree[section][key] = value (or tree[section][dict field][subkey] ...); a string from the
    command line is read as YAML (10, 2e-4, null, [1, 0.5]) unless the field takes only strings."""
    section, *keys = dotted.split(".")
    if section not in SECTIONS:
        raise ConfigError(f"override: unknown key {dotted!r}{_suggest(section, SECTIONS)}; keys look like section.key with sections {list(SECTIONS)}")
    if not keys:
        raise ConfigError(f"override: {dotted!r} is a section; set one of its keys, e.g. {dotted}.{next(iter(_fields(SECTIONS[section])))}")
    members = _members(_field_hint(section, keys[0], "override"))
    if isinstance(value, str) and (len(keys) > 1 or members - {str, type(None)}):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            pass
    elif isinstance(value, str) and type(None) in members and value.strip().lower() in ("null", "none"):
        value = None
    target = tree.setdefault(section, {})
    if len(keys) > 1:  # a key inside a mapping field, e.g. model.tiny.hidden
        if dict not in {typing.get_origin(m) or m for m in members}:
            raise ConfigError(f"override: {section}.{keys[0]} is not a mapping; cannot set {dotted!r}")
        for key in keys[:-1]:
            if not isinstance(target.get(key), dict):
                target[key] = {}
            target = target[key]
    target[keys[-1]] = value


def _field_hint(section: str, key: str, source: str):
    fields = _fields(SECTIONS[section])
    if key not in fields:
        options = [f"{section}.{f}" for f in fields]
        raise ConfigError(f"{source}: unknown key {section + '.' + key!r}{_suggest(section + '.' + key, options)} (known: {', '.join(options)})")
    return fields[key]


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _members(hint) -> set:
    """The types a union hint admits (the hint itself otherwise)."""
    return set(typing.get_args(hint)) if typing.get_origin(hint) in (typing.Union, types.UnionType) else {hint}


_PHRASES = {"int": "expected an integer", "bool": "expected true or false", "float": "expected a number",
            "finite": "expected a finite number", "string": "expected a string", "list": "expected a list", "dict": "expected a mapping"}


def _phrase(error_type: str, hint, message: str) -> str:
    """A pydantic error type (int_parsing, bool_parsing, literal_error, ...) as a short phrase."""
    if error_type == "literal_error":
        literal = next(m for m in _members(hint) if typing.get_origin(m) is Literal)
        return f"expected one of {list(typing.get_args(literal))}"
    return next((phrase for kind, phrase in _PHRASES.items() if error_type.startswith(kind)), message)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _suggest(word: str, options) -> str:
    match = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


# --------------------------------------------------------------------------------------------
# validation


def validate(config: TrainConfig, env: RuntimeEnv) -> None:
    """Impossible combinations, each with the key to change and how."""
    _validate_model(config.model)
    _validate_v2pe(config.v2pe)
    _validate_data(config.data)
    _validate_train(config.train, env)
    _validate_parallel(config, env)
    if config.train.report_to == "tensorboard" and not env.tensorboard:
        raise ConfigError("train.report_to = tensorboard but tensorboard is not installed: pip install tensorboard, or set train.report_to jsonl")


def _validate_model(model: ModelConfig) -> None:
    if (model.path is None) == (model.tiny is None):
        raise ConfigError("set exactly one of model.path (a checkpoint folder) and model.tiny (tiny_config arguments for a model made from scratch)")
    if model.tiny is not None:
        from v2pe.model.tiny import tiny_config

        known = set(inspect.signature(tiny_config).parameters)
        for key in model.tiny:
            if key not in known:
                raise ConfigError(f"unknown key model.tiny.{key}{_suggest(key, known)} (tiny_config takes {sorted(known)})")
    if not 0.0 <= model.drop_path_rate < 1.0:
        raise ConfigError(f"model.drop_path_rate must lie in [0, 1), got {model.drop_path_rate}")
    if model.freeze_vision and model.freeze_projector and model.freeze_language_model and not model.unfreeze_lm_head:
        raise ConfigError("model.freeze_vision, freeze_projector and freeze_language_model are all true: nothing would train; unfreeze one part (or set model.unfreeze_lm_head true)")
    if model.unfreeze_lm_head and not model.freeze_language_model:
        raise ConfigError("model.unfreeze_lm_head only applies with model.freeze_language_model true")


def _validate_v2pe(v2pe: V2PEConfig) -> None:
    v2pe.delta = parse_delta(v2pe.delta, "v2pe.delta", words=TRAINING_DELTA_WORDS, error=ConfigError)
    if not v2pe.delta_choices:
        raise ConfigError("v2pe.delta_choices must be a non-empty list of numbers in (0, 1]")
    v2pe.delta_choices = [parse_delta(d, f"v2pe.delta_choices[{i}]", words=(), error=ConfigError) for i, d in enumerate(v2pe.delta_choices)]


def _validate_data(data: DataConfig) -> None:
    if data.source == "meta" and not data.meta_path:
        raise ConfigError("data.source = meta needs data.meta_path (the official meta JSON); or set data.source synthetic")
    if data.packing and not data.max_packed_tokens:
        raise ConfigError("data.packing = true needs a token budget: set data.max_packed_tokens (the paper uses 34000), or data.packing false")
    if data.max_packed_tokens is not None and data.max_packed_tokens < 1:
        raise ConfigError(f"data.max_packed_tokens must be >= 1, got {data.max_packed_tokens}")
    if data.num_images_expected < 1 or data.max_buffer_size < 1:
        raise ConfigError("data.num_images_expected and data.max_buffer_size must be >= 1")
    if not 1 <= data.min_tiles <= data.max_tiles:
        raise ConfigError(f"need 1 <= data.min_tiles <= data.max_tiles, got {data.min_tiles}, {data.max_tiles}")
    if data.num_workers < 0:
        raise ConfigError("data.num_workers must be >= 0")


def _validate_train(train: TrainingConfig, env: RuntimeEnv) -> None:
    for key in ("max_steps", "per_device_batch_size", "gradient_accumulation_steps", "save_steps", "logging_steps"):
        if getattr(train, key) < 1:
            raise ConfigError(f"train.{key} must be >= 1, got {getattr(train, key)}")
    for key in ("learning_rate", "weight_decay", "max_grad_norm"):
        if not (math.isfinite(getattr(train, key)) and getattr(train, key) >= 0):  # nan passes `< 0`
            raise ConfigError(f"train.{key} must be a finite number >= 0, got {getattr(train, key)}")
    for key in ("adam_beta1", "adam_beta2"):
        if not 0 <= getattr(train, key) < 1:
            raise ConfigError(f"train.{key} must lie in [0, 1), got {getattr(train, key)}")
    if not 0 < train.adam_epsilon < 1:
        raise ConfigError(f"train.adam_epsilon must lie in (0, 1), got {train.adam_epsilon}")
    if not 0 <= train.warmup_ratio < 1:
        raise ConfigError(f"train.warmup_ratio must lie in [0, 1), got {train.warmup_ratio}")
    if train.save_total_limit is not None and train.save_total_limit < 1:
        raise ConfigError("train.save_total_limit must be >= 1 or null (keep all)")
    if train.precision == "bf16" and not (env.cuda_bf16 or (not env.cuda and env.cpu_bf16)):
        where = "this GPU" if env.cuda else "this CPU (no AVX512-BF16 / AMX)"
        raise ConfigError(f"train.precision = bf16 is not supported on {where}: set train.precision fp32 (or auto)")
    if train.precision == "fp16" and not env.cuda:
        raise ConfigError("train.precision = fp16 needs a CUDA GPU (loss scaling): set train.precision fp32 (or auto) on CPU")
    if train.resume not in ("auto", "never") and not Path(train.resume).is_dir():
        raise ConfigError(f"train.resume = {train.resume!r}: no such checkpoint folder; use auto, never or a checkpoint-N folder")


def _validate_parallel(config: TrainConfig, env: RuntimeEnv) -> None:
    parallel = config.parallel
    if parallel.zero_stage not in (0, 1, 2, 3):
        raise ConfigError(f"parallel.zero_stage must be 0 (no DeepSpeed), 1, 2 or 3, got {parallel.zero_stage}")
    uses_deepspeed = parallel.zero_stage > 0 or parallel.deepspeed_config is not None
    if uses_deepspeed and not env.deepspeed:
        raise ConfigError("parallel.zero_stage > 0 needs DeepSpeed: pip install 'v2pe[deepspeed]' (or set parallel.zero_stage 0 for DDP)")
    if parallel.deepspeed_config is not None and not Path(parallel.deepspeed_config).is_file():
        raise ConfigError(f"parallel.deepspeed_config = {parallel.deepspeed_config!r}: no such file")
    size = parallel.sequence_parallel_size
    if size < 1:
        raise ConfigError(f"parallel.sequence_parallel_size must be >= 1, got {size}")
    if env.world_size % size:
        raise ConfigError(
            f"parallel.sequence_parallel_size = {size} does not divide the world size {env.world_size} "
            f"(WORLD_SIZE from the launcher): launch a multiple of {size} processes or change parallel.sequence_parallel_size"
        )
    if size == 1:
        return
    if config.train.per_device_batch_size != 1:
        raise ConfigError("parallel.sequence_parallel_size > 1 shards one (packed) row: set train.per_device_batch_size 1")
    if parallel.sequence_parallel_backend == "ulysses" and not env.deepspeed:
        raise ConfigError("parallel.sequence_parallel_backend = ulysses uses DeepSpeed's DistributedAttention: pip install 'v2pe[deepspeed]'")
    if parallel.sequence_parallel_backend == "ring":
        missing = [name for name, ok in (("a CUDA GPU", env.cuda), ("flash-attn", env.flash_attn), ("ring-flash-attn", env.ring_flash_attn)) if not ok]
        if missing:
            raise ConfigError(
                f"parallel.sequence_parallel_backend = ring needs {', '.join(missing)} "
                "(zigzag_ring_flash_attn_varlen_func is a CUDA flash-attention kernel): install v2pe[ring] on a GPU machine, "
                "or set parallel.sequence_parallel_backend ulysses (runs on CPU and GPU)"
            )
        if config.model.attn_implementation != "flash_attention_2":
            raise ConfigError("parallel.sequence_parallel_backend = ring replaces flash attention: set model.attn_implementation flash_attention_2")
