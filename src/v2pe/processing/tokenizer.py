"""A tiny byte-level tokenizer whose ids match the `internvl2-tiny` fixture vocabulary.

Built in memory with the `tokenizers` library (no download) and wrapped in a real
transformers fast tokenizer, so it saves, reloads and renders chat templates like any
checkpoint tokenizer. The id layout (vocabulary size 300):

| ids       | tokens                                                           |
|-----------|------------------------------------------------------------------|
| 0, 1, 2   | `<unk>`, `<s>` (BOS, prepended to every encoding), `</s>` (EOS, PAD) |
| 3 .. 258  | the UTF-8 byte b as id 3 + b                                     |
| 259 .. 264| `<quad>`, `</quad>`, `<ref>`, `</ref>`, `<box>`, `</box>` (InternVL grounding tokens) |
| 265 .. 292| `<unused_0>` .. `<unused_27>` (fillers)                          |
| 293 .. 297| `<|im_start|>`, `<|im_end|>`, `<img>`, `</img>`, `<IMG_CONTEXT>` |
| 298, 299  | `<unused_28>`, `<unused_29>` (fillers)                           |

Every token outside the byte range is a special token: it is matched whole in text and
never split into bytes.
"""

from __future__ import annotations

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

BYTE_OFFSET = 3
VOCAB_SIZE = 300
FIXED_SPECIAL_IDS: dict[str, int] = {
    "<unk>": 0,
    "<s>": 1,
    "</s>": 2,
    "<|im_start|>": 293,
    "<|im_end|>": 294,
    "<img>": 295,
    "</img>": 296,
    "<IMG_CONTEXT>": 297,
}
GROUNDING_TOKENS = ("<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>")


def byte_tokenizer(chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """The fixture's tiny tokenizer: `<s>` + one token per UTF-8 byte (id 3 + byte).

    `chat_template` (a Jinja string, e.g. `templates.INTERNLM2_CHAT_JINJA`) is stored on the
    tokenizer when given; by default it has none.
    """
    special_ids = _special_token_ids()
    vocab = {char: BYTE_OFFSET + byte for byte, char in enumerate(_byte_to_unicode())}
    vocab.update(special_ids)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(tok, special=True, normalized=False) for tok in special_ids])
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    extra = [tok for tok in special_ids if tok not in ("<unk>", "<s>", "</s>")]
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="</s>",
        extra_special_tokens=extra,
        padding_side="right",
        model_max_length=1 << 30,
        chat_template=chat_template,
    )


def _special_token_ids() -> dict[str, int]:
    ids = dict(FIXED_SPECIAL_IDS)
    ids.update({tok: 259 + i for i, tok in enumerate(GROUNDING_TOKENS)})
    fillers = [i for i in range(259 + len(GROUNDING_TOKENS), VOCAB_SIZE) if i not in ids.values()]
    ids.update({f"<unused_{n}>": i for n, i in enumerate(fillers)})
    return dict(sorted(ids.items(), key=lambda item: item[1]))


def _byte_to_unicode() -> list[str]:
    """The printable character standing for each byte 0..255 (GPT-2 byte-level alphabet):
    printable Latin-1 bytes stand for themselves, the rest for code points 256, 257, ..."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1)) | set(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars
