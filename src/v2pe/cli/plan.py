"""`v2pe plan --model DIR --tokens N --images M --tiles-per-image T`: will this prompt fit?"""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="memory plan of a long prompt: fitting delta, KV cache, weights, chunk peak, fits the device?",
        description="From the checkpoint's config.json alone (no weights are loaded): the delta that keeps the prompt "
        "inside the trained window, the KV cache, the weights, the image features held during prefill, the peak "
        "activation of one prefill chunk and one vision batch, and whether their sum fits --device-memory.",
    )
    parser.add_argument("--model", required=True, help="checkpoint folder (official internvl_chat or native internvl)")
    parser.add_argument("--tokens", required=True, type=int, help="prompt tokens, the images' visual tokens included")
    parser.add_argument("--images", type=int, default=0)
    parser.add_argument("--tiles-per-image", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=8192, help="prefill chunk size in tokens")
    parser.add_argument("--vision-batch", type=int, default=32, help="tiles per vision-tower batch")
    parser.add_argument("--attention", default="flash_attention_2", help="flash_attention_2, sdpa or eager")
    parser.add_argument("--device-memory", default=None, help="e.g. 141GiB (default: the visible GPU's, if any)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from v2pe.planning import ModelShape, parse_bytes, plan_memory

    device = parse_bytes(args.device_memory) if args.device_memory else _visible_gpu_bytes()
    plan = plan_memory(ModelShape.from_checkpoint(args.model), args.tokens, args.images, args.tiles_per_image,
                       max_new_tokens=args.max_new_tokens, chunk=args.chunk, vision_batch=args.vision_batch,
                       attention=args.attention, device_bytes=device)
    print("\n".join(plan.lines()))
    return 0 if plan.fits is not False else 1


def _visible_gpu_bytes() -> int | None:
    import torch

    return torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else None
