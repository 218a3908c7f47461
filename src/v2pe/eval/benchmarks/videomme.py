"""Video-MME runner (short / medium / long videos, with or without subtitles).

The official V2PE / InternVL repository has no Video-MME script (benchmarks.md section 6), so this
follows the benchmark's own evaluation (github BradyFU/Video-MME: README prompt,
`evaluation/eval_your_results.py` scoring) with InternVL's video input (frames sampled by the
official `get_index`, one 448 x 448 tile per frame, `Frame{i}: <image>` lines).

Data (`--data DATA`), either form of the release:
* the Hugging Face parquet (`DATA/videomme/test-*.parquet` or `DATA/*.parquet`; needs pyarrow or
  pandas): rows `video_id, duration, domain, sub_category, url, videoID, question_id, task_type,
  question, options, answer`;
* the JSON of the official template (`DATA/<name>.json`, the only JSON file there): videos
  `{video_id, duration_category, video_category, video_subcategory, url, [videoID], questions:
  [{question_id, task_type, question, choices (or options), answer}]}`, or flat rows as in the parquet.
Videos: `DATA/data/<videoID>.mp4` (the release's folder; also `videos/`, `video/` and DATA, and
mkv/webm/avi/mov), the name being `videoID`, else the url's `v=`, else `video_id`. Subtitles:
`DATA/subtitle/<videoID>.srt` (also `subtitles/`).

Tasks: `short`, `medium`, `long` (one result file each; all present by default). Options:
`subtitles` (default False: the subtitle-free setting; run each setting into its own folder),
`num_frames` (default 16, the num_segments of InternVL's video evaluation), `max_tiles` (1).

Prompt (the README's, after the frames):
    Frame1: <image>\\n...FrameN: <image>\\n
    [This video's subtitles are listed below:\\n<subtitles>\\n]
    Select the best answer to the following multiple-choice question based on the video. Respond with only the letter (A, B, C, or D) of the correct option.\\n
    <question>\\nA. ...\\nB. ...\\nC. ...\\nD. ...\\nThe best answer is:
Options are used as given (the release's options already start with "A. "). Subtitles: the cues
shown at the sampled frames' times (frame index / fps, start <= t < end), each cue once, in frame
order, formatting tags removed, its lines joined by spaces; a video without an .srt gets an empty
subtitle block. Generation: max_new_tokens 100, min_new_tokens 1, greedy.

Scoring (`videomme_choice`): Video-MME's `extract_characters_regex` (first A-D after removing the
answer prefixes) == the gold letter. The official accuracy counts only answered questions (an
empty extraction leaves the denominator): `aggregate` gives per duration and overall both that
("accuracy_answered", the official number) and the plain accuracy over all questions
("accuracy", the run summary's mean). Result lines add `question_id`, `video_id`, `videoID`,
`duration`, `domain`, `sub_category`, `task_type`, `question` (the prompt), `subtitles`, and
`extra.extracted`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from v2pe.errors import ConfigError, DataError
from v2pe.eval.benchmarks.base import Benchmark, Option
from v2pe.eval.report_format import fmt, table, task_rows
from v2pe.eval.runners.base import Sample, Task, read_json, refuse_unknown, require, unique_ids
from v2pe.eval.scorers.video import videomme_extract

DURATIONS = ("short", "medium", "long")
NUM_FRAMES = 16
MAX_NEW_TOKENS = 100
MAX_TILES = 1
SCORER = "videomme_choice"
INSTRUCTION = ("Select the best answer to the following multiple-choice question based on the video. "
               "Respond with only the letter (A, B, C, or D) of the correct option.")
SUBTITLE_HEADER = "This video's subtitles are listed below:"
ANSWER_PROMPT = "The best answer is:"
VIDEO_FOLDERS = ("data", "videos", "video", ".")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")
SUBTITLE_FOLDERS = ("subtitle", "subtitles")


def load_tasks(data: str | Path, processor=None, tasks: Sequence[str] | None = None, limit: int | None = None,
               subtitles: bool = False, num_frames: int = NUM_FRAMES, max_tiles: int = MAX_TILES, **_) -> list[Task]:
    data = Path(data)
    if not data.is_dir():
        raise DataError(f"Video-MME data folder {data} does not exist")
    if num_frames < 1:
        raise ConfigError(f"num_frames must be >= 1, got {num_frames}")
    refuse_unknown(tasks, DURATIONS, "Video-MME task(s)")
    from v2pe.processing.video import require_pyav

    require_pyav()
    source, rows = read_rows(data)
    by_duration: dict[str, list[tuple[str, dict]]] = {d: [] for d in DURATIONS}
    for where, row in rows:
        duration = row["duration"]
        if duration not in by_duration:
            raise DataError(f"{where}: duration {duration!r} is not one of {', '.join(DURATIONS)}")
        by_duration[duration].append((where, row))
    present = [d for d in DURATIONS if by_duration[d]]
    names = [d for d in DURATIONS if d in tasks] if tasks else present
    missing = [d for d in names if d not in present]
    if missing:
        raise DataError(f"{source}: no {', '.join(missing)} videos")
    result = []
    for duration in names:
        selected = by_duration[duration][:limit] if limit is not None else by_duration[duration]
        ids = unique_ids([row["question_id"] for _, row in selected], list(range(len(selected))))
        samples = [make_sample(row, sample_id, data, subtitles, num_frames, max_tiles, where)
                   for (where, row), sample_id in zip(selected, ids)]
        result.append(Task(duration, source, samples, {"duration": duration, "subtitles": subtitles, "num_frames": num_frames,
                                                       "scorer": SCORER}))
    return result


# ----------------------------------------------------------------------------- reading


def read_rows(data: Path) -> tuple[Path, list[tuple[str, dict]]]:
    """(annotation source, [(where, normalised question row)]) from the parquet or JSON release."""
    parquets = sorted(data.glob("videomme/*.parquet")) or sorted(data.glob("*.parquet"))
    if parquets:
        rows = []
        for path in parquets:
            rows.extend((f"{path}: row {i}", _normalise(r, f"{path}: row {i}")) for i, r in enumerate(_read_parquet(path)))
        return parquets[0].parent, rows
    jsons = sorted(data.glob("*.json"))
    if not jsons:
        raise DataError(f"{data}: no Video-MME annotation found (videomme/test-*.parquet, *.parquet or one *.json)")
    if len(jsons) > 1:
        raise DataError(f"{data}: several JSON files ({', '.join(p.name for p in jsons)}); keep only the Video-MME annotation")
    path = jsons[0]
    items = read_json(path)
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON list, got {type(items).__name__}")
    rows = []
    for i, item in enumerate(items):
        where = f"{path}: [{i}]"
        if isinstance(item, Mapping) and "questions" in item:
            video = {k: v for k, v in item.items() if k != "questions"}
            for j, question in enumerate(require(item, "questions", where, list)):
                if not isinstance(question, Mapping):
                    raise DataError(f"{where}.questions[{j}]: expected an object")
                rows.append((f"{where}.questions[{j}]", _normalise({**video, **question}, f"{where}.questions[{j}]")))
        else:
            rows.append((where, _normalise(item, where)))
    return path, rows


def _read_parquet(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        try:
            import pandas as pd
        except ImportError:
            raise ConfigError(f"reading {path} needs pyarrow or pandas (pip install pyarrow), or give the JSON release") from None
        return pd.read_parquet(path).to_dict("records")
    try:
        return pq.read_table(path).to_pylist()
    except (OSError, ValueError) as err:  # pyarrow's errors subclass these
        raise DataError(f"cannot read {path}: {' '.join(str(err).split())}") from None


def _normalise(row: Mapping, where: str) -> dict:
    if not isinstance(row, Mapping):
        raise DataError(f"{where}: expected an object, got {type(row).__name__}")
    duration = row.get("duration") if "duration" in row else row.get("duration_category")
    if not isinstance(duration, str):
        raise DataError(f"{where}: missing field 'duration' (or 'duration_category')")
    options = row.get("options") if "options" in row else row.get("choices")
    if options is not None and not isinstance(options, (list, tuple, str)) and hasattr(options, "tolist"):
        options = options.tolist()  # numpy arrays from pandas
    if not isinstance(options, (list, tuple)) or not options or not all(isinstance(o, str) for o in options):
        raise DataError(f"{where}: field 'options' (or 'choices') must be a non-empty list of strings")
    url = row.get("url") or ""
    video_name = row.get("videoID") or _youtube_id(url) or str(require(row, "video_id", where))
    return {
        "question_id": str(require(row, "question_id", where)),
        "video_id": str(row.get("video_id", "")),
        "videoID": str(video_name),
        "duration": duration,
        "domain": row.get("domain", row.get("video_category")),
        "sub_category": row.get("sub_category", row.get("video_subcategory", row.get("video_sub_category"))),
        "task_type": row.get("task_type"),
        "question": require(row, "question", where, str),
        "options": list(options),
        "answer": require(row, "answer", where, str),
    }


def _youtube_id(url: str) -> str | None:
    if not isinstance(url, str) or not url:
        return None
    parsed = urlparse(url)
    values = parse_qs(parsed.query).get("v")
    if values:
        return values[0]
    if parsed.netloc.endswith("youtu.be") and parsed.path.strip("/"):
        return parsed.path.strip("/")
    return None


def find_video(data: Path, name: str) -> Path:
    """The video file of `name` (the first that exists), else the release's place (reported when run)."""
    for folder in VIDEO_FOLDERS:
        for extension in VIDEO_EXTENSIONS:
            candidate = data / folder / f"{name}{extension}"
            if candidate.is_file():
                return candidate
    return data / "data" / f"{name}.mp4"


