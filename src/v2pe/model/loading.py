"""`load_model` and `convert_checkpoint`: official and native InternVL checkpoints, no remote code."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import InternVLConfig

from v2pe.errors import CheckpointError
from v2pe.model.checkpoint import (
    TOKENIZER_FILES,
    check_state_dict,
    find_token_ids,
    load_tensors,
    read_config,
    read_json,
    weight_files,
)
from v2pe.model.modeling import V2PEInternVLForConditionalGeneration, mark_native_architecture
from v2pe.model.official import (
    convert_official_state_dict,
    is_official_config,
    native_config_from_official,
    v2pe_settings_from_official,
)
from v2pe.model.settings import V2PESettings
from v2pe.tokens import IMG_CONTEXT, IMG_END, IMG_START

# What a converted SentencePiece tokenizer replaces (written by save_converted_tokenizer instead).
CONVERTED_TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")

@dataclass
class NativeCheckpoint:
    """A checkpoint in the native layout, in memory: config, weights, and where each came from."""

    config: InternVLConfig
    tensors: dict[str, torch.Tensor]
    files: dict[str, Path]
    origin: dict[str, str]


def load_model(
    path: str | Path,
    dtype: torch.dtype | str = torch.float32,
    device: str | torch.device = "cpu",
    **token_ids: int,
) -> V2PEInternVLForConditionalGeneration:
    """Load an official (`internvl_chat`) or native (`internvl`) InternVL checkpoint folder.

    dtype: a torch dtype, its name ("bfloat16"), or "auto" for the checkpoint's own.
    token_ids: `image_start_token_id`, `image_end_token_id`, `image_token_id` overrides when the
        folder has no tokenizer files to read them from.
    """
    folder = Path(path)
    raw_config = read_config(folder)
    resolved = _resolve_dtype(dtype, raw_config)
    if is_official_config(raw_config):
        model = instantiate(read_official_checkpoint(folder, raw_config, resolved, token_ids), device)
        return _with_generation_config(model, folder)
    if raw_config.get("model_type") == "internvl":
        return load_native(folder, raw_config, resolved, token_ids).to(device)
    raise _unsupported_model_type(folder, raw_config)


def convert_checkpoint(src: str | Path, dst: str | Path, dtype: torch.dtype | str = "auto") -> Path:
    """Write `src` (official or native) as a native checkpoint in `dst` (safetensors + config).

    `transformers.AutoModelForImageTextToText.from_pretrained(dst)` then loads it with no remote
    code, and `AutoTokenizer.from_pretrained(dst)` its tokenizer (an official SentencePiece
    InternLM2 tokenizer is converted to `tokenizer.json`); no remote-code file or `auto_map` is
    carried over. Everything is written to a staging folder beside `dst` and moved into place at
    the end, so a failed write (a full disk) leaves no half checkpoint.
    """
    src, dst = Path(src), Path(dst)
    raw_config = read_config(src)
    resolved = _resolve_dtype(dtype, raw_config)
    if not (is_official_config(raw_config) or raw_config.get("model_type") == "internvl"):
        raise _unsupported_model_type(src, raw_config)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise CheckpointError(f"{dst}: already exists and is not an empty folder; remove it or choose another output folder")
    staging = dst.parent / f".{dst.name}.partial"
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        _write_native(src, raw_config, resolved, staging)
        copy_tokenizer_files(src, staging)
        if dst.exists():
            dst.rmdir()
        staging.rename(dst)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise CheckpointError(f"{dst}: cannot write the converted checkpoint ({error.strerror or error}); nothing was written there") from error
    return dst


def _write_native(src: Path, raw_config: dict, dtype: torch.dtype | None, folder: Path) -> None:
    if is_official_config(raw_config):
        checkpoint = read_official_checkpoint(src, raw_config, dtype, {})
        with torch.device("meta"):
            skeleton = V2PEInternVLForConditionalGeneration(checkpoint.config)
        tensors = {k: v.contiguous() for k, v in _checked_tensors(checkpoint, skeleton).items()}
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        checkpoint.config.save_pretrained(folder)
        mark_native_architecture(folder)
    else:
        load_native(src, raw_config, dtype, {}).save_pretrained(folder)


def copy_tokenizer_files(src: Path, dst: Path) -> None:
    """The tokenizer and generation files: an official SentencePiece tokenizer converted to
    `tokenizer.json` (chat template included, no `auto_map`), other files copied as they are."""
    from v2pe.processing.internlm2_tokenizer import InternLM2SentencePieceTokenizer, load_tokenizer, save_converted_tokenizer

    converted = False
    if (src / "tokenizer.model").is_file() or (src / "tokenizer.json").is_file():
        tokenizer = load_tokenizer(src)
        if isinstance(tokenizer, InternLM2SentencePieceTokenizer):
            save_converted_tokenizer(tokenizer, dst)
            converted = True
    for name in TOKENIZER_FILES:
        if (src / name).is_file() and not (converted and name in CONVERTED_TOKENIZER_FILES):
            shutil.copy2(src / name, dst / name)


def read_official_checkpoint(folder: Path, raw_config: dict, dtype: torch.dtype | None, token_ids: dict) -> NativeCheckpoint:
    """An official checkpoint's config and weights, converted to the native layout in memory."""
    files = weight_files(folder)
    ids = _marker_token_ids(folder, token_ids)
    settings = v2pe_settings_from_official(raw_config, ids["image_start_token_id"], ids["image_end_token_id"])
    config = native_config_from_official(raw_config, ids["image_token_id"], settings)
    tensors, origin = convert_official_state_dict(load_tensors(files, dtype), raw_config)
    return NativeCheckpoint(config, tensors, files, origin)


