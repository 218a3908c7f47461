"""Long-VQA and needle builders: target lengths met (measured by the Processor), formats,
answers that follow from the built documents, depths, determinism and errors.

Independent checks use the byte tokenizer's rule (one token per UTF-8 byte) and the fixture's
tiling (56 px tiles, 4 tokens per tile: a square image is one tile, a 2:1 image 2 tiles + a
thumbnail)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.data.conftest import make_processor, write_lines
from v2pe.data.annotations import SampleError, SkipReport
from v2pe.data.builders import NEEDLE_TASKS, build_long_vqa, build_needle, load_source
from v2pe.data.drawing import COLOURS
from v2pe.errors import DataError

TOL = 0.05


def _encoded_length(processor, conversations, images) -> int:
    return len(processor.encode(conversations, images)["input_ids"])


def _image_tokens(path: Path) -> int:
    width, height = Image.open(path).size
    return 2 + 4 * (1 if width == height else 3)


def _tokens(text: str, images: list[Path]) -> int:
    """Byte-tokenizer tokens of a context: UTF-8 bytes of the text + the image spans."""
    assert text.count("<image>") == len(images)
    return len(text.replace("<image>", "").encode("utf-8")) + sum(_image_tokens(p) for p in images)


@pytest.fixture(scope="module")
def source(synthetic_dir):
    return load_source(synthetic_dir / "synthetic.jsonl")


# ---- Long-VQA -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_vqa(source, processor, tmp_path_factory):
    out = tmp_path_factory.mktemp("long_vqa")
    return out, build_long_vqa(source, processor, out, n=9, target_tokens=[400, 900, 2000], seed=1)


def test_long_vqa_lengths_are_within_5_percent_measured_by_the_processor(long_vqa, processor):
    out, result = long_vqa
    lines = [json.loads(line) for line in result.annotation.read_text().splitlines()]
    assert len(lines) == 9
    for k, record in enumerate(lines):
        target = [400, 900, 2000][k % 3]
        length = _encoded_length(processor, record["conversations"], [out / p for p in record["image"]])
        assert abs(length - target) <= TOL * target
        assert record["metadata"]["context_length"] == length and record["metadata"]["target_tokens"] == target


def test_long_vqa_records_follow_the_official_format_and_ask_about_the_right_image(long_vqa, synthetic_dir):
    out, result = long_vqa
    sources = {str((synthetic_dir / json.loads(line)["image"]).resolve()): json.loads(line) for line in (synthetic_dir / "synthetic.jsonl").read_text().splitlines()}
    for record in result.records:
        assert set(record) == {"id", "image", "conversations", "metadata"}
        human, gpt = record["conversations"]
        assert (human["from"], gpt["from"]) == ("human", "gpt")
        assert human["value"].count("<image>") == len(record["image"]) == record["metadata"]["num_images"] > 1
        asked = int(re.search(r"Question about Image (\d+): ", human["value"]).group(1))
        assert asked == record["metadata"]["target_image"]
        lines = human["value"].split("\n")
        assert lines[lines.index(f"Image {asked}: <image>") + 1].startswith(("Image ", "Question about"))  # no caption under the asked image
        source_record = sources[str((out / record["image"][asked - 1]).resolve())]
        question = human["value"].rsplit(f"Image {asked}: ", 1)[1]
        assert source_record["conversations"][0]["value"] == f"<image>\n{question}"
        assert source_record["conversations"][1]["value"] == gpt["value"]


def test_long_vqa_histogram(long_vqa):
    _, result = long_vqa
    histogram = json.loads(result.histogram_path.read_text())
    by_bin = {(b["low"], b["high"]): b["count"] for b in histogram["bins"]}
    assert by_bin[(0, 1024)] == 6 and by_bin[(1024, 2048)] == 3 and sum(by_bin.values()) == 9
    assert histogram["max_relative_deviation"] <= TOL and histogram["targets"] == [400, 900, 2000]
    assert "9 samples" in result.table()


def test_long_vqa_depth_control_and_determinism(source, processor, tmp_path):
    result = build_long_vqa(source, processor, tmp_path / "a", n=4, target_tokens=[700], seed=3, depths=[0.0, 1.0])
    for k, record in enumerate(result.records):
        meta = record["metadata"]
        assert meta["target_image"] == (1 if k % 2 == 0 else meta["num_images"])
        assert meta["placed_depth"] == (0.0 if k % 2 == 0 else 1.0)
    again = build_long_vqa(source, processor, tmp_path / "b", n=4, target_tokens=[700], seed=3, depths=[0.0, 1.0])
    other = build_long_vqa(source, processor, tmp_path / "c", n=4, target_tokens=[700], seed=4, depths=[0.0, 1.0])
    assert again.annotation.read_text() == result.annotation.read_text().replace(str(tmp_path / "a"), str(tmp_path / "b"))
    assert other.records != result.records


def test_long_vqa_errors(source, processor, synthetic_dir, tmp_path):
    with pytest.raises(DataError, match="already take .* tokens, more than the target 100"):
        build_long_vqa(source, processor, tmp_path, n=1, target_tokens=[100])
    # 112 x 112 images at 64 tokens per tile: 2 x 2 tiles + thumbnail = 322 tokens each, and captions of
    # 400 tokens: too coarse to close the last gap for 1000 +- 5%
    square = [s for s in load_source(synthetic_dir / "synthetic.jsonl") if Image.open(s.image).size == (56, 56)]
    big = []
    for k, item in enumerate(square):
        Image.open(item.image).resize((112, 112)).save(tmp_path / f"{k}.png")
        big.append(item.__class__(item.id, tmp_path / f"{k}.png", item.pairs, "x" * 400))
    coarse = make_processor(tokens_per_tile=64)
    with pytest.raises(DataError, match="reached .* tokens for a target of 1000"):
        build_long_vqa(big, coarse, tmp_path / "out", n=1, target_tokens=[1000])


def test_long_vqa_closes_the_last_gap_with_distractor_captions(source, tmp_path):
    coarse = make_processor(tokens_per_tile=64)  # an image costs 66 or 194 tokens here
    result = build_long_vqa(source, coarse, tmp_path, n=6, target_tokens=[700, 1000], seed=5)
    captions = {item.caption for item in source}
    captioned = 0
    for k, record in enumerate(result.records):
        length = _encoded_length(coarse, record["conversations"], [tmp_path / p for p in record["image"]])
        assert abs(length - [700, 1000][k % 2]) <= TOL * [700, 1000][k % 2]
        captioned += sum(line in captions for line in record["conversations"][0]["value"].split("\n"))
    assert captioned > 0


def test_source_must_be_single_image_vqa(tmp_path, synthetic_dir):
    records = [json.loads(line) for line in (synthetic_dir / "synthetic.jsonl").read_text().splitlines()][:3]
    records[1] = {"image": [records[1]["image"]] * 2, "conversations": [{"from": "human", "value": "<image><image>q"}, {"from": "gpt", "value": "a"}]}
    path = write_lines(tmp_path / "src.jsonl", records)
    with pytest.raises(SampleError, match=r"src\.jsonl:2, field 'image': a source sample needs exactly one image"):
        load_source(path, synthetic_dir)
    report = SkipReport()
    assert len(load_source(path, synthetic_dir, skip_bad=True, report=report)) == 2 and report.total == 1


# ---- needles --------------------------------------------------------------------------------

MMNIAH_META = {"placed_depth", "context_length", "context_length_text", "context_length_image", "num_images", "needles", "choices", "choices_image_path"}
ANSWER_TYPES = {"retrieval-text": str, "counting-text": list, "reasoning-text": str, "retrieval-image": int, "counting-image": list, "reasoning-image": int}
TARGETS = [1500, 2600]


@pytest.fixture(scope="module")
def needles(source, processor, tmp_path_factory):
    out = tmp_path_factory.mktemp("needles")
    return out, {task: build_needle(task, source, processor, out, n=5, target_tokens=TARGETS, seed=2) for task in NEEDLE_TASKS}


@pytest.mark.parametrize("task", NEEDLE_TASKS)
def test_needle_records_have_the_mmniah_fields_and_consistent_lengths(needles, processor, task):
    out, results = needles
    result = results[task]
    train = [json.loads(line) for line in (out / f"{task}_train.jsonl").read_text().splitlines()]
    for k, (record, train_record) in enumerate(zip(result.records, train, strict=True)):
        assert set(record) == {"id", "images_list", "context", "question", "answer", "meta"}
        assert MMNIAH_META <= set(record["meta"])
        assert type(record["answer"]) is ANSWER_TYPES[task]
        images = [out / p for p in record["images_list"]]
        assert all(p.is_file() for p in images)
        assert (record["context"] + record["question"]).count("<image>") == len(images) == record["meta"]["num_images"]
        # MM-NIAH context lengths, worked out with the byte rule
        meta = record["meta"]
        assert meta["context_length_image"] == sum(_image_tokens(p) for p in images)
        assert meta["context_length_text"] == len(record["context"].replace("<image>", "").encode("utf-8"))
        assert meta["context_length"] == meta["context_length_text"] + meta["context_length_image"]
        # the whole sample, as the Processor encodes it, is within 5% of the target
        target = TARGETS[k % 2]
        choice_images = [out / p for p in (meta["choices_image_path"] or [])]
        assert [out / p for p in train_record["image"]] == images + choice_images
        length = _encoded_length(processor, train_record["conversations"], images + choice_images)
        assert abs(length - target) <= TOL * target
        assert length == meta["total_tokens"] == train_record["metadata"]["context_length"]
        answer = train_record["conversations"][1]["value"]
        expected = {int: lambda a: "ABCD"[a], list: json.dumps, str: str}[type(record["answer"])](record["answer"])
        assert answer == expected


def _needle_offsets(record, needle_texts, out):
    """Depth of each needle: context tokens before it / context tokens (independent count)."""
    context, images = record["context"], [out / p for p in record["images_list"]]
    depths, start = [], 0
    for text in needle_texts:  # in document order; the same text may occur twice
        start = context.index(text, start)
        prefix = context[:start]
        start += len(text)
        depths.append(_tokens(prefix, images[: prefix.count("<image>")]) / record["meta"]["context_length"])
    return depths


@pytest.mark.parametrize("task", ["retrieval-text", "counting-text", "reasoning-text"])
def test_text_needles_are_in_the_context_at_their_depths(needles, task):
    out, results = needles
    for record in results[task].records:
        needles_ = record["meta"]["needles"]
        assert all(record["context"].count(n) >= 1 for n in needles_)
        depth = record["meta"]["placed_depth"]
        depths = depth if isinstance(depth, list) else [depth]
        assert depths == pytest.approx(_needle_offsets(record, needles_, out), abs=1e-3)  # needles listed in document order


def test_text_needle_answers_follow_from_the_context(needles):
    _, results = needles
    for record in results["retrieval-text"].records:
        assert re.findall(r"The secret word hidden in this document is (\w+)\.", record["context"]) == [record["answer"]]
    for record in results["counting-text"].records:
        counts = [int(c) for c in re.findall(r"The little penguin counted (\d) needles\.", record["context"])]
        assert counts == record["answer"] and 2 <= len(counts) <= 5
    for record in results["reasoning-text"].records:
        pairs = re.findall(r"(\w+) is older than (\w+)\.", record["context"])
        assert len(pairs) == 2
        oldest = {a for a, _ in pairs} - {b for _, b in pairs}
        assert oldest == {record["answer"]}
        assert all(name in record["question"] for pair in pairs for name in pair)


def test_single_needle_depths_are_controlled(source, processor, tmp_path):
    result = build_needle("retrieval-text", source, processor, tmp_path, n=6, target_tokens=[3000], seed=0, depths=[0.0, 0.5, 1.0])
    for k, record in enumerate(result.records):
        assert record["meta"]["placed_depth"] == pytest.approx([0.0, 0.5, 1.0][k % 3], abs=0.06)


def _pasted(out, record, task):
    return [(k, out / p) for k, p in enumerate(record["images_list"]) if f"images/{task}/" in p]


def _image_offset(record, k: int, out: Path) -> int:
    """Context tokens before the k-th image."""
    prefix = "<image>".join(record["context"].split("<image>")[: k + 1])
    return _tokens(prefix, [out / p for p in record["images_list"][:k]])


def _object(path: str) -> tuple[str, str]:
    kind, colour = Path(path).stem.split("-")
    return kind, colour


def _cells_with(image_path: Path, colour: str) -> int:
    """Cells of the 3 x 3 paste grid with a white backing square holding the colour."""
    pixels = np.asarray(Image.open(image_path).convert("RGB"))
    h, w, _ = pixels.shape
    count = 0
    for row in range(3):
        for col in range(3):
            top, left = int(row * h / 3), int(col * w / 3)
            cell = pixels[top : int((row + 1) * h / 3) - 1, left : int((col + 1) * w / 3) - 1]
            white_corner = tuple(int(v) for v in cell[0, 0]) == (255, 255, 255)
            has_colour = bool((cell.reshape(-1, 3) == np.array(COLOURS[colour])).all(1).any())
            count += white_corner and has_colour
    return count


def test_image_needle_answers_follow_from_the_images(needles):
    out, results = needles
    for record in results["retrieval-image"].records:
        pasted = _pasted(out, record, "retrieval-image")
        assert len(pasted) == 1
        kind, colour = _object(record["meta"]["needles"][0])
        assert record["meta"]["choices"][record["answer"]] in (f"a {colour} {kind}", f"an {colour} {kind}")
        assert _cells_with(pasted[0][1], colour) == 1
    for record in results["counting-image"].records:
        pasted = _pasted(out, record, "counting-image")
        kind, colour = _object(record["meta"]["needles"][0])
        assert len(pasted) == len(record["answer"]) and len(record["meta"]["needles"]) == sum(record["answer"])
        assert [_cells_with(path, colour) for _, path in pasted] == record["answer"]
        offsets = [_image_offset(record, k, out) / record["meta"]["context_length"] for k, _ in pasted]
        assert record["meta"]["placed_depth"] == pytest.approx(offsets, abs=1e-3)
    for record in results["reasoning-image"].records:
        counts = Counter(record["meta"]["needles"])
        (most, n), *rest = counts.most_common()
        assert all(m < n for _, m in rest)
        assert record["meta"]["choices_image_path"][record["answer"]] == most
        assert len(record["meta"]["choices_image_path"]) == 4 and record["meta"]["choices"] is None


def test_needle_builds_are_deterministic(source, processor, tmp_path):
    def files(folder):
        return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    for name in ("a", "b"):
        build_needle("counting-image", source, processor, tmp_path / name, n=3, target_tokens=[1200], seed=9)
    assert files(tmp_path / "a") == files(tmp_path / "b")
    build_needle("counting-image", source, processor, tmp_path / "c", n=3, target_tokens=[1200], seed=10)
    assert (tmp_path / "a" / "counting-image.jsonl").read_text() != (tmp_path / "c" / "counting-image.jsonl").read_text()


def test_needle_errors(source, processor, tmp_path):
    with pytest.raises(DataError, match="more than the target 200"):
        build_needle("retrieval-text", source, processor, tmp_path, n=1, target_tokens=[200])
    with pytest.raises(Exception, match="unknown needle task"):
        build_needle("retrieval-audio", source, processor, tmp_path, n=1, target_tokens=[2000])
    with pytest.raises(Exception, match="depths must lie in"):
        build_needle("retrieval-text", source, processor, tmp_path, n=1, target_tokens=[2000], depths=[1.5])


def test_needle_meta_points_at_the_training_files(needles, synthetic_dir, processor):
    from v2pe.data.dataset import SupervisedDataset

    out, _ = needles
    meta = json.loads((out / "meta.json").read_text())
    assert sorted(meta) == sorted(f"{t}_train" for t in NEEDLE_TASKS)
    dataset = SupervisedDataset(out / "meta.json", processor, delta="random")
    assert len(dataset) == 30
    item = dataset[7]
    assert len(item["input_ids"]) == dataset.measure(7)
