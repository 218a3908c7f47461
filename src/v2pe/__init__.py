"""v2pe: Variable Visual Position Encoding for long-context vision-language models.

Top-level names load lazily so that `import v2pe` stays cheap and the positions, model and
scorers import without the training or evaluation stacks.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "v2pe_position_ids": "v2pe.positions",
    "delta_from_stride": "v2pe.positions",
    "decode_position_ids": "v2pe.positions",
    "load_model": "v2pe.model",
    "convert_checkpoint": "v2pe.model",
    "V2PESettings": "v2pe.model",
    "V2PEInternVLForConditionalGeneration": "v2pe.model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'v2pe' has no attribute {name!r}")
