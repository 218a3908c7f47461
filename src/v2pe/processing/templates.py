"""Conversations to prompt text, split into segments that are (or are not) trained on.

Conversations use the official sample format: `[{"from": "human", "value": ...},
{"from": "gpt", "value": ...}, ...]`, optionally led by `{"from": "system", "value": ...}`
(which replaces the template's system message). A conversation that ends with a human turn is
a prompt (`is_prompt`): the assistant role is appended for generation.

Whitespace follows the official code of each mode (`parse_conversation(strip=None)`):
* a training sample (ends with an answer) has every value stripped, as the official training
  preprocessing (`preprocess_internlm`, reference-spec 4.4) does;
* a prompt keeps every value exactly as given (question and history, leading/trailing spaces
  and newlines included), as the official `chat()` / `batch_chat()` (reference-spec 3.6) pass
  the question and history turns to the template untouched.
`strip=True` / `strip=False` force either rule (e.g. `strip=True` for training data that ends
with a human turn, or to get prompts worded exactly like the stripped training text).

Rendering returns `Segment`s whose texts concatenate to the full prompt; `is_answer` marks an
assistant answer together with its end-of-turn token, which is what the official masking
trains on (reference-spec 4.4).

Two templates:
* `internlm2-chat` (InternVL2 / V2PE, reference-spec 3.7): MPT style,
  `<|im_start|>system\\n{system}<|im_end|>` then `<|im_start|>{role}\\n{text}<|im_end|>` per
  turn, no newline after `<|im_end|>`; an empty message renders as its role only (MPT skips
  falsy messages, so an empty answer has no `<|im_end|>` and nothing to train on).
* `tokenizer`: the tokenizer's own Jinja chat template (native checkpoints). Answers are
  located by rendering growing prefixes of the conversation; the template must render a
  prefix of a conversation as a prefix of its text. The answer segment runs to the end of the
  first end-of-turn token after the answer (`<|im_end|>` when the vocabulary has it, else the
  EOS token); trailing text such as a newline stays unlabelled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from v2pe.errors import ConfigError, DataError

INTERNLM2_SYSTEM_MESSAGE = (
    "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, 是一个有用无害的人工智能助手。"
)
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
TEMPLATES = ("internlm2-chat", "tokenizer")
_ROLES = {"human": "user", "gpt": "assistant"}

#: `internlm2-chat` as a Jinja chat template (renders exactly like `render_internlm2_chat`),
#: for tokenizers that should carry the template themselves.
INTERNLM2_CHAT_JINJA = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] -%}{%- set turns = messages[1:] -%}"
    "{%- else -%}{%- set system = '" + INTERNLM2_SYSTEM_MESSAGE + "' -%}{%- set turns = messages -%}{%- endif -%}"
    "{{ '<|im_start|>system\\n' + system + '<|im_end|>' }}"
    "{%- for message in turns -%}"
    "{%- if message['content'] -%}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' }}"
    "{%- else -%}{{ '<|im_start|>' + message['role'] + '\\n' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    text: str


@dataclass(frozen=True)
class Segment:
    text: str
    is_answer: bool


def is_prompt(conversation: Sequence[Mapping[str, str]]) -> bool:
    """True when the conversation ends with a human turn: a question to answer (inference),
    not a training sample (which ends with an answer). Malformed entries count as not a prompt."""
    entries = list(conversation)
    return bool(entries) and isinstance(entries[-1], Mapping) and entries[-1].get("from") == "human"


def parse_conversation(conversation: Sequence[Mapping[str, str]], sample_id: str | None = None, strip: bool | None = None) -> tuple[str | None, list[Turn]]:
    """(system message or None, turns) from the official sample format; DataError if malformed.

    `strip`: True strips every value (official training preprocessing), False keeps values as
    given (official `chat()`); None (default) picks by mode: as given for a prompt
    (`is_prompt`), stripped for a training sample."""
    where = f" (sample {sample_id})" if sample_id is not None else ""
    entries = list(conversation)
    if strip is None:
        strip = not is_prompt(entries)
    clean = str.strip if strip else str
    system = None
    if entries and _field(entries[0], "from", 0, where) == "system":
        system = clean(_field(entries[0], "value", 0, where))
        entries = entries[1:]
    turns = []
    for index, entry in enumerate(entries):
        speaker = _field(entry, "from", index, where)
        expected = "human" if index % 2 == 0 else "gpt"
        if speaker != expected:
            raise DataError(f"conversation turn {index}{where}: expected from={expected!r} (turns alternate human/gpt), got {speaker!r}")
        turns.append(Turn(_ROLES[speaker], clean(_field(entry, "value", index, where))))
    if not turns:
        raise DataError(f"conversation{where} has no human turn")
    return system, turns


def render(template: str, turns: Sequence[Turn], system: str | None = None, tokenizer=None) -> list[Segment]:
    """Segments of the prompt for `turns` with the named template (see module doc)."""
    if template == "internlm2-chat":
        return render_internlm2_chat(turns, system)
    if template == "tokenizer":
        return render_tokenizer_template(tokenizer, turns, system)
    raise ConfigError(f"unknown chat template {template!r}; choose one of {TEMPLATES}")


def render_internlm2_chat(turns: Sequence[Turn], system: str | None = None) -> list[Segment]:
    """The official `internlm2-chat` MPT rendering."""
    system_message = INTERNLM2_SYSTEM_MESSAGE if system is None else system
    segments = [Segment(f"{IM_START}system\n{system_message}{IM_END}", False)]
    for turn in _with_generation_turn(turns):
        role = f"{IM_START}{turn.role}\n"
        if not turn.text:
            segments.append(Segment(role, False))
        elif turn.role == "assistant":
            segments += [Segment(role, False), Segment(turn.text + IM_END, True)]
        else:
            segments.append(Segment(role + turn.text + IM_END, False))
    return _merge(segments)


def render_tokenizer_template(tokenizer, turns: Sequence[Turn], system: str | None = None) -> list[Segment]:
    """Segments from `tokenizer.apply_chat_template`, answers found by prefix rendering."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ConfigError("template='tokenizer' needs a tokenizer with a chat_template; use template='internlm2-chat' or set tokenizer.chat_template")
    messages = ([{"role": "system", "content": system}] if system is not None else []) + [{"role": t.role, "content": t.text} for t in turns]
    offset = len(messages) - len(turns)
    full = _apply(tokenizer, messages, add_generation_prompt=turns[-1].role == "user")
    end_token = _end_of_turn_token(tokenizer)
    segments, cursor = [], 0
    for index, turn in enumerate(turns):
        if turn.role != "assistant":
            continue
        before = _apply(tokenizer, messages[: offset + index], add_generation_prompt=True)
        through = _apply(tokenizer, messages[: offset + index + 1], add_generation_prompt=False)
        if not (through.startswith(before) and full.startswith(through) and len(before) >= cursor):
            raise ConfigError("the tokenizer's chat template does not render conversation prefixes as text prefixes; answers cannot be located for labels (use template='internlm2-chat')")
        answer_end = _answer_end(through, len(before), turn.text, end_token)
        segments += [Segment(full[cursor : len(before)], False), Segment(full[len(before) : answer_end], True)]
        cursor = answer_end
    segments.append(Segment(full[cursor:], False))
    return _merge(segments)


