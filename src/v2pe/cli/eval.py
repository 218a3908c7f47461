"""`v2pe eval`: benchmark evaluation commands.

* `v2pe eval score FILE.jsonl`: score predictions line by line with the official rules;
* `v2pe eval BENCH --model PATH --data DIR --out DIR [--delta auto|FLOAT] [--limit N] [--tasks ...]`:
  run a benchmark of `v2pe.eval.benchmarks.BENCHMARKS` (resumable: rerun the same command to
  continue; `--dry-run` writes what it would ask without loading weights);
* `v2pe eval report RUN_DIR [RUN_DIR ...] --out DIR`: Markdown tables, plots and a side-by-side
  summary of runs.
"""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    from v2pe.eval.benchmarks import BENCHMARKS

    parser = subparsers.add_parser(
        "eval",
        help="evaluate model outputs with the official benchmark scoring rules",
        description="Evaluation commands. 'score' scores a JSONL file of predictions line by line; "
        f"{', '.join(repr(name) for name in BENCHMARKS)} run a benchmark; 'report' summarizes runs.",
    )
    commands = parser.add_subparsers(dest="eval_command", metavar="COMMAND")
    commands.required = True
    register_score(commands)
    register_runners(commands)
    register_report(commands)


def register_score(commands) -> None:
    score = commands.add_parser(
        "score",
        help="score a JSONL file of {scorer, prediction, answer, extra, source} lines",
        description="Add a 'score' to every line of FILE.jsonl using the named scorer (see "
        "v2pe.eval.scorers.scorer_names()). Unscorable predictions get score 0 and a 'score_error'; "
        "a malformed line (bad UTF-8 or JSON, missing fields, an answer whose type does not fit a scorer "
        "named for a type, such as mmniah_is_correct_str) stops with its file and line number. Without "
        "--out the scored lines go to stdout; a per-scorer summary goes to stderr.",
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


def register_runners(commands) -> None:
    from v2pe.eval.benchmarks import BENCHMARKS

    for name, benchmark in BENCHMARKS.items():
        help_text, tasks_help = benchmark.help, benchmark.tasks_help
        runner = commands.add_parser(
            name,
            help=help_text,
            description=f"{help_text[0].upper()}{help_text[1:]}, with the official prompts, tile limits and "
            "max_new_tokens, generating with V2PE positions and scoring every sample with the official scorer. "
            "One JSONL line per sample is written to OUT/<task>.jsonl as soon as it is scored; running the same "
            "command again resumes. Malformed benchmark files stop before the model is loaded; problems of one "
            "sample (missing image, unparseable prediction, ...) score 0 with the reason in the line's 'error'.",
        )
        runner.add_argument("--model", default=None, help="checkpoint folder (official internvl_chat or native internvl); "
                            "with --dry-run only its config and tokenizer are read (optional there, except for MileBench)")
        runner.add_argument("--dry-run", action="store_true",
                            help="write OUT/dry-run/<task>.jsonl (id, prompt, images, tiles and generation settings per sample) "
                                 "without loading weights, to check a run before paying for it")
        runner.add_argument("--data", required=True, type=Path, help="the benchmark's data folder")
        runner.add_argument("--out", required=True, type=Path, help="run folder (created, or resumed)")
        runner.add_argument("--delta", default="model", help="'model' (the checkpoint's delta, from rope_pos_id_stride; the official default), "
                            "'auto' (largest that fits the trained window) or a number in (0, 1] such as 0.25 or 1/16")
        runner.add_argument("--window", type=int, default=None, help="trained window in positions (default: from the checkpoint)")
        runner.add_argument("--limit", type=int, default=None, help="only the first N samples of each task file")
        runner.add_argument("--tasks", nargs="+", default=None, metavar="TASK", help=f"{tasks_help} (default: all found)")
        runner.add_argument("--max-tiles", type=int, default=None, help="override the official tiles-per-image limit")
        for option in benchmark.options:
            runner.add_argument(option.flag, **option.kwargs)
        runner.add_argument("--scorer-source", default="official", choices=["official", "v2pe"],
                            help="scorer variant where the benchmark's own code and the V2PE copy differ: "
                                 "official (default, the benchmark's numbers) or v2pe (the paper's numbers)")
        runner.add_argument("--retry-errors", action="store_true", help="when resuming, run samples that ended with an error again")
        runner.add_argument("--overwrite", action="store_true", help="discard the results of the selected tasks and start again")
        runner.add_argument("--batch-size", type=int, default=1, help="samples of the same settings and similar length per "
                            "generate call (default 1; same answers, not a setting of the run: resume at any batch size)")
        runner.add_argument("--dtype", default="auto", help="auto, float32, bfloat16")
        runner.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
        runner.set_defaults(handler=run_runner, benchmark=name)


def run_runner(args) -> int:
    import sys

    from v2pe.eval.benchmarks import BENCHMARKS
    from v2pe.eval.runners import load_tasks, run_loaded
    from v2pe.eval.runners.base import stderr_progress
    from v2pe.files import make_output_folder
    from v2pe.inference import Chat
    from v2pe.positions import parse_delta
    from v2pe.processing import Processor

    delta = parse_delta(args.delta)
    options = {"max_tiles": args.max_tiles, **{o.dest: getattr(args, o.dest, None) for o in BENCHMARKS[args.benchmark].options}}
    options = {k: v for k, v in options.items() if v is not None}
    if args.model is None and not args.dry_run:
        from v2pe.errors import ConfigError

        raise ConfigError("--model is required (only --dry-run runs without one)")
    processor = Processor.from_pretrained(args.model) if args.model else None
    tasks = load_tasks(args.benchmark, args.data, processor, args.tasks, args.limit, **options)  # fails before the model loads
    make_output_folder(args.out)  # a file in the way, say so before the model loads
    if args.dry_run:
        from v2pe.eval.runners.base import write_dry_run

        for path in write_dry_run(tasks, Path(args.out) / "dry-run", _dry_run_delta(delta, args.model), processor):
            print(path)
        return 0
    total = sum(len(t.samples) for t in tasks)
    stderr_progress(f"{args.benchmark}: {len(tasks)} task(s), {total} samples read and checked; loading {args.model}")
    chat = Chat.from_pretrained(args.model, delta=delta, window=args.window, dtype=args.dtype, device=args.device, processor=processor)
    summaries = run_loaded(chat, args.benchmark, tasks, args.out, data=args.data, limit=args.limit, model=str(Path(args.model).resolve()),
                           scorer_source=args.scorer_source, retry_errors=args.retry_errors, overwrite=args.overwrite,
                           progress=stderr_progress, batch_size=args.batch_size, **options)
    for name, summary in summaries.items():
        print(f"{name}: {summary['n']} samples, mean score {summary['mean']:.4g}, {summary['errors']} with errors "
              f"({summary['ran']} run now)", file=sys.stdout)
    print(f"results in {args.out}; tables and plots: v2pe eval report {args.out} --out REPORT_DIR", file=sys.stderr)
    return 0


def _dry_run_delta(delta, model: str | None) -> float | None:
    """The delta a run would use, where it is known without a prompt: a number, or the checkpoint's."""
    if isinstance(delta, float):
        return delta
    if delta != "model" or model is None:
        return None  # "auto" depends on each prompt's length
    from v2pe.model.checkpoint import read_config
    from v2pe.model.official import is_official_config, v2pe_settings_from_official
    from v2pe.model.settings import V2PESettings

    config = read_config(model)
    if is_official_config(config):
        return v2pe_settings_from_official(config, None, None).delta
    return V2PESettings.from_dict(config.get("v2pe")).delta


def register_report(commands) -> None:
    from v2pe.eval.benchmarks import BENCHMARKS

    official = "; ".join(f"{name}: {b.official_help}" for name, b in BENCHMARKS.items() if b.read_official is not None)
    report = commands.add_parser(
        "report",
        help="Markdown tables, PNG plots and a side-by-side summary of benchmark runs",
        description="Read run folders (from 'v2pe eval BENCH') and/or the official "
        "evaluation scripts' result files (--official BENCH PATH) and write OUT/report.md "
        "(per-benchmark tables with the official aggregation, and comparison tables when several runs of one "
        "benchmark are given, e.g. delta=1 vs V2PE, or an official run vs a v2pe run), OUT/report.json (every "
        "aggregate; also written as OUT/summary.json) and PNG plots (MM-NIAH length x depth heat maps, accuracy "
        "vs context length).",
    )
    report.add_argument("runs", nargs="*", type=Path, metavar="RUN_DIR", help="run folders")
    report.add_argument("--official", nargs=2, action="append", default=[], metavar=("BENCH", "PATH"),
                        help=f"official result files of BENCH ({official}); each line is scored with v2pe's official "
                        "scorers; repeatable, reported after the run folders")
    report.add_argument("--scorer-source", default=None,
                        help="scorer variant for --official files (default: the runners' default, 'official'; "
                        "'v2pe' for the V2PE copies of the scorers)")
    report.add_argument("--out", required=True, type=Path, help="report folder")
    report.set_defaults(handler=run_report)


def run_report(args) -> int:
    from v2pe.errors import ConfigError
    from v2pe.eval.reports import write_report

    official = [(bench, Path(path)) for bench, path in args.official]
    if not args.runs and not official:
        raise ConfigError("give run folders and/or --official BENCH PATH")
    summary = write_report(args.runs, args.out, official=official, scorer_source=args.scorer_source)
    for path in summary["files"]:
        print(path)
    return 0
