"""`v2pe convert SRC DST`: an official InternVL2 / V2PE checkpoint to the native layout."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert an official InternVL chat checkpoint to native transformers InternVL",
        description="Write SRC (official internvl_chat or native internvl, safetensors) to DST as a native "
        "InternVLForConditionalGeneration checkpoint that transformers loads without remote code. "
        "V2PE settings (rope_pos_id_version / rope_pos_id_stride) are kept in config.json under 'v2pe'.",
    )
    parser.add_argument("src", help="checkpoint folder to convert")
    parser.add_argument("dst", help="output folder (created)")
    parser.add_argument("--dtype", default="auto", help="weight dtype to write: auto (the checkpoint's), float32, bfloat16, float16")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from v2pe.model import convert_checkpoint

    out = convert_checkpoint(args.src, args.dst, dtype=args.dtype)
    print(f"wrote native checkpoint to {out}")
    return 0