def load_native(folder: Path, raw_config: dict, dtype: torch.dtype | None, token_ids: dict) -> V2PEInternVLForConditionalGeneration:
    """A native checkpoint through transformers' own loader (it knows every on-disk key layout)."""
    files = weight_files(folder)  # safetensors only, with a clear error otherwise
    config = _native_config(folder, raw_config, token_ids)
    try:
        model, info = V2PEInternVLForConditionalGeneration.from_pretrained(
            folder, config=config, dtype=dtype or "auto", use_safetensors=True, output_loading_info=True,
            ignore_mismatched_sizes=True,  # reported below with file and key, not as a bare error
        )
    except (OSError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"{folder}: transformers could not load the checkpoint ({error})") from error
    _raise_on_loading_problems(folder, info, files)
    return model.eval()


def _with_generation_config(model, folder: Path):
    """The folder's generation_config.json (its eos ids, e.g. `<|im_end|>`), as from_pretrained would."""
    from transformers import GenerationConfig

    if (folder / "generation_config.json").is_file():
        read_json(folder / "generation_config.json")  # a clear error for a broken file
        model.generation_config = GenerationConfig.from_pretrained(folder)
    return model


def _raise_on_loading_problems(folder: Path, info: dict, files: dict[str, Path]) -> None:
    if info.get("mismatched_keys"):
        key, *shapes = sorted(info["mismatched_keys"])[0]
        raise CheckpointError(f"{files.get(key, folder)}: key {key!r} has a shape that does not match config.json (checkpoint vs config: {shapes})")
    if info.get("missing_keys"):
        missing = sorted(info["missing_keys"])
        raise CheckpointError(f"{folder}: checkpoint is missing {len(missing)} weights config.json requires, e.g. {missing[:3]}")
    if info.get("unexpected_keys"):
        key = sorted(info["unexpected_keys"])[0]
        raise CheckpointError(f"{files.get(key, folder)}: key {key!r} does not belong to the model config.json describes")


def _unsupported_model_type(folder: Path, raw_config: dict) -> CheckpointError:
    return CheckpointError(
        f"{folder / 'config.json'}: model_type {raw_config.get('model_type')!r} is not supported "
        "(expected 'internvl_chat' for official InternVL2 / V2PE checkpoints or 'internvl' for native ones)"
    )


def instantiate(checkpoint: NativeCheckpoint, device: str | torch.device = "cpu") -> V2PEInternVLForConditionalGeneration:
    """Build the model without a random init (meta device), then assign the weights."""
    with torch.device("meta"):
        model = V2PEInternVLForConditionalGeneration(checkpoint.config)
    model.load_state_dict(_checked_tensors(checkpoint, model), strict=True, assign=True)
    _rebuild_rotary_buffers(model)
    model.tie_weights()
    return model.to(device).eval()


def _checked_tensors(checkpoint: NativeCheckpoint, skeleton: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The checkpoint's weights, verified against the shapes its config implies."""
    expected = {k: v.shape for k, v in skeleton.state_dict().items()}
    tensors = dict(checkpoint.tensors)
    tied = getattr(checkpoint.config.text_config, "tie_word_embeddings", False)
    if tied and "lm_head.weight" not in tensors and "model.language_model.embed_tokens.weight" in tensors:
        tensors["lm_head.weight"] = tensors["model.language_model.embed_tokens.weight"]
    check_state_dict(tensors, expected, checkpoint.files, checkpoint.origin)
    return tensors


def _rebuild_rotary_buffers(model: V2PEInternVLForConditionalGeneration) -> None:
    """RoPE frequencies are non-persistent buffers: recompute them off the meta device."""
    language_model = model.model.language_model
    rotary = language_model.rotary_emb
    with torch.device("cpu"):
        language_model.rotary_emb = type(rotary)(config=rotary.config)


def _marker_token_ids(folder: Path, overrides: dict[str, int]) -> dict[str, int]:
    wanted = {"image_start_token_id": IMG_START, "image_end_token_id": IMG_END, "image_token_id": IMG_CONTEXT}
    unknown = sorted(set(overrides) - set(wanted))
    if unknown:
        raise CheckpointError(f"unknown token id arguments {unknown} (known: {sorted(wanted)})")
    missing = [token for key, token in wanted.items() if key not in overrides]
    found = find_token_ids(folder, missing) if missing else {}
    return {key: overrides.get(key, found.get(token)) for key, token in wanted.items()}


def _native_config(folder: Path, raw_config: dict, overrides: dict[str, int]) -> InternVLConfig:
    try:
        config = InternVLConfig.from_pretrained(folder)
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{folder / 'config.json'}: not a valid native InternVL config ({error})") from error
    settings = V2PESettings.from_dict(raw_config.get("v2pe"))
    if settings.image_start_token_id is None or settings.image_end_token_id is None:
        try:
            ids = find_token_ids(folder, [IMG_START, IMG_END])
            settings.image_start_token_id, settings.image_end_token_id = ids[IMG_START], ids[IMG_END]
        except CheckpointError:
            pass  # text-only use still works; positions will ask for the ids when needed
    for key in ("image_start_token_id", "image_end_token_id"):
        if key in overrides:
            setattr(settings, key, overrides[key])
    config.v2pe = settings.to_dict()
    return config


def _resolve_dtype(dtype: torch.dtype | str, raw_config: dict) -> torch.dtype | None:
    """A torch dtype from a dtype, its name, or "auto" (the checkpoint's own, from its config)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        name = raw_config.get("torch_dtype") or raw_config.get("dtype")
        return getattr(torch, name) if isinstance(name, str) and hasattr(torch, name) else None
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype):
        raise CheckpointError(f"unknown dtype {dtype!r} (use e.g. 'float32', 'bfloat16' or 'auto')")
    return resolved
