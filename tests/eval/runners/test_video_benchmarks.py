"""MVBench and Video-MME runners: official layout, exact prompts and ids, scorers, end to end.

Tiny videos (32 x 32, frame k painted a known colour) are written with PyAV at test time."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tests.processing.test_video import frame_colour, frame_number, make_video, reference_get_index
from v2pe.errors import ConfigError, DataError
from v2pe.eval.benchmarks import BENCHMARKS
from v2pe.eval.benchmarks.mvbench import aggregate as mvbench_aggregate
from v2pe.eval.benchmarks.videomme import aggregate as videomme_aggregate
from v2pe.eval.benchmarks.videomme import read_srt, subtitles_at
from v2pe.eval.runners import load_tasks, run_benchmark
from v2pe.eval.scorers import get_scorer
from v2pe.eval.scorers.video import mvbench_check_ans, videomme_extract
from v2pe.processing.tiling import load_image

pytest.importorskip("av", reason="PyAV is not installed (pip install 'v2pe[video]')")

MVBENCH_PROMPT = ("Carefully watch the video and pay attention to the cause and sequence of events, the detail and movement "
                  "of objects, and the action and pose of persons. Based on your observations, select the best option that "
                  "accurately addresses the question.\n")
FRAMES16 = "".join(f"Frame{i}: <image>\n" for i in range(1, 17))


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def mvbench_data(tmp_path):
    root = tmp_path / "MVBench"
    star = root / "video" / "star" / "Charades_v1_480"
    make_video(star / "a.mp4", 40, fps=10)
    make_video(star / "b.mp4", 24, fps=8)
    (root / "json").mkdir(parents=True)
    (root / "json" / "action_sequence.json").write_text(json.dumps([
        {"video": "a.mp4", "question": "What did the person do first?", "candidates": ["Sat down.", "Stood up.", "Ran."],
         "answer": "Stood up.", "start": 0.5, "end": 3.0},
        {"video": "b.mp4", "question": "What next?", "candidates": ["Left.", "Right."], "answer": "Left.", "start": 0, "end": 2.9},
    ]))
    make_video(root / "video" / "ssv2_video" / "c.webm", 24, fps=8)
    (root / "json" / "action_antonym.json").write_text(json.dumps([
        {"video": "c.webm", "question": "Which action?", "candidates": ["pushing", "pulling", "not sure"], "answer": "pulling"},
        {"video": "missing.webm", "question": "Which action?", "candidates": ["pushing", "pulling"], "answer": "pushing"},
    ]))
    frames = root / "video" / "tvqa" / "frames_fps3_hq" / "clip1"
    frames.mkdir(parents=True)
    for k in range(1, 31):
        Image.new("RGB", (32, 32), frame_colour(k)).save(frames / f"{k:05d}.jpg", quality=100)
    (root / "json" / "episodic_reasoning.json").write_text(json.dumps([
        {"video": "clip1", "question": "Why?", "candidates": ["Because.", "No reason."], "answer": "Because.",
         "start": 1.0, "end": 8.0},
    ]))
    return root


def test_mvbench_registered_and_exact_prompt(mvbench_data, scripted_chat):
    assert {"mvbench", "videomme"} <= set(BENCHMARKS)
    tasks = load_tasks("mvbench", mvbench_data, scripted_chat.processor)
    assert [t.name for t in tasks] == ["action_sequence", "action_antonym", "episodic_reasoning"]  # official order
    sample = tasks[0].samples[0]
    assert sample.id == "action_sequence_0" and tasks[0].samples[1].id == "action_sequence_1"
    assert sample.prompt == (FRAMES16 + MVBENCH_PROMPT + "\n" + "Question: What did the person do first?\nOptions:\n"
                             "(A) Sat down.\n(B) Stood up.\n(C) Ran.\nOnly give the best option.")
    assert sample.answer == "(B) Stood up."
    assert (sample.max_new_tokens, sample.max_tiles, sample.scorer) == (1000, 1, "mvbench_check_ans")
    assert sample.generate_kwargs == {"min_new_tokens": 1}
    assert sample.fields["task_type"] == "Action Sequence" and sample.fields["bound"] == [0.5, 3.0]
    # the bound in seconds picks the frames: official get_index over [round(0.5 * 10), min(round(3.0 * 10), 39)]
    expected = reference_get_index((0.5, 3.0), 10.0, 39, 0, 16)
    assert [str(f) for f in sample.images] == [f"{mvbench_data / 'video/star/Charades_v1_480/a.mp4'}#frame={i}" for i in expected]
    assert [frame_number(load_image(f)) for f in sample.images] == expected
    # no bound for action_antonym; the frame folder of episodic_reasoning starts at 00001.jpg with fps 3
    antonym = tasks[1].samples[0]
    assert antonym.fields["bound"] is None and antonym.answer == "(B) pulling"
    folder = mvbench_data / "video" / "tvqa" / "frames_fps3_hq" / "clip1"
    episodic = tasks[2].samples[0]
    assert [str(f) for f in episodic.images] == [str(folder / f"{i:05d}.jpg") for i in reference_get_index((1.0, 8.0), 3.0, 30, 1, 16)]


def test_mvbench_answer_not_among_candidates_is_the_official_at_sign(tmp_path, scripted_chat):
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "object_shuffle.json").write_text(json.dumps([
        {"video": "v.mp4", "question": "Where?", "candidates": ["left", "right"], "answer": "middle"}]))
    sample = load_tasks("mvbench", tmp_path, scripted_chat.processor)[0].samples[0]
    assert sample.answer == "(@) middle"


@pytest.mark.parametrize("prediction, gold, correct", [
    ("(B) Stood up.", "(B) Stood up.", True),
    ("B", "(B) Stood up.", True),
    ("B.", "(B) Stood up.", True),
    ("Answer: (B) Stood up.", "(B) Stood up.", True),
    ("(A) Sat down.", "(B) Stood up.", False),
    ("Stood up.", "(B) Stood up.", False),  # the text alone does not count: only the first word
    ("", "(B) Stood up.", True),  # '' is contained in every option
    ("(", "(B) Stood up.", True),
    ("The answer is (B)", "(B) Stood up.", False),
    ("\n(B)", "(B) x", True),  # the gold option is contained in the first word
])
def test_mvbench_check_ans(prediction, gold, correct):
    assert mvbench_check_ans(prediction, gold) is correct
    assert get_scorer("mvbench_check_ans")(prediction, gold) == float(correct)


def test_mvbench_bad_input(tmp_path, scripted_chat):
    with pytest.raises(ConfigError, match="unknown MVBench task"):
        load_tasks("mvbench", tmp_path, scripted_chat.processor, tasks=["nope"])
    with pytest.raises(DataError, match="no MVBench task file"):
        load_tasks("mvbench", tmp_path, scripted_chat.processor)
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "action_sequence.json").write_text(json.dumps([{"video": "a.mp4", "question": "q",
                                                                          "candidates": ["x"], "answer": "x"}]))
    with pytest.raises(DataError, match=r"action_sequence.json: \[0\]: missing field 'start'"):
        load_tasks("mvbench", tmp_path, scripted_chat.processor)


def test_mvbench_end_to_end(mvbench_data, scripted_chat, tmp_path):
    answers = {"What did the person do first?": "(B) Stood up.", "What next?": "B", "Which action?": "(B) pulling", "Why?": "A"}
    scripted_chat.script = lambda prompt: next(a for q, a in answers.items() if f"Question: {q}\n" in prompt)
    out = tmp_path / "run"
    summary = run_benchmark("mvbench", scripted_chat, mvbench_data, out)
    assert {k: (v["n"], v["mean"], v["errors"]) for k, v in summary.items()} == {
        "action_sequence": (2, 0.5, 0), "action_antonym": (2, 0.5, 1), "episodic_reasoning": (1, 1.0, 0)}
    call = scripted_chat.calls[0]
    assert len(call["images"]) == 16 and call["max_tiles"] == 1 and call["max_new_tokens"] == 1000
    assert call["generate_kwargs"] == {"min_new_tokens": 1}
    lines = {t: read_lines(out / f"{t}.jsonl") for t in summary}
    missing = lines["action_antonym"][1]
    assert missing["id"] == "action_antonym_1" and missing["score"] == 0
    assert "video file not found" in missing["error"] and "missing.webm" in missing["error"]
    assert lines["action_sequence"][1]["answer"] == "(A) Left." and lines["action_sequence"][1]["prediction"] == "B"
    result = mvbench_aggregate(lines)
    assert result == {"Action Sequence": 50.0, "Action Antonym": 50.0, "Episodic Reasoning": 100.0, "Avg": 60.0}
    # resumed: nothing runs again
    again = run_benchmark("mvbench", scripted_chat, mvbench_data, out)
    assert all(v["ran"] == 0 for v in again.values())


# ----------------------------------------------------------------------------- Video-MME

SRT = """1
00:00:00,000 --> 00:00:01,000
<font color="white" size=".72c">Hello there</font>

