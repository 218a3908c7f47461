"""`v2pe train`: fine-tune with a recipe, overriding any key with `--section.key value`."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  v2pe train --config debug                                  # tiny model, synthetic data, CPU, ~1 min
  v2pe train --config debug --train.max_steps 10 --train.output_dir runs/try
  v2pe train --config debug --print-config                   # the resolved recipe as YAML
  v2pe train --config debug --train.max_steps 80             # continue a finished 40-step run to 80
  torchrun --nproc_per_node 2 -m v2pe train --config debug --parallel.zero_stage 2
  torchrun --nproc_per_node 8 -m v2pe train --config internvl2-2b-32k --model.path CKPT --data.meta_path META
  deepspeed --num_gpus 8 --module v2pe train --config internvl2-2b-256k ...

keys: model.*, v2pe.*, data.*, train.*, parallel.* (see --print-config); values are type-checked.

resume: with train.resume auto (the default), a run continues from the newest whole checkpoint in
train.output_dir (a damaged one is skipped, with a warning); a run that already reached
train.max_steps is left as it is.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune a model with V2PE (recipes: debug, internvl2-2b-32k, internvl2-2b-256k)",
        description="Fine-tune an InternVL-style model with V2PE positions. Any recipe key can be overridden "
        "with --section.key VALUE (e.g. --train.learning_rate 1e-5, --parallel.zero_stage 3).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default="debug", help="a packaged recipe name or a YAML file (default: debug)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved recipe and exit")
    parser.add_argument("--list-recipes", action="store_true", help="list the packaged recipes and exit")
    parser.add_argument(
        "--resume-weights-only",
        action="store_true",
        help="resume the checkpoint's weights and progress with a fresh optimizer (for a checkpoint without optimizer.pt)",
    )
    # `--section.key value` pairs are not argparse options: `v2pe.cli.main` hands them to this
    # verb as `args.overrides` (checked against the recipe's dataclasses when it is loaded).
    parser.set_defaults(handler=run, overrides=[], takes_overrides=True)


def run(args) -> int:
    from v2pe.train.config import list_recipes, load_recipe

    if args.list_recipes:
        print("\n".join(list_recipes()))
        return 0
    config = load_recipe(args.config, list(args.overrides or []), validate_config=not args.print_config)
    if args.print_config:
        print(config.to_yaml(), end="")
        return 0
    from v2pe.train.run import train

    result = train(config, resume_weights_only=args.resume_weights_only)
    if result.already_finished:
        print(finished_message(result, config))
    elif result.final_model is not None:
        print(f"trained {result.global_step} steps; model saved to {result.final_model}")
    return 0


def finished_message(result, config) -> str:
    final = f"; the final model is {result.final_model}" if result.final_model is not None else ""
    return (
        f"{result.output_dir} already holds a finished run: {result.resumed_from.name} reached step {result.global_step} "
        f"of train.max_steps {config.train.max_steps}{final}. Nothing was trained or rewritten. To train further, raise "
        f"train.max_steps (e.g. --train.max_steps {2 * config.train.max_steps}: it resumes from {result.resumed_from.name}), "
        "or set a new train.output_dir to start another run."
    )
