"""MVBench runner (reference-spec 5.4; InternVL `eval/mvbench/evaluate_mvbench.py`, as the V2PE fork runs it).

Data (`--data DATA`, the MVBench release layout): `DATA/json/<task>.json`, each a list of
`{"video", "question", "candidates", "answer"[, "start", "end"]}`, videos under the task's
folder below (the official `data_list`, whose `./data/MVBench/` is DATA):

| task (file stem) | videos | kind | bound |
|---|---|---|---|
| action_sequence, action_prediction, object_interaction | video/star/Charades_v1_480/ | video | yes |
| action_antonym | video/ssv2_video/ | video | no |
| fine_grained_action | video/Moments_in_Time_Raw/videos/ | video | no |
| unexpected_action | video/FunQA_test/test/ | video | no |
| object_existence, moving_direction, moving_count, moving_attribute, counterfactual_inference | video/clevrer/video_validation/ | video | no |
| object_shuffle, action_count, state_change, character_order | video/perception/videos/ | video | no |
| action_localization | video/sta/sta_video/ | video | yes |
| scene_transition | video/scene_qa/video/ | video | no |
| fine_grained_pose | video/nturgbd/ | video | no |
| egocentric_navigation | video/vlnqa/ | video | no |
| episodic_reasoning | video/tvqa/frames_fps3_hq/ | frames (%05d.jpg, fps 3) | yes |

Tasks run in that official order; a task whose JSON is absent is skipped (named ones must exist).

Prompt, exactly as the official dataset class builds it (16 segments, `--num_segments`):
`"Frame1: <image>\\n...\\nFrame16: <image>" + "\\n" + PROMPT + "\\n" + "Question: q\\nOptions:\\n(A) c1\\n(B) c2..."`
(right-stripped) + `"\\nOnly give the best option."`, where PROMPT ends with its own `\\n` (so a blank
line precedes "Question:"). No "Best option:(" is added (that is VLMEvalKit's prompt, not this script's).
Frames: `v2pe.processing.video` (the official `get_index`; bounds only for the tasks marked above),
one 448 x 448 tile each (no dynamic tiling, no thumbnail). Generation: max_new_tokens 1000,
min_new_tokens 1, greedy (num_beams 1, the V2PE general-benchmark setting; the script's own
argparse default without `--dynamic` is 5 beams).

Gold answer: `"(X) answer"` with X the letter of the first candidate equal to the answer (no such
candidate gives the official `(@)`). Scorer `mvbench_check_ans` (the official `check_ans`: the
first space-separated word of the prediction, 'Answer: ' removed and dots dropped, by containment
either way with '(x)'; an empty prediction counts as right). Sample id `<task>_<0-based position>`.
Official aggregation (`aggregate`): per-task accuracy and Avg = all correct / all samples, x100.
Result lines add `task_type` (the official task name), `video`, `bound`, `question` (the prompt).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from v2pe.errors import ConfigError, DataError
from v2pe.eval.benchmarks.base import Benchmark, Option
from v2pe.eval.report_format import headline_table, task_rows
from v2pe.eval.runners.base import Sample, Task, read_json, refuse_unknown, require

NUM_SEGMENTS = 16
MAX_NEW_TOKENS = 1000
MAX_TILES = 1
SCORER = "mvbench_check_ans"
PROMPT = ("Carefully watch the video and pay attention to the cause and sequence of events, the detail and movement of "
          "objects, and the action and pose of persons. Based on your observations, select the best option that "
          "accurately addresses the question.\n")
QUESTION_PROMPT = "\nOnly give the best option."


@dataclass(frozen=True)
class MVBenchTask:
    name: str  # the official task name (`task_type`)
    prefix: str  # video folder, relative to DATA
    kind: str  # "video" or "frames" (the official 'frame')
    bound: bool  # the JSON items carry start/end in seconds


TASKS: dict[str, MVBenchTask] = {  # file stem -> task, in the official data_list order
    "action_sequence": MVBenchTask("Action Sequence", "video/star/Charades_v1_480", "video", True),
    "action_prediction": MVBenchTask("Action Prediction", "video/star/Charades_v1_480", "video", True),
    "action_antonym": MVBenchTask("Action Antonym", "video/ssv2_video", "video", False),
    "fine_grained_action": MVBenchTask("Fine-grained Action", "video/Moments_in_Time_Raw/videos", "video", False),
    "unexpected_action": MVBenchTask("Unexpected Action", "video/FunQA_test/test", "video", False),
    "object_existence": MVBenchTask("Object Existence", "video/clevrer/video_validation", "video", False),
    "object_interaction": MVBenchTask("Object Interaction", "video/star/Charades_v1_480", "video", True),
    "object_shuffle": MVBenchTask("Object Shuffle", "video/perception/videos", "video", False),
    "moving_direction": MVBenchTask("Moving Direction", "video/clevrer/video_validation", "video", False),
    "action_localization": MVBenchTask("Action Localization", "video/sta/sta_video", "video", True),
    "scene_transition": MVBenchTask("Scene Transition", "video/scene_qa/video", "video", False),
    "action_count": MVBenchTask("Action Count", "video/perception/videos", "video", False),
    "moving_count": MVBenchTask("Moving Count", "video/clevrer/video_validation", "video", False),
    "moving_attribute": MVBenchTask("Moving Attribute", "video/clevrer/video_validation", "video", False),
    "state_change": MVBenchTask("State Change", "video/perception/videos", "video", False),
    "fine_grained_pose": MVBenchTask("Fine-grained Pose", "video/nturgbd", "video", False),
    "character_order": MVBenchTask("Character Order", "video/perception/videos", "video", False),
    "egocentric_navigation": MVBenchTask("Egocentric Navigation", "video/vlnqa", "video", False),
    "episodic_reasoning": MVBenchTask("Episodic Reasoning", "video/tvqa/frames_fps3_hq", "frames", True),
    "counterfactual_inference": MVBenchTask("Counterfactual Inference", "video/clevrer/video_validation", "video", False),
}


def load_tasks(data: str | Path, processor=None, tasks: Sequence[str] | None = None, limit: int | None = None,
               num_segments: int = NUM_SEGMENTS, max_tiles: int = MAX_TILES, **_) -> list[Task]:
    data = Path(data)
    if not data.is_dir():
        raise DataError(f"MVBench data folder {data} does not exist")
    if num_segments < 1:
        raise ConfigError(f"num_segments must be >= 1, got {num_segments}")
    refuse_unknown(tasks, TASKS, "MVBench task(s)")
    present = [stem for stem in TASKS if (data / "json" / f"{stem}.json").is_file()]
    names = [stem for stem in TASKS if stem in tasks] if tasks else present
    missing = [stem for stem in names if stem not in present]
    if missing:
        raise DataError(", ".join(f"{stem}: {data / 'json' / f'{stem}.json'} not found" for stem in missing))
    if not names:
        raise DataError(f"{data}: no MVBench task file found (expected e.g. {data / 'json' / 'action_sequence.json'})")
    if any(TASKS[stem].kind == "video" for stem in names):
        from v2pe.processing.video import require_pyav

        require_pyav()  # every sample would fail without it: say so before the model loads
    return [read_task(stem, data, limit, num_segments, max_tiles) for stem in names]


def read_task(stem: str, data: Path, limit: int | None, num_segments: int = NUM_SEGMENTS, max_tiles: int = MAX_TILES) -> Task:
    spec = TASKS[stem]
    path = data / "json" / f"{stem}.json"
    items = read_json(path)
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON list of questions, got {type(items).__name__}")
    if limit is not None:
        items = items[:limit]
    samples = [make_sample(stem, spec, item, position, data, num_segments, max_tiles, f"{path}: [{position}]")
               for position, item in enumerate(items)]
    return Task(stem, path, samples, {"task_type": spec.name, "video_folder": str(data / spec.prefix), "kind": spec.kind,
                                      "bound": spec.bound, "num_segments": num_segments, "scorer": SCORER})


def make_sample(stem: str, spec: MVBenchTask, item: dict, position: int, data: Path, num_segments: int, max_tiles: int,
                where: str) -> Sample:
    if not isinstance(item, Mapping):
        raise DataError(f"{where}: expected an object, got {type(item).__name__}")
    video = require(item, "video", where, str)
    question_text, answer = qa_template(item, where)
    bound = None
    if spec.bound:
        bound = (require(item, "start", where, (int, float)), require(item, "end", where, (int, float)))
    from v2pe.processing.video import VideoClip

    clip = VideoClip(data / spec.prefix / video, num_segments, bound, spec.kind)
    frames = clip.frames()
    prompt = build_prompt(len(frames), question_text)
    return Sample(
        id=f"{stem}_{position}",
        prompt=prompt,
        images=frames,
        answer=answer,
        scorer=SCORER,
        max_new_tokens=MAX_NEW_TOKENS,
        max_tiles=max_tiles,
        fields={"task_type": spec.name, "video": video, "bound": list(bound) if bound else None, "question": prompt},
        generate_kwargs={"min_new_tokens": 1},
    )


def qa_template(item: Mapping, where: str) -> tuple[str, str]:
    """The official qa_template: ("Question: q\\nOptions:\\n(A) c1\\n..." right-stripped, "(X) answer")."""
    question = require(item, "question", where, str)
    candidates = require(item, "candidates", where, list)
    answer = require(item, "answer", where, str)
    if not candidates or not all(isinstance(c, str) for c in candidates):
        raise DataError(f"{where}: field 'candidates' must be a non-empty list of strings")
    text = f"Question: {question}\nOptions:\n"
    answer_idx = -1
    for idx, candidate in enumerate(candidates):
        text += f"({chr(ord('A') + idx)}) {candidate}\n"
        if candidate == answer:
            answer_idx = idx  # the last equal candidate wins, as in the official loop
    return text.rstrip(), f"({chr(ord('A') + answer_idx)}) {answer}"


def build_prompt(num_frames: int, question_text: str) -> str:
    frames = "\n".join(f"Frame{i + 1}: <image>" for i in range(num_frames))
    return frames + "\n" + PROMPT + "\n" + question_text + QUESTION_PROMPT


def aggregate(records_by_task: Mapping[str, Iterable[Mapping]]) -> dict[str, float]:
    """The official final_res: {task_type: accuracy x100, ..., "Avg": all correct / all samples x100}."""
    result, correct, total = {}, 0.0, 0
    for stem, records in records_by_task.items():
        records = list(records)
        if not records:
            continue
        hits = sum(float(r.get("score") or 0.0) for r in records)
        name = TASKS[stem].name if stem in TASKS else stem
        result[name] = hits / len(records) * 100
        correct += hits
        total += len(records)
    if total:
        result["Avg"] = correct / total * 100
    return result


def numbers(run) -> dict:
    return {"datasets": task_rows(run.tasks), "headline": dict(aggregate(run.tasks))}


def markdown(numbers: dict) -> str:
    return "Accuracy per task and Avg (all correct / all samples), as evaluate_mvbench.py's final_res (x100):\n\n" + headline_table(numbers)


BENCHMARK = Benchmark(
    "mvbench", load_tasks, "MVBench video multiple choice (20 tasks, 16 frames)",
    help="run MVBench (DATA/json/<task>.json, videos under DATA/video/; needs the video extra)",
    tasks_help="tasks such as action_sequence episodic_reasoning",
    options=(Option("--num-segments", {"type": int, "default": None, "help": "frames per video (default 16, the official)"}),),
    numbers=numbers, markdown=markdown,
)
