"""Reading checkpoint folders: config, safetensors weights (single or sharded), token ids.

Only safetensors are read (pickled `.bin` files can run code on load). Every error names the
file and, where it applies, the key.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open

from v2pe.errors import CheckpointError
from v2pe.files import read_json_object

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
    "added_tokens.json", "special_tokens.json", "chat_template.jinja", "vocab.json", "merges.txt",
    "generation_config.json", "preprocessor_config.json", "processor_config.json",
)


def read_json(path: Path) -> dict:
    """A JSON object file of a checkpoint folder; CheckpointError naming file:line otherwise."""
    return read_json_object(path, "file", CheckpointError)


def read_config(folder: str | Path) -> dict:
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder does not exist")
    return read_json(folder / "config.json")


def weight_files(folder: Path) -> dict[str, Path]:
    """Map every weight name to the safetensors file that holds it."""
    if (folder / INDEX_FILE).is_file():
        index = read_json(folder / INDEX_FILE)
        if "weight_map" not in index:
            raise CheckpointError(f"{folder / INDEX_FILE}: missing key 'weight_map'")
        files = {key: folder / name for key, name in index["weight_map"].items()}
        for path in sorted(set(files.values())):
            if not path.is_file():
                raise CheckpointError(f"{path}: shard listed in {INDEX_FILE} is missing")
            safetensors_keys(path)  # a truncated or corrupt shard fails here, named
        return files
    if (folder / SINGLE_FILE).is_file():
        return {key: folder / SINGLE_FILE for key in safetensors_keys(folder / SINGLE_FILE)}
    pickled = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt"))
    hint = f" (found {pickled}: only safetensors are loaded; re-save with safe_serialization=True)" if pickled else ""
    raise CheckpointError(f"{folder}: no {SINGLE_FILE} or {INDEX_FILE}{hint}")


def safetensors_keys(path: Path) -> list[str]:
    """The tensor names of a safetensors file; a truncated or corrupt file is a CheckpointError
    naming it (safetensors checks on open that the header's byte ranges fit the file)."""
    try:
        with safe_open(path, framework="pt") as handle:
            return list(handle.keys())
    except Exception as error:  # noqa: BLE001 - SafetensorError derives from Exception only
        raise CheckpointError(f"{path}: not a readable safetensors file, truncated or corrupt ({error})") from error


def load_tensors(files: dict[str, Path], dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Load every tensor, optionally cast (floating point only) to `dtype`."""
    by_file: dict[Path, list[str]] = {}
    for key, path in files.items():
        by_file.setdefault(path, []).append(key)
    tensors: dict[str, torch.Tensor] = {}
    for path, keys in by_file.items():
        try:
            with safe_open(path, framework="pt") as handle:
                available = set(handle.keys())
                for key in keys:
                    if key not in available:
                        raise CheckpointError(f"{path}: key {key!r} is listed in the index but not in the file")
                    tensor = handle.get_tensor(key)
                    tensors[key] = tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor
        except CheckpointError:
            raise
        except Exception as error:  # noqa: BLE001 - SafetensorError derives from Exception only
            raise CheckpointError(f"{path}: cannot read safetensors ({error})") from error
    return tensors


def find_token_ids(folder: Path, tokens: Iterable[str]) -> dict[str, int]:
    """Ids of special tokens from the tokenizer files that sit beside a checkpoint."""
    vocab: dict[str, int] = {}
    if (folder / "tokenizer.json").is_file():
        vocab.update({t["content"]: t["id"] for t in read_json(folder / "tokenizer.json").get("added_tokens", [])})
    if (folder / "tokenizer_config.json").is_file():
        decoder = read_json(folder / "tokenizer_config.json").get("added_tokens_decoder", {})
        vocab.update({entry["content"]: int(index) for index, entry in decoder.items()})
    for name in ("added_tokens.json", "special_tokens.json"):
        if (folder / name).is_file():
            vocab.update({k: v for k, v in read_json(folder / name).items() if isinstance(v, int)})
    tokens = list(tokens)
    missing = [t for t in tokens if t not in vocab]
    if missing:
        raise CheckpointError(
            f"{folder}: cannot find the ids of {missing} in tokenizer.json, tokenizer_config.json, "
            "added_tokens.json or special_tokens.json; pass them explicitly"
        )
    return {t: vocab[t] for t in tokens}


def check_state_dict(
    tensors: dict[str, torch.Tensor],
    expected: dict[str, torch.Size],
    files: dict[str, Path] | None = None,
    source_key: dict[str, str] | None = None,
) -> None:
    """Missing, unexpected or mis-shaped weights, each named with the file and original key."""

    def where(key: str) -> str:
        original = (source_key or {}).get(key, key)
        path = (files or {}).get(original)
        return f"{path}: key {original!r}" if path else f"key {original!r}"

    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise CheckpointError(f"checkpoint is missing {len(missing)} weights the config requires, e.g. {missing[:3]}")
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise CheckpointError(f"{where(unexpected[0])} does not belong to the model the config describes ({len(unexpected)} such weights)")
    for key, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(expected[key]):
            raise CheckpointError(f"{where(key)} has shape {tuple(tensor.shape)} but the config implies {tuple(expected[key])}")
