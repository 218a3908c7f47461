"""Bad input at the data layer: broken images, bad bytes, empty or huge datasets, over-long
lines, image paths outside the root, unwritable outputs. Each problem is one clear error
naming file:line (or the meta file and dataset), or a counted skip with skip_bad."""

from __future__ import annotations

import errno
import io
import json

import pytest
from PIL import Image

from tests.data.conftest import make_processor, write_lines, write_meta
from v2pe.cli import main
from v2pe.data import annotations
from v2pe.data.annotations import (
    SkipReport,
    load_meta,
    read_annotations,
    sample_byte_limit,
)
from v2pe.data.builders import build_long_vqa, load_source
from v2pe.data.dataset import SupervisedDataset
from v2pe.data.stats import collect_stats
from v2pe.errors import ConfigError, DataError, OutputError, SampleError
from v2pe.files import iter_json_lines, write_text_file

SMALL = ["--tokens-per-tile", "4", "--tile-size", "56", "--max-tiles", "4"]


def records_of(folder, n=4):
    return [json.loads(line) for line in (folder / "synthetic.jsonl").read_text().splitlines()][:n]


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


# ---------------------------------------------------------------------------- 1. truncated images


@pytest.fixture()
def truncated(tmp_path, synthetic_dir):
    """A dataset folder: line 1 good, line 2 a truncated PNG, line 3 a truncated JPEG, line 4 good.
    The headers of both are intact: only a full decode shows the damage."""
    folder = tmp_path / "trunc"
    (folder / "images").mkdir(parents=True)
    picture = Image.open(synthetic_dir / "images/000000.png").convert("RGB").resize((300, 200))
    for name, fmt in (("t.png", "PNG"), ("t.jpg", "JPEG")):
        data = encoded(picture, fmt)
        (folder / "images" / name).write_bytes(data[: len(data) // 2])
    records = records_of(synthetic_dir)
    for record in records:
        (folder / record["image"]).write_bytes((synthetic_dir / record["image"]).read_bytes())
    records[1]["image"], records[2]["image"] = "images/t.png", "images/t.jpg"
    annotation = write_lines(folder / "t.jsonl", records)
    return write_meta(folder / "meta.json", {"t": {"root": ".", "annotation": "t.jsonl"}}), annotation


def test_stats_and_training_agree_on_truncated_images(truncated, processor):
    meta, annotation = truncated
    from v2pe.processing.tiling import image_size

    assert image_size(annotation.parent / "images/t.png") == (300, 200)  # the header alone reads fine
    stats = collect_stats(meta, processor)
    assert dict(stats.report.counts) == {"corrupt_image": 2} and len(stats.lengths) == 2
    dataset = SupervisedDataset(meta, processor, skip_bad=True)
    loaded = [dataset.load(i) for i in range(len(dataset))]
    assert [item is None for item in loaded] == [False, True, True, False]
    assert dict(dataset.report.counts) == dict(stats.report.counts)
    stats_lines = sorted(e.split(" ")[0] for e in stats.report.examples["corrupt_image"])
    dataset_lines = sorted(e.split(" ")[0] for e in dataset.report.examples["corrupt_image"])
    assert stats_lines == dataset_lines == [f"{annotation}:2", f"{annotation}:3"]


def test_stats_strict_names_the_truncated_image(truncated, capsys):
    meta, annotation = truncated
    assert main(["data", "stats", str(meta), "--strict", *SMALL]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("v2pe data: error: ") and f"{annotation}:2 (id synthetic-000001), field 'image': cannot read image" in err


# ---------------------------------------------------------------------------- 6. bad UTF-8


def with_bad_byte(record: dict) -> bytes:
    return json.dumps(record).encode().replace(b"synthetic-", b"synth\xffetic-")


def test_bad_utf8_in_an_annotation_names_file_and_line_or_is_counted(tmp_path, synthetic_dir):
    records = records_of(synthetic_dir, 3)
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join([json.dumps(records[0]).encode(), with_bad_byte(records[1]), json.dumps(records[2]).encode()]) + b"\n")
    with pytest.raises(SampleError, match=r"bad\.jsonl:2: not valid UTF-8 \(byte 0xff at column \d+\)") as error:
        read_annotations(path, synthetic_dir, allow_outside_root=True)
    assert error.value.reason == "invalid_utf8"
    report = SkipReport()
    kept = read_annotations(path, synthetic_dir, skip_bad=True, report=report, allow_outside_root=True)
    assert [s.line for s in kept] == [1, 3] and dict(report.counts) == {"invalid_utf8": 1}


def test_bad_utf8_in_stats_is_counted_and_strict_stops_with_one_line(tmp_path, synthetic_dir, capsys):
    records = records_of(synthetic_dir, 2)
    path = tmp_path / "bad_utf8.jsonl"
    path.write_bytes(json.dumps(records[0]).encode() + b"\n" + with_bad_byte(records[1]) + b"\n")
    meta = write_meta(tmp_path / "meta.json", {"b": {"root": str(synthetic_dir), "annotation": path.name}})
    assert main(["data", "stats", str(meta), *SMALL]) == 0
    assert "skipped 1 samples: invalid_utf8 1" in capsys.readouterr().out
    assert main(["data", "stats", str(meta), "--strict", *SMALL]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"v2pe data: error: {path}:2: not valid UTF-8")


def test_bad_utf8_in_an_mmniah_file_is_counted(tmp_path, synthetic_dir, processor):
    good = {"id": 0, "images_list": [], "context": "text", "question": "q?", "answer": "a", "meta": {"placed_depth": 0.5}}
    path = tmp_path / "niah.jsonl"
    latin1 = json.dumps({**good, "id": 1, "context": "caf\u00e9"}).encode().replace(b"\\u00e9", b"\xe9")  # "café" in Latin-1
    path.write_bytes(json.dumps(good).encode() + b"\n" + latin1 + b"\n")
    stats = collect_stats(path, processor)
    assert stats.files[0].format == "mmniah" and dict(stats.report.counts) == {"invalid_utf8": 1}


def test_bad_utf8_in_a_meta_file_names_file_and_line(tmp_path):
    path = tmp_path / "meta.json"
    path.write_bytes(b'{\n  "d": {"annotation": "caf\xe9.jsonl"}\n}\n')
    with pytest.raises(ConfigError, match=r"meta\.json:2: not valid UTF-8 \(byte 0xe9 at column 27\)"):
        load_meta(path)


def test_the_reader_reports_bad_json_with_file_and_line_and_accepts_a_bom(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\n{"a": \n[1]\n')
    bad = []
    assert list(iter_json_lines(path, on_bad=bad.append)) == [(1, {"a": 1})]
    assert [(e.reason, e.where) for e in bad] == [("invalid_json", f"{path}:3"), ("not_an_object", f"{path}:4")]


# ---------------------------------------------------------------------------- 7. empty / huge datasets


def test_an_empty_annotation_file_is_a_load_time_error(tmp_path, processor):
    write_lines(tmp_path / "empty.jsonl", [])
    meta = write_meta(tmp_path / "meta.json", {"e": {"annotation": "empty.jsonl"}})
    with pytest.raises(ConfigError, match=r"meta\.json: dataset 'e': no usable samples in .*empty\.jsonl"):
        SupervisedDataset(meta, processor)


def test_a_dataset_whose_every_line_is_skipped_is_an_error(tmp_path, processor):
    write_lines(tmp_path / "bad.jsonl", ["{not json", "[1]"])
    meta = write_meta(tmp_path / "meta.json", {"b": {"annotation": "bad.jsonl"}})
    with pytest.raises(ConfigError, match=r"dataset 'b': no usable samples .*every line skipped"):
        SupervisedDataset(meta, processor, skip_bad=True)


def test_a_repeat_time_that_keeps_no_sample_is_a_load_time_error(synthetic_dir, tmp_path, processor):
    entry = {"root": str(synthetic_dir), "annotation": str(synthetic_dir / "synthetic.jsonl")}
    meta = write_meta(tmp_path / "meta.json", {"few": {**entry, "repeat_time": 0.01}})
    with pytest.raises(ConfigError, match=r"meta\.json: dataset 'few': repeat_time 0\.01 of 40 samples keeps 0 samples; use a repeat_time of at least 0\.025"):
        SupervisedDataset(meta, processor)


def test_a_huge_repeat_time_is_refused_before_any_memory_is_taken(synthetic_dir, tmp_path, processor, monkeypatch):
    entry = {"root": str(synthetic_dir), "annotation": str(synthetic_dir / "synthetic.jsonl")}
    with pytest.raises(ConfigError, match=r"dataset 'huge': key 'repeat_time' 1e\+12 would make more than"):
        load_meta(write_meta(tmp_path / "m1.json", {"huge": {**entry, "repeat_time": 1e12}}))
    monkeypatch.setattr(annotations, "MAX_EXPANDED_SAMPLES", 100)
    with pytest.raises(ConfigError, match=r"dataset 'many': repeat_time 3 of 40 samples makes 120 samples, more than 100"):
        SupervisedDataset(write_meta(tmp_path / "m2.json", {"many": {**entry, "repeat_time": 3}}), processor)


# ---------------------------------------------------------------------------- 8. over-long lines


def long_record(record: dict, chars: int) -> dict:
    turns = [record["conversations"][0], {"from": "gpt", "value": "x" * chars}]
    return {**record, "conversations": turns}


def test_the_line_limit_follows_max_length():
    assert sample_byte_limit(1000) == 16_000
    assert sample_byte_limit(None) == annotations.DEFAULT_MAX_SAMPLE_BYTES
    assert sample_byte_limit(1000, max_sample_bytes=50) == 50
    with pytest.raises(ConfigError, match="max_sample_bytes must be >= 1"):
        sample_byte_limit(1000, max_sample_bytes=0)


def test_the_reader_refuses_lines_over_the_limit_without_parsing_them(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": "yyy"}\n' + b"[" * 5000 + b"\n" + b'{"b": 2}')  # 12 bytes (the limit), 5000 bytes, 8 bytes
    bad = []
    assert list(iter_json_lines(path, max_line_bytes=12, on_bad=bad.append)) == [(1, {"a": "yyy"}), (3, {"b": 2})]
    assert [(e.reason, e.where) for e in bad] == [("too_long", f"{path}:2")]  # too long, not invalid JSON: never parsed
    assert "a line of 5000 bytes, more than the limit of 12 bytes" in str(bad[0])


def test_stats_refuses_an_over_long_line_before_tokenising_it(tmp_path, synthetic_dir, monkeypatch, capsys):
    from v2pe.data import lengths

    records = records_of(synthetic_dir, 2)
    path = write_lines(tmp_path / "long_line.jsonl", [records[0], long_record(records[1], 200_000)])
    meta = write_meta(tmp_path / "meta.json", {"l": {"root": str(synthetic_dir), "annotation": path.name}})
    measured = []
    original = lengths.LengthMeter.measure
    monkeypatch.setattr(lengths.LengthMeter, "measure", lambda self, *args, **kwargs: measured.append(1) or original(self, *args, **kwargs))
    stats = collect_stats(meta, make_processor(max_length=2048))
    assert dict(stats.report.counts) == {"too_long": 1} and len(measured) == 1  # only the short line was tokenised
    example = stats.report.examples["too_long"][0]
    assert example.startswith(f"{path}:2: a line of ") and "more than the limit of 32768 bytes" in example
    assert main(["data", "stats", str(meta), "--max-sample-bytes", "1000", "--strict", *SMALL]) == 2
    assert f"{path}:2: a line of" in capsys.readouterr().err


def test_training_refuses_an_over_long_line_at_load_time(synthetic_dir, tmp_path, processor):
    records = records_of(synthetic_dir, 2)
    write_lines(tmp_path / "l.jsonl", [records[0], long_record(records[1], 5000)])
    meta = write_meta(tmp_path / "meta.json", {"l": {"root": str(synthetic_dir), "annotation": "l.jsonl"}})
    with pytest.raises(SampleError, match=r"l\.jsonl:2: a line of \d+ bytes, more than the limit of 2000 bytes"):
        SupervisedDataset(meta, processor, max_sample_bytes=2000)
    dataset = SupervisedDataset(meta, processor, max_sample_bytes=2000, skip_bad=True)
    assert len(dataset) == 1 and dict(dataset.report.counts) == {"too_long": 1}
    limited = SupervisedDataset(meta, make_processor(max_length=100), skip_bad=True)  # 1600 bytes from max_length
    assert limited.report.counts["too_long"] == 1


# ---------------------------------------------------------------------------- 9. image paths outside the root


@pytest.mark.parametrize("image", ["../../../../../../../../etc/passwd", "/etc/passwd", "images/../../elsewhere.png"])
def test_image_paths_outside_the_root_are_refused_without_being_opened(tmp_path, synthetic_dir, image):
    record = {**records_of(synthetic_dir, 1)[0], "image": image}
    path = write_lines(tmp_path / "data" / "a.jsonl", [record])
    with pytest.raises(SampleError, match=r"a\.jsonl:1 \(id synthetic-000000\), field 'image': image path .* resolves outside the data root") as error:
        read_annotations(path)
    assert error.value.reason == "outside_root"
    report = SkipReport()
    assert read_annotations(path, skip_bad=True, report=report) == [] and dict(report.counts) == {"outside_root": 1}


def test_paths_inside_the_root_absolute_or_not_are_kept(tmp_path, synthetic_dir):
    records = records_of(synthetic_dir, 2)
    records[0]["image"] = str(synthetic_dir / records[0]["image"])  # absolute, inside
    records[1]["image"] = "images/../" + records[1]["image"]  # leaves a folder but not the root
    samples = read_annotations(write_lines(tmp_path / "a.jsonl", records), synthetic_dir)
    assert all(s.images[0].is_file() for s in samples)


def test_allow_outside_root_in_the_meta_file_or_on_the_command_line(tmp_path, synthetic_dir, processor, capsys):
    records = records_of(synthetic_dir, 2)
    for record in records:
        record["image"] = str(synthetic_dir / record["image"])
    annotation = write_lines(tmp_path / "a.jsonl", records)
    strict = write_meta(tmp_path / "strict.json", {"a": {"annotation": "a.jsonl"}})
    with pytest.raises(SampleError, match="outside the data root"):
        SupervisedDataset(strict, processor)
    allowed = write_meta(tmp_path / "allowed.json", {"a": {"annotation": "a.jsonl", "allow_outside_root": True}})
    assert len(SupervisedDataset(allowed, processor)) == 2
    assert len(collect_stats(allowed, processor).lengths) == 2
    with pytest.raises(ConfigError, match="key 'allow_outside_root' must be bool"):
        load_meta(write_meta(tmp_path / "bad.json", {"a": {"annotation": "a.jsonl", "allow_outside_root": "yes"}}))
    assert main(["data", "stats", str(annotation), *SMALL]) == 0
    assert "skipped 2 samples: outside_root 2" in capsys.readouterr().out
    assert main(["data", "stats", str(annotation), "--allow-outside-root", *SMALL]) == 0
    assert "skipped 0 samples" in capsys.readouterr().out


def test_mmniah_image_paths_outside_the_root_are_refused(tmp_path, processor):
    record = {"id": 0, "images_list": ["../x.png"], "context": "<image>", "question": "q?", "answer": "a", "meta": {}}
    stats = collect_stats(write_lines(tmp_path / "d" / "n.jsonl", [record]), processor)
    assert dict(stats.report.counts) == {"outside_root": 1} and "field 'images_list[0]'" in stats.report.examples["outside_root"][0]


def test_a_builder_source_outside_its_root_needs_the_option(tmp_path, synthetic_dir):
    records = records_of(synthetic_dir, 3)
    for record in records:
        record["image"] = str(synthetic_dir / record["image"])
    source = write_lines(tmp_path / "src.jsonl", records)
    with pytest.raises(SampleError, match="outside the data root"):
        load_source(source)
    assert len(load_source(source, allow_outside_root=True)) == 3


def test_built_data_that_points_at_its_source_says_so_in_its_meta_file(tmp_path, synthetic_dir, processor):
    out = tmp_path / "built"
    build_long_vqa(load_source(synthetic_dir / "synthetic.jsonl"), processor, out, n=2, target_tokens=[300])
    entry = json.loads((out / "meta.json").read_text())["long_vqa"]
    assert entry["allow_outside_root"] is True  # its images are the source's, outside the output folder
    assert len(SupervisedDataset(out / "meta.json", processor)) == 2


# ---------------------------------------------------------------------------- 10. unwritable outputs


@pytest.fixture()
def blocked(tmp_path):
    """An output path under a regular file: no folder can be made there (even as root)."""
    (tmp_path / "a_file").write_text("x")
    return tmp_path / "a_file" / "sub"


def test_builders_and_stats_name_an_output_folder_they_cannot_create(blocked, synthetic_dir, capsys):
    source = str(synthetic_dir / "synthetic.jsonl")
    commands = [
        ["data", "synthetic", "--out", str(blocked), "--n", "1"],
        ["data", "build", "long-vqa", "--source", source, "--out", str(blocked), "--target-tokens", "300", "--n", "1", *SMALL],
        ["data", "build", "needle", "--task", "retrieval-text", "--source", source, "--out", str(blocked), "--target-tokens", "600", "--n", "1", *SMALL],
        ["data", "stats", source, "--json", str(blocked / "stats.json"), *SMALL],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("v2pe data: error: cannot create output folder ") and str(blocked) in err[-1], argv
        assert not any("Traceback" in line for line in err)


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_no_partial_file(tmp_path, synthetic_dir, monkeypatch, capsys):
    import os
    import types

    import v2pe.files

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    # the disk fills up when the finished file would take its place
    monkeypatch.setattr(v2pe.files, "os", types.SimpleNamespace(replace=no_space, getpid=os.getpid, PathLike=os.PathLike))
    with pytest.raises(OutputError, match=r"cannot write .*s\.json: No space left on device"):
        write_text_file(tmp_path / "s.json", "{}")
    out = tmp_path / "lv"
    argv = ["data", "build", "long-vqa", "--source", str(synthetic_dir / "synthetic.jsonl"), "--out", str(out), "--target-tokens", "300", "--n", "1", *SMALL]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"v2pe data: error: cannot write {out / 'long_vqa.jsonl'}: No space left on device"
    assert list(out.iterdir()) == [] and list(tmp_path.glob(".*tmp")) == []


def test_write_jsonl_names_the_file_when_a_write_fails(tmp_path, monkeypatch):
    from v2pe.data.annotations import write_jsonl

    def records():
        yield {"a": 1}
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match=r"cannot write .*x\.jsonl: No space left on device"):
        write_jsonl(tmp_path / "x.jsonl", records())
    assert list(tmp_path.iterdir()) == []


def test_errors_are_data_errors_for_generic_callers():
    assert issubclass(OutputError, ValueError) and issubclass(SampleError, DataError)
