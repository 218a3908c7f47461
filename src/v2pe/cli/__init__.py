"""`v2pe <verb>`: the command-line front door.

Each verb lives in its own module exposing `register(subparsers)`; the module
imports heavy dependencies (torch, transformers) only inside its handler so
that `v2pe --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from v2pe.errors import V2PEError

# Modules that only an optional extra installs, and that extra.
EXTRA_OF_MODULE = {
    "editdistance": "eval", "rouge": "eval", "accelerate": "train", "tensorboard": "train",
    "deepspeed": "deepspeed", "flash_attn": "ring", "ring_flash_attn": "ring", "lmms_eval": "lmms", "optimum": "quant",
}

# Verb modules, in the order `v2pe --help` lists them.
VERB_MODULES = ["demo", "chat", "convert", "positions", "plan", "data", "eval", "train", "bench"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="v2pe",
        description="Variable Visual Position Encoding for long-context vision-language models.",
    )
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    subparsers.required = True
    for name in VERB_MODULES:
        importlib.import_module(f"v2pe.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # only a verb that takes `--section.key value` overrides (train) accepts more
        if not getattr(args, "takes_overrides", False):
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        args.overrides = extras
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _print_warning
            return int(args.handler(args) or 0)
    except (V2PEError, FileNotFoundError) as error:
        # User errors: one clear line, no traceback.
        print(f"v2pe {args.verb}: error: {error}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:
        extra = EXTRA_OF_MODULE.get((error.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"v2pe {args.verb}: error: this needs the '{extra}' extra ({error}): pip install 'v2pe[{extra}]'", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly.
        sys.stderr.close()
        return 0


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line on stderr, without the source location."""
    print(f"v2pe: warning: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
