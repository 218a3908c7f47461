"""`v2pe data`: synthetic, build, stats, and one-line errors."""

from __future__ import annotations

import json

from tests.data.conftest import write_lines
from v2pe.cli import main

SMALL = ["--tokens-per-tile", "4", "--tile-size", "56", "--max-tiles", "4"]


def test_synthetic_build_and_stats(tmp_path, capsys):
    assert main(["data", "synthetic", "--out", str(tmp_path / "syn"), "--n", "30", "--seed", "1", "--image-size", "56"]) == 0
    assert len((tmp_path / "syn" / "synthetic.jsonl").read_text().splitlines()) == 30
    source = str(tmp_path / "syn" / "synthetic.jsonl")
    assert main(["data", "build", "long-vqa", "--source", source, "--out", str(tmp_path / "lv"), "--target-tokens", "600", "1200", "--n", "4", "--seed", "2", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "wrote 4 samples" in out and "max deviation from target" in out
    assert main(["data", "build", "needle", "--task", "counting-text", "retrieval-image", "--source", source, "--out", str(tmp_path / "nd"), "--target-tokens", "1500", "--n", "2", *SMALL]) == 0
    assert {p.name for p in (tmp_path / "nd").glob("*.jsonl")} == {"counting-text.jsonl", "counting-text_train.jsonl", "retrieval-image.jsonl", "retrieval-image_train.jsonl"}
    capsys.readouterr()
    assert main(["data", "stats", str(tmp_path / "nd" / "meta.json"), "--json", str(tmp_path / "stats.json"), *SMALL]) == 0
    out = capsys.readouterr().out
    assert "counting-text_train" in out and "skipped 0 samples" in out
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["histogram"]["count"] == 4 and stats["skipped"]["total"] == 0
    # an MM-NIAH file is measured as its prompt + answer: the same lengths as the training file
    # (read on its own, its root is its folder; its images are the source's, beside it)
    niah_file = str(tmp_path / "nd" / "counting-text.jsonl")
    assert main(["data", "stats", niah_file, "--json", str(tmp_path / "niah.json"), "--allow-outside-root", *SMALL]) == 0
    niah = json.loads((tmp_path / "niah.json").read_text())
    assert niah["files"][0]["format"] == "mmniah"
    assert niah["files"][0]["tokens"] == stats["files"][0]["tokens"]


def test_stats_counts_skips_and_strict_stops_with_one_line(tmp_path, synthetic_dir, capsys):
    records = [json.loads(line) for line in (synthetic_dir / "synthetic.jsonl").read_text().splitlines()][:4]
    for record in records:
        record["image"] = str(synthetic_dir / record["image"])
    records[2]["image"] = str(tmp_path / "none.png")
    path = write_lines(tmp_path / "bad.jsonl", records + ["{bad json"])
    assert main(["data", "stats", str(path), "--allow-outside-root", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "skipped 2 samples: invalid_json 1, missing_image 1" in out
    assert main(["data", "stats", str(path), "--strict", "--allow-outside-root", *SMALL]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert err.startswith("v2pe data: error: ") and f"{path}:3 (id synthetic-000002), field 'image'" in err
    assert main(["data", "stats", str(path), "--max-length", "100", "--allow-outside-root", *SMALL]) == 0
    assert "too_long 3" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "stats", str(tmp_path / "missing.jsonl")]) == 2
    assert "file not found" in capsys.readouterr().err
    write_lines(tmp_path / "s.jsonl", [{"image": "a.png", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}])
    assert main(["data", "build", "needle", "--task", "nope", "--source", str(tmp_path / "s.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "unknown needle task 'nope'" in capsys.readouterr().err
    assert main(["data", "synthetic", "--out", str(tmp_path / "x"), "--n", "0"]) == 2
    (tmp_path / "meta.json").write_text(json.dumps({"d": {"annotation": "s.jsonl", "weight": 2}}))
    assert main(["data", "stats", str(tmp_path / "meta.json")]) == 2
    assert "unknown key 'weight'" in capsys.readouterr().err
