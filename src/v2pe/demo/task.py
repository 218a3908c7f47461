"""The demo's task: find the one marked image among many and say where its mark sits.

Each sample is K images and a question. K - 1 haystack images are plain grey; the needle image
is coloured with one of its four quadrants painted white. The answer is that quadrant's letter,
scored with the official MM-NIAH multiple-choice rule (`mmniah_is_correct_int`).

Why this task: finding the needle is content matching (easy at any position), but the answer
depends on *where in the image* the white quadrant sits, i.e. on the order of the image's visual
tokens (or on the vision tower's position embeddings, which is what V2PE training learns to use).
A model that learned to read that order at delta = 1 cannot read it when the image is squeezed
into a fraction of a position, which is what tells V2PE training apart from just shrinking delta
at test time. Images are 64 px with 4 px patches: 64 visual tokens each, so that V2PE can
compress an image (66 tokens with its markers) to a few positions and fit 16x the training length.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from PIL import Image, ImageDraw

from v2pe.processing import Processor
from v2pe.processing.collate import collate
from v2pe.processing.tokenizer import byte_tokenizer

IMAGE_SIZE, PATCH_SIZE = 64, 4
TOKENS_PER_IMAGE = (IMAGE_SIZE // PATCH_SIZE) ** 2 // 4
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")
NEEDLE_COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230)]
HAYSTACK_GREY = (128, 128, 128)
QUESTION = "Which quarter is white? A, B, C or D"


@dataclass
class Sample:
    conversation: list[dict]
    images: list[Image.Image]
    answer: int  # quadrant index, MM-NIAH multiple-choice convention
    needle_index: int
    colour: int = 0  # index into NEEDLE_COLOURS

    @property
    def image_keys(self) -> list[int]:
        """Each image as an index into `image_library()`: 0 is the grey haystack image."""
        key = needle_key(self.colour, self.answer)
        return [key if i == self.needle_index else 0 for i in range(len(self.images))]


def demo_processor() -> Processor:
    """Byte tokenizer, one 64 px tile per image (no dynamic tiling), internlm2-chat template."""
    return Processor(byte_tokenizer(), tokens_per_tile=TOKENS_PER_IMAGE, tile_size=IMAGE_SIZE, min_tiles=1, max_tiles=1, use_thumbnail=False)


def needle_image(colour: int, quadrant: int) -> Image.Image:
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), NEEDLE_COLOURS[colour])
    half = IMAGE_SIZE // 2
    left, top = (quadrant % 2) * half, (quadrant // 2) * half
    ImageDraw.Draw(image).rectangle([left, top, left + half - 1, top + half - 1], fill=(255, 255, 255))
    return image


def haystack_image() -> Image.Image:
    return Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), HAYSTACK_GREY)


def needle_key(colour: int, quadrant: int) -> int:
    return 1 + 4 * colour + quadrant


def image_library() -> list[Image.Image]:
    """Every distinct image the task draws: the grey haystack image, then each colour x quadrant."""
    return [haystack_image()] + [needle_image(c, q) for c in range(len(NEEDLE_COLOURS)) for q in range(4)]


def make_sample(num_images: int, rng: random.Random) -> Sample:
    needle, quadrant = rng.randrange(num_images), rng.randrange(4)
    colour = rng.randrange(len(NEEDLE_COLOURS))
    images = [needle_image(colour, quadrant) if i == needle else haystack_image() for i in range(num_images)]
    return Sample(_conversation(num_images, quadrant), images, quadrant, needle, colour)


def encode_batch(processor: Processor, samples: list[Sample], with_answer: bool = True) -> dict[str, torch.Tensor]:
    """Padded token ids, labels (answer + end token) and pixel values; prompts only when not training."""
    encoded = [processor.encode(s.conversation if with_answer else s.conversation[:-1], s.images) for s in samples]
    return collate(encoded, pad_token_id=processor.pad_token_id)


class TaskEncoder:
    """`encode_batch`'s token ids and labels, without redoing the text and pixel work every step.

    A prompt's tokens depend only on its number of images (each image is the same run of
    `<IMG_CONTEXT>` placeholders) and its labels only on the answer letter, so both are encoded
    once per image count with the processor and reused; pixel values come once per distinct image
    (`image_library`). `tests/test_demo.py` checks the result against `encode_batch`.
    """

    def __init__(self, processor: Processor):
        self.processor = processor
        self.library = image_library()
        self.library_pixels = torch.cat([processor.encode(_conversation(1, 0), [image])["pixel_values"] for image in self.library])
        self._cache: dict[tuple[int, int | None], dict[str, torch.Tensor]] = {}

    def _encoded(self, num_images: int, answer: int | None) -> dict[str, torch.Tensor]:
        key = (num_images, answer)
        if key not in self._cache:
            conversation = _conversation(num_images, answer)
            self._cache[key] = self.processor.encode(conversation, [haystack_image()] * num_images)
        return self._cache[key]

    def batch(self, samples: list[Sample], with_answer: bool = True) -> dict[str, torch.Tensor]:
        """input_ids, attention_mask, labels (when with_answer), right-padded as `collate` pads them,
        and image_keys: every image's `image_library` index, in order (flat, [images])."""
        encoded = [self._encoded(len(s.images), s.answer if with_answer else None) for s in samples]
        batch = collate([{**e, "pixel_values": e["pixel_values"][:0]} for e in encoded], pad_token_id=self.processor.pad_token_id)
        if not with_answer:
            batch.pop("labels")
        batch.pop("pixel_values")
        batch.pop("num_tiles")
        batch["image_keys"] = torch.tensor([key for s in samples for key in s.image_keys], dtype=torch.long)
        return batch


def _conversation(num_images: int, answer: int | None) -> list[dict]:
    # An empty system turn keeps the prompt short: the byte tokenizer spells every character.
    turns = [{"from": "system", "value": ""}, {"from": "human", "value": "<image>" * num_images + "\n" + QUESTION}]
    return turns + ([{"from": "gpt", "value": "ABCD"[answer]}] if answer is not None else [])
