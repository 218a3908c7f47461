"""Teacher-forced scoring: one pass over the prompt with the gold answer appended, the argmax
token at every answer position (no generation), as the official MM-NIAH long evaluation
(`eval_mm_niah_long.py`, reference-spec 5.1) scores.

The sample is encoded as a training sample, `[human: prompt, gpt: answer]`, as the official
script's `preprocess_internlm` does (values stripped, the chat template's answer followed by
its end-of-turn token). The answer tokens are the labelled ones (answer + end-of-turn); the
prompt is everything before them. Positions are the model's V2PE positions of the whole sequence
(`model.v2pe_position_ids`) with the chat's delta, float32, handed to both passes.

Computation, so that a 1M-token prompt costs what generating one token costs: the prompt is
prefilled by `model.generate(max_new_tokens=1)` (chunked prefill and batched vision encoding
above `chat.chunked_prefill_above`, as every runner generates), whose raw logits give the
prediction at the first answer position, and the answer tokens but the last are then fed with
the prompt's KV cache, one forward, for the predictions at the other answer positions. Equal
to the official single forward over the whole sequence (tests compare the two).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from v2pe.errors import DataError


@dataclass
class ForcedReply:
    """What `teacher_forced_reply` gives the run loop, in the shape of `inference.Reply` plus
    `extra` (merged into the result line's scorer arguments)."""

    text: str  # the predicted answer tokens but the last, decoded (the official `response`)
    delta: float
    prompt_tokens: int
    new_tokens: int
    extra: dict = field(default_factory=dict)  # predicted_ids, answer_ids


def teacher_forced_reply(chat, prompt: str, answer: str, images) -> ForcedReply:
    """The argmax prediction at each answer position of `[human: prompt, gpt: answer]`."""
    import torch

    from v2pe.model import compat

    processor, model = chat.processor, chat.model
    encoded = processor.encode([{"from": "human", "value": prompt}, {"from": "gpt", "value": answer}], list(images))
    ids, labels = encoded["input_ids"], encoded["labels"]
    labelled = (labels != -100).nonzero().flatten().tolist()
    if not labelled or labelled != list(range(labelled[0], labelled[0] + len(labelled))):
        raise DataError(f"teacher forcing: the answer {answer!r} gives no contiguous answer tokens")
    start, count = labelled[0], len(labelled)
    ids = ids[: start + count][None]
    mask = torch.ones_like(ids)
    delta = chat.resolve_delta(ids[:, :start], mask[:, :start], count)
    positions = model.v2pe_position_ids(ids, mask, delta=delta)  # the whole sequence's, as the official single pass
    device = model.device
    pixel_values = encoded["pixel_values"].to(device=device, dtype=model.dtype)
    settings = {"do_sample": False, "max_new_tokens": 1, "return_dict_in_generate": True, "output_logits": True,
                "pad_token_id": processor.pad_token_id}
    if chat.uses_chunked_prefill(start):
        settings.update(prefill_chunk_size=chat.prefill_chunk_size, vision_batch_size=chat.vision_batch_size)
    with torch.inference_mode():
        output = model.generate(input_ids=ids[:, :start].to(device), attention_mask=mask[:, :start].to(device),
                                position_ids=positions[:, :start].to(device),
                                pixel_values=pixel_values if len(pixel_values) else None, **settings)
        predicted = [int(output.logits[0][0].argmax())]
        if count > 1:
            cache = compat.output_cache(output)
            if cache is None or int(cache.get_seq_length()) != start:
                raise RuntimeError("teacher forcing: generate returned no KV cache of the prompt "
                                   f"({None if cache is None else cache.get_seq_length()} positions for {start})")
            logits = model(input_ids=ids[:, start:start + count - 1].to(device), attention_mask=mask[:, :start + count - 1].to(device),
                           position_ids=positions[:, start:start + count - 1].to(device), use_cache=True,
                           **compat.cache_kwargs(cache)).logits
            predicted += logits[0].argmax(-1).tolist()
    answer_ids = ids[0, start:].tolist()
    text = processor.tokenizer.decode(predicted[:-1]).strip()
    return ForcedReply(text, delta, start, count, {"predicted_ids": predicted, "answer_ids": answer_ids})