def _with_generation_turn(turns: Sequence[Turn]) -> list[Turn]:
    """Append the empty assistant turn that asks for a reply when the last turn is the user's."""
    return list(turns) + [Turn("assistant", "")] if turns[-1].role == "user" else list(turns)


def _apply(tokenizer, messages: list[dict], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _end_of_turn_token(tokenizer) -> str | None:
    if tokenizer.convert_tokens_to_ids(IM_END) not in (None, tokenizer.unk_token_id):
        return IM_END
    return tokenizer.eos_token


def _answer_end(rendered: str, start: int, answer: str, end_token: str | None) -> int:
    """End of the answer span: through the first end-of-turn token after the answer text."""
    search_from = start + len(answer) if rendered.startswith(answer, start) else start
    found = rendered.find(end_token, search_from) if end_token else -1
    if found >= 0:
        return found + len(end_token)
    return len(rendered.rstrip())


def _merge(segments: list[Segment]) -> list[Segment]:
    """Drop empty segments and join neighbours of the same kind."""
    merged: list[Segment] = []
    for segment in segments:
        if not segment.text:
            continue
        if merged and merged[-1].is_answer == segment.is_answer:
            merged[-1] = Segment(merged[-1].text + segment.text, segment.is_answer)
        else:
            merged.append(segment)
    return merged


def _field(entry: Mapping[str, str], key: str, index: int, where: str) -> str:
    if not isinstance(entry, Mapping) or not isinstance(entry.get(key), str):
        raise DataError(f"conversation turn {index}{where}: field {key!r} must be a string, got {entry!r}"[:300])
    return entry[key]
