"""`v2pe eval`: benchmark evaluation commands (`v2pe eval score FILE.jsonl`).

Sub-commands live under `eval` so that benchmark runners (`v2pe eval mm-niah`,
...) can be added beside `score`.
"""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate model outputs with the official benchmark scoring rules",
        description="Evaluation commands. 'score' scores a JSONL file of predictions line by line.",
    )
    commands = parser.add_subparsers(dest="eval_command", metavar="COMMAND")
    commands.required = True
    register_score(commands)


def register_score(commands) -> None:
    score = commands.add_parser(
        "score",
        help="score a JSONL file of {scorer, prediction, answer, extra, source} lines",
        description="Add a 'score' to every line of FILE.jsonl using the named scorer (see "
        "v2pe.eval.scorers.scorer_names()). Unscorable predictions get score 0 and a 'score_error'; "
        "a malformed line stops with its file and line number. Without --out the scored lines go to "
        "stdout; a per-scorer summary goes to stderr.",
    )
    score.add_argument("file", type=Path, metavar="FILE.jsonl", help="input JSONL file")
    score.add_argument("--out", type=Path, default=None, metavar="OUT.jsonl", help="write scored lines here")
    score.set_defaults(handler=run_score)


def run_score(args) -> int:
    import json
    import sys

    from v2pe.eval.score_file import score_file, summarize

    scored = score_file(args.file, args.out)
    if args.out is None:
        for record in scored:
            print(json.dumps(record, ensure_ascii=False))
    for name, entry in sorted(summarize(scored).items()):
        print(f"{name}: {entry['n']} lines, mean score {entry['mean']:.6g}, {entry['errors']} unscorable",
              file=sys.stderr)
    return 0
