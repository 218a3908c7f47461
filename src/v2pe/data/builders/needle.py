"""Needle data in the MM-NIAH style: long interleaved image-text documents with needles.

The haystack is a document of blocks built from source samples: an image followed by its
caption, or a caption alone (`image_ratio` sets the mix). Needles are placed at controlled
depths (fraction of the context's tokens before the needle):

| task | needle | question | answer |
| --- | --- | --- | --- |
| retrieval-text | "The secret word hidden in this document is X." | the secret word | str |
| counting-text | 2-5 x "The little penguin counted N needles." | the counts in order | list[int] |
| reasoning-text | "A is older than B.", "B is older than C." | who is the oldest | str |
| retrieval-image | a cartoon object pasted into one image | which object (text choices) | int |
| counting-image | 1-3 copies of an object pasted into 2-4 images | copies per image, in order | list[int] |
| reasoning-image | objects of 3 kinds pasted into images | which was pasted most (image choices) | int |

Records carry the MM-NIAH fields: `id`, `images_list`, `context`, `question`, `answer`,
`meta` {`placed_depth`, `context_length`, `context_length_text`, `context_length_image`,
`num_images`, `needles`, `choices`, `choices_image_path`} (+ `target_tokens`,
`total_tokens`). Image paths are relative to the output folder. `context_length*` count the
context alone (image = the `<img>..</img>` spans). The target length applies to the whole
sample as the Processor encodes it: template, context, question with its choices (image
choices included) and the answer, exactly as in the training conversation, which is also
written ({task}_train.jsonl, official format) for the meta JSON.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from PIL import Image

from v2pe.data.builders.common import (
    DEFAULT_TOLERANCE,
    BuildResult,
    SourceItem,
    check_targets,
    cycled,
    greedy_fill,
    relative_path,
    save_image,
    within,
    write_outputs,
)
from v2pe.data.drawing import COLOURS, NEEDLE_OBJECTS, object_image, paste_objects
from v2pe.data.lengths import LengthMeter
from v2pe.data.synthetic import article
from v2pe.errors import ConfigError, DataError
from v2pe.files import make_output_folder
from v2pe.tokens import IMAGE_PLACEHOLDER

NEEDLE_TASKS = ("retrieval-text", "counting-text", "reasoning-text", "retrieval-image", "counting-image", "reasoning-image")
DEFAULT_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
WORDS = ("apple", "river", "violin", "castle", "pepper", "falcon", "lantern", "meadow", "copper", "harbor", "tulip", "glacier", "walnut", "compass", "saffron", "marble")
NAMES = ("Alice", "Bruno", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Julia", "Kofi", "Lena")
LETTER_SUFFIX = "\nAnswer with the option's letter from the given choices directly."
WORD_SUFFIX = "\nAnswer the question using a single word or phrase."
PASTE_GRID = 3  # objects are pasted into cells of a 3 x 3 grid

NeedleObject = tuple[str, str]  # (kind, colour)


# --------------------------------------------------------------------------------------------
# the MM-NIAH prompt


def mmniah_prompt(record: dict) -> tuple[str, list[str]]:
    """(query text, image paths) of an MM-NIAH record, as the V2PE MM-NIAH evaluation builds it:
    context + question, then text choices (`A. ...` lines) or image choices (`A. <image>` lines,
    images appended) with the letter instruction; counting (list answers) gets no suffix;
    open questions get the single-word instruction."""
    meta = record["meta"]
    question = record["question"]
    images = list(record["images_list"])
    choices, choice_images = meta.get("choices"), meta.get("choices_image_path")
    if choices:
        question += "".join(f"\n{chr(ord('A') + k)}. {c}" for k, c in enumerate(choices)) + LETTER_SUFFIX
    elif choice_images:
        question += "".join(f"\n{chr(ord('A') + k)}. <image>" for k in range(len(choice_images))) + LETTER_SUFFIX
        images += list(choice_images)
    elif not isinstance(record["answer"], list):
        question += WORD_SUFFIX
    return record["context"] + question, images


def answer_text(answer: str | int | list) -> str:
    """The target text of an MM-NIAH answer: an option index becomes its letter, a list its JSON."""
    if isinstance(answer, bool):
        raise DataError(f"an MM-NIAH answer is a str, an int or a list, got {answer!r}")
    if isinstance(answer, int):
        return chr(ord("A") + answer)
    if isinstance(answer, list):
        return json.dumps(answer)
    return str(answer)


def mmniah_to_conversation(record: dict) -> list[dict]:
    """The training conversation of an MM-NIAH record: the evaluation prompt and the answer."""
    query, _ = mmniah_prompt(record)
    return [{"from": "human", "value": query}, {"from": "gpt", "value": answer_text(record["answer"])}]


# --------------------------------------------------------------------------------------------
# tasks


@dataclass
class NeedleSpec:
    """What a sample asks, before the haystack is built."""

    question: str
    answer: str | int | list
    text_needles: list[str] = field(default_factory=list)
    image_needles: list[list[NeedleObject]] = field(default_factory=list)  # objects per needle image
    choices: list[str] | None = None
    choice_objects: list[NeedleObject] | None = None  # image choices

    @property
    def num_needles(self) -> int:
        return len(self.text_needles) or len(self.image_needles)


def _object_name(obj: NeedleObject) -> str:
    return f"{article(obj[1])} {obj[1]} {obj[0]}"


def _random_object(rng: random.Random, kinds=NEEDLE_OBJECTS) -> NeedleObject:
    return rng.choice(list(kinds)), rng.choice(list(COLOURS))


def make_spec(task: str, rng: random.Random) -> NeedleSpec:
    if task == "retrieval-text":
        word = rng.choice(WORDS)
        return NeedleSpec("What is the secret word hidden in the document?", word, text_needles=[f"The secret word hidden in this document is {word}."])
    if task == "counting-text":
        counts = [rng.randint(1, 9) for _ in range(rng.randint(2, 5))]
        question = (
            "The little penguin counted needles several times in the document. "
            "List the numbers it counted, in order of appearance, as a JSON list of integers."
        )
        return NeedleSpec(question, counts, text_needles=[f"The little penguin counted {c} needles." for c in counts])
    if task == "reasoning-text":
        oldest, middle, youngest = rng.sample(NAMES, 3)
        needles = [f"{oldest} is older than {middle}.", f"{middle} is older than {youngest}."]
        rng.shuffle(needles)
        asked = [oldest, middle, youngest]
        rng.shuffle(asked)
        return NeedleSpec(f"Among {asked[0]}, {asked[1]} and {asked[2]}, who is the oldest?", oldest, text_needles=needles)
    if task == "retrieval-image":
        options = rng.sample([(k, c) for k in NEEDLE_OBJECTS for c in COLOURS], 4)
        answer = rng.randrange(4)
        question = "A cartoon object has been pasted into one of the images in the document. Which object is it?"
        return NeedleSpec(question, answer, image_needles=[[options[answer]]], choices=[_object_name(o) for o in options])
    if task == "counting-image":
        obj = _random_object(rng)
        counts = [rng.randint(1, 3) for _ in range(rng.randint(2, 4))]
        question = (
            f"Cartoon {obj[1]} {obj[0]}s have been pasted into some of the images in the document. For each of those images, "
            f"in order of appearance, how many {obj[1]} {obj[0]}s does it contain? Answer with a JSON list of integers."
        )
        return NeedleSpec(question, counts, image_needles=[[obj] * c for c in counts])
    if task == "reasoning-image":
        kinds = rng.sample(NEEDLE_OBJECTS, 4)
        objects = [(kind, rng.choice(list(COLOURS))) for kind in kinds]
        most = rng.randint(2, 3)
        pastes = [objects[0]] * most + [objects[1]] * rng.randint(1, most - 1) + [objects[2]] * rng.randint(0, most - 1)
        rng.shuffle(pastes)
        choice_objects = list(objects)
        rng.shuffle(choice_objects)
        question = "Cartoon objects have been pasted into some of the images in the document. Which of the following objects was pasted most often?"
        return NeedleSpec(question, choice_objects.index(objects[0]), image_needles=[[o] for o in pastes], choice_objects=choice_objects)
    raise ConfigError(f"unknown needle task {task!r}; choose one of {', '.join(NEEDLE_TASKS)}")


# --------------------------------------------------------------------------------------------
# the haystack


@dataclass
class Block:
    text: str
    image: Path | None = None
    needle: int | None = None  # index of the text needle this block is

    def render(self) -> str:
        return f"<image>\n{self.text}\n" if self.image is not None else f"{self.text}\n"


class _Builder:
    def __init__(self, task: str, source: Sequence[SourceItem], meter: LengthMeter, out_dir: Path, *, seed: int, tolerance: float, image_ratio: float):
        if task not in NEEDLE_TASKS:
            raise ConfigError(f"unknown needle task {task!r}; choose one of {', '.join(NEEDLE_TASKS)}")
        if not 0 <= image_ratio <= 1:
            raise ConfigError(f"image_ratio must be in [0, 1], got {image_ratio}")
        self.task, self.source, self.meter, self.out_dir = task, source, meter, out_dir
        self.seed, self.tolerance, self.image_ratio = seed, tolerance, image_ratio

    def block_cost(self, block: Block) -> int:
        cost = self.meter.text_tokens(block.render().replace(IMAGE_PLACEHOLDER, ""))
        return cost + (self.meter.image_tokens(block.image) if block.image is not None else 0)

    def object_path(self, obj: NeedleObject) -> Path:
        path = self.out_dir / "needles" / f"{obj[0]}-{obj[1]}.png"
        if not path.is_file():
            save_image(object_image(*obj), path)
        return path

    def build(self, index: int, target: int, depth: float | None) -> tuple[dict, dict, int]:
        rng = random.Random(f"v2pe-needle:{self.task}:{self.seed}:{index}")
        spec = make_spec(self.task, rng)
        if spec.num_needles == 1:
            depths = [rng.random() if depth is None else depth]
        else:
            depths = sorted(rng.random() for _ in range(spec.num_needles))
        choice_paths = [self.object_path(o) for o in spec.choice_objects] if spec.choice_objects else None

        needle_blocks = [Block(text, needle=k) for k, text in enumerate(spec.text_needles)]
        base = self._measure([], needle_blocks, spec, choice_paths)
        if base > target * (1 + self.tolerance):
            raise DataError(f"{self.task} sample {index}: the question and needles alone take {base} tokens, more than the target {target}")
        required_images = len(spec.image_needles)
        picks = cycled(self.source, rng)

        def candidates():
            for count, k in enumerate(picks):
                item = self.source[k]
                with_image = count < required_images or rng.random() < self.image_ratio
                yield Block(item.caption, item.image if with_image else None)

        haystack = greedy_fill(candidates(), lambda block, _: self.block_cost(block), target - base)
        while True:
            if sum(b.image is not None for b in haystack) < required_images:
                raise DataError(f"{self.task} sample {index}: a target of {target} tokens leaves room for fewer than {required_images} haystack images")
            blocks, needle_images = self._place(haystack, needle_blocks, spec, depths)
            total = self._measure(blocks, [], spec, choice_paths)
            removable = [k for k, b in enumerate(haystack) if b.image is None or sum(x.image is not None for x in haystack) > required_images]
            if total <= target * (1 + self.tolerance) or not removable:
                break
            haystack.pop(removable[-1])  # estimate was short (BPE merges): drop one block, re-measure
        if not within(total, target, self.tolerance):
            raise DataError(
                f"{self.task} sample {index}: reached {total} tokens for a target of {target} (tolerance {self.tolerance:.0%}); "
                "the source images are too large for this target"
            )
        record = self._record(index, blocks, needle_images, spec, choice_paths, target, total)
        train = {
            "id": record["id"],
            "image": [relative_path(p, self.out_dir) for p in self._paths(record)],
            "conversations": mmniah_to_conversation(record),
            "metadata": {"context_length": total, "task": self.task, "placed_depth": record["meta"]["placed_depth"]},
        }
        return record, train, total

    def _place(self, haystack: list[Block], needle_blocks: list[Block], spec: NeedleSpec, depths: list[float]) -> tuple[list[Block], dict[int, list[NeedleObject]]]:
        """Blocks with text needles inserted at the boundaries nearest their depths, and, for
        image needles, the haystack block index -> objects to paste."""
        costs = [self.block_cost(b) for b in haystack]
        total = max(sum(costs), 1)
        starts = [sum(costs[:k]) for k in range(len(haystack) + 1)]  # tokens before boundary k
        if needle_blocks:
            slots: dict[int, list[Block]] = {}
            for block, depth in zip(needle_blocks, depths, strict=True):
                boundary = min(range(len(starts)), key=lambda k: abs(starts[k] / total - depth))
                slots.setdefault(boundary, []).append(block)
            blocks = []
            for k in range(len(haystack) + 1):
                blocks += slots.get(k, [])
                if k < len(haystack):
                    blocks.append(haystack[k])
            return blocks, {}
        image_blocks = [k for k, b in enumerate(haystack) if b.image is not None]
        chosen: list[int] = []
        for depth in depths:
            free = [k for k in image_blocks if k not in chosen]
            chosen.append(min(free, key=lambda k: abs(starts[k] / total - depth)))
        # keep needle order = document order (depths are sorted; nearest picks can cross)
        chosen.sort()
        return list(haystack), dict(zip(chosen, spec.image_needles, strict=True))

    def _measure(self, blocks: list[Block], extra_blocks: list[Block], spec: NeedleSpec, choice_paths) -> int:
        blocks = list(blocks) + list(extra_blocks)
        record = {
            "context": "".join(b.render() for b in blocks),
            "images_list": [b.image for b in blocks if b.image is not None],
            "question": spec.question,
            "answer": spec.answer,
            "meta": {"choices": spec.choices, "choices_image_path": choice_paths},
        }
        query, images = mmniah_prompt(record)
        conversation = [{"from": "human", "value": query}, {"from": "gpt", "value": answer_text(spec.answer)}]
        return self.meter.measure(conversation, images).total

    def _record(self, index, blocks, needle_images, spec, choice_paths, target, total) -> dict:
        sample_id = f"{self.task}_{index:06d}"
        out_images: list[Path] = []
        needles: list[str] = list(spec.text_needles)
        offsets, position = [], 0
        needle_offsets: dict[int, int] = {}
        for k, block in enumerate(blocks):
            if block.needle is not None:
                needle_offsets[block.needle] = position
            if block.image is not None:
                image = block.image
                if k in needle_images:
                    image = self._paste(block.image, needle_images[k], sample_id, len(offsets))
                    offsets.append(position)
                    needles += [relative_path(self.object_path(o), self.out_dir) for o in needle_images[k]]
                out_images.append(image)
            position += self.block_cost(block)
        context = "".join(b.render() for b in blocks)
        measured = self.meter.measure_text(context, out_images)
        if spec.text_needles:
            offsets = [needle_offsets[k] for k in range(len(spec.text_needles))]
            offsets.sort()
        depths = [round(o / max(measured.total, 1), 4) for o in offsets]
        return {
            "id": sample_id,
            "images_list": [relative_path(p, self.out_dir) for p in out_images],
            "context": context,
            "question": spec.question,
            "answer": spec.answer,
            "meta": {
                "placed_depth": depths[0] if len(depths) == 1 else depths,
                "context_length": measured.total,
                "context_length_text": measured.text,
                "context_length_image": measured.image,
                "num_images": len(out_images),
                "needles": needles,
                "choices": spec.choices,
                "choices_image_path": [relative_path(p, self.out_dir) for p in choice_paths] if choice_paths else None,
                "target_tokens": target,
                "total_tokens": total,
            },
        }

    def _paste(self, image_path: Path, objects: list[NeedleObject], sample_id: str, k: int) -> Path:
        rng = random.Random(f"v2pe-needle-paste:{self.seed}:{sample_id}:{k}")
        cells = rng.sample(range(PASTE_GRID * PASTE_GRID), len(objects))
        with Image.open(image_path) as opened:
            pasted = paste_objects(opened, objects, cells, PASTE_GRID)
        return save_image(pasted, self.out_dir / "images" / self.task / f"{sample_id}-{k}.png")

    def _paths(self, record: dict) -> list[Path]:
        _, images = mmniah_prompt(record)
        return [self.out_dir / p for p in images]


def build_needle(
    task: str,
    source: Sequence[SourceItem],
    processor,
    out_dir: str | PathLike,
    *,
    n: int,
    target_tokens: Sequence[int],
    seed: int = 0,
    tolerance: float = DEFAULT_TOLERANCE,
    depths: Sequence[float] | None = DEFAULT_DEPTHS,
    image_ratio: float = 0.5,
    progress: bool = False,
) -> BuildResult:
    """Build `n` samples of one needle task into out_dir/{task}.jsonl (MM-NIAH fields) and
    out_dir/{task}_train.jsonl (official conversations), with {task}_lengths.json and a
    meta.json entry for the training file. Single-needle samples cycle through `depths`;
    multi-needle samples draw sorted uniform depths."""
    targets = check_targets(target_tokens, tolerance)
    if depths is not None and any(not 0 <= d <= 1 for d in depths):
        raise ConfigError(f"depths must lie in [0, 1], got {list(depths)}")
    out_dir = make_output_folder(out_dir)
    builder = _Builder(task, source, LengthMeter(processor), out_dir, seed=seed, tolerance=tolerance, image_ratio=image_ratio)
    indices = range(n)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc=task, unit="sample")
    records, train, lengths = [], [], []
    for i in indices:
        depth = depths[i % len(depths)] if depths else None
        record, train_record, total = builder.build(i, targets[i % len(targets)], depth)
        records.append(record)
        train.append(train_record)
        lengths.append(total)
    return write_outputs(out_dir, task, records, lengths, targets, tolerance, train_records=train)
