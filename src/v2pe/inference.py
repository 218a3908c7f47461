"""Chat with a V2PE model: multi-image prompts, automatic delta, streaming, batches, history.

    chat = Chat.from_pretrained("path/to/checkpoint")   # the checkpoint's delta; delta="auto" to fit the window
    answer = chat.ask("What differs between the images?", images=["a.png", "b.png"])
    for piece in chat.stream("And the third?", images=[...], history=chat.history): print(piece, end="")

By default the answers use the checkpoint's own delta (`config.v2pe.delta`: for an official
V2PE checkpoint `rope_pos_id_stride / 256`, as the official evaluation does; 1 otherwise).
Automatic delta (`delta="auto"`) picks the largest delta in {1, 1/2, ..., 1/256} that keeps the prompt plus
`max_new_tokens` inside the model's trained window (`config.v2pe.trained_window`, else the
language model's `max_position_embeddings`, or `window=`). Every check (images readable,
placeholders matching, window) runs before any model compute.

Prompt text follows the official `chat()` (reference-spec 3.6): the question and the history
turns are used exactly as given (no stripping; training samples are stripped, prompts are not,
see `v2pe.processing.templates`). A first question (no history) with one image and no
`<image>` becomes `<image>\\n` + question, and is stored that way in `history`, next to the
stripped answer, as the official history keeps them. Strip the question yourself for prompts
worded exactly like the stripped training text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from v2pe.errors import ConfigError
from v2pe.positions import choose_delta, max_position, parse_delta, row_layouts
from v2pe.processing.collate import collate
from v2pe.processing.processor import add_missing_image_placeholder

Delta = float | str


@dataclass
class Reply:
    text: str
    delta: float
    prompt_tokens: int
    new_tokens: int


@dataclass
class Chat:
    """A model, its processor and the generation settings; keeps the last conversation."""

    model: torch.nn.Module
    processor: object
    delta: Delta = "model"
    window: int | None = None
    max_new_tokens: int = 512
    history: list[dict] = field(default_factory=list)
    # Prompts longer than `chunked_prefill_above` tokens are prefilled `prefill_chunk_size` tokens
    # at a time, their images encoded `vision_batch_size` tiles at a time (None: always one-shot).
    prefill_chunk_size: int = 8192
    chunked_prefill_above: int | None = 16384
    vision_batch_size: int = 32
    # transformers' KV cache: None (dynamic), "static", "offloaded" (CUDA), "quantized" (optimum-quanto,
    # cache_config={"backend": "quanto", "nbits": 4}); all of them take V2PE's float positions.
    cache_implementation: str | None = None
    cache_config: dict | None = None
    progress: bool = True  # a progress bar for chunked prefills (tokens done / total, tokens/s)
    last_delta: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.delta = parse_delta(self.delta, "Chat.delta")  # 'model', 'auto' or a number in (0, 1]

    @classmethod
    def from_pretrained(
        cls,
        path,
        delta: Delta = "model",
        window: int | None = None,
        dtype="auto",
        device="cpu",
        max_tiles: int | None = None,
        processor=None,
        **chat_options,
    ) -> Chat:
        """The one loader of a Chat for a checkpoint folder (official `internvl_chat` or native
        `internvl`): `Processor.from_pretrained(path)` (or `processor`, one already made for the
        folder), its tile limit set to `max_tiles` when given, and `load_model(path, dtype,
        device)`. `delta` is checked before anything loads; `chat_options` are the other Chat
        fields (max_new_tokens, prefill_chunk_size, cache_implementation, ...)."""
        from v2pe.model import load_model
        from v2pe.processing import Processor

        delta = parse_delta(delta, "delta")
        processor = processor if processor is not None else Processor.from_pretrained(path)
        processor = processor.with_tiles(max_tiles) if max_tiles is not None else processor
        model = load_model(path, dtype=dtype, device=device)
        return cls(model, processor, delta=delta, window=None if window is None else int(window), **chat_options)

    def with_tiles(self, max_tiles: int) -> Chat:
        """A copy whose processor has this tile limit, with a fresh history (self when it has it already)."""
        processor = self.processor.with_tiles(max_tiles)
        return self if processor is self.processor else dataclasses.replace(self, processor=processor, history=[])

    def ask(self, question: str, images: Sequence = (), history: Sequence[dict] | None = None, **generate_kwargs) -> str:
        """One answer; the exchange is appended to `self.history` (pass history=[] to start fresh)."""
        images = list(images)
        conversation = self._conversation(question, history, images)
        reply = self.generate([conversation], [images], **generate_kwargs)[0]
        self.history = conversation + [{"from": "gpt", "value": reply.text}]
        return reply.text

    def stream(self, question: str, images: Sequence = (), history: Sequence[dict] | None = None, **generate_kwargs) -> Iterator[str]:
        """Yield the answer as it is generated."""
        from transformers import TextIteratorStreamer

        images = list(images)
        conversation = self._conversation(question, history, images)
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []
        inputs = self.prepare([conversation], [images], generate_kwargs.pop("max_new_tokens", self.max_new_tokens))

        def run():
            try:
                self._generate(inputs, streamer=streamer, **generate_kwargs)
            except BaseException as error:  # surfaced in the caller's thread below
                errors.append(error)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        pieces = []
        for piece in streamer:
            pieces.append(piece)
            yield piece
        worker.join()
        if errors:
            raise errors[0]
        self.history = conversation + [{"from": "gpt", "value": "".join(pieces).strip()}]

    def generate(self, conversations: Sequence[Sequence[dict]], images: Sequence[Sequence], max_new_tokens: int | None = None, **generate_kwargs) -> list[Reply]:
        """Answers for a batch of conversations (each ending with a human turn), greedy by default."""
        inputs = self.prepare(conversations, images, max_new_tokens or self.max_new_tokens)
        output = self._generate(inputs, **generate_kwargs)
        new = output[:, inputs["input_ids"].shape[1]:]
        texts = self.processor.tokenizer.batch_decode(new, skip_special_tokens=True)
        lengths = inputs["attention_mask"].sum(1).tolist()
        stop = torch.tensor(self.stop_token_ids())
        return [
            Reply(text.strip(), inputs["delta"], prompt, int((~torch.isin(row, stop) & (row != self._pad_id())).sum()))
            for text, prompt, row in zip(texts, lengths, new)
        ]

    def prepare(self, conversations: Sequence[Sequence[dict]], images: Sequence[Sequence], max_new_tokens: int) -> dict:
        """Tokenize, tile, left-pad and choose delta: everything that can fail, before compute.
        No positions: `generate` hands the delta to the model, which computes them."""
        samples = [self.processor.encode(c, i) for c, i in zip(conversations, images, strict=True)]
        batch = collate(samples, pad_token_id=self._pad_id(), padding_side="left")  # generation appends on the right
        delta = self.resolve_delta(batch["input_ids"], batch["attention_mask"], max_new_tokens)
        self.last_delta = delta
        self._warn_past_window(batch["input_ids"], batch["attention_mask"], max_new_tokens, delta)
        self._check_memory(batch["input_ids"], max_new_tokens)
        return {**batch, "delta": delta, "max_new_tokens": max_new_tokens}

    def resolve_delta(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int) -> float:
        """The delta of the next answer: a number as given, the checkpoint's ("model"), or "auto"."""
        if self.delta == "model":
            return self.model_delta()
        if self.delta != "auto":
            return self.delta
        return choose_delta(
            input_ids,
            attention_mask=attention_mask,
            image_start_id=self.processor.image_start_id,
            image_end_id=self.processor.image_end_id,
            window=self.trained_window(),
            max_new_tokens=max_new_tokens,
        )

    def _warn_past_window(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int, delta: float) -> None:
        """A chosen delta may put the prompt past the trained window: say so (auto never does)."""
        if self.delta == "auto" or self.model is None or not input_ids.numel():
            return  # no model: inputs prepared only (dry runs, scripted chats)
        layouts = row_layouts(input_ids, image_start_id=self.processor.image_start_id, image_end_id=self.processor.image_end_id, attention_mask=attention_mask)
        reach = max(max_position(text, visual, delta) for text, visual in layouts) + max_new_tokens
        window = self.trained_window()
        if reach > window:
            warnings.warn(f"at delta {delta:g} the prompt and {max_new_tokens} new tokens reach position {reach}, beyond the "
                          f"trained window of {window} positions: answers may degrade (delta 'auto' fits the window)", stacklevel=3)

    def _check_memory(self, input_ids: torch.Tensor, max_new_tokens: int) -> None:
        """On a GPU, refuse before compute a prompt whose cache and activations cannot fit."""
        if self.model is None:
            return
        from v2pe.planning import check_prompt_fits

        chunk = self.prefill_chunk_size if self.uses_chunked_prefill(input_ids.shape[1]) else input_ids.shape[1]
        attention = self.model.config.text_config._attn_implementation or "eager"
        check_prompt_fits(self.model, input_ids, self.processor.image_context_id, max_new_tokens, chunk, self.vision_batch_size, attention)

    def model_delta(self) -> float:
        """The checkpoint's own delta (an official V2PE config's rope_pos_id_stride / 256; 1 otherwise)."""
        settings = getattr(self.model, "v2pe", None)
        return float(settings.delta) if settings is not None else 1.0

    def delta_source(self) -> str:
        """Where the delta of the answers comes from, in words (for the CLI)."""
        if self.delta == "auto":
            return f"auto: the largest that fits the trained window of {self.trained_window()} positions"
        if self.delta != "model":
            return "given"
        settings = getattr(self.model, "v2pe", None)
        if settings is not None and settings.rope_pos_id_version != "default" and settings.rope_pos_id_stride:
            return f"the checkpoint's: rope_pos_id_version {settings.rope_pos_id_version}, rope_pos_id_stride {settings.rope_pos_id_stride:g}"
        return "the checkpoint's"

    def trained_window(self) -> int:
        if self.window is not None:
            return self.window
        settings = getattr(self.model, "v2pe", None)
        if settings is not None and settings.trained_window:
            return settings.trained_window
        return self.model.config.text_config.max_position_embeddings

    def uses_chunked_prefill(self, prompt_length: int) -> bool:
        """Long prompts are prefilled in chunks (one-shot below `chunked_prefill_above` tokens)."""
        from v2pe.model.compat import SUPPORTS_CHUNKED_PREFILL

        return self.chunked_prefill_above is not None and prompt_length > self.chunked_prefill_above and SUPPORTS_CHUNKED_PREFILL

    def _generate(self, inputs: dict, **generate_kwargs) -> torch.Tensor:
        device = self.model.device
        pixel_values = inputs["pixel_values"].to(device=device, dtype=self.model.dtype)
        settings = {"do_sample": False, "eos_token_id": self.stop_token_ids(), "pad_token_id": self._pad_id()}
        length = inputs["input_ids"].shape[1]
        chunked = self.uses_chunked_prefill(length)
        if chunked:
            settings.update(prefill_chunk_size=self.prefill_chunk_size, vision_batch_size=self.vision_batch_size)
        if self.cache_implementation is not None:
            settings["cache_implementation"] = self.cache_implementation
        if self.cache_config is not None:
            settings["cache_config"] = self.cache_config
        settings.update(generate_kwargs)
        with torch.inference_mode(), prefill_progress(self.model, length, enabled=chunked and self.progress):
            return self.model.generate(
                input_ids=inputs["input_ids"].to(device),
                attention_mask=inputs["attention_mask"].to(device),
                delta=inputs["delta"],  # the model computes the prompt's V2PE positions
                pixel_values=pixel_values if len(pixel_values) else None,
                max_new_tokens=inputs["max_new_tokens"],
                **settings,
            )

    def _conversation(self, question: str, history: Sequence[dict] | None, images: Sequence = ()) -> list[dict]:
        """History + the question as the official `chat()` builds them: text as given; with no
        history, one image and no `<image>` in the question, `<image>\\n` + question."""
        previous = list(self.history if history is None else history)
        turn = [{"from": "human", "value": question}]
        return previous + (turn if previous else add_missing_image_placeholder(turn, len(images), training=False))

    def stop_token_ids(self) -> list[int]:
        """`<|im_end|>` (the official chat() stops there) and the checkpoint's generation_config eos ids."""
        tokenizer = self.processor.tokenizer
        ids = []
        im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        if im_end is not None and im_end != tokenizer.unk_token_id:
            ids.append(im_end)
        configured = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for token_id in [configured] if isinstance(configured, int) else (configured or []):
            if token_id not in ids:
                ids.append(token_id)
        if not ids and tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
        if not ids:
            raise ConfigError("the tokenizer has neither <|im_end|> nor an EOS token to stop generation")
        return ids

    def _pad_id(self) -> int:
        return self.processor.pad_token_id


@contextlib.contextmanager
def prefill_progress(model, total: int, enabled: bool = True):
    """A tqdm bar of prompt tokens prefilled (and tokens/s), fed by a hook on the language model."""
    if not enabled:
        yield
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="tok", unit_scale=True, desc="prefill", leave=False)

    def count(module, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        if embeds is not None and bar.n < total:
            bar.update(min(embeds.shape[1], total - bar.n))

    hook = model.model.language_model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        yield
    finally:
        hook.remove()
        bar.close()
