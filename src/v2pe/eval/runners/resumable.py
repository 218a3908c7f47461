"""Resumable JSONL result files: one line per finished sample, appended and flushed at once.

A run writes `OUT/<task>.jsonl`. Each line is a JSON object whose `id` is unique within the
task; the line is appended, flushed and fsync'ed as soon as the sample is scored, so a killed
run loses at most the sample in flight. On restart, `ResumableWriter`:

* drops a partial last line (a write cut by the kill: no trailing newline) by truncating
  the file back to its last complete line;
* reports the ids already finished, so the runner skips them;
* refuses a file with a malformed line elsewhere (DataError naming file and line): that is
  not a kill artefact and silently dropping results would hide it.

Several lines with the same id (a sample re-run with `--retry-errors`) are allowed: the last
one wins (`read_results`).

`RunInfo` (`OUT/run.json`) records what produced the files (benchmark, model, delta,
settings); resuming into a folder made with different settings is refused, so one file never
mixes two configurations.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from v2pe.errors import ConfigError, DataError
from v2pe.files import decode_utf8, read_json_file, read_json_object

RUN_INFO = "run.json"
# run.json keys that must match for a resume (the rest is informative).
RESUME_KEYS = ("benchmark", "model", "delta", "window", "scorer_source", "settings")


def result_key(record: Mapping) -> str:
    """The resume key of a result line: its id as a string."""
    return str(record["id"])


def read_results(path: str | Path, *, repair: bool = False) -> dict[str, dict]:
    """Result lines by id (last line wins, first-appearance order).

    A partial last line (no trailing newline, not valid JSON) is ignored; with `repair=True`
    the file is truncated to its last complete line. Any other malformed line is a DataError.
    """
    path = Path(path)
    if not path.exists():
        return {}
    data = path.read_bytes()
    complete_end = data.rfind(b"\n") + 1  # bytes up to and including the last newline
    tail = data[complete_end:]
    if tail.strip():
        try:
            json.loads(tail)
            complete_end = len(data)  # a complete last line that only lacks its newline
        except ValueError:
            if repair:
                with open(path, "r+b") as handle:
                    handle.truncate(complete_end)
    elif tail and repair:
        with open(path, "r+b") as handle:
            handle.truncate(complete_end)
    records: dict[str, dict] = {}
    # Split on b"\n" only: json.dumps(ensure_ascii=False) keeps U+2028 and the like raw, which
    # str.splitlines would break a line at.
    for number, raw in enumerate(data[:complete_end].split(b"\n"), start=1):
        line = decode_utf8(raw, f"{path}:{number}")
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            raise DataError(f"{path}:{number}: result line is not valid JSON ({error}); fix or delete the line to resume") from None
        if not isinstance(record, dict) or "id" not in record:
            raise DataError(f"{path}:{number}: result line is not an object with an 'id'")
        key = result_key(record)
        records.pop(key, None)  # re-insert: the last line wins and moves to the end
        records[key] = record
    if repair and complete_end == len(data) and data and not data.endswith(b"\n"):
        with open(path, "ab") as handle:  # complete last line without newline: add it
            handle.write(b"\n")
    return records


class ResumableWriter:
    """Append-only JSONL writer that knows which samples a previous run finished."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records = read_results(self.path, repair=True)
        self._handle = None

    def finished(self, retry_errors: bool = False) -> set[str]:
        """Ids not to run again (with retry_errors, lines with an `error` are run again)."""
        return {key for key, record in self.records.items() if not (retry_errors and record.get("error"))}

    def write(self, record: Mapping) -> None:
        """Append one line and make it durable before returning."""
        try:
            if self._handle is None:
                self._handle = open(self.path, "a", encoding="utf-8")
            self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as error:
            # A cut last line is dropped on resume (read_results(repair=True)): nothing finished is lost.
            raise DataError(f"{self.path}: cannot write results ({error.strerror or error}); the samples written so far "
                            "are kept: free space (or fix the folder) and rerun the same command to resume") from error
        self.records.pop(result_key(record), None)
        self.records[result_key(record)] = dict(record)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> ResumableWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def differences(previous: Mapping, info: Mapping) -> list[str]:
    """The resume keys on which two run.json contents differ, described."""
    return [
        f"{key}: {previous.get(key)!r} there, {info.get(key)!r} now"
        for key in RESUME_KEYS
        if _normal(previous.get(key)) != _normal(info.get(key))
    ]


def stale_result_files(out_dir: str | Path, info: Mapping, tasks: list[str]) -> list[Path]:
    """Result files `--overwrite` removes: the selected tasks', and every task's of the folder
    when it was made with another configuration (so no folder mixes two)."""
    out_dir = Path(out_dir)
    names = list(tasks)
    path = out_dir / RUN_INFO
    if path.exists():
        try:
            previous = read_json_object(path, "run.json")
        except DataError:
            previous = {}
        if differences(previous, info):
            names += list(previous.get("tasks", [])) + [p.stem for p in out_dir.glob("*.jsonl")]
    return [out_dir / f"{name}.jsonl" for name in dict.fromkeys(names)]


def check_run_info(out_dir: str | Path, info: Mapping, overwrite: bool = False) -> None:
    """Write `run.json`, or check that an existing one describes the same run (ConfigError
    otherwise). With overwrite=True a different run.json is replaced (the caller has removed
    its result files, `stale_result_files`)."""
    path = Path(out_dir) / RUN_INFO
    if path.exists():
        try:
            previous = read_json_object(path, "run.json")  # file:line errors
        except DataError:
            if not overwrite:
                raise
            previous = None
        changed = differences(previous, info) if previous is not None else ["run.json"]
        if not changed:
            # informative keys (tasks run so far, data, limit) are merged
            merged = {**previous, **info, "tasks": sorted(set(previous.get("tasks", [])) | set(info.get("tasks", [])))}
            path.write_text(json.dumps(merged, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            return
        if not overwrite:
            raise ConfigError(
                f"{path.parent} holds results of a different run ({'; '.join(changed)}); "
                "use another --out folder, or --overwrite to start again"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(info), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _normal(value):
    """JSON round trip, so tuples/lists and int/float spellings compare as stored."""
    return json.loads(json.dumps(value))


def read_run_info(run_dir: str | Path) -> dict:
    path = Path(run_dir) / RUN_INFO
    if not path.exists():
        raise DataError(f"{run_dir} is not a run folder: {RUN_INFO} is missing")
    return read_json_file(path, RUN_INFO)