def find_subtitle(data: Path, name: str) -> Path | None:
    for folder in SUBTITLE_FOLDERS:
        candidate = data / folder / f"{name}.srt"
        if candidate.is_file():
            return candidate
    return None


# ----------------------------------------------------------------------------- samples


def make_sample(row: dict, sample_id, data: Path, subtitles: bool, num_frames: int, max_tiles: int, where: str) -> Sample:
    from v2pe.processing.video import VideoClip

    clip = VideoClip(find_video(data, row["videoID"]), num_frames)
    frames = clip.frames()
    subtitle_text, subtitle_note = None, None
    if subtitles:
        subtitle_text, subtitle_note = subtitles_for_clip(clip, find_subtitle(data, row["videoID"]))
    prompt = build_prompt(len(frames), row["question"], row["options"], subtitle_text)
    fields = {k: row[k] for k in ("question_id", "video_id", "videoID", "duration", "domain", "sub_category", "task_type")}
    fields.update({"question": prompt, "subtitles": subtitles})
    if subtitle_note:
        fields["subtitle_note"] = subtitle_note
    return Sample(
        id=sample_id,
        prompt=prompt,
        images=frames,
        answer=row["answer"],
        scorer=SCORER,
        max_new_tokens=MAX_NEW_TOKENS,
        max_tiles=max_tiles,
        fields=fields,
        generate_kwargs={"min_new_tokens": 1},
        extra_for_prediction=lambda prediction: {"extracted": videomme_extract(prediction)},
        diagnose=_diagnose,
    )


