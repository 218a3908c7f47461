"""Error types for bad user input.

Every error names what is wrong and where (file, line, sample, field), so a
user can fix the input without reading a traceback. They subclass ValueError so
that generic callers still catch them. The one reader and writer of user files is
`v2pe.files`.
"""

from __future__ import annotations


class V2PEError(ValueError):
    """Base class for errors caused by user input (files, configs, data)."""


class PositionError(V2PEError):
    """Token ids or deltas that V2PE positions cannot be computed for."""


class CheckpointError(V2PEError):
    """A checkpoint folder that is missing files or does not match its config."""


class ConfigError(V2PEError):
    """Unknown keys or impossible combinations in a config or recipe."""


class DataError(V2PEError):
    """Malformed annotation files, missing images, bad samples."""


class SampleTooLongError(DataError):
    """A sample with more tokens than the processor's max_length (samples are never truncated)."""


class OutputError(V2PEError):
    """An output file or folder that cannot be written (a file in the way, read-only, disk full)."""


# Skip reasons of the reader (the `reason` of its SampleErrors).
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
TOO_LONG = "too_long"


class SampleError(DataError):
    """A bad line or sample: the message names file, line and field; `reason` is a short
    key such as "missing_image" under which a skip is counted."""

    def __init__(self, message: str, reason: str, where: str = ""):
        super().__init__(f"{where}: {message}" if where else message)
        self.reason = reason
        self.where = where
