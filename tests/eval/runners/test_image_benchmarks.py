"""General image benchmarks (ScienceQA, POPE, MMBench, MMMU, SEED) and the VQA answer rule: tiny
folders in each benchmark's released format, prompts written by hand from the official
scripts, scripted answers, scores and aggregates computed here independently."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from tests.eval.runners.conftest import make_image, write_jsonl
from v2pe.errors import DataError
from v2pe.eval.benchmarks import BENCHMARKS
from v2pe.eval.reports import write_report
from v2pe.eval.runners import load_tasks, run_benchmark

LETTER = "Answer with the option's letter from the given choices directly."
PHRASE = "Answer the question using a single word or phrase."


@pytest.fixture(autouse=True)
def image_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("V2PE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def answer_with(chat, answers: dict[str, str]):
    """Script: the answer whose key occurs in the prompt."""
    def script(prompt):
        for key, answer in answers.items():
            if key in prompt:
                return answer
        raise AssertionError(f"unexpected prompt {prompt!r}")
    chat.script = script


def test_registered():
    assert {"scienceqa", "pope", "mmbench", "mmmu", "seed"} <= set(BENCHMARKS)


# ----------------------------------------------------------------------------- ScienceQA


@pytest.fixture
def scienceqa_data(tmp_path):
    root = tmp_path / "internvl_chat"
    for i in range(3):
        make_image(root / "data" / "scienceqa" / "images" / "test" / str(i) / "image.png", i)
    rows = [
        {"image": "data/scienceqa/images/test/0/image.png", "question": "Which animal is a mammal?", "hint": "Look at the picture.",
         "choices": ["cat", "fish", "frog"], "answer": 0},
        {"image": "data/scienceqa/images/test/1/image.png", "question": "Which is bigger?", "hint": "", "choices": ["ant", "whale"],
         "answer": 1},
        {"image": "data/scienceqa/images/test/2/image.png", "question": "Pick E.", "hint": None,
         "choices": ["a1", "b2", "c3", "d4", "e5"], "answer": 4},
    ]
    write_jsonl(root / "data" / "scienceqa" / "scienceqa_test_img.jsonl", rows)
    return root / "data" / "scienceqa"


def test_scienceqa_prompts_and_settings(scienceqa_data, scripted_chat):
    (task,) = load_tasks("scienceqa", scienceqa_data, scripted_chat.processor)
    assert task.name == "sqa_test"
    prompts = [s.prompt for s in task.samples]
    assert prompts == [
        "Look at the picture.\nWhich animal is a mammal?\nA. cat\nB. fish\nC. frog\n" + LETTER,
        "Which is bigger?\nA. ant\nB. whale\n" + LETTER,  # empty hint: none
        "Pick E.\nA. a1\nB. b2\nC. c3\nD. d4\nE. e5\n" + LETTER,  # null hint: none
    ]
    assert [s.id for s in task.samples] == [0, 1, 2]
    assert [s.answer for s in task.samples] == ["A", "B", "E"]
    assert {(s.max_tiles, s.max_new_tokens, s.scorer) for s in task.samples} == {(6, 100, "mc_scienceqa")}
    assert task.samples[0].images[0] == scienceqa_data / "images" / "test" / "0" / "image.png"
    assert task.samples[0].generate_kwargs == {"min_new_tokens": 1}


def test_scienceqa_end_to_end_and_letter_rule(scienceqa_data, scripted_chat, tmp_path):
    # "B. fish" -> B (wrong), "whale" -> option text -> B (right), "e" -> one character kept as is -> wrong
    answer_with(scripted_chat, {"mammal": "B. fish", "bigger": "It is the whale", "Pick E": "e"})
    summary = run_benchmark("scienceqa", scripted_chat, scienceqa_data, tmp_path / "run")
    assert summary["sqa_test"]["mean"] == pytest.approx(1 / 3)
    records = lines(tmp_path / "run" / "sqa_test.jsonl")
    assert [r["score"] for r in records] == [0.0, 1.0, 0.0]
    assert scripted_chat.calls[0]["images"][0].endswith("test/0/image.png")
    report = write_report([tmp_path / "run"], tmp_path / "report")
    assert report["runs"][0]["numbers"]["datasets"]["sqa_test"]["score"] == pytest.approx(100 / 3)


def test_scienceqa_six_choices_are_refused(scienceqa_data, scripted_chat):
    path = scienceqa_data / "scienceqa_test_img.jsonl"
    write_jsonl(path, [{"image": "x.png", "question": "q", "choices": list("abcdef"), "answer": 0}])
    with pytest.raises(DataError, match="scienceqa_test_img.jsonl:1: 6 choices"):
        load_tasks("scienceqa", scienceqa_data, scripted_chat.processor)


# ----------------------------------------------------------------------------- POPE


@pytest.fixture
def pope_data(tmp_path):
    root = tmp_path / "data" / "pope"
    questions = []
    labels: dict[str, list] = {"adversarial": [], "popular": [], "random": []}
    spec = [("adversarial", "cat", "yes"), ("adversarial", "dog", "no"), ("adversarial", "car", "yes"),
            ("random", "tree", "no"), ("random", "bus", "yes"), ("popular", "cup", "no"), ("other", "sky", "yes")]
    for qid, (category, thing, label) in enumerate(spec, start=1):
        image = f"COCO_val2014_{qid:012d}.jpg"
        make_image(root / "val2014" / image, qid)
        text = f"Is there a {thing} in the image? {PHRASE}"
        questions.append({"question_id": qid, "image": image, "text": text, "category": category})
        if category in labels:
            labels[category].append({"question_id": len(labels[category]) + 1, "image": image, "text": f"Is there a {thing} in the image?",
                                     "label": label})
    write_jsonl(root / "llava_pope_test.jsonl", questions)
    for category, rows in labels.items():
        write_jsonl(root / "coco" / f"coco_pope_{category}.json", rows)
    return root


def test_pope_prompts_end_with_a_space(pope_data, scripted_chat):
    tasks = {t.name: t for t in load_tasks("pope", pope_data, scripted_chat.processor)}
    assert list(tasks) == ["adversarial", "popular", "random"]  # one task per label file; 'other' has none
    first = tasks["adversarial"].samples[0]
    assert first.prompt == "Is there a cat in the image? Answer the question using a single word or phrase. "
    assert (first.id, first.answer, first.max_tiles, first.max_new_tokens) == (1, "yes", 6, 100)
    assert first.images[0] == pope_data / "val2014" / "COCO_val2014_000000000001.jpg"
    assert [s.answer for s in tasks["adversarial"].samples] == ["yes", "no", "yes"]  # by position
    assert tasks["adversarial"].info["questions_without_label_file"] == {"other": 1}


def test_pope_metrics_per_category(pope_data, scripted_chat, tmp_path):
    answer_with(scripted_chat, {"cat": "Yes, there is a cat.", "dog": "There is not a dog. No.", "car": "No",
                                "tree": "Yes. No tree though", "bus": "Yes", "cup": "no."})
    run_benchmark("pope", scripted_chat, pope_data, tmp_path / "run")
    report = write_report([tmp_path / "run"], tmp_path / "report")
    numbers = report["runs"][0]["numbers"]
    # adversarial: preds yes, no, no vs labels yes, no, yes -> TP 1, TN 1, FN 1
    adversarial = numbers["categories"]["adversarial"]
    assert (adversarial["tp"], adversarial["fp"], adversarial["tn"], adversarial["fn"]) == (1, 0, 1, 1)
    assert adversarial["accuracy"] == pytest.approx(200 / 3)
    assert adversarial["precision"] == pytest.approx(100.0) and adversarial["recall"] == pytest.approx(50.0)
    assert adversarial["f1"] == pytest.approx(100 * 2 * 1 * 0.5 / 1.5)
    assert adversarial["yes_ratio"] == pytest.approx(100 / 3)
    # random: "Yes. No tree though" -> first sentence "Yes" -> yes (label no): FP; bus yes/yes: TP
    random_ = numbers["categories"]["random"]
    assert (random_["tp"], random_["fp"], random_["tn"], random_["fn"]) == (1, 1, 0, 0)
    f1s = [adversarial["f1"], 100 * 2 * 0.5 * 1 / 1.5, 0.0]  # popular: "no." vs no -> TN only, F1 0
    assert numbers["overall_f1"] == pytest.approx(sum(f1s) / 3)
    assert "Overall F1" in (tmp_path / "report" / "report.md").read_text()


def test_pope_too_few_labels_is_an_error(pope_data, scripted_chat):
    write_jsonl(pope_data / "coco" / "coco_pope_adversarial.json", [{"question_id": 1, "label": "yes"}])
    with pytest.raises(DataError, match="1 labels for 3 'adversarial' questions"):
        load_tasks("pope", pope_data, scripted_chat.processor)


# ----------------------------------------------------------------------------- MMBench

MMBENCH_COLUMNS = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source",
                   "l2-category", "comment", "split"]


def png_base64(index: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (70, 40), (index * 40 % 256, 20, 200)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def write_tsv(path: Path, columns, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\t".join(columns) + "\n" + "".join("\t".join(str(row.get(c, "")) for c in columns) + "\n" for row in rows)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def mmbench_data(tmp_path):
    root = tmp_path / "data" / "mmbench"
    rows = [
        {"index": 0, "question": "What colour is the sky?", "hint": "Outdoor photo.", "A": "blue", "B": "green", "C": "red",
         "D": "", "answer": "A", "category": "color", "image": png_base64(0), "source": "s", "l2-category": "l2", "comment": "",
         "split": "dev"},
        {"index": 1, "question": "How many cats?", "hint": "nan", "A": "one", "B": "two", "C": "None", "D": "four",
         "answer": "B", "category": "count", "image": png_base64(1), "source": "s", "l2-category": "l2", "comment": "",
         "split": "dev"},
        {"index": 1000000, "question": "What colour is the sky?", "hint": "Outdoor photo.", "A": "green", "B": "blue",
         "C": "red", "D": "", "answer": "B", "category": "color", "image": png_base64(0), "source": "s", "l2-category": "l2",
         "comment": "", "split": "dev"},
    ]
    write_tsv(root / "mmbench_dev_20230712.tsv", MMBENCH_COLUMNS, rows)
    test_columns = [c for c in MMBENCH_COLUMNS if c != "answer"]
    write_tsv(root / "mmbench_test_cn_20231003.tsv", test_columns,
              [{**rows[0], "question": "天空是什么颜色？", "split": "test"}])
    return root


def test_mmbench_prompts_images_and_na_quirk(mmbench_data, scripted_chat):
    tasks = {t.name: t for t in load_tasks("mmbench", mmbench_data, scripted_chat.processor)}
    assert list(tasks) == ["mmbench_dev_20230712", "mmbench_test_cn_20231003"]
    dev = tasks["mmbench_dev_20230712"].samples
    assert dev[0].prompt == "Outdoor photo.\nWhat colour is the sky?\nA. blue\nB. green\nC. red\n" + LETTER
    # pandas reads "nan" and "None" as missing: no hint, and option C dropped (letters kept)
    assert dev[1].prompt == "How many cats?\nA. one\nB. two\nD. four\n" + LETTER
    assert [s.id for s in dev] == [0, 1, 1000000]
    assert {(s.max_tiles, s.max_new_tokens, s.scorer) for s in dev} == {(6, 100, "mc_mmbench")}
    with Image.open(dev[0].images[0]) as image:  # the decoded base64 bytes, as written
        assert image.size == (70, 40) and dev[0].images[0].read_bytes() == base64.b64decode(png_base64(0))
    test = tasks["mmbench_test_cn_20231003"].samples[0]
    assert test.prompt == "Outdoor photo.\n天空是什么颜色？\nA. blue\nB. green\nC. red\n请直接回答选项字母。"
    assert test.answer is None


def test_mmbench_scores_circular_and_submission(mmbench_data, scripted_chat, tmp_path):
    answer_with(scripted_chat, {"天空": "B", "How many": "two cats", "A. blue": "A", "A. green": "A"})
    run_benchmark("mmbench", scripted_chat, mmbench_data, tmp_path / "run")
    dev = lines(tmp_path / "run" / "mmbench_dev_20230712.jsonl")
    assert [r["score"] for r in dev] == [1.0, 1.0, 0.0]  # "two cats": option text "two" -> B
    report = write_report([tmp_path / "run"], tmp_path / "report")
    numbers = report["runs"][0]["numbers"]["tasks"]
    assert numbers["mmbench_dev_20230712"]["accuracy"] == pytest.approx(200 / 3)
    # circular: question 0 has passes 0 and 1000000, one wrong -> wrong; question 1 right -> 50
    assert numbers["mmbench_dev_20230712"]["circular"] == pytest.approx(50.0)
    assert numbers["mmbench_dev_20230712"]["circular_categories"] == {"color": 0.0, "count": 100.0}
    assert numbers["mmbench_test_cn_20231003"]["has_answers"] is False
    submission = tmp_path / "report" / "run" / "mmbench_dev_20230712.tsv"
    try:
        import openpyxl
    except ImportError:
        table = [row.split("\t") for row in submission.read_text().splitlines()]
        assert table[0] == ["index", "question", "A", "B", "C", "D", "prediction", "answer", "split"]
        assert table[1] == ["0", "What colour is the sky?", "blue", "green", "red", "", "A", "A", "dev"]
        assert table[2][6] == "B" and table[2][4] == ""  # prediction post-processed; "None" option stays empty
    else:
        workbook = openpyxl.load_workbook(tmp_path / "report" / "run" / "mmbench_dev_20230712.xlsx")
        header = [c.value for c in next(workbook.active.iter_rows(max_row=1))]
        assert header == ["index", "question", "A", "B", "C", "D", "prediction", "answer", "split"]



def test_mmbench_submission_drops_control_characters_an_xlsx_cannot_hold(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    from v2pe.eval.benchmarks.mmbench import write_submission

    row = {"index": "3", "question": "Q?", "A": "one", "B": "two", "C": None, "D": None, "answer": "A", "split": "dev"}
    records = [{"row": row, "prediction": "\x14zz\x1dq\x0f", "extra": {"options": {"A": "one", "B": "two"}}}]
    path = write_submission("mmbench_dev_20230712", records, tmp_path)
    cells = [c.value for c in list(openpyxl.load_workbook(path).active.iter_rows())[1]]
    assert cells[0] == 3 and "zzq" in cells[6] and not any(ch in cells[6] for ch in "\x14\x1d\x0f")


# ----------------------------------------------------------------------------- MMMU


def image_struct(size, colour):
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def write_mmmu(root: Path, subject: str, rows: list[dict]) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    columns = {name: pa.array([r.get(name) for r in rows], pa.string())
               for name in ("id", "question", "options", "explanation", "answer", "question_type", "subfield")}
    columns.update({f"image_{k}": pa.array([r.get(f"image_{k}") for r in rows], image_type) for k in range(1, 8)})
    path = root / subject / "validation-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


@pytest.fixture
def mmmu_data(tmp_path):
    root = tmp_path / "MMMU"
    write_mmmu(root, "Art", [
        {"id": "validation_Art_1", "question": " Compare <image 1> and <image 2>. Which is older? ",
         "options": "['The first', ' The second ', 'Both']", "answer": "B", "question_type": "multiple-choice",
         "image_1": image_struct((60, 30), "red"), "image_2": image_struct((100, 80), "blue")},
        {"id": "validation_Art_2", "question": "How many brush strokes are in <image 1>?", "options": "[]",
         "answer": "12", "question_type": "open", "image_1": image_struct((40, 40), "green")},
    ])
    write_mmmu(root, "Physics", [
        {"id": "validation_Physics_1", "question": "What is shown in <image 2>?", "options": "['a ball', 'a cube']",
         "answer": "A", "question_type": "multiple-choice", "image_2": image_struct((90, 45), "white")},
    ])
    return root


def test_mmmu_prompts_and_images(mmmu_data, scripted_chat):
    tasks = {t.name: t for t in load_tasks("mmmu", mmmu_data, scripted_chat.processor)}
    assert sorted(tasks) == ["Art", "Physics"]
    first, second = tasks["Art"].samples
    assert first.prompt == ("The <image 1> is <image>, The <image 2> is <image>\nCompare <image 1> and <image 2>. Which is older?"
                            "\nA. The first\nB. The second\nC. Both\n" + LETTER)
    assert second.prompt == "The <image 1> is <image>\nHow many brush strokes are in <image 1>?\n" + PHRASE
    assert (first.id, first.answer, first.scorer, first.max_new_tokens, first.max_tiles) == ("validation_Art_1", "B",
                                                                                           "mc_mmmu_post_process", 10, 6)
    assert second.scorer == "mmmu_open" and first.extra["options"] == {"A": "The first", "B": "The second", "C": "Both"}
    with Image.open(first.images[0]) as upscaled, Image.open(first.images[1]) as one_tile:
        assert upscaled.size == (120, 60)  # image_1 x2 bilinear
        expected = Image.new("RGB", (60, 30), "red").resize((120, 60), Image.Resampling.BILINEAR)
        assert upscaled.convert("RGB").tobytes() == expected.tobytes()
        assert one_tile.size == (56, 56)  # other images: one tile at the processor's tile size
    processor = scripted_chat.processor
    encoded = processor.encode([{"from": "human", "value": first.prompt}], [str(p) for p in first.images])
    assert encoded["num_tiles"].tolist() == [3, 1]  # 120x60 -> 2x1 grid + thumbnail; the other image one tile


def test_mmmu_image_1_missing_is_not_upscaled(mmmu_data, scripted_chat):
    (task,) = load_tasks("mmmu", mmmu_data, scripted_chat.processor, tasks=["Physics"])
    sample = task.samples[0]
    assert sample.prompt.startswith("The <image 2> is <image>\nWhat is shown in <image 2>?")
    with Image.open(sample.images[0]) as image:
        assert image.size == (56, 56)  # position 0 of the image list is null: image_2 gets one tile


def test_mmmu_scores_official_and_mmmu_parse(mmmu_data, scripted_chat, tmp_path):
    # MC "(B) the second one": official post_process -> first char "(" no letter, option text "The second" not in
    # (case-sensitive) -> unchanged -> wrong; MMMU's parse finds "(B)" -> right. Open "The answer is 12." -> 12.
    answer_with(scripted_chat, {"older": "(B) the second one", "brush": "The answer is 12.", "shown": "A"})
    run_benchmark("mmmu", scripted_chat, mmmu_data, tmp_path / "official")
    art = lines(tmp_path / "official" / "Art.jsonl")
    assert [r["score"] for r in art] == [0.0, 1.0] and art[0]["answer_source"] == "parquet"
    run_benchmark("mmmu", scripted_chat, mmmu_data, tmp_path / "mmmu", mmmu_parse="mmmu")
    assert [r["score"] for r in lines(tmp_path / "mmmu" / "Art.jsonl")] == [1.0, 1.0]
    numbers = write_report([tmp_path / "official"], tmp_path / "report")["runs"][0]["numbers"]
    assert numbers["overall"] == {"acc": pytest.approx(200 / 3), "num": 3}  # instance level: 2 of 3
    assert numbers["domains"]["Art and Design"] == {"acc": pytest.approx(50.0), "num": 2}
    assert numbers["domains"]["Science"] == {"acc": pytest.approx(100.0), "num": 1}


def test_mmmu_answer_dict_wins(mmmu_data, scripted_chat):
    answers = {"validation_Art_1": {"question_type": "multiple-choice", "ground_truth": "C"},
               "validation_Art_2": {"question_type": "short-answer", "ground_truth": ["12", "twelve"]}}
    (mmmu_data / "answer_dict_val.json").write_text(json.dumps(answers))
    (task,) = load_tasks("mmmu", mmmu_data, scripted_chat.processor, tasks=["Art"])
    assert [s.answer for s in task.samples] == ["C", ["12", "twelve"]]
    assert task.samples[0].fields["answer_source"] == "answer_dict_val.json"


# ----------------------------------------------------------------------------- SEED


@pytest.fixture
def seed_data(tmp_path):
    root = tmp_path / "data" / "SEED"
    rows = []
    for i, (type_id, answer) in enumerate([(1, "A"), (1, "B"), (9, "C")]):
        make_image(root / "SEED-Bench-image" / f"{i}.jpg", i)
        rows.append({"question_id": f"q{i}", "image": f"SEED-Bench-image/{i}.jpg", "question_type_id": type_id, "answer": answer,
                     "text": f"Question {i}?\nA. x\nB. y\nC. z\nD. w\n" + LETTER})
    write_jsonl(root / "seed.jsonl", rows)
    return root


def test_seed_prompts_scores_and_types(seed_data, scripted_chat, tmp_path):
    (task,) = load_tasks("seed", seed_data, scripted_chat.processor)
    assert task.samples[0].prompt == "Question 0?\nA. x\nB. y\nC. z\nD. w\n" + LETTER  # as given
    assert (task.samples[0].id, task.samples[0].max_new_tokens, task.samples[0].max_tiles) == ("q0", 100, 6)
    assert task.samples[0].images[0] == seed_data / "SEED-Bench-image" / "0.jpg"
    # "A" exact; "B." first letter only; "c" wrong (case)
    answer_with(scripted_chat, {"Question 0": "A", "Question 1": "B.", "Question 2": "c"})
    run_benchmark("seed", scripted_chat, seed_data, tmp_path / "run")
    assert [r["score"] for r in lines(tmp_path / "run" / "SEEDv1.jsonl")] == [1.0, 1.0, 0.0]
    numbers = write_report([tmp_path / "run"], tmp_path / "report")["runs"][0]["numbers"]["tasks"]["SEEDv1"]
    assert numbers["acc1_first_char"] == pytest.approx(200 / 3)
    assert numbers["acc1_exact"] == pytest.approx(100 / 3)  # evaluate_seed.py's exact Acc@1
    assert numbers["types"]["1"] == {"name": "Scene Understanding", "accuracy": pytest.approx(100.0), "n": 2}
    assert numbers["types"]["9"]["accuracy"] == 0.0 and numbers["video"] is None


# ----------------------------------------------------------------------------- VQA answers from annotation files


def test_vqa_annotation_answers_win_over_the_line(vqa_data, scripted_chat, tmp_path):
    path = vqa_data / "textvqa" / "textvqa_val.jsonl"
    rows = lines(path)
    write_jsonl(path, [{**r, "answer": "go"} for r in rows])  # InternVL's lines carry one answer
    tasks = {t.name: t for t in load_tasks("vqa", vqa_data, scripted_chat.processor)}
    text = tasks["textvqa_val"].samples[0]
    assert text.answer == ["stop"] * 10 and text.fields["answer_source"] == "annotation"
    assert tasks["chartqa_test_human"].samples[0].fields["answer_source"] == "line"  # no annotation file exists
    scripted_chat.script = lambda prompt: "stop"
    summary = run_benchmark("vqa", scripted_chat, vqa_data, tmp_path / "run", tasks=["textvqa_val"])
    assert summary["textvqa_val"] == {"n": 3, "mean": 1.0, "errors": 0, "ran": 3}


def test_vqa_line_answers_only_without_annotation_file(vqa_data, scripted_chat):
    (vqa_data / "textvqa" / "textvqa_val_annotations.json").unlink()
    path = vqa_data / "textvqa" / "textvqa_val.jsonl"
    write_jsonl(path, [{**r, "answer": ["go"] * 10} for r in lines(path)])
    (task,) = load_tasks("vqa", vqa_data, scripted_chat.processor, tasks=["textvqa_val"])
    assert task.samples[0].answer == ["go"] * 10 and task.info["answer_source"] == "line"


def test_docvqa_and_infovqa_read_their_ground_truth_files(tmp_path, scripted_chat):
    data = tmp_path / "data"
    for folder, test, annotation in (("docvqa", "val.jsonl", "val/val_v1.0.json"),
                                     ("infographicsvqa", "val.jsonl", "infographicsVQA_val_v1.0_withQT.json")):
        make_image(data / folder / "images" / "0.png", 0)
        write_jsonl(data / folder / test, [{"image": f"data/{folder}/images/0.png", "question": "Date?", "question_id": 7,
                                            "answer": "wrong"}])
        (data / folder / annotation).parent.mkdir(parents=True, exist_ok=True)
        (data / folder / annotation).write_text(json.dumps({"data": [{"questionId": 7, "answers": ["1 May", "May 1"]}]}))
    tasks = {t.name: t for t in load_tasks("vqa", data, scripted_chat.processor)}
    assert tasks["docvqa_val"].samples[0].answer == ["1 May", "May 1"]
    assert tasks["infographicsvqa_val"].samples[0].answer == ["1 May", "May 1"]
    assert tasks["docvqa_val"].samples[0].prompt == "Date? " + PHRASE


# ----------------------------------------------------------------------------- more official quirks


def test_scienceqa_missing_hint_key_counts_as_no_hint(scienceqa_data, scripted_chat):
    path = scienceqa_data / "scienceqa_test_img.jsonl"
    write_jsonl(path, [{"image": "x.png", "question": " Q? ", "choices": ["yes", "no"], "answer": 1}])
    (task,) = load_tasks("scienceqa", scienceqa_data, scripted_chat.processor)
    assert task.samples[0].prompt == " Q? \nA. yes\nB. no\n" + LETTER  # not stripped either


@pytest.mark.parametrize("benchmark", ["scienceqa", "seed", "mmbench"])
def test_empty_answer_is_scored_wrong(benchmark, scienceqa_data, seed_data, mmbench_data, scripted_chat, tmp_path):
    data = {"scienceqa": scienceqa_data, "seed": seed_data, "mmbench": mmbench_data}[benchmark]
    scripted_chat.script = lambda prompt: ""  # the official post_process / calculation.py crash on pred[0]
    summary = run_benchmark(benchmark, scripted_chat, data, tmp_path / "run", limit=1)
    assert all(s["mean"] == 0.0 and s["n"] == 1 for s in summary.values())


def test_seed_types_from_seed_bench_json(seed_data, scripted_chat):
    path = seed_data / "seed.jsonl"
    write_jsonl(path, [{k: v for k, v in r.items() if k != "question_type_id"} for r in lines(path)])
    (seed_data / "SEED-Bench.json").write_text(json.dumps({
        "question_type": {"Scene Understanding": 1, "Text Understanding": 9},
        "questions": [{"question_id": "q0", "question_type_id": 9}, {"question_id": "q1", "question_type_id": 1}]}))
    (task,) = load_tasks("seed", seed_data, scripted_chat.processor)
    assert [s.fields["question_type_id"] for s in task.samples] == [9, 1, None]
    assert task.samples[0].fields["question_type"] == "Text Understanding"


def test_pope_failed_sample_counts_as_wrong(pope_data, scripted_chat, tmp_path):
    (pope_data / "val2014" / "COCO_val2014_000000000006.jpg").unlink()  # the 'popular' question (label no)
    scripted_chat.script = lambda prompt: "Yes"
    run_benchmark("pope", scripted_chat, pope_data, tmp_path / "run", tasks=["popular"])
    popular = write_report([tmp_path / "run"], tmp_path / "report")["runs"][0]["numbers"]["categories"]["popular"]
    assert (popular["tp"], popular["fp"], popular["tn"], popular["fn"], popular["errors"]) == (0, 1, 0, 0, 1)


def test_mmmu_open_list_answer_from_parquet(tmp_path, scripted_chat):
    write_mmmu(tmp_path / "MMMU", "Math", [
        {"id": "validation_Math_1", "question": "Ratio?", "options": "[]", "answer": "['24/7', '3.429']",
         "question_type": "open", "image_1": image_struct((30, 30), "red")}])
    (task,) = load_tasks("mmmu", tmp_path / "MMMU", scripted_chat.processor)
    assert task.samples[0].answer == ["24/7", "3.429"]
    from v2pe.eval.scorers import get_scorer

    open_scorer = get_scorer("mmmu_open")
    assert open_scorer("The ratio is 3.429", ["24/7", "3.429"]) == 1.0  # number 3.43 == 3.43
    assert open_scorer("so it is 24/7.", ["24/7", "3.429"]) == 1.0  # string containment
    assert open_scorer("Maybe 3.5", ["24/7", "3.429"]) == 0.0


def test_cli_registers_the_runners_and_mmmu_parse():
    from v2pe.cli import build_parser

    parser = build_parser()
    for name in ("scienceqa", "pope", "mmbench", "mmmu", "seed"):
        args = parser.parse_args(["eval", name, "--model", "m", "--data", "d", "--out", "o"])
        assert args.benchmark == name
    args = parser.parse_args(["eval", "mmmu", "--model", "m", "--data", "d", "--out", "o", "--mmmu-parse", "mmmu"])
    assert args.mmmu_parse == "mmmu"
    assert parser.parse_args(["eval", "pope", "--model", "m", "--data", "d", "--out", "o", "--image-root", "x"]).image_root == Path("x")


def test_mmmu_damaged_parquet_is_a_data_error(tmp_path, scripted_chat):
    pytest.importorskip("pyarrow")
    path = tmp_path / "MMMU" / "Art" / "validation-00000-of-00001.parquet"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot read parquet"):
        load_tasks("mmmu", tmp_path / "MMMU", scripted_chat.processor)