def build_prompt(num_frames: int, question: str, options: Sequence[str], subtitles: str | None = None) -> str:
    """The Video-MME README prompt after `Frame{i}: <image>` lines; subtitles=None: subtitle-free."""
    frames = "\n".join(f"Frame{i + 1}: <image>" for i in range(num_frames))
    text = ""
    if subtitles is not None:
        text += SUBTITLE_HEADER + "\n" + subtitles + "\n"
    text += INSTRUCTION + "\n" + question + "\n" + "\n".join(options) + "\n" + ANSWER_PROMPT
    return frames + "\n" + text


def subtitles_for_clip(clip, srt: Path | None) -> tuple[str, str | None]:
    """(subtitle text at the sampled frames, a note when there is none to give)."""
    if srt is None:
        return "", "no subtitle file"
    cues = read_srt(srt)
    try:
        info = clip.info()
        indices = clip.indices()
    except DataError as problem:  # the sample fails when its frames load; keep reading the others
        return "", f"subtitles not placed: {problem}"
    return subtitles_at(cues, [index / info.fps for index in indices]), None


def subtitles_at(cues: Sequence[tuple[float, float, str]], times: Iterable[float]) -> str:
    """The cues shown at `times` (start <= t < end, the first such cue), each once, in order."""
    chosen: list[int] = []
    for t in times:
        for number, (start, end, _) in enumerate(cues):
            if start <= t < end:
                if number not in chosen:
                    chosen.append(number)
                break
    return "\n".join(cues[number][2] for number in chosen if cues[number][2])