2
00:00:01,000 --> 00:00:02,500
General
Kenobi

3
00:00:10,000 --> 00:00:11,000
Never shown
"""


@pytest.fixture
def videomme_data(tmp_path):
    root = tmp_path / "Video-MME"
    make_video(root / "data" / "vidA.mp4", 24, fps=8)  # 3 s
    make_video(root / "data" / "vidB.mp4", 16, fps=8)
    (root / "subtitle").mkdir(parents=True)
    (root / "subtitle" / "vidA.srt").write_text(SRT)
    questions = lambda vid, n: [{"question_id": f"{vid}-{i}", "task_type": "Counting Problem", "question": f"How many {i}?",
                                 "choices": ["A. One.", "B. Two.", "C. Three.", "D. Four."], "answer": "ABCD"[i % 4]}
                                for i in range(1, n + 1)]
    (root / "videomme.json").write_text(json.dumps([
        {"video_id": "001", "duration_category": "short", "video_category": "Knowledge", "video_subcategory": "Astronomy",
         "url": "https://www.youtube.com/watch?v=vidA", "questions": questions("001", 3)},
        {"video_id": "002", "duration_category": "medium", "video_category": "Life Record", "video_subcategory": "Travel",
         "url": "https://www.youtube.com/watch?v=vidB", "questions": questions("002", 2)},
    ]))
    return root


VIDEOMME_INSTRUCTION = ("Select the best answer to the following multiple-choice question based on the video. "
                        "Respond with only the letter (A, B, C, or D) of the correct option.")


def test_videomme_prompt_ids_and_frames(videomme_data, scripted_chat):
    tasks = load_tasks("videomme", videomme_data, scripted_chat.processor)
    assert [t.name for t in tasks] == ["short", "medium"]
    sample = tasks[0].samples[0]
    assert [s.id for s in tasks[0].samples] == ["001-1", "001-2", "001-3"]
    assert sample.prompt == (FRAMES16 + VIDEOMME_INSTRUCTION + "\nHow many 1?\nA. One.\nB. Two.\nC. Three.\nD. Four.\n"
                             "The best answer is:")
    assert (sample.answer, sample.scorer, sample.max_tiles) == ("B", "videomme_choice", 1)
    assert sample.fields["videoID"] == "vidA" and sample.fields["domain"] == "Knowledge"
    expected = reference_get_index(None, 8.0, 23, 0, 16)
    assert [frame_number(load_image(f)) for f in sample.images] == expected
    few = load_tasks("videomme", videomme_data, scripted_chat.processor, tasks=["medium"], num_frames=4, limit=1)
    assert len(few) == 1 and len(few[0].samples) == 1 and len(few[0].samples[0].images) == 4
    assert few[0].samples[0].prompt.startswith("Frame1: <image>\nFrame2: <image>\nFrame3: <image>\nFrame4: <image>\nSelect")


def test_videomme_subtitles_at_the_sampled_frames(videomme_data, scripted_chat):
    tasks = load_tasks("videomme", videomme_data, scripted_chat.processor, subtitles=True, num_frames=4)
    # 24 frames at 8 fps, 4 segments: frames 2, 8, 14, 19 -> 0.25 s, 1.0 s, 1.75 s, 2.375 s
    assert reference_get_index(None, 8.0, 23, 0, 4) == [2, 8, 14, 19]
    sample = tasks[0].samples[0]
    assert sample.prompt == ("".join(f"Frame{i}: <image>\n" for i in range(1, 5)) + "This video's subtitles are listed below:\n"
                             "Hello there\nGeneral Kenobi\n" + VIDEOMME_INSTRUCTION +
                             "\nHow many 1?\nA. One.\nB. Two.\nC. Three.\nD. Four.\nThe best answer is:")
    no_srt = tasks[1].samples[0]  # vidB has no .srt: an empty subtitle block
    assert "This video's subtitles are listed below:\n\nSelect" in no_srt.prompt
    assert no_srt.fields["subtitle_note"] == "no subtitle file" and no_srt.fields["subtitles"] is True


def test_srt_reading(tmp_path):
    path = tmp_path / "a.srt"
    path.write_text(SRT)
    cues = read_srt(path)
    assert cues == [(0.0, 1.0, "Hello there"), (1.0, 2.5, "General Kenobi"), (10.0, 11.0, "Never shown")]
    assert subtitles_at(cues, [0.5, 0.7, 2.5, 10.0]) == "Hello there\nNever shown"  # end is exclusive, a cue once
    path.write_text("garbage\n")
    with pytest.raises(DataError, match="a.srt: no subtitle cue"):
        read_srt(path)


@pytest.mark.parametrize("prediction, extracted", [
    ("B", "B"),
    ("The best answer is: C", "C"),
    ("Answer: B", "A"),  # the first A-D anywhere: the 'A' of 'Answer'
    ("(d) four", ""),  # lowercase letters do not count
    ("Best answer:Best option: D", "D"),
    ("The best option is B", "B"),  # "The best option is" alone is not removed (a missing comma), but 'B' is still found
    ("one two three four five six seven eight nine ten eleven", ""),
    ("", ""),
])
def test_videomme_extraction(prediction, extracted):
    assert videomme_extract(prediction) == extracted


def test_videomme_end_to_end(videomme_data, scripted_chat, tmp_path):
    answers = {"How many 1?": "B", "How many 2?": "The best answer is C.", "How many 3?": "I cannot tell"}
    scripted_chat.script = lambda prompt: next(a for q, a in answers.items() if f"\n{q}\n" in prompt)
    out = tmp_path / "run"
    summary = run_benchmark("videomme", scripted_chat, videomme_data, out)
    # golds: question i has "ABCD"[i % 4]; 'I cannot tell' has no A-D: not answered
    lines = {t: read_lines(out / f"{t}.jsonl") for t in summary}
    short = {line["id"]: line for line in lines["short"]}
    assert short["001-1"]["score"] == 1 and short["001-2"]["score"] == 1 and short["001-3"]["score"] == 0
    assert short["001-3"]["extra"]["extracted"] == "" and "unparseable prediction" in short["001-3"]["error"]
    assert {k: (v["n"], v["mean"]) for k, v in summary.items()} == {"short": (3, 2 / 3), "medium": (2, 1.0)}
    result = videomme_aggregate(lines)
    assert result["short"]["accuracy_answered"] == 100.0 and result["short"]["accuracy"] == pytest.approx(200 / 3)
    assert result["overall"] == {"n": 5, "answered": 4, "correct": 4.0, "accuracy": 80.0, "accuracy_answered": 100.0}
    assert scripted_chat.calls[0]["max_new_tokens"] == 100 and len(scripted_chat.calls[0]["images"]) == 16


def test_videomme_bad_input(tmp_path, scripted_chat):
    with pytest.raises(DataError, match="no Video-MME annotation"):
        load_tasks("videomme", tmp_path, scripted_chat.processor)
    (tmp_path / "a.json").write_text(json.dumps([{"video_id": "1", "duration_category": "brief", "questions": [
        {"question_id": "1-1", "question": "q", "choices": ["A. x"], "answer": "A"}]}]))
    with pytest.raises(DataError, match=r"a.json: \[0\].questions\[0\]: duration 'brief'"):
        load_tasks("videomme", tmp_path, scripted_chat.processor)
    with pytest.raises(ConfigError, match="unknown Video-MME task"):
        load_tasks("videomme", tmp_path, scripted_chat.processor, tasks=["tiny"])


def test_cli_has_the_video_runners():
    from v2pe.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["eval", "videomme", "--model", "m", "--data", "d", "--out", "o", "--subtitles", "--num-frames", "8"])
    assert (args.benchmark, args.subtitles, args.num_frames) == ("videomme", True, 8)
    args = parser.parse_args(["eval", "mvbench", "--model", "m", "--data", "d", "--out", "o"])
    assert (args.benchmark, args.num_segments) == ("mvbench", None)


def test_videomme_parquet_release(tmp_path, scripted_chat):
    (tmp_path / "videomme").mkdir()
    path = tmp_path / "videomme" / "test-00000-of-00001.parquet"
    row = {"video_id": "001", "duration": "long", "domain": "Knowledge", "sub_category": "Law", "url": "https://www.youtube.com/watch?v=vidA",
           "videoID": "vidA", "question_id": "001-1", "task_type": "OCR Problems", "question": "What?",
           "options": ["A. a.", "B. b.", "C. c.", "D. d."], "answer": "D"}
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        path.write_bytes(b"PAR1")
        with pytest.raises(ConfigError, match="needs pyarrow or pandas"):
            load_tasks("videomme", tmp_path, scripted_chat.processor)
        return
    pq.write_table(pa.Table.from_pylist([row]), path)
    sample = load_tasks("videomme", tmp_path, scripted_chat.processor)[0].samples[0]
    assert sample.id == "001-1" and sample.answer == "D" and sample.fields["duration"] == "long"
    assert str(sample.images[0].clip.path) == str(tmp_path / "data" / "vidA.mp4")


def test_report_shows_the_official_video_aggregates(mvbench_data, videomme_data, scripted_chat, tmp_path):
    from v2pe.eval.reports import write_report

    scripted_chat.script = lambda prompt: "(B)"
    run_benchmark("mvbench", scripted_chat, mvbench_data, tmp_path / "mvbench")
    scripted_chat.script = lambda prompt: "B"
    run_benchmark("videomme", scripted_chat, videomme_data, tmp_path / "videomme")
    write_report([tmp_path / "mvbench", tmp_path / "videomme"], tmp_path / "report")
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| Avg |" in report and "| overall |" in report and "answered only" in report
