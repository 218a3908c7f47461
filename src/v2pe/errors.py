"""Error types for bad user input.

Every error names what is wrong and where (file, line, sample, field), so a
user can fix the input without reading a traceback. They subclass ValueError so
that generic callers still catch them.
"""


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
