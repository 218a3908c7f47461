"""Benchmark-runner throughput: samples/s of `run_benchmark` at batch 1 and batch 8 (`--batch-size`).

    python -m benchmarks.eval [--samples 32] [--batch-sizes 1 8] [--repeats 1]

The tiny model (`v2pe.model.tiny`, byte tokenizer, greedy, delta "auto") on a synthetic TextVQA
folder made here (questions of varied length, images of 1 to 3 tiles + thumbnail). Each arm is a
fresh run folder: generation, scoring and result writing are all timed, as `v2pe eval vqa` does
them. The batched arms must give the same predictions as batch 1 (`same_predictions`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import torch
from PIL import Image

from benchmarks.common import print_table, write_json

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
SIZES = [(112, 56), (56, 56), (168, 56), (56, 112)]


def make_vqa_folder(root: Path, samples: int) -> Path:
    """root/data/textvqa/{textvqa_val.jsonl, textvqa_val_annotations.json, train_images/}."""
    folder = root / "data" / "textvqa"
    (folder / "train_images").mkdir(parents=True, exist_ok=True)
    rows, annotations = [], []
    for i in range(samples):
        Image.new("RGB", SIZES[i % len(SIZES)], COLOURS[i % len(COLOURS)]).save(folder / "train_images" / f"{i}.png")
        question = "What is written" + " on the sign" * (i % 6) + f" {i}?"
        rows.append({"image": f"data/textvqa/train_images/{i}.png", "question": question, "question_id": i})
        annotations.append({"question_id": i, "answers": [{"answer": "stop"}] * 10})
    (folder / "textvqa_val.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "textvqa_val_annotations.json").write_text(json.dumps({"annotations": annotations}))
    return root / "data"


def build_chat():
    from v2pe.inference import Chat
    from v2pe.model.tiny import tiny_model
    from v2pe.processing import Processor
    from v2pe.processing.tokenizer import byte_tokenizer

    processor = Processor(byte_tokenizer(), tokens_per_tile=4, tile_size=56, max_tiles=6)
    return Chat(tiny_model(seed=3).eval(), processor, delta="auto", progress=False)


def predictions(folder: Path) -> dict:
    return {json.loads(line)["id"]: json.loads(line)["prediction"] for line in (folder / "textvqa_val.jsonl").read_text().splitlines()}


def run(samples: int, batch_sizes: list[int], repeats: int) -> list[dict]:
    from v2pe.eval.runners import run_benchmark

    warnings.simplefilter("ignore")
    chat = build_chat()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_vqa_folder(root, samples)
        run_benchmark("vqa", chat, data, root / "warmup", image_root=root, limit=2, batch_size=2)  # first-call costs
        reference = None
        for batch_size in batch_sizes:
            times = []
            for repeat in range(repeats):
                out = root / f"b{batch_size}-{repeat}"
                start = time.perf_counter()
                run_benchmark("vqa", chat, data, out, image_root=root, batch_size=batch_size)
                times.append(time.perf_counter() - start)
            seconds = sorted(times)[len(times) // 2]
            got = predictions(out)
            reference = got if reference is None else reference
            rows.append({"batch_size": batch_size, "samples": samples, "seconds": seconds, "samples_per_s": samples / seconds,
                         "same_predictions": got == reference})
    base = rows[0]["samples_per_s"]
    for row in rows:
        row["speedup"] = row["samples_per_s"] / base
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    rows = run(args.samples, args.batch_sizes, args.repeats)
    print_table(rows, list(rows[0]))
    print(f"batch{rows[-1]['batch_size']}/batch{rows[0]['batch_size']} samples/s: {rows[-1]['speedup']:.2f}x")
    write_json("eval", {"rows": rows, "samples": args.samples, "torch_threads": torch.get_num_threads(), "model": "v2pe.model.tiny (seed 3)"})


if __name__ == "__main__":
    main()
