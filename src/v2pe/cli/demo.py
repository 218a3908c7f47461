"""`v2pe demo`: train tiny VLMs from scratch and measure what V2PE does beyond the training length."""

from __future__ import annotations

import shlex


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train tiny models on CPU and measure V2PE vs ordinary positions at 1x-16x the training length",
        description="Pretrain a tiny InternVL-style model at delta=1 on a synthetic needle task, fine-tune it "
        "with delta=1, with V2PE (random delta) and with a fixed small delta, then test every arm at 1x to 16x "
        "the training length. Writes results.md, accuracy_vs_length.png and results.json (with the wall time "
        "and steps/s of every phase) to --out.",
    )
    parser.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    parser.add_argument("--quick", action="store_true", help="the same pipeline at a small scale (under a minute); accuracy is not meaningful")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, metavar="N",
                        help="one run per seed; with several, the table gives the mean and the worst seed (default: 0)")
    parser.add_argument("--seed", type=int, default=None, help="a single seed (the same as --seeds N)")
    parser.add_argument("--float64", action="store_true",
                        help="run the models in float64 (positions stay float32): a check that the results do not hinge on float32 rounding")
    parser.set_defaults(handler=run)


def seeds_of(args) -> list[int]:
    if args.seeds is not None and args.seed is not None:
        raise SystemExit("v2pe demo: give --seeds or --seed, not both")
    if args.seeds is not None:
        return list(dict.fromkeys(args.seeds))
    return [args.seed if args.seed is not None else 0]


def run(args) -> int:
    from tqdm import tqdm

    from v2pe.demo.experiment import DemoConfig, run_demos, total_progress_steps
    from v2pe.demo.report import summary_table, timing_lines, write_report

    config = DemoConfig.quick() if args.quick else DemoConfig()
    if args.float64:
        config.dtype = "float64"
    seeds = seeds_of(args)
    with tqdm(total=len(seeds) * total_progress_steps(config), desc="demo", unit="step") as bar:
        results = run_demos(config, seeds, progress_bar=bar)
    paths = write_report(results, args.out, reproduce_command(args))
    print(summary_table(results))
    print("\nwall time per phase" + (" (all seeds)" if len(seeds) > 1 else "") + ":")
    print("\n".join(timing_lines(results)))
    print(f"\nwrote {paths['table']}, {paths['plot']} and {paths['json']}")
    return 0


def reproduce_command(args) -> str:
    seeds = seeds_of(args)
    words = ["v2pe", "demo", "--out", args.out] + (["--quick"] if args.quick else []) + (["--float64"] if getattr(args, "float64", False) else [])
    if seeds != [0]:
        words += ["--seeds", *map(str, seeds)]
    return " ".join(shlex.quote(w) for w in words)
