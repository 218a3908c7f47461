"""Images and conversations to model inputs: tiles, chat template, token ids, labels (the model computes positions)."""

from v2pe.processing.internlm2_tokenizer import load_tokenizer, save_converted_tokenizer
from v2pe.processing.collate import collate
from v2pe.processing.processor import IGNORE_INDEX, Processor, expand_image_placeholders
from v2pe.processing.templates import INTERNLM2_CHAT_JINJA, INTERNLM2_SYSTEM_MESSAGE, Segment, Turn, parse_conversation, render
from v2pe.processing.tiling import candidate_grids, choose_grid, image_to_pixel_values, image_to_tiles, load_image, num_tiles_for_size
from v2pe.processing.tokenizer import byte_tokenizer

__all__ = [
    "IGNORE_INDEX",
    "INTERNLM2_CHAT_JINJA",
    "INTERNLM2_SYSTEM_MESSAGE",
    "Processor",
    "Segment",
    "Turn",
    "byte_tokenizer",
    "candidate_grids",
    "choose_grid",
    "collate",
    "expand_image_placeholders",
    "image_to_pixel_values",
    "image_to_tiles",
    "load_image",
    "load_tokenizer",
    "num_tiles_for_size",
    "parse_conversation",
    "render",
    "save_converted_tokenizer",
]
