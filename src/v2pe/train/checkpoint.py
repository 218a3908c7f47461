"""Atomic checkpoints: write into a staging folder, fsync, then rename into place.

A checkpoint folder `checkpoint-N` only ever appears complete: every file is written under
`<output_dir>/.staging/checkpoint-N` first (by every rank: DeepSpeed and the RNG states are
per rank), flushed to disk, and renamed by the main process in one `os.replace`. A run killed
while saving leaves only the staging folder, which resume ignores (transformers'
`get_last_checkpoint` only matches `checkpoint-<digits>` directly under the output folder)
and the next run deletes.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

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
    """The complete `checkpoint-N` with the largest N (staging folders never count)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    steps = [(int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return max(steps)[1] if steps else None
