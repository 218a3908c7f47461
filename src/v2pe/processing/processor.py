"""Images + conversations -> model inputs, as InternVL builds them (no positions: the model
computes V2PE positions from the token ids and the deltas it is given).

Per sample (reference-spec 4.4, 3.6):
* each image becomes tiles (`tiling`); the i-th `<image>` placeholder becomes
  `<img>` + `<IMG_CONTEXT>` x (tokens_per_tile x tiles_i) + `</img>`;
* a sample with exactly one image gets `<image>\\n` prepended to its first human turn where
  the official code adds it (`add_missing_image_placeholder`: a prompt with no placeholder at
  all, as `chat()`; a training sample whose first human turn has none, as the training code);
  any other count mismatch is a DataError;
* text is kept as given in prompts (official `chat()`) and stripped in training samples
  (official training preprocessing), see `templates.parse_conversation`;
* the prompt is rendered by the chat template and tokenised in one piece (the tokenizer's BOS
  included); labels are -100 except on assistant answers and their end-of-turn token. Answer
  tokens are found from the tokenizer's character offsets, so a fast tokenizer is required;
  a token is labelled when its first character lies inside an answer;
* a sample longer than `max_length` is a DataError: nothing is truncated.

Batches are made by `v2pe.processing.collate.collate` (right padding; pixel values of all
images concatenated in sample order).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import dataclasses
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from v2pe.errors import CheckpointError, ConfigError, DataError, SampleTooLongError
from v2pe.files import read_json_object
from v2pe.processing.collate import collate
from v2pe.processing.templates import TEMPLATES, Segment, Turn, is_prompt, parse_conversation, render
from v2pe.processing.tiling import TILE_SIZE, ImageInput, image_size, image_to_pixel_values, load_image, num_tiles_for_size
from v2pe.tokens import IGNORE_INDEX, IMAGE_PLACEHOLDER, IMG_CONTEXT, IMG_END, IMG_START

Conversation = Sequence[Mapping[str, str]]


@dataclass(frozen=True)
class SamplePlan:
    """A sample's tokens without its pixels (`Processor.plan`)."""

    input_ids: list[int]
    labels: list[int]
    num_tiles: tuple[int, ...]
    tokens_per_tile: int

    @property
    def image_tokens(self) -> int:
        """Tokens of the `<img> ... </img>` spans, markers included."""
        return sum(self.tokens_per_tile * n + 2 for n in self.num_tiles)


