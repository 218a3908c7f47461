"""Atomic checkpoints: write into a staging folder, fsync, then rename into place.

A checkpoint folder `checkpoint-N` only ever appears complete: every file is written under
`<output_dir>/.staging/checkpoint-N` first (by every rank: DeepSpeed and the RNG states are
per rank), flushed to disk, and renamed by the main process in one `os.replace`. A run killed
while saving leaves only the staging folder, which resume ignores (transformers'
`get_last_checkpoint` only matches `checkpoint-<digits>` directly under the output folder)
and the next run deletes.

What a resume may start from is checked here too (`checkpoint_damage`): every file a resume
reads is present, the JSON parses, each safetensors header is readable and its tensors lie
within the file, torch files are whole zip archives. A disk that fails under a save is told
apart from other errors (`storage_failure`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from pathlib import Path

from v2pe.errors import CheckpointError
from v2pe.files import read_json_file, read_json_object

STAGING = ".staging"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def fsync_tree(folder: str | os.PathLike) -> None:
    """Flush every file and directory under `folder` (and the folder itself) to disk."""
    folder = Path(folder)
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if os.path.islink(path):
                continue
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(root)


def fsync_dir(folder: str | os.PathLike) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(descriptor)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(descriptor)


def commit(staged: str | os.PathLike, final: str | os.PathLike) -> Path:
    """fsync `staged`, then rename it to `final` (replacing an older folder of that name)."""
    staged, final = Path(staged), Path(final)
    fsync_tree(staged)
    if final.exists():
        # An older checkpoint of the same step (a resumed run saving again): move it aside first,
        # so that at every instant one complete folder of that name exists or none does.
        old = final.with_name(f"{STAGING}-old-{final.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(staged, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, final)
    fsync_dir(final.parent)
    try:
        staged.parent.rmdir()  # the staging root, when nothing else is being written there
    except OSError:
        pass
    return final


def clean_staging(output_dir: str | os.PathLike) -> list[Path]:
    """Remove leftovers of interrupted saves; returns what was removed."""
    output_dir = Path(output_dir)
    removed = []
    for path in sorted(output_dir.glob(f"{STAGING}*")):
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def last_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The `checkpoint-N` with the largest N (staging folders never count)."""
    found = checkpoints(output_dir)
    return found[0] if found else None


# --------------------------------------------------------------------------------------------
# which checkpoints can be resumed from

TRAINER_STATE = "trainer_state.json"
OPTIMIZER_FILES = ("optimizer.pt", "scheduler.pt")
WEIGHTS, WEIGHTS_INDEX = "model.safetensors", "model.safetensors.index.json"
# Files of a checkpoint that only resuming needs; the rest is the model `final/` holds.
TRAINER_ONLY = re.compile(r"^(optimizer\.pt|scheduler\.pt|scaler\.pt|rng_state.*\.pth|trainer_state\.json|latest|global_step\d+|zero_to_\w+\.py)$")


def checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Every `checkpoint-N` folder directly under `output_dir`, newest (largest N) first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    steps = [(int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [path for _step, path in sorted(steps, reverse=True)]


def checkpoint_step(folder: str | os.PathLike) -> int:
    """The global step a checkpoint was saved at (its trainer state, else its folder name)."""
    folder = Path(folder)
    try:
        return int(read_json_object(folder / TRAINER_STATE, "trainer state", CheckpointError)["global_step"])
    except (CheckpointError, ValueError, KeyError, TypeError):
        match = _CHECKPOINT.match(folder.name)
        return int(match.group(1)) if match else 0


def checkpoint_damage(folder: str | os.PathLike, need_optimizer: bool = True) -> str | None:
    """Why `folder` cannot be resumed from, naming the first missing, unreadable or truncated
    file; None when it is whole. `need_optimizer` False leaves the optimizer state unchecked."""
    folder = Path(folder)
    deepspeed = (folder / "latest").is_file()
    checks = [_json_damage(folder / TRAINER_STATE, "global_step"), _weights_damage(folder, required=not deepspeed), _rng_damage(folder)]
    if need_optimizer:
        checks.append(_optimizer_damage(folder, deepspeed))
    return next((problem for problem in checks if problem), None)


def missing_optimizer_state(folder: str | os.PathLike) -> Path | None:
    """The optimizer or scheduler file (or DeepSpeed state folder) that `folder` lacks, if any."""
    folder = Path(folder)
    if (folder / "latest").is_file():
        tag = (folder / "latest").read_text().strip()
        return None if tag and (folder / tag).is_dir() else folder / (tag or "latest")
    return next((folder / name for name in OPTIMIZER_FILES if not (folder / name).exists()), None)


def _optimizer_damage(folder: Path, deepspeed: bool) -> str | None:
    missing = missing_optimizer_state(folder)
    if missing is not None:
        return f"{missing}: missing (the optimizer state)"
    return None if deepspeed else next(filter(None, (_torch_file_damage(folder / name) for name in OPTIMIZER_FILES)), None)


def _json_damage(path: Path, required_key: str) -> str | None:
    if not path.is_file():
        return f"{path}: missing"
    if path.stat().st_size == 0:
        return f"{path}: empty file"
    try:
        data = read_json_file(path, "file", CheckpointError)
    except CheckpointError as error:
        return str(error)
    if not isinstance(data, dict) or required_key not in data:
        return f"{path}: has no {required_key!r}"
    return None


def _weights_damage(folder: Path, required: bool) -> str | None:
    if (folder / WEIGHTS_INDEX).is_file():
        problem = _json_damage(folder / WEIGHTS_INDEX, "weight_map")
        if problem:
            return problem
        shards = sorted(set(read_json_object(folder / WEIGHTS_INDEX, "weights index", CheckpointError)["weight_map"].values()))
        return next(filter(None, (safetensors_damage(folder / shard) for shard in shards)), None)
    if (folder / WEIGHTS).is_file() or required:
        return safetensors_damage(folder / WEIGHTS)
    return None


def _rng_damage(folder: Path) -> str | None:
    files = sorted(folder.glob("rng_state*.pth"))
    if not files:
        return f"{folder / 'rng_state.pth'}: missing (the random number generator states)"
    return next(filter(None, (_torch_file_damage(path) for path in files)), None)


def safetensors_damage(path: str | os.PathLike) -> str | None:
    """What is wrong with a safetensors file (missing, header unreadable, tensors beyond the end
    of the file), or None. Reads the header only."""
    path = Path(path)
    if not path.is_file():
        return f"{path}: missing"
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        header_size = int.from_bytes(prefix, "little") if len(prefix) == 8 else None
        if header_size is None or 8 + header_size > size:
            return f"{path}: truncated ({size} bytes, shorter than its safetensors header)"
        try:
            header = json.loads(handle.read(header_size))
            end = max((int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return f"{path}: unreadable safetensors header"
    if 8 + header_size + end > size:
        return f"{path}: truncated ({size} bytes; its tensors need {8 + header_size + end})"
    return None


def _torch_file_damage(path: Path) -> str | None:
    """torch.save writes a zip archive, whose directory sits at the end: a truncated file has none."""
    if not path.is_file():
        return f"{path}: missing"
    return None if zipfile.is_zipfile(path) else f"{path}: truncated or corrupt (not a readable torch file)"


def storage_failure(error: BaseException, folder: str | os.PathLike) -> str | None:
    """Why a save into `folder` failed, when the storage is the cause (a full disk, a read-only
    or missing folder), else None. torch.save and safetensors report a full disk as a
    RuntimeError / SafetensorError rather than an OSError, so the free space is added."""
    if isinstance(error, OSError):
        reason = describe_os_error(error)
    elif type(error).__name__ == "SafetensorError" and ("I/O error" in str(error) or "os error" in str(error)):
        reason = str(error)
    elif isinstance(error, RuntimeError) and any(mark in str(error) for mark in ("inline_container", "PytorchStreamWriter")):
        reason = f"torch.save failed: {error}"
    else:
        return None
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return reason
    return f"{reason}; {free / 2**20:,.1f} MiB free there"


def describe_os_error(error: OSError) -> str:
    if error.strerror and error.filename:
        return f"{error.strerror}: {error.filename}"
    return error.strerror or str(error)


def export_final(checkpoint: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Write the model files of a (last) checkpoint as the final model, atomically."""
    checkpoint, final = Path(checkpoint), Path(final)
    if not any(checkpoint.glob("model*.safetensors")):
        raise CheckpointError(f"{checkpoint}: has no model*.safetensors to write the final model {final} from")
    staged = final.parent / STAGING / final.name
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    for path in checkpoint.iterdir():
        if TRAINER_ONLY.match(path.name):
            continue
        if path.is_dir():
            shutil.copytree(path, staged / path.name)
        else:
            shutil.copy2(path, staged / path.name)
    return commit(staged, final)
