"""`v2pe data`: synthetic source data, long-context builders, statistics.

    v2pe data synthetic --out DIR --n N --seed S
    v2pe data build long-vqa --source SRC.jsonl --out DIR --target-tokens 32768 [--n N] --seed S
    v2pe data build needle --task retrieval-text|...|all --source SRC.jsonl --out DIR --target-tokens 32768 --seed S
    v2pe data stats FILE.jsonl|META.json

Lengths are measured with a Processor: the checkpoint's (`--model DIR`) or, by default, the
byte-level test tokenizer with InternVL2 tiling (448 px tiles, 256 tokens per tile, up to 12
tiles + thumbnail); the tiling flags override either.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data",
        help="make synthetic data, build Long-VQA / needle data, print dataset statistics",
        description="Data in the official meta-JSON + JSONL format: a synthetic VQA source, long-context builders and statistics.",
    )
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION")
    actions.required = True

    synthetic = actions.add_parser("synthetic", help="PIL-drawn shapes and digits with short questions (official JSONL + PNG files)")
    synthetic.add_argument("--out", required=True, help="output folder")
    synthetic.add_argument("--n", type=int, default=1000, help="number of samples (default 1000)")
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.add_argument("--image-size", type=int, default=112, help="side of a square image in px (default 112)")
    synthetic.add_argument("--questions", type=int, default=1, help="question-answer turns per sample (default 1)")
    synthetic.add_argument("--vary-aspect", action="store_true", help="also draw 2:1 and 1:2 images (more tiles per image)")
    synthetic.set_defaults(handler=run_synthetic)

    build = actions.add_parser("build", help="build long samples from a short single-image VQA source")
    kinds = build.add_subparsers(dest="builder", metavar="BUILDER")
    kinds.required = True
    long_vqa = kinds.add_parser("long-vqa", help="many images in one sample, a question about one of them")
    _build_arguments(long_vqa)
    long_vqa.add_argument("--depths", type=float, nargs="+", help="positions of the asked image among the images, in [0, 1] (cycled; default random)")
    long_vqa.set_defaults(handler=run_long_vqa)
    needle = kinds.add_parser("needle", help="MM-NIAH-style needles in long interleaved documents")
    _build_arguments(needle)
    needle.add_argument("--task", nargs="+", default=["all"], help="retrieval|counting|reasoning-text|image, or all (default)")
    needle.add_argument("--depths", type=float, nargs="+", help="depths of single needles in [0, 1] (cycled; default 0 0.25 0.5 0.75 1)")
    needle.add_argument("--image-ratio", type=float, default=0.5, help="share of haystack blocks that carry an image (default 0.5)")
    needle.set_defaults(handler=run_needle)

    stats = actions.add_parser("stats", help="counts, exact token-length histogram and skipped samples of a JSONL or meta JSON")
    stats.add_argument("path", help="an annotation .jsonl (official or MM-NIAH) or a meta .json")
    stats.add_argument("--strict", action="store_true", help="stop at the first bad sample instead of counting it")
    stats.add_argument("--max-length", type=int, help="count samples longer than this as too_long")
    stats.add_argument("--max-sample-bytes", type=int, help="count annotation lines longer than this as too_long, unread "
                       "(default: 16 bytes per token of --max-length, else 16 MiB)")
    stats.add_argument("--allow-outside-root", action="store_true", help="let image paths leave the dataset root (the meta "
                       "file's root, or the JSONL file's folder); by default such samples are outside_root errors")
    stats.add_argument("--json", help="also write the statistics to this JSON file")
    _processor_arguments(stats)
    stats.set_defaults(handler=run_stats)


def _build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="official JSONL of single-image VQA samples")
    parser.add_argument("--source-root", help="folder that relative image paths start from (default: the source file's folder)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--target-tokens", type=int, nargs="+", default=[32768], help="target lengths in tokens, cycled over samples (default 32768)")
    parser.add_argument("--n", type=int, default=100, help="samples to build (per task for needles; default 100)")
    parser.add_argument("--tolerance", type=float, default=0.05, help="allowed relative deviation from the target (default 0.05)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-bad", action="store_true", help="skip (and count) bad source samples instead of stopping")
    parser.add_argument("--allow-outside-root", action="store_true", help="let source image paths leave --source-root "
                        "(by default such samples are outside_root errors)")
    _processor_arguments(parser)


def _processor_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("length measurement")
    group.add_argument("--model", help="checkpoint folder whose tokenizer and tiling settings to use (default: byte tokenizer, InternVL2 tiling)")
    group.add_argument("--tokens-per-tile", type=int, help="visual tokens per tile (default 256)")
    group.add_argument("--tile-size", type=int, help="tile side in px (default 448)")
    group.add_argument("--min-tiles", type=int, help="default 1")
    group.add_argument("--max-tiles", type=int, help="default 12")
    group.add_argument("--no-thumbnail", action="store_true", help="no thumbnail tile for multi-tile images")


def make_processor(args, max_length: int | None = None):
    from v2pe.processing import Processor, byte_tokenizer

    overrides = {
        key: value
        for key, value in {
            "tokens_per_tile": args.tokens_per_tile,
            "tile_size": args.tile_size,
            "min_tiles": args.min_tiles,
            "max_tiles": args.max_tiles,
            "max_length": max_length,
        }.items()
        if value is not None
    }
    if args.no_thumbnail:
        overrides["use_thumbnail"] = False
    if args.model:
        return Processor.from_pretrained(args.model, **overrides)
    settings = {"tokens_per_tile": 256, "tile_size": 448, "min_tiles": 1, "max_tiles": 12, "use_thumbnail": True}
    settings.update(overrides)
    return Processor(byte_tokenizer(), **settings)


def run_synthetic(args) -> int:
    from v2pe.data.synthetic import write_synthetic

    path = write_synthetic(args.out, args.n, args.seed, image_size=args.image_size, questions=args.questions, vary_aspect=args.vary_aspect)
    print(f"wrote {args.n} samples to {path} (images in {path.parent / 'images'}, meta {path.parent / 'meta.json'})")
    return 0


def _source(args):
    from v2pe.data.annotations import SkipReport
    from v2pe.data.builders import load_source

    report = SkipReport()
    source = load_source(args.source, args.source_root, skip_bad=args.skip_bad, report=report, allow_outside_root=args.allow_outside_root)
    if report:
        print(report.summary())
    return source


def _print_result(result) -> None:
    print(f"wrote {len(result.records)} samples to {result.annotation}" + "".join(f", {p}" for p in result.extra_files))
    print(result.table())
    print(f"max deviation from target: {result.histogram['max_relative_deviation']:.2%}; histogram in {result.histogram_path}")


def run_long_vqa(args) -> int:
    from v2pe.data.builders import build_long_vqa

    result = build_long_vqa(
        _source(args), make_processor(args), args.out, n=args.n, target_tokens=args.target_tokens, seed=args.seed,
        tolerance=args.tolerance, depths=args.depths, progress=True,
    )
    _print_result(result)
    return 0


def run_needle(args) -> int:
    from v2pe.data.builders import DEFAULT_DEPTHS, NEEDLE_TASKS, build_needle
    from v2pe.errors import ConfigError

    tasks = list(NEEDLE_TASKS) if args.task == ["all"] else args.task
    unknown = [t for t in tasks if t not in NEEDLE_TASKS]
    if unknown:
        raise ConfigError(f"unknown needle task {unknown[0]!r}; choose from {', '.join(NEEDLE_TASKS)} or all")
    source, processor = _source(args), make_processor(args)
    for task in tasks:
        result = build_needle(
            task, source, processor, args.out, n=args.n, target_tokens=args.target_tokens, seed=args.seed,
            tolerance=args.tolerance, depths=args.depths or DEFAULT_DEPTHS, image_ratio=args.image_ratio, progress=True,
        )
        _print_result(result)
    return 0


def run_stats(args) -> int:
    from v2pe.data.stats import collect_stats, write_stats

    stats = collect_stats(
        args.path, make_processor(args, max_length=args.max_length), skip_bad=not args.strict, progress=True,
        allow_outside_root=args.allow_outside_root, max_sample_bytes=args.max_sample_bytes,
    )
    print(stats.table())
    if args.json:
        print(f"wrote {write_stats(args.json, stats)}")
    return 0
