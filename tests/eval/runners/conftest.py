"""Fixtures for the runner tests: a tiny Chat and small benchmark folders in each benchmark's
own format, made at test time with synthetic PIL images."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from v2pe.inference import Chat, Reply
from v2pe.model.tiny import tiny_model
from v2pe.processing import Processor
from v2pe.processing.tokenizer import byte_tokenizer

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]


@pytest.fixture(scope="session")
def tiny_chat():
    processor = Processor(byte_tokenizer(), tokens_per_tile=4, tile_size=56, max_tiles=6)
    return Chat(tiny_model(seed=3), processor, delta="auto")


@dataclass
class ScriptedChat(Chat):
    """A Chat whose answers come from `script(prompt)`; inputs are still prepared (and so
    checked) by the real processor. Every generated prompt is recorded in `calls` (one entry per
    conversation, `batch` the number of conversations of its generate call)."""

    script: Callable[[str], str] = lambda prompt: ""
    calls: list = field(default_factory=list)

    def generate(self, conversations, images, max_new_tokens=None, **generate_kwargs):
        inputs = self.prepare(conversations, images, max_new_tokens or self.max_new_tokens)
        replies = []
        for conversation, row_images, mask in zip(conversations, images, inputs["attention_mask"], strict=True):
            prompt = conversation[-1]["value"]
            self.calls.append({"prompt": prompt, "images": list(row_images), "max_new_tokens": max_new_tokens,
                               "max_tiles": self.processor.max_tiles, "generate_kwargs": generate_kwargs,
                               "batch": len(conversations)})
            replies.append(Reply(self.script(prompt), inputs["delta"], int(mask.sum()), 1))
        return replies


@pytest.fixture
def scripted_chat():
    """A ScriptedChat over the tiny processor answering '' (set `.script` in the test)."""
    processor = Processor(byte_tokenizer(), tokens_per_tile=4, tile_size=56, max_tiles=6)
    return ScriptedChat(None, processor, delta=1.0)


def make_image(path: Path, index: int, size=(112, 56)) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, COLOURS[index % len(COLOURS)]).save(path)
    return path.name


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def mmniah_rows(images: Path, task: str, n: int = 3) -> list[dict]:
    """MM-NIAH annotation lines of one task (answer types as the real tasks)."""
    rows = []
    for i in range(n):
        name = f"{task}-{i}.png"
        make_image(images / name, i)
        meta = {"context_length": 1500 + 3000 * i, "placed_depth": [0.1, 0.5][i % 2] if "counting" not in task else [0.2, 0.4],
                "choices": None, "choices_image_path": None}
        if task == "retrieval-text":
            answer = "paris"
        elif task == "counting-text":
            answer = [1, 2]
        elif task == "retrieval-image":
            answer = i % 4
            meta["choices"] = ["a cat", "a dog", "a car", "a tree"]
        else:  # reasoning-image
            answer = 1
            choice_names = []
            for c in range(2):
                choice = f"choice-{i}-{c}.png"
                make_image(images / choice, c + 2)
                choice_names.append(choice)
            meta["choices_image_path"] = choice_names
        rows.append({"id": i, "images_list": [name], "context": f"Some text <image> about town {i}. ",
                     "question": "Which city is mentioned?", "answer": answer, "meta": meta})
    return rows


@pytest.fixture
def mmniah_data(tmp_path):
    root = tmp_path / "MM-NIAH"
    for task in ("retrieval-text", "counting-text", "retrieval-image", "reasoning-image"):
        write_jsonl(root / "val" / "annotations" / f"{task}.jsonl", mmniah_rows(root / "val" / "images", task))
    return root


def milebench_dataset(root: Path, name: str, question_type: str, n: int = 3, images_per_sample: int = 2,
                      choices: bool = False) -> Path:
    folder = root / name
    data = []
    for i in range(n):
        paths = []
        for k in range(images_per_sample):
            paths.append(make_image(folder / "images" / f"{i}_{k}.png", i + k, size=(56, 56)))
        context = "Look: " + " then ".join(f"{{image#{k + 1}}}" for k in range(images_per_sample)) + f" Question {i}?"
        instance = {"context": context, "images_path": paths}
        if choices:
            instance["choice_list"] = ["left", "right", "up"]
        data.append({"sample_id": i, "task_instruction_id": 0, "task_instance": instance,
                     "response": "right" if choices else "the ball moves", "image_quantity_level": "Few"})
    annotation = {"meta_data": {"task_instruction": ["Answer about the images."], "question_type": question_type}, "data": data}
    (folder / f"{name}.json").write_text(json.dumps(annotation), encoding="utf-8")
    return folder / f"{name}.json"


@pytest.fixture
def milebench_data(tmp_path):
    root = tmp_path / "MileBench"
    milebench_dataset(root, "ObjectShuffle", "multi-choice", choices=True)
    milebench_dataset(root, "ALFRED", "open-ended")
    milebench_dataset(root, "TextNeedleInAHaystack", "open-ended", images_per_sample=1)
    return root


def longvqa_rows(images: Path, task: str, n: int = 3, answer="12") -> list[dict]:
    rows = []
    for i in range(n):
        names = [make_image(images / f"{task}_{i}_{k}.png", i + k) for k in range(2)]
        rows.append({"id": f"{task}-{i}", "image": [f"images/{name}" for name in names],
                     "conversations": [{"from": "human", "value": f"<image> and <image>: how many apples? ({i})"},
                                       {"from": "gpt", "value": answer}],
                     "metadata": {"context_length": 17000 + 1000 * i}})
    return rows


@pytest.fixture
def longvqa_data(tmp_path):
    root = tmp_path / "longvqa"
    write_jsonl(root / "long_vqa_32k" / "val_long_vqa_chartqa_16_32.jsonl", longvqa_rows(root / "images", "chartqa"))
    write_jsonl(root / "long_vqa_32k" / "val_long_vqa_deepform_16_32.jsonl", longvqa_rows(root / "images", "deepform", answer="ACME"))
    return root


@pytest.fixture
def vqa_data(tmp_path):
    data = tmp_path / "data"
    rows = []
    for i in range(3):
        make_image(data / "textvqa" / "train_images" / f"{i}.png", i)
        rows.append({"image": f"data/textvqa/train_images/{i}.png", "question": f"What is written {i}?", "question_id": 100 + i})
    write_jsonl(data / "textvqa" / "textvqa_val.jsonl", rows)
    annotations = {"annotations": [{"question_id": 100 + i, "answers": [{"answer": "stop"}] * 10} for i in range(3)]}
    (data / "textvqa" / "textvqa_val_annotations.json").write_text(json.dumps(annotations))
    rows = []
    for i in range(2):
        make_image(data / "chartqa" / "test" / f"{i}.png", i)
        rows.append({"image": f"data/chartqa/test/{i}.png", "question": "What is the peak?", "question_id": i, "answer": "42"})
    write_jsonl(data / "chartqa" / "test_human.jsonl", rows)
    return data
