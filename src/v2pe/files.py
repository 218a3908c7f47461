"""The one reader and writer of user files.

Every JSON / JSONL file a user hands us (annotations, meta files, score files, benchmark
files, checkpoint configs, DeepSpeed configs, training logs) is read through `iter_json_lines` /
`read_json_file` / `read_json_object`, which name file:line for bad UTF-8, bad JSON and
over-long lines; every output file is written through `output_file` (`write_text_file`,
`write_json_file`), which names the file when the disk says no. Both the data layer and the evaluation layer use
it, and it imports nothing heavy (no torch), so `v2pe eval score` starts at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from v2pe.errors import INVALID_JSON, INVALID_UTF8, NOT_AN_OBJECT, TOO_LONG, DataError, OutputError, SampleError, V2PEError


# --------------------------------------------------------------------------------------------
# reading


def decode_utf8(raw: bytes, where: str) -> str:
    """One line's bytes as UTF-8 text; SampleError (invalid_utf8) naming `where` and the bad byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        _, column = _line_and_column(raw, err.start)
        raise SampleError(f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {column})", INVALID_UTF8, where) from None


def _line_and_column(raw: bytes, offset: int) -> tuple[int, int]:
    """1-based line and byte column of `offset` in `raw`."""
    return raw.count(b"\n", 0, offset) + 1, offset - (raw.rfind(b"\n", 0, offset) + 1) + 1


def parse_json_object(text: str | bytes, where: str) -> dict:
    """One JSONL line as a JSON object; SampleError (invalid UTF-8 / invalid JSON / not an
    object) names `where`."""
    if isinstance(text, bytes):
        text = decode_utf8(text, where)
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise SampleError(f"not valid JSON ({err.msg} at column {err.colno})", INVALID_JSON, where) from None
    except RecursionError:
        raise SampleError("not valid JSON (nested too deeply)", INVALID_JSON, where) from None
    if not isinstance(record, dict):
        raise SampleError(f"expected a JSON object, got {type(record).__name__}", NOT_AN_OBJECT, where)
    return record


def iter_json_lines(
    path: str | os.PathLike,
    *,
    max_line_bytes: int | None = None,
    limit_hint: str = "",
    on_bad: Callable[[SampleError], None] | None = None,
    what: str = "file",
) -> Iterator[tuple[int, dict]]:
    """(1-based line number, object) for every non-blank line of a JSONL file.

    A bad line (not UTF-8, not JSON, not an object, longer than `max_line_bytes`) raises a
    SampleError naming file:line, or, with `on_bad`, is handed to it and skipped. A line over
    the limit is never held in memory: it is counted in chunks and passed over.
    """
    path = Path(path)
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from None
    with handle:
        for number, raw, size in _raw_lines(handle, max_line_bytes):
            where = f"{path}:{number}"
            try:
                if raw is None:
                    hint = f" ({limit_hint})" if limit_hint else ""
                    raise SampleError(f"a line of {size} bytes, more than the limit of {max_line_bytes} bytes{hint}", TOO_LONG, where)
                if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]  # a UTF-8 byte-order mark, as some editors write
                if not raw.strip():
                    continue
                record = parse_json_object(raw, where)
            except SampleError as error:
                if on_bad is None:
                    raise
                on_bad(error)
                continue
            yield number, record


def _raw_lines(handle, limit: int | None) -> Iterator[tuple[int, bytes | None, int]]:
    """(number, bytes, size) per line; bytes is None for a line over `limit` (not kept)."""
    number = 0
    while True:
        raw = handle.readline() if limit is None else handle.readline(limit + 1)
        if not raw:
            return
        number += 1
        if limit is None or raw.endswith(b"\n") or len(raw) <= limit:
            yield number, raw, len(raw.rstrip(b"\r\n"))
            continue
        size = len(raw)
        while not raw.endswith(b"\n"):
            raw = handle.readline(1 << 20)
            size += len(raw)
            if not raw:
                break
        yield number, None, size - (1 if raw.endswith(b"\n") else 0)


def read_json_file(path: str | os.PathLike, what: str = "file", error: type[V2PEError] = DataError) -> Any:
    """A whole JSON document; `error` names file:line for a missing file, bad UTF-8 or bad JSON."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as err:
        raise error(f"cannot read {path}: {err.strerror or err}") from None
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark, as some editors write
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line, column = _line_and_column(raw, err.start)
        raise error(f"{path}:{line}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {column})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise error(f"{path}:{err.lineno}: not valid JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:
        raise error(f"{path}: not valid JSON (nested too deeply)") from None


def read_json_object(path: str | os.PathLike, what: str = "file", error: type[V2PEError] = DataError, optional: bool = False) -> dict:
    """A JSON object file (`read_json_file`), {} for a missing `optional` one; `error` naming the
    file when it holds something else."""
    path = Path(path)
    if optional and not path.is_file():
        return {}
    data = read_json_file(path, what, error)
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


# --------------------------------------------------------------------------------------------
# writing


def make_output_folder(path: str | os.PathLike) -> Path:
    """Create the folder `path` (and its parents); OutputError naming it when that fails."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create output folder {path}: {_why(err)}") from None
    return path


@contextmanager
def output_file(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside `path` to write; it replaces `path` only once everything was
    written, so a full disk never leaves a truncated file that reads as a complete one.
    Any OSError becomes one OutputError naming `path` and what the system said."""
    path = Path(path)
    make_output_folder(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {_why(err)}") from None
    finally:
        temporary.unlink(missing_ok=True)


def write_text_file(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text through `output_file`."""
    with output_file(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_file(path: str | os.PathLike, value: Any, *, indent: int | None = 2, sort_keys: bool = False) -> Path:
    """Write `value` as JSON (UTF-8, non-ASCII kept, a final newline) through `output_file`."""
    return write_text_file(path, json.dumps(value, indent=indent, sort_keys=sort_keys, ensure_ascii=False) + "\n")


def _why(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__
