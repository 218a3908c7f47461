"""`v2pe positions`: how far a sequence reaches in positions at each delta."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "positions",
        help="plan a long input: the largest position per delta for given text and images",
        description="Print, for each delta, the largest V2PE position of a sequence with this many text "
        "tokens and images, and whether it fits a window.",
    )
    parser.add_argument("--text-tokens", type=int, required=True, help="text tokens (the <img>/</img> markers are added)")
    parser.add_argument("--images", type=int, required=True, help="number of images")
    parser.add_argument("--tiles-per-image", type=int, default=1, help="448 px tiles per image, thumbnail included")
    parser.add_argument("--tokens-per-tile", type=int, default=256, help="visual tokens per tile (256 for InternVL2)")
    parser.add_argument("--window", type=int, default=32768, help="trained context window in positions")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from v2pe.positions import DEFAULT_DELTA_CHOICES, max_position, stride_from_delta

    visual = [args.tiles_per_image * args.tokens_per_tile] * args.images
    text = args.text_tokens + 2 * args.images  # <img> and </img> advance like text
    total_tokens = text + sum(visual)
    print(f"{total_tokens} tokens ({text} text and markers, {sum(visual)} visual in {args.images} images), window {args.window}")
    print(f"{'delta':>10} {'stride':>7} {'max position':>13}  fits")
    for delta in DEFAULT_DELTA_CHOICES:
        last = max_position(text, visual, delta)
        print(f"{delta:>10.6g} {stride_from_delta(delta):>7g} {last:>13d}  {'yes' if last < args.window else 'no'}")
    return 0
