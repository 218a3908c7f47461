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
    parser.add_argument("--delta", default="auto", help="'auto' (largest that fits the trained window) or a number in (0, 1]")
    parser.add_argument("--window", type=int, default=None, help="trained window in positions (default: from the checkpoint)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--max-tiles", type=int, default=None, help="tiles per image (default: from the checkpoint)")
    parser.add_argument("--interactive", action="store_true", help="keep asking follow-up questions (multi-turn)")
    parser.add_argument("--batch", help="a text file with one question per line, all about the same images")
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
    question = args.question
    history: list[dict] | None = []
    while True:
        text = _with_placeholders(question, len(args.image)) if not history else question
        for piece in chat.stream(text, images=args.image if not history else [], history=history):
            print(piece, end="", flush=True)
        print()
        history = None  # later turns continue chat.history
        if not args.interactive:
            return 0
        question = input("> ").strip()
        if not question:
            return 0


def build_chat(args):
    from v2pe.inference import Chat
    from v2pe.model import load_model
    from v2pe.processing import Processor

    model = load_model(args.model, dtype=args.dtype, device=args.device)
    overrides = {"max_tiles": args.max_tiles} if args.max_tiles else {}
    processor = Processor.from_pretrained(args.model, **overrides)
    delta = args.delta if args.delta == "auto" else float(args.delta)
    return Chat(model, processor, delta=delta, window=args.window, max_new_tokens=args.max_new_tokens)


def _run_batch(chat, args) -> int:
    from pathlib import Path

    questions = [line.strip() for line in Path(args.batch).read_text().splitlines() if line.strip()]
    conversations = [[{"from": "human", "value": _with_placeholders(q, len(args.image))}] for q in questions]
    replies = chat.generate(conversations, [args.image] * len(questions))
    for question, reply in zip(questions, replies):
        print(f"{question}\t{reply.text}")
    sys.stdout.flush()
    return 0


def _with_placeholders(question: str, num_images: int) -> str:
    """One `<image>` per image, before the question, unless the question places them itself."""
    if "<image>" in question or num_images == 0:
        return question
    return "".join(f"Image-{i + 1}: <image>\n" for i in range(num_images)) + question
