"""lmms-eval plugin: evaluate a V2PE model with lmms-eval's task suite (optional extra).

Registration (lmms-eval >= 0.5 resolves models through the `lmms_eval.models` entry-point
group, whose payload is a `ModelManifest` or a callable returning one):

    [project.entry-points."lmms_eval.models"]
    v2pe = "v2pe.eval.lmms_eval_adapter:lmms_eval_manifest"

then

    lmms-eval --model v2pe --model_args pretrained=PATH,delta=auto,max_tiles=6 --tasks mme

Without the entry point (package not installed with it), importing this module registers the
class under the name "v2pe" in lmms-eval's model registry (`MODEL_REGISTRY_V2`) and its
legacy `register_model` registry, so `simple_evaluate(model="v2pe", ...)` works after
`import v2pe.eval.lmms_eval_adapter`. From Python, an already-built `Chat` can be passed:
`V2PELMMs(chat=Chat(model, processor))`.

`V2PELMMs` is a "simple" lmms model wrapping `v2pe.inference.Chat`:

* `generate_until`: the request's visuals (PIL images or image paths; video is not supported)
  fill the `<image>` placeholders of the context, or are prepended as `<image>` lines when the
  context has none (as lmms-eval's InternVL2 wrapper); greedy unless `do_sample`;
  `max_new_tokens` from the request (default 128); the answer is cut at the first `until`
  string;
* `loglikelihood`: log-probability of the continuation as the assistant's answer to the
  context (prompt tokens from the chat template, continuation tokens appended), in one forward
  pass (the model places the tokens with V2PE at the chat's delta), and whether greedy decoding would produce it;
* delta: `delta=auto` picks the largest delta that fits the trained window, or a number.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

try:
    from lmms_eval.api.instance import Instance  # noqa: F401  (documented request type)
    from lmms_eval.api.model import lmms
    from lmms_eval.api.registry import register_model
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "v2pe.eval.lmms_eval_adapter needs lmms-eval: pip install 'lmms-eval>=0.7' "
        f"(import failed: {error})"
    ) from error

from v2pe.tokens import IMAGE_PLACEHOLDER

MODEL_NAME = "v2pe"
CLASS_PATH = "v2pe.eval.lmms_eval_adapter.V2PELMMs"


def lmms_eval_manifest():
    """Entry-point payload for the `lmms_eval.models` group."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_NAME, simple_class_path=CLASS_PATH)


def _as_bool(value) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "y", "on")


@register_model(MODEL_NAME)
class V2PELMMs(lmms):
    """lmms-eval model over `v2pe.inference.Chat` (see the module docstring)."""

    is_simple = True

    def __init__(
        self,
        pretrained: str | None = None,
        delta: str | float = "auto",
        window: int | None = None,
        max_tiles: int | None = None,
        dtype: str = "auto",
        device: str = "cpu",
        max_new_tokens: int = 128,
        batch_size: int = 1,
        chat=None,
        **kwargs,
    ) -> None:
        super().__init__()
        if chat is None:
            if pretrained is None:
                raise ValueError("V2PELMMs needs pretrained=PATH (a checkpoint folder) or chat=Chat(...)")
            from v2pe.inference import Chat

            chat = Chat.from_pretrained(pretrained, delta=delta, window=window, dtype=dtype, device=device, max_tiles=max_tiles)
        elif max_tiles is not None:
            chat = chat.with_tiles(int(max_tiles))  # a copy: the caller's Chat is left as it is
        self.chat = chat
        self.default_max_new_tokens = int(max_new_tokens)
        self.batch_size_per_gpu = int(batch_size)
        self.unused_model_args = kwargs

    # --- lmms-eval API -------------------------------------------------------------------------

    @property
    def model(self):
        return self.chat.model

    @property
    def tokenizer(self):
        return self.chat.processor.tokenizer

    @property
    def batch_size(self):
        return self.batch_size_per_gpu

    @property
    def device(self):
        return self.chat.model.device

    def generate_until(self, requests) -> list[str]:
        answers = []
        for request in requests:
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            gen_kwargs = dict(gen_kwargs or {})
            images = self._visuals(doc_to_visual, doc_id, task, split)
            prompt = self._prompt(context, len(images))
            until = gen_kwargs.pop("until", None)
            until = [until] if isinstance(until, str) else list(until or [])
            settings = {}
            if _as_bool(gen_kwargs.get("do_sample", False)) and float(gen_kwargs.get("temperature", 0) or 0) > 0:
                settings = {"do_sample": True, "temperature": float(gen_kwargs["temperature"])}
                if gen_kwargs.get("top_p") is not None:
                    settings["top_p"] = float(gen_kwargs["top_p"])
            max_new_tokens = int(gen_kwargs.get("max_new_tokens") or self.default_max_new_tokens)
            reply = self.chat.generate([[{"from": "human", "value": prompt}]], [images], max_new_tokens, **settings)[0]
            text = _cut(reply.text, until)
            answers.append(text)
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
        return answers

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        results = []
        for request in requests:
            context, doc_to_target, doc_to_visual, doc_id, task, split = request.args
            continuation = doc_to_target(self.task_dict[task][split][doc_id]) if callable(doc_to_target) else doc_to_target
            images = self._visuals(doc_to_visual, doc_id, task, split)
            result = self.continuation_logprob(self._prompt(context, len(images)), str(continuation), images)
            results.append(result)
            self.cache_hook.add_partial("loglikelihood", (context, continuation), result)
        return results

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("multi-round generation is not supported by the V2PE lmms-eval adapter")

    # --- helpers -------------------------------------------------------------------------------

    def continuation_logprob(self, prompt: str, continuation: str, images: Sequence) -> tuple[float, bool]:
        """(sum of log-probabilities of the continuation tokens, greedy) after the chat prompt."""
        chat, processor = self.chat, self.chat.processor
        sample = processor.encode([{"from": "human", "value": prompt}], list(images))
        target = processor.tokenizer(continuation, add_special_tokens=False)["input_ids"]
        if not target:
            return 0.0, True
        input_ids = torch.cat([sample["input_ids"], torch.tensor(target, dtype=torch.long)])[None]
        mask = torch.ones_like(input_ids)
        delta = chat.resolve_delta(input_ids, mask, 0)
        device = chat.model.device
        pixel_values = sample["pixel_values"].to(device=device, dtype=chat.model.dtype)
        with torch.inference_mode():
            logits = chat.model(  # the model computes the V2PE positions at this delta
                input_ids=input_ids.to(device), attention_mask=mask.to(device), delta=delta,
                pixel_values=pixel_values if len(pixel_values) else None,
            ).logits[0].float()
        start = sample["input_ids"].shape[0]
        predicted = logits[start - 1:-1]  # logits at position t predict token t + 1
        targets = torch.tensor(target, device=predicted.device)
        logprobs = torch.log_softmax(predicted, dim=-1).gather(1, targets[:, None])[:, 0]
        greedy = bool((predicted.argmax(-1) == targets).all())
        return float(logprobs.sum()), greedy

    def _visuals(self, doc_to_visual, doc_id, task, split) -> list:
        if doc_to_visual is None:
            return []
        visuals = doc_to_visual(self.task_dict[task][split][doc_id]) if callable(doc_to_visual) else doc_to_visual
        flat = []
        for item in visuals if isinstance(visuals, (list, tuple)) else [visuals]:
            flat.extend(item if isinstance(item, (list, tuple)) else [item])
        images = []
        for visual in flat:
            if visual is None:
                continue
            if isinstance(visual, dict) or (isinstance(visual, str) and visual.lower().endswith((".mp4", ".avi", ".mov", ".mkv", ".webm"))):
                raise NotImplementedError(f"the V2PE lmms-eval adapter supports images only, got {type(visual).__name__} {str(visual)[:80]}")
            images.append(visual)
        return images

    @staticmethod
    def _prompt(context: str, num_images: int) -> str:
        if num_images == 0 or IMAGE_PLACEHOLDER in context:
            return context
        return "\n".join([IMAGE_PLACEHOLDER] * num_images) + "\n" + context


def register() -> None:
    """Register "v2pe" in lmms-eval's current model registry (idempotent)."""
    from lmms_eval import models

    registry = getattr(models, "MODEL_REGISTRY_V2", None)
    if registry is not None:
        registry.register_manifest(lmms_eval_manifest(), overwrite=True)


register()


def _cut(text: str, until: Sequence[str]) -> str:
    for stop in until:
        if stop:
            text = text.split(stop)[0]
    return text
