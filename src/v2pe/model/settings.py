"""The V2PE settings a model carries in its config (`config.v2pe`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from v2pe.errors import ConfigError


@dataclass
class V2PESettings:
    """How a model lays out positions for images.

    delta: the increment per visual token used when no positions are passed (inference).
    tokens_per_tile: visual tokens per 448 px tile (256 for InternVL2).
    image_start_token_id / image_end_token_id: ids of `<img>` and `</img>`.
    trained_window: the longest position the model was trained on; automatic delta keeps the
        largest position inside it (None: the language model's max_position_embeddings).
    rope_pos_id_version / rope_pos_id_stride: the official config fields, kept for reference.
    """

    delta: float = 1.0
    tokens_per_tile: int = 256
    image_start_token_id: int | None = None
    image_end_token_id: int | None = None
    trained_window: int | None = None
    rope_pos_id_version: str = "default"
    rope_pos_id_stride: float | None = None

    def __post_init__(self) -> None:
        from v2pe.positions import parse_delta

        self.delta = parse_delta(self.delta, "v2pe.delta", words=(), error=ConfigError)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> V2PESettings:
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"config.v2pe: unknown keys {unknown} (known: {sorted(known)})")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
