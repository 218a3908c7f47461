"""`v2pe demo`: train tiny VLMs from scratch and measure what V2PE does beyond the training length."""

from __future__ import annotations

import shlex


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train tiny models on CPU and measure V2PE vs ordinary positions at 1x-16x the training length",
        description="Pretrain a tiny InternVL-style model at delta=1 on a synthetic needle task, fine-tune it "
        "with delta=1, with V2PE (random delta) and with a fixed small delta, then test every arm at 1x to 16x "
        "the training length. Writes results.md, accuracy_vs_length.png and results.json to --out.",
    )
    parser.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    parser.add_argument("--quick", action="store_true", help="the same pipeline at a small scale (under 2 minutes); accuracy is not meaningful")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=run)


def run(args) -> int:
    from tqdm import tqdm

    from v2pe.demo.experiment import DemoConfig, run_demo, total_progress_steps
    from v2pe.demo.report import markdown_table, write_report

    config = DemoConfig.quick() if args.quick else DemoConfig()
    config.seed = args.seed
    with tqdm(total=total_progress_steps(config), desc="demo", unit="step") as bar:
        result = run_demo(config, progress_bar=bar)
    paths = write_report(result, args.out, reproduce_command(args))
    print(markdown_table(result))
    print(f"\nwrote {paths['table']}, {paths['plot']} and {paths['json']} ({result.total_seconds:.0f} s)")
    return 0


def reproduce_command(args) -> str:
    words = ["v2pe", "demo", "--out", args.out] + (["--quick"] if args.quick else []) + (["--seed", str(args.seed)] if args.seed else [])
    return " ".join(shlex.quote(w) for w in words)