_SRT_TIME = re.compile(r"(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})\s*-->\s*(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})")
_SRT_TAGS = re.compile(r"<[^>]*>|\{\\[^}]*\}")


def read_srt(path: Path) -> list[tuple[float, float, str]]:
    """[(start_s, end_s, text)] of an .srt file; DataError naming the file when it has no cue."""
    try:
        raw = path.read_bytes().decode("utf-8-sig", errors="replace")
    except OSError as err:
        raise DataError(f"cannot read subtitles {path}: {' '.join(str(err).split())}") from None
    cues = []
    lines = raw.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    i = 0
    while i < len(lines):
        match = _SRT_TIME.search(lines[i])
        if not match:
            i += 1
            continue
        g = match.groups()
        start = int(g[0]) * 3600 + int(g[1]) * 60 + int(g[2]) + int(g[3].ljust(3, "0")) / 1000
        end = int(g[4]) * 3600 + int(g[5]) * 60 + int(g[6]) + int(g[7].ljust(3, "0")) / 1000
        i += 1
        text = []
        while i < len(lines) and lines[i].strip() and not _SRT_TIME.search(lines[i]):
            text.append(lines[i].strip())
            i += 1
        cleaned = " ".join(" ".join(_SRT_TAGS.sub("", " ".join(text)).split()).split())
        cues.append((start, end, cleaned))
    if not cues and raw.strip():
        raise DataError(f"{path}: no subtitle cue found (expected SRT 'HH:MM:SS,mmm --> HH:MM:SS,mmm' lines)")
    return cues


def _diagnose(prediction: str) -> str | None:
    if videomme_extract(prediction) == "":
        return f"unparseable prediction: no option letter A-D found in {prediction[:200]!r} (not answered, officially)"
    return None


def aggregate(records_by_task: Mapping[str, Iterable[Mapping]]) -> dict[str, dict]:
    """Per duration and overall: {"n", "answered", "correct", "accuracy" (x100, all questions),
    "accuracy_answered" (x100, answered only: eval_your_results.py's number)}."""
    result = {}
    totals = {"n": 0, "answered": 0, "correct": 0.0}
    for duration, records in records_by_task.items():
        counts = {"n": 0, "answered": 0, "correct": 0.0}
        for record in records:
            counts["n"] += 1
            extracted = (record.get("extra") or {}).get("extracted")
            if record.get("prediction") is not None and extracted is None:
                extracted = videomme_extract(record["prediction"])
            if extracted:
                counts["answered"] += 1
                counts["correct"] += float(record.get("score") or 0.0)
        for key in totals:
            totals[key] += counts[key]
        result[duration] = _rates(counts)
    result["overall"] = _rates(totals)
    return result


def _rates(counts: dict) -> dict:
    n, answered, correct = counts["n"], counts["answered"], counts["correct"]
    return {**counts, "accuracy": 100 * correct / n if n else 0.0, "accuracy_answered": 100 * correct / answered if answered else 0.0}


def numbers(run) -> dict:
    durations = aggregate(run.tasks)
    headline = {}
    for name, d in durations.items():
        headline[f"{name} accuracy"] = d["accuracy"]
        headline[f"{name} accuracy (answered only, eval_your_results.py)"] = d["accuracy_answered"]
    return {"datasets": task_rows(run.tasks), "durations": durations, "headline": headline}


def markdown(numbers: dict) -> str:
    rows = [[name, d["n"], d["answered"], fmt(d["accuracy"]), fmt(d["accuracy_answered"])] for name, d in numbers["durations"].items()]
    return ("Accuracy per duration (x100): over all questions, and over answered ones only as Video-MME's "
            "eval_your_results.py divides:\n\n" + table(["duration", "n", "answered", "accuracy", "answered only"], rows))


BENCHMARK = Benchmark(
    "videomme", load_tasks, "Video-MME video multiple choice (short / medium / long, optional subtitles)",
    help="run Video-MME (DATA/videomme/*.parquet or one DATA/*.json, videos in DATA/data; needs the video extra)",
    tasks_help="durations short medium long",
    options=(Option("--num-frames", {"type": int, "default": None, "help": "frames per video (default 16)"}),
             Option("--subtitles", {"action": "store_true", "default": None, "help": "add the subtitles at the sampled frames"})),
    numbers=numbers, markdown=markdown,
)