@dataclass(eq=False)
class Processor:
    """Turns conversations and images into input_ids, labels and pixel values.

    Its settings are fixed once made (checked at construction; assigning one raises
    FrozenInstanceError): a different tile limit is a copy, `with_tiles(max_tiles)`, or
    `dataclasses.replace(processor, ...)`."""

    tokenizer: Any
    template: str = "internlm2-chat"
    tokens_per_tile: int = 256
    min_tiles: int = 1
    max_tiles: int = 12
    use_thumbnail: bool = True
    max_length: int | None = None
    tile_size: int = TILE_SIZE
    # derived from the tokenizer
    image_start_id: int = field(init=False, repr=False)
    image_end_id: int = field(init=False, repr=False)
    image_context_id: int = field(init=False, repr=False)
    pad_token_id: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check_settings(self.template, self.tokens_per_tile, self.min_tiles, self.max_tiles, self.max_length)
        if not getattr(self.tokenizer, "is_fast", False):
            raise ConfigError("Processor needs a fast tokenizer (it reads character offsets to place labels)")
        derived = dict(zip(("image_start_id", "image_end_id", "image_context_id"), (_token_id(self.tokenizer, t) for t in (IMG_START, IMG_END, IMG_CONTEXT))))
        derived["pad_token_id"] = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        for name, value in derived.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_made", True)

    def __setattr__(self, name: str, value) -> None:
        if not self.__dict__.get("_made"):  # __init__ and __post_init__
            object.__setattr__(self, name, value)
        else:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}: a Processor's settings are fixed; "
                                                  "make a copy with with_tiles(...) or dataclasses.replace(...)")

    def with_tiles(self, max_tiles: int | None = None, min_tiles: int | None = None, use_thumbnail: bool | None = None) -> Processor:
        """A copy with another tile limit (min_tiles lowered to max_tiles when above it); self when nothing changes."""
        max_tiles = self.max_tiles if max_tiles is None else int(max_tiles)
        min_tiles = min(self.min_tiles if min_tiles is None else int(min_tiles), max_tiles)
        use_thumbnail = self.use_thumbnail if use_thumbnail is None else use_thumbnail
        if (max_tiles, min_tiles, use_thumbnail) == (self.max_tiles, self.min_tiles, self.use_thumbnail):
            return self
        return dataclasses.replace(self, max_tiles=max_tiles, min_tiles=min_tiles, use_thumbnail=use_thumbnail)

    def __call__(
        self,
        conversations: Conversation | Sequence[Conversation] | str,
        images: Sequence[ImageInput] | Sequence[Sequence[ImageInput]] | None = None,
        sample_ids: Sequence[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """A right-padded batch. One conversation (a list of turns, or a question string) with
        its images, or a list of conversations with one image list each."""
        batch_convs, batch_images = _as_batch(conversations, images)
        ids = sample_ids if sample_ids is not None else [None] * len(batch_convs)
        samples = [self.encode(c, i, sample_id=s) for c, i, s in zip(batch_convs, batch_images, ids, strict=True)]
        return collate(samples, pad_token_id=self.pad_token_id)

    def encode(self, conversation: Conversation | str, images: Sequence[ImageInput] = (), sample_id: str | None = None) -> dict[str, torch.Tensor]:
        """One sample (1-D tensors, ready for `collate`): input_ids, attention_mask, labels,
        pixel_values, num_tiles. `plan` with the decoded images, then the pixels."""
        decoded = []

        def tiles(image) -> int:  # decode once; the tiles come from the size alone
            decoded.append(load_image(image))
            return self.num_tiles(decoded[-1])

        plan = self.plan(conversation, images, sample_id, tiles=tiles)
        self._check_length(len(plan.input_ids), sample_id)  # an over-long sample fails before any pixel work
        pixels = [image_to_pixel_values(img, self.min_tiles, self.max_tiles, self.use_thumbnail, self.tile_size) for img in decoded]
        return {
            "input_ids": torch.tensor(plan.input_ids, dtype=torch.long),
            "attention_mask": torch.ones(len(plan.input_ids), dtype=torch.long),
            "labels": torch.tensor(plan.labels, dtype=torch.long),
            "pixel_values": torch.cat(pixels) if pixels else torch.zeros(0, 3, self.tile_size, self.tile_size),
            "num_tiles": torch.tensor(plan.num_tiles, dtype=torch.long),
        }

    def plan(self, conversation: Conversation | str, images: Sequence[ImageInput] = (), sample_id: str | None = None,
             tiles: Callable[[ImageInput], int] | None = None) -> SamplePlan:
        """Everything `encode` decides before the pixels, and nothing else: the placeholder rule,
        the template, the tiles per image and the tokenisation with labels. `tiles(image)` gives
        an image's tile count (default `num_tiles`, which reads only the file header), so
        `len(plan(...).input_ids)` is the exact length of `encode(...)` without pixel work: what
        builders and the packer plan with (`v2pe.data.lengths.LengthMeter` caches the tiles)."""
        images = _image_list(images)
        conversation = add_missing_image_placeholder(_as_conversation(conversation), len(images))
        system, turns = parse_conversation(conversation, sample_id)
        check_image_count(turns, len(images), sample_id)
        num_tiles = tuple((tiles or self.num_tiles)(image) for image in images)
        segments = render(self.template, turns, system, self.tokenizer)
        text, answer_spans = expand_image_placeholders(segments, [self.image_tokens(n) for n in num_tiles])
        input_ids, labels = self.tokenize_with_labels(text, answer_spans)
        return SamplePlan(input_ids, labels, num_tiles, self.tokens_per_tile)

    def num_tiles(self, image: ImageInput) -> int:
        """Tiles of an image (thumbnail included), from its size alone (a file's header)."""
        width, height = image_size(image)
        return num_tiles_for_size(width, height, self.min_tiles, self.max_tiles, self.use_thumbnail, self.tile_size)

    def image_tokens(self, num_tiles: int) -> str:
        """The text an image of num_tiles tiles stands for."""
        return IMG_START + IMG_CONTEXT * (self.tokens_per_tile * num_tiles) + IMG_END

    def tokenize_with_labels(self, text: str, answer_spans: Sequence[tuple[int, int]]) -> tuple[list[int], list[int]]:
        """Token ids of text (BOS as the tokenizer adds it) and labels: the id where the token's
        first character lies in an answer span, else -100."""
        encoding = self.tokenizer(text, return_offsets_mapping=True, add_special_tokens=True, truncation=False)
        ids = np.asarray(encoding["input_ids"], dtype=np.int64)
        offsets = np.asarray(encoding["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        in_answer = np.zeros(len(text) + 1, dtype=bool)
        for start, end in answer_spans:
            in_answer[start:end] = True
        labelled = (offsets[:, 1] > offsets[:, 0]) & in_answer[offsets[:, 0]]  # empty spans: BOS and other added tokens
        return ids.tolist(), np.where(labelled, ids, IGNORE_INDEX).tolist()

    def _check_length(self, length: int, sample_id: str | None) -> None:
        if self.max_length is not None and length > self.max_length:
            where = f"sample {sample_id}" if sample_id is not None else "sample"
            raise SampleTooLongError(f"{where} has {length} tokens, more than max_length={self.max_length} (samples are never truncated; drop it or raise max_length)")

    @classmethod
    def from_pretrained(cls, path: str | PathLike, tokenizer=None, **overrides) -> Processor:
        """A Processor for a checkpoint folder: its tokenizer (unless given) and, from an official
        (`internvl_chat`) or native (`internvl`) config, the template and tiling settings.
        Keyword arguments override what the folder says."""
        path = Path(path)
        if tokenizer is None:
            tokenizer = _load_tokenizer(path)
        settings = settings_from_checkpoint(path, tokenizer)
        settings.update(overrides)
        return cls(tokenizer, **settings)


def _check_settings(template: str, tokens_per_tile: int, min_tiles: int, max_tiles: int, max_length: int | None) -> None:
    if template not in TEMPLATES:
        raise ConfigError(f"unknown chat template {template!r}; choose one of {TEMPLATES}")
    if tokens_per_tile < 1:
        raise ConfigError(f"tokens_per_tile must be >= 1, got {tokens_per_tile}")
    if not 1 <= min_tiles <= max_tiles:
        raise ConfigError(f"need 1 <= min_tiles <= max_tiles, got min_tiles={min_tiles}, max_tiles={max_tiles}")
    if max_length is not None and max_length < 1:
        raise ConfigError(f"max_length must be >= 1 or None, got {max_length}")


def settings_from_checkpoint(path: Path, tokenizer) -> dict:
    """Processor keyword arguments read from config.json (+ preprocessor_config.json)."""
    config = _read_json(path / "config.json")
    if config.get("model_type") == "internvl_chat" or "llm_config" in config:
        return _official_settings(config, path)
    if config.get("model_type") == "internvl":
        return _native_settings(config, _read_json(path / "preprocessor_config.json"), tokenizer)
    return {"template": "tokenizer"} if getattr(tokenizer, "chat_template", None) else {}


def _official_settings(config: dict, path: Path) -> dict:
    template = config.get("template") or "internlm2-chat"
    if template != "internlm2-chat":
        raise ConfigError(f"{path / 'config.json'}: template {template!r} is not supported; pass template='tokenizer' to use the tokenizer's chat template")
    from v2pe.model.official import num_image_tokens, tile_size

    dynamic = config.get("dynamic_image_size", False)
    return {
        "template": template,
        "tile_size": tile_size(config),
        "tokens_per_tile": num_image_tokens(config),
        "min_tiles": config.get("min_dynamic_patch", 1) if dynamic else 1,
        "max_tiles": config.get("max_dynamic_patch", 12) if dynamic else 1,
        "use_thumbnail": config.get("use_thumbnail", False),
    }


def _native_settings(config: dict, preprocessor: dict, tokenizer) -> dict:
    image_size = config.get("vision_config", {}).get("image_size", TILE_SIZE)
    default_size = image_size[0] if isinstance(image_size, (list, tuple)) else image_size
    size = preprocessor.get("size", {}).get("height", default_size)
    crop = preprocessor.get("crop_to_patches", True)
    settings = {
        "template": "tokenizer" if getattr(tokenizer, "chat_template", None) else "internlm2-chat",
        "tile_size": size,
        "tokens_per_tile": config.get("image_seq_length", 256),
        "min_tiles": preprocessor.get("min_patches", 1) if crop else 1,
        "max_tiles": preprocessor.get("max_patches", 12) if crop else 1,
        "use_thumbnail": True,
    }
    return settings


def add_missing_image_placeholder(conversation: Conversation, num_images: int, training: bool | None = None) -> list[dict]:
    """A copy of the conversation with `<image>\\n` prepended to the first human turn's value
    where the official code adds a missing placeholder. Only a sample with exactly one image
    gets one (the official multi-image paths add none), always as `<image>\\n` + the value as
    given, before any stripping (so ` Q` becomes `<image>\\n Q`, whose inner space survives the
    training strip, as in the official code).

    `training` selects the official rule (None: a training sample unless `is_prompt`):
    * prompt (`chat()` / `batch_chat()`, reference-spec 3.6): only when no turn has `<image>`
      (without history the first human turn is the question);
    * training sample (`multi_modal_get_item`, reference-spec 4.4): when the FIRST human turn
      has no `<image>`, even if a later turn has one. Such a sample then has more placeholders
      than images; `check_image_count` rejects it (the official code would leave the later
      `<image>` in the text as plain characters).
    (The official code sends a one-element image list, `"image": ["a.png"]`, down its multi-image
    path, which adds nothing; only the image count reaches this function, so such a sample gets
    the single-image rule here.)"""
    turns = [dict(turn) if isinstance(turn, Mapping) else turn for turn in conversation]
    if num_images != 1:
        return turns
    if training is None:
        training = not is_prompt(turns)
    human = next((t for t in turns if isinstance(t, Mapping) and t.get("from") == "human" and isinstance(t.get("value"), str)), None)
    checked = [human] if training else [t for t in turns if isinstance(t, Mapping)]
    if human is None or any(isinstance(t.get("value"), str) and IMAGE_PLACEHOLDER in t["value"] for t in checked):
        return turns  # malformed turns are reported by parse_conversation
    human["value"] = f"{IMAGE_PLACEHOLDER}\n{human['value']}"
    return turns


def check_image_count(turns: Sequence[Turn], num_images: int, sample_id: str | None = None) -> None:
    placeholders = sum(turn.text.count(IMAGE_PLACEHOLDER) for turn in turns)
    if placeholders != num_images:
        where = f"sample {sample_id}: " if sample_id is not None else ""
        hint = ""
        if num_images == 1 and placeholders > 1 and turns and turns[0].text.startswith(f"{IMAGE_PLACEHOLDER}\n"):
            hint = (
                " (if the first human turn had no `<image>`, `<image>\\n` was prepended to it, as the official"
                " training code does for a one-image sample even when a later turn has one: put the placeholder"
                " in the first human turn)"
            )
        elif num_images > 1 and placeholders == 0:
            hint = " (only a one-image sample gets a missing placeholder added: write one `<image>` per image)"
        raise DataError(f"{where}{placeholders} `<image>` placeholders but {num_images} images{hint}")


def expand_image_placeholders(segments: Sequence[Segment], image_texts: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """Join segments, replacing the i-th `<image>` by image_texts[i]; also return the
    character spans of answer segments in the joined text."""
    placeholders = sum(segment.text.count(IMAGE_PLACEHOLDER) for segment in segments)
    if placeholders != len(image_texts):
        raise DataError(f"{placeholders} `<image>` placeholders but {len(image_texts)} images")
    pieces, spans, length, image_index = [], [], 0, 0
    for segment in segments:
        parts = segment.text.split(IMAGE_PLACEHOLDER)
        text = parts[0]
        for part in parts[1:]:
            text += image_texts[image_index] + part
            image_index += 1
        if segment.is_answer:
            spans.append((length, length + len(text)))
        pieces.append(text)
        length += len(text)
    return "".join(pieces), spans


def _as_conversation(conversation: Conversation | str) -> Conversation:
    if isinstance(conversation, str):
        return [{"from": "human", "value": conversation}]
    return conversation


def _as_batch(conversations, images) -> tuple[list, list]:
    """Normalise (one conversation, its images) or (conversations, image lists) to lists."""
    single = isinstance(conversations, str) or (len(conversations) > 0 and isinstance(conversations[0], Mapping))
    if single:
        return [conversations], [_image_list(images)]
    image_lists = list(images) if images is not None else [[] for _ in conversations]
    if len(image_lists) != len(conversations):
        raise DataError(f"{len(conversations)} conversations but {len(image_lists)} image lists")
    return list(conversations), [_image_list(i) for i in image_lists]


def _image_list(images) -> list:
    """None, one image (path or PIL image) or a sequence of images -> a list of images."""
    if images is None:
        return []
    if isinstance(images, (str, PathLike, Image.Image)):
        return [images]
    return list(images)


def _token_id(tokenizer, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ConfigError(f"the tokenizer has no {token} token; add InternVL's image tokens (<img>, </img>, <IMG_CONTEXT>) as special tokens")
    return token_id


def _load_tokenizer(path: Path):
    from v2pe.processing.internlm2_tokenizer import load_tokenizer

    return load_tokenizer(path)  # official SentencePiece folders converted, never remote code


def _read_json(path: Path) -> dict:
    """An optional JSON file of a checkpoint folder ({} when absent)."""
    return read_json_object(path, "file", CheckpointError, optional=True)
