"""Progress bar (loss, learning rate, tokens/s), a JSONL log of every logging step, TensorBoard.

Both logs read as one uninterrupted run after a resume from checkpoint-N: what the interrupted
run wrote for steps after N is dropped before training continues.
"""

from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager
from pathlib import Path

from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback

from v2pe.errors import V2PEError
from v2pe.files import iter_json_lines
from v2pe.train.checkpoint import describe_os_error

LOG_FILE = "train_log.jsonl"


class ProgressBar(TrainerCallback):
    """One tqdm bar over the optimisation steps with the latest loss, lr and tokens/s."""

    def __init__(self):
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train", unit="step", dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs or "loss" not in logs:
            return
        postfix = {"loss": f"{logs['loss']:.4f}", "lr": f"{logs.get('learning_rate', 0.0):.2e}"}
        if "tokens_per_s" in logs:
            postfix["tok/s"] = f"{logs['tokens_per_s']:,.0f}"
        self.bar.set_postfix(postfix, refresh=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class JsonlLogger(TrainerCallback):
    """Appends every log record (with its step) to <output_dir>/train_log.jsonl on the main process.

    On resume from checkpoint-N, records of steps after N (written by the interrupted run) are
    dropped first, so the file reads as one uninterrupted run; `notes` (how the resume was
    chosen: a damaged checkpoint skipped, a fresh optimizer) are recorded at step N.
    """

    def __init__(self, output_dir: str | Path, resume_step: int | None = None, notes=()):
        self.path = Path(output_dir) / LOG_FILE
        self.resume_step = resume_step
        self.notes = list(notes)

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        with self._writing():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.is_file():
                if self.resume_step is None:
                    self.path.unlink()
                else:
                    kept = [record for record in _records(self.path) if record.get("step", 0) <= self.resume_step]
                    _write_atomically(self.path, "".join(json.dumps(record) + "\n" for record in kept))
            for note in self.notes:
                self._append({"step": state.global_step, "note": note})

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        with self._writing():
            self._append({"step": state.global_step, **{k: _plain(v) for k, v in logs.items()}})

    def _append(self, record: dict) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def _writing(self):
        return _log_errors(self.path, "write the training log")


@contextmanager
def _log_errors(path: Path, action: str):
    """An OSError while writing a log (full disk, read-only folder) as one clear line."""
    try:
        yield
    except OSError as error:
        raise V2PEError(f"{path}: cannot {action} ({describe_os_error(error)})") from error


def _records(path: Path) -> list[dict]:
    """The records of a JSONL log; a line cut short by a kill mid-write is left out."""
    return [record for _line, record in iter_json_lines(path, on_bad=lambda error: None, what="training log")]


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


class TensorBoardLogger(TensorBoardCallback):
    """The HF TensorBoard callback, writing to `logging_dir` (<output_dir>/tensorboard).

    On resume from checkpoint-N, the events of steps after N are first removed from the event
    files already there (rewritten without them), so TensorBoard shows each step once; a run
    from scratch removes the old event files.
    """

    def __init__(self, logging_dir: str | Path, resume_step: int | None = None):
        super().__init__()
        self.logging_dir = str(logging_dir)
        self.resume_step = resume_step

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.tb_writer is None:
            with _log_errors(Path(self.logging_dir), "rewrite the TensorBoard events"):
                drop_events_after(self.logging_dir, self.resume_step)
        super().on_train_begin(args, state, control, **kwargs)


EVENT_FILES = "events.out.tfevents.*"


def drop_events_after(logging_dir: str | Path, step: int | None) -> None:
    """Remove the events of steps after `step` from the TensorBoard event files in
    `logging_dir` (all event files when `step` is None)."""
    for path in sorted(Path(logging_dir).rglob(EVENT_FILES)):
        if step is None:
            path.unlink()
            continue
        records = list(_tfrecords(path.read_bytes()))
        kept = [record for record in records if _event_step(record) <= step]
        if len(kept) < len(records):
            temporary = path.with_name(f".{path.name}.tmp")
            temporary.write_bytes(b"".join(kept))
            os.replace(temporary, path)


# An event file is a sequence of TFRecords: length (uint64 LE), masked CRC32C of the length,
# the serialised `Event` proto, masked CRC32C of the data. Records are kept or dropped whole,
# so their original bytes (checksums included) are copied as they are.


def _tfrecords(data: bytes):
    offset = 0
    while offset + 12 <= len(data):
        length = int.from_bytes(data[offset : offset + 8], "little")
        end = offset + 12 + length + 4
        if end > len(data):  # a record cut short by a kill: dropped
            return
        yield data[offset:end]
        offset = end


def _event_step(record: bytes) -> int:
    """The `step` (field 2, a varint) of a serialised `Event`; 0 when absent."""
    payload, offset = record[12:-4], 0
    while offset < len(payload):
        key, offset = _varint(payload, offset)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, offset = _varint(payload, offset)
            if field == 2:
                return value
        elif wire == 1:
            offset += 8
        elif wire == 2:
            size, offset = _varint(payload, offset)
            offset += size
        elif wire == 5:
            offset += 4
        else:  # not an Event this parser knows: keep it
            return 0
    return 0


def _varint(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[offset]
        value |= (byte & 0x7F) << shift
        offset += 1
        if not byte & 0x80:
            return value, offset
        shift += 7


def _plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    return value


def read_log(output_dir: str | Path) -> list[dict]:
    """The records of a run's JSONL log."""
    path = Path(output_dir) / LOG_FILE
    return _records(path) if path.is_file() else []
