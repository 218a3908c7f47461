"""Long-VQA: many short VQA samples combined into one long sample at a target token length.

One source sample gives the question and the answer; other source images are distractors.
The human turn lists every image, then asks about one of them:

    Image 1: <image>
    Image 2: <image>
    ...
    Question about Image 7: What colour is the circle?

and the answer is the source answer. The asked image sits at a controlled depth among the
images (`depths`, cycled over samples; default uniform at random).

Distractor images are added greedily while the sample fits the target, skipping ones that
would overshoot. An image costs hundreds of tokens (258 for one 448 px tile), so the last gap
is closed with text about the distractors, written under their images: first their captions
(`metadata.caption` of the source, else its questions and answers), then their
question-answer pairs (`Image 3: <image>\nA red circle in the top left corner.\nWhat colour is
the circle? red`), never under the asked image. When a draw of images leaves a gap its notes
cannot close, the images are drawn again (up to MAX_DRAWS times). The length is then measured
exactly with the Processor (real tokenisation and tiling) and must lie within `tolerance` of
the target; nothing is ever cut.

Output records follow the official Long-VQA files: `id`, `image` (list of paths, relative to
the output folder), `conversations` (human question with the `<image>`s, gpt answer),
`metadata.context_length` (the measured token count), plus `metadata.target_tokens`,
`target_image` (1-based), `placed_depth`, `num_images` and `source_id`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

from v2pe.data.builders.common import (
    DEFAULT_TOLERANCE,
    BuildResult,
    SourceItem,
    check_targets,
    cycled,
    greedy_fill,
    relative_path,
    within,
    write_outputs,
)
from v2pe.data.lengths import LengthMeter
from v2pe.errors import DataError
from v2pe.files import make_output_folder

MAX_DRAWS = 16  # draws of distractor images per sample when the first leaves too large a gap


def long_vqa_conversation(images: Sequence[Path], target_position: int, question: str, answer: str, notes: Sequence[Sequence[str]] | None = None) -> list[dict]:
    """The human turn lists the images (each with its lines of notes), then asks about one."""
    notes = notes or [()] * len(images)
    lines = "".join(f"Image {k + 1}: <image>\n" + "".join(f"{note}\n" for note in image_notes) for k, image_notes in enumerate(notes))
    return [
        {"from": "human", "value": f"{lines}Question about Image {target_position + 1}: {question}"},
        {"from": "gpt", "value": answer},
    ]


def build_long_vqa_sample(
    index: int,
    source: Sequence[SourceItem],
    meter: LengthMeter,
    target_tokens: int,
    *,
    seed: int = 0,
    tolerance: float = DEFAULT_TOLERANCE,
    depth: float | None = None,
    out_dir: Path = Path("."),
) -> tuple[dict, int]:
    """One Long-VQA record and its exact token count."""
    rng = random.Random(f"v2pe-long-vqa:{seed}:{index}")
    target_index = rng.randrange(len(source))
    target = source[target_index]
    question, answer = rng.choice(target.pairs)
    depth = rng.random() if depth is None else depth

    base = meter.measure(long_vqa_conversation([target.image], 0, question, answer), [target.image]).total
    if base > target_tokens * (1 + tolerance):
        raise DataError(f"Long-VQA sample {index}: one image and its question already take {base} tokens, more than the target {target_tokens}")

    def cost(candidate: int, taken: int) -> int:
        # the (taken + 2)-th image line "Image N: <image>\n"
        return meter.image_tokens(source[candidate].image) + meter.text_tokens(f"Image {taken + 2}: \n")

    def note_cost(unit: tuple[int, str], _: int) -> int:
        return meter.text_tokens(f"{unit[1]}\n")

    # Images first, then text notes to close the gap. A draw of images can leave a gap its few
    # notes cannot close (one big image where three small ones fit): redraw, keep the closest.
    best = None
    for _ in range(MAX_DRAWS):
        room = target_tokens - base
        distractors = greedy_fill(cycled(source, rng, exclude=target_index), cost, room) if room > 0 else []
        room -= sum(cost(k, taken) for taken, k in enumerate(distractors))
        # text units (distractor j, line): all captions first, then the question-answer pairs
        units = [(j, source[k].caption) for j, k in enumerate(distractors)]
        units += [(j, f"{q} {a}") for j, k in enumerate(distractors) for q, a in source[k].pairs if f"{q} {a}." not in source[k].caption]
        notes_taken = greedy_fill(iter(units), note_cost, room, max_misses=len(units) + 1)
        gap = room - sum(note_cost(unit, 0) for unit in notes_taken)
        if best is None or gap < best[0]:
            best = (gap, distractors, notes_taken)
        if gap <= tolerance * target_tokens / 2:
            break
    _, distractors, notes_taken = best

    while True:
        position = round(depth * len(distractors))
        items = [source[k] for k in distractors]
        notes = [[line for j2, line in notes_taken if j2 == j] for j in range(len(distractors))]
        items.insert(position, target)
        notes.insert(position, [])
        images = [item.image for item in items]
        conversation = long_vqa_conversation(images, position, question, answer, notes)
        length = meter.measure(conversation, images).total
        if length <= target_tokens * (1 + tolerance) or not distractors:
            break
        distractors.pop()  # a BPE tokenizer merged differently than estimated: drop one and re-measure
        notes_taken = [unit for unit in notes_taken if unit[0] < len(distractors)]
    if not within(length, target_tokens, tolerance):
        raise DataError(
            f"Long-VQA sample {index}: reached {length} tokens for a target of {target_tokens} (tolerance {tolerance:.0%}); "
            "the source images are too large for this target (lower max tiles, or add smaller images)"
        )
    record = {
        "id": f"long_vqa_{index:06d}",
        "image": [relative_path(p, out_dir) for p in images],
        "conversations": conversation,
        "metadata": {
            "context_length": length,
            "target_tokens": target_tokens,
            "target_image": position + 1,
            "placed_depth": position / (len(images) - 1) if len(images) > 1 else 0.0,
            "num_images": len(images),
            "source_id": target.id,
        },
    }
    return record, length


def build_long_vqa(
    source: Sequence[SourceItem],
    processor,
    out_dir: str | PathLike,
    *,
    n: int,
    target_tokens: Sequence[int],
    seed: int = 0,
    tolerance: float = DEFAULT_TOLERANCE,
    depths: Sequence[float] | None = None,
    name: str = "long_vqa",
    progress: bool = False,
) -> BuildResult:
    """Build `n` Long-VQA samples (targets cycled over samples) into out_dir/{name}.jsonl,
    with {name}_lengths.json and a meta.json entry."""
    targets = check_targets(target_tokens, tolerance)
    out_dir = make_output_folder(out_dir)
    meter = LengthMeter(processor)
    indices = range(n)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="long-vqa", unit="sample")
    records, lengths = [], []
    for i in indices:
        depth = depths[i % len(depths)] if depths else None
        record, length = build_long_vqa_sample(i, source, meter, targets[i % len(targets)], seed=seed, tolerance=tolerance, depth=depth, out_dir=out_dir)
        records.append(record)
        lengths.append(length)
    return write_outputs(out_dir, name, records, lengths, targets, tolerance)
