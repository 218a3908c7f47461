"""`v2pe chat --model PATH --image a.png [--image b.png ...] "question"`."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "chat",
        help="ask a V2PE model about one or more images (streams the answer)",
        description="Answer a question about images with a v2pe-loadable checkpoint. Each --image fills one "
        "<image> placeholder in order; without placeholders they are prepended to the question. "
        "With several questions (--batch FILE, one per line) they run as one batch.",
    )
    parser.add_argument("question", nargs="?", help="the question (omit with --interactive or --batch)")
    parser.add_argument("--model", required=True, help="checkpoint folder (official internvl_chat or native internvl)")
    parser.add_argument("--image", action="append", default=[], help="an image file; repeat for several")
    parser.add_argument("--delta", default="model", help="'model' (the checkpoint's delta, from rope_pos_id_stride; the official default), "
                        "'auto' (largest that fits the trained window) or a number in (0, 1] such as 0.25 or 1/16")
    parser.add_argument("--window", type=int, default=None, help="trained window in positions (default: from the checkpoint)")
    parser.add_argument("--max-new-tokens", type=_positive_int, default=256, help="at most this many tokens per answer (>= 1)")
    parser.add_argument("--max-tiles", type=int, default=None, help="tiles per image (default: from the checkpoint)")
    parser.add_argument("--interactive", action="store_true", help="keep asking follow-up questions (multi-turn)")
    parser.add_argument("--batch", help="a text file with one question per line, all about the same images")
    parser.add_argument("--prefill-chunk-size", type=_positive_int, default=8192, help="tokens per prefill chunk for long prompts")
    parser.add_argument("--chunked-prefill-above", type=int, default=16384,
                        help="prompts longer than this many tokens are prefilled in chunks (-1: always one-shot)")
    parser.add_argument("--vision-batch-size", type=_positive_int, default=32, help="tiles per vision-tower batch in chunked prefill")
    parser.add_argument("--cache", default="dynamic", choices=["dynamic", "static", "offloaded", "quantized"],
                        help="KV cache: dynamic (default), static, offloaded (CUDA: layers wait on the CPU), quantized (4-bit, the 'quant' extra)")
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16")
    parser.add_argument("--device", default="cpu")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from v2pe.errors import ConfigError

    if not (args.question or args.interactive or args.batch):
        raise ConfigError("give a question, --interactive or --batch FILE")
    chat = build_chat(args)
    if args.batch:
        return _run_batch(chat, args)
    question, first = args.question, True
    while True:
        if question is None:  # --interactive: read the next question; an empty line or EOF ends
            question = _read_question()
            if not question:
                return 0
        # Every turn sends all images again (the history holds their placeholders), as chat() does.
        text = _with_placeholders(question, len(args.image)) if first else question
        for piece in chat.stream(text, images=args.image, history=[] if first else None):
            print(piece, end="", flush=True)
        print()
        if first:
            print(f"[delta {chat.last_delta:g}, {chat.delta_source()}]", file=sys.stderr)
        if not args.interactive:
            return 0
        question, first = None, False


def _read_question() -> str:
    try:
        return input("> " if sys.stdin.isatty() else "").strip()
    except EOFError:
        return ""


def build_chat(args):
    from v2pe.inference import Chat
    from v2pe.positions import parse_delta

    delta = parse_delta(args.delta)  # with the flag's name in the error
    cache = _cache_settings(args.cache)
    return Chat.from_pretrained(args.model, delta=delta, window=args.window, dtype=args.dtype, device=args.device,
                                max_tiles=args.max_tiles or None, max_new_tokens=args.max_new_tokens,
                                prefill_chunk_size=args.prefill_chunk_size, vision_batch_size=args.vision_batch_size,
                                chunked_prefill_above=None if args.chunked_prefill_above < 0 else args.chunked_prefill_above, **cache)


def _run_batch(chat, args) -> int:
    from pathlib import Path

    from v2pe.errors import DataError

    try:
        text = Path(args.batch).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        line = Path(args.batch).read_bytes()[: error.start].count(b"\n") + 1
        raise DataError(f"{args.batch}:{line}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    questions = [line.strip() for line in text.splitlines() if line.strip()]
    if not questions:
        raise DataError(f"{args.batch}: no questions (the file is empty; write one question per line)")
    conversations = [[{"from": "human", "value": _with_placeholders(q, len(args.image))}] for q in questions]
    replies = chat.generate(conversations, [args.image] * len(questions))
    for question, reply in zip(questions, replies):
        print(f"{question}\t{reply.text}")
    print(f"[delta {chat.last_delta:g}, {chat.delta_source()}]", file=sys.stderr)
    sys.stdout.flush()
    return 0


def _cache_settings(name: str) -> dict:
    import importlib.util

    from v2pe.errors import ConfigError

    if name == "dynamic":
        return {}
    if name == "quantized":
        if importlib.util.find_spec("optimum") is None or importlib.util.find_spec("optimum.quanto") is None:
            raise ConfigError("--cache quantized needs the 'quant' extra (optimum-quanto): pip install 'v2pe[quant]'")
        return {"cache_implementation": "quantized", "cache_config": {"backend": "quanto", "nbits": 4}}
    return {"cache_implementation": name}


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _with_placeholders(question: str, num_images: int) -> str:
    """One `<image>` per image, before the question, unless the question places them itself."""
    from v2pe.tokens import IMAGE_PLACEHOLDER

    if IMAGE_PLACEHOLDER in question or num_images == 0:
        return question
    return "".join(f"Image-{i + 1}: {IMAGE_PLACEHOLDER}\n" for i in range(num_images)) + question
