"""Long-context builders: Long-VQA and MM-NIAH-style needle data from short VQA sources."""

from v2pe.data.builders.common import BuildResult, SourceItem, load_source
from v2pe.data.builders.long_vqa import build_long_vqa, build_long_vqa_sample
from v2pe.data.builders.needle import DEFAULT_DEPTHS, NEEDLE_TASKS, answer_text, build_needle, mmniah_prompt, mmniah_to_conversation

__all__ = [
    "DEFAULT_DEPTHS",
    "NEEDLE_TASKS",
    "BuildResult",
    "SourceItem",
    "answer_text",
    "build_long_vqa",
    "build_long_vqa_sample",
    "build_needle",
    "load_source",
    "mmniah_prompt",
    "mmniah_to_conversation",
]
