"""Chat with a V2PE model: multi-image prompts, automatic delta, streaming, batches, history.

    chat = Chat(model, processor)                       # delta="auto" by default
    answer = chat.ask("What differs between the images?", images=["a.png", "b.png"])
    for piece in chat.stream("And the third?", images=[...], history=chat.history): print(piece, end="")

Automatic delta picks the largest delta in {1, 1/2, ..., 1/256} that keeps the prompt plus
`max_new_tokens` inside the model's trained window (`config.v2pe.trained_window`, else the
language model's `max_position_embeddings`, or `window=`). Every check (images readable,
placeholders matching, window) runs before any model compute.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from v2pe.errors import ConfigError
from v2pe.positions import choose_delta
from v2pe.processing.processor import collate

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
    delta: Delta = "auto"
    window: int | None = None
    max_new_tokens: int = 512
    history: list[dict] = field(default_factory=list)

    def ask(self, question: str, images: Sequence = (), history: Sequence[dict] | None = None, **generate_kwargs) -> str:
        """One answer; the exchange is appended to `self.history` (pass history=[] to start fresh)."""
        conversation = self._conversation(question, history)
        reply = self.generate([conversation], [list(images)], **generate_kwargs)[0]
        self.history = conversation + [{"from": "gpt", "value": reply.text}]
        return reply.text

    def stream(self, question: str, images: Sequence = (), history: Sequence[dict] | None = None, **generate_kwargs) -> Iterator[str]:
        """Yield the answer as it is generated."""
        from transformers import TextIteratorStreamer

        conversation = self._conversation(question, history)
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []
        inputs = self.prepare([conversation], [list(images)], generate_kwargs.pop("max_new_tokens", self.max_new_tokens))

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
        stop = self._stop_token_id()
        return [
            Reply(text.strip(), inputs["delta"], prompt, int(((row != stop) & (row != self._pad_id())).sum()))
            for text, prompt, row in zip(texts, lengths, new)
        ]

    def prepare(self, conversations: Sequence[Sequence[dict]], images: Sequence[Sequence], max_new_tokens: int) -> dict:
        """Tokenize, tile, left-pad and choose delta: everything that can fail, before compute."""
        samples = [self.processor.encode(c, i) for c, i in zip(conversations, images, strict=True)]
        batch = _left_pad(collate(samples, pad_token_id=self._pad_id()))
        delta = self.resolve_delta(batch["input_ids"], batch["attention_mask"], max_new_tokens)
        batch["position_ids"] = self.processor.position_ids(batch["input_ids"], batch["attention_mask"], delta)
        return {**batch, "delta": delta, "max_new_tokens": max_new_tokens}

    def resolve_delta(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int) -> float:
        if self.delta != "auto":
            return float(self.delta)
        return choose_delta(
            input_ids,
            attention_mask=attention_mask,
            image_start_id=self.processor.image_start_id,
            image_end_id=self.processor.image_end_id,
            window=self.trained_window(),
            max_new_tokens=max_new_tokens,
        )

    def trained_window(self) -> int:
        if self.window is not None:
            return self.window
        settings = getattr(self.model, "v2pe", None)
        if settings is not None and settings.trained_window:
            return settings.trained_window
        return self.model.config.text_config.max_position_embeddings

    def _generate(self, inputs: dict, **generate_kwargs) -> torch.Tensor:
        device = self.model.device
        pixel_values = inputs["pixel_values"].to(device=device, dtype=self.model.dtype)
        settings = {"do_sample": False, "eos_token_id": self._stop_token_id(), "pad_token_id": self._pad_id(), **generate_kwargs}
        with torch.inference_mode():
            return self.model.generate(
                input_ids=inputs["input_ids"].to(device),
                attention_mask=inputs["attention_mask"].to(device),
                position_ids=inputs["position_ids"].to(device),
                pixel_values=pixel_values if len(pixel_values) else None,
                max_new_tokens=inputs["max_new_tokens"],
                **settings,
            )

    def _conversation(self, question: str, history: Sequence[dict] | None) -> list[dict]:
        previous = self.history if history is None else list(history)
        return list(previous) + [{"from": "human", "value": question}]

    def _stop_token_id(self) -> int:
        tokenizer = self.processor.tokenizer
        token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        if token_id is None or token_id == tokenizer.unk_token_id:
            token_id = tokenizer.eos_token_id
        if token_id is None:
            raise ConfigError("the tokenizer has neither <|im_end|> nor an EOS token to stop generation")
        return token_id

    def _pad_id(self) -> int:
        return self.processor.pad_token_id


def _left_pad(batch: dict) -> dict:
    """Move right padding to the left: generation appends after the last column."""
    mask = batch["attention_mask"]
    shifts = (mask.shape[1] - mask.sum(1)).tolist()
    out = dict(batch)
    for key in ("input_ids", "attention_mask", "labels"):
        if key in batch:
            out[key] = torch.stack([row.roll(shift) for row, shift in zip(batch[key], shifts)])
    return out
