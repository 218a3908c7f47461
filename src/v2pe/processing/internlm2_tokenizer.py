"""The official InternVL2 / V2PE tokenizer as a native fast tokenizer, without remote code.

Official checkpoints ship a SentencePiece `tokenizer.model` and name the remote-code class
`InternLM2Tokenizer` (a slow, sentencepiece-backed tokenizer). `load_tokenizer` turns such a folder
into a `tokenizers`-backed transformers tokenizer that encodes and decodes exactly like that class,
without importing anything from the folder and without the `sentencepiece` package:

* `tokenizer.model` is read by a small protobuf reader (`read_sentencepiece_model`);
* the backend is a BPE model whose merges come from the piece scores, with byte fallback, the
  SentencePiece whitespace handling in the normalizer (a dummy prefix per stretch between added
  tokens, when the model has one) and the added tokens matched on the raw text;
* `InternLM2SentencePieceTokenizer` reproduces the official decode rules exactly (segments cut by
  the vision tokens, the space the slow class writes before a special token, English clean-up,
  SentencePiece's byte and prefix-space handling), and the `tokenizer.json` decoder pipeline is
  built to match them as closely as the `tokenizers` decoders allow, so a plain
  `AutoTokenizer.from_pretrained` of a saved folder decodes the same in all but rare byte cases.

`save_converted_tokenizer` (or the subclass's `save_pretrained`) writes a folder that plain
transformers loads with no `auto_map`; `load_tokenizer` on that folder returns the subclass again.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, processors
from transformers import PreTrainedTokenizerFast

from v2pe.errors import CheckpointError
from v2pe.files import read_json_object, write_json_file

SPACE = "\u2581"  # SentencePiece's whitespace symbol
MARKER_KEY = "v2pe_internlm2_sentencepiece"  # tokenizer_config.json key of a folder converted here
REMOTE_CLASSES = ("InternLM2Tokenizer", "InternLM2TokenizerFast")
MODEL_INPUT_NAMES = ["input_ids", "attention_mask"]  # the official class returns no token_type_ids

# SentencePiece piece types (sentencepiece_model.proto, ModelProto.SentencePiece.Type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
BPE_MODEL = 2  # TrainerSpec.ModelType.BPE

# PreTrainedTokenizerBase.clean_up_tokenization, which the official convert_tokens_to_string always applies
CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))

# Private-use characters (plane 16) that stand for special tokens inside the tokenizer.json decoder
# pipeline, so its regexes can see token boundaries after the pieces are fused into one string.
_MARK_BASE = 0x10F000
_INSERT = "\U0010fff0"  # the space the slow class writes before the text run preceding a special
_FINAL = "\U0010fff1"  # a final segment whose only piece was a stripped dummy prefix
_BYTE_SPACE = "\U0010fff2"  # a space from the <0x20> byte piece, which SentencePiece never strips


def _clean_up(text: str) -> str:
    for old, new in CLEAN_UP:
        text = text.replace(old, new)
    return text


# ---------------------------------------------------------------------------------------------
# tokenizer.model: a protobuf ModelProto, read field by field
# ---------------------------------------------------------------------------------------------


@dataclass
class SentencePieceModel:
    """The parts of a SentencePiece ModelProto the conversion needs (defaults are the proto's)."""

    pieces: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    types: list[int] = field(default_factory=list)
    model_type: int = 1  # UNIGRAM
    byte_fallback: bool = False
    treat_whitespace_as_suffix: bool = False
    unk_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    pad_id: int = -1
    unk_piece: str = "<unk>"
    normalizer_name: str = ""
    precompiled_charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True
    denormalizer_charsmap: bytes = b""


class _Corrupt(Exception):
    pass


_FLOAT = struct.Struct("<f")


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Corrupt("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes, start: int, end: int):
    """(field number, wire type, value) of each field of the message buf[start:end]: an int for a
    varint, bytes for a fixed32/fixed64, a (start, end) span for a length-delimited field."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Corrupt("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 2:
            size, pos = _varint(buf, pos, end)
            if pos + size > end:
                raise _Corrupt("length-delimited field runs past its message")
            value, pos = (pos, pos + size), pos + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > end:
                raise _Corrupt("fixed-size field runs past its message")
            value, pos = buf[pos : pos + size], pos + size
        else:
            raise _Corrupt(f"unsupported wire type {wire}")
        yield number, wire, value


def _expect(wire: int, expected: int, what: str) -> None:
    if wire != expected:
        raise _Corrupt(f"{what} has wire type {wire}, expected {expected}")


def _int32(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _text(buf: bytes, span: tuple[int, int], what: str) -> str:
    try:
        return buf[span[0] : span[1]].decode("utf-8")
    except UnicodeDecodeError as err:
        raise _Corrupt(f"{what} is not UTF-8") from err


def _parse_piece(buf: bytes, start: int, end: int) -> tuple[str, float, int]:
    """One SentencePiece message {1 piece, 2 score, 3 type}, with a fast path for the usual layout
    (a 1-byte key and length) since a real model has ~92k of them."""
    piece, score, kind = None, 0.0, NORMAL
    pos = start
    while pos < end:
        key = buf[pos]
        if key == 0x0A and pos + 1 < end and buf[pos + 1] < 0x80:  # field 1, short string
            size = buf[pos + 1]
            pos += 2
            if pos + size > end:
                raise _Corrupt("a piece string runs past its message")
            piece = _text(buf, (pos, pos + size), "a piece")
            pos += size
        elif key == 0x15 and pos + 5 <= end:  # field 2, fixed32 float
            score = _FLOAT.unpack_from(buf, pos + 1)[0]
            pos += 5
        elif key == 0x18 and pos + 1 < end and buf[pos + 1] < 0x80:  # field 3, small varint
            kind = buf[pos + 1]
            pos += 2
        else:  # anything else: the general reader, for the rest of this message
            for n, w, v in _fields(buf, pos, end):
                if n == 1:
                    _expect(w, 2, "SentencePiece.piece")
                    piece = _text(buf, v, "a piece")
                elif n == 2:
                    _expect(w, 5, "SentencePiece.score")
                    score = _FLOAT.unpack(v)[0]
                elif n == 3:
                    _expect(w, 0, "SentencePiece.type")
                    kind = v
            break
    if piece is None:
        raise _Corrupt("a piece has no string")
    return piece, score, kind


def _parse_model(buf: bytes) -> SentencePieceModel:
    model = SentencePieceModel()
    for number, wire, value in _fields(buf, 0, len(buf)):
        if number == 1:  # repeated SentencePiece pieces
            _expect(wire, 2, "ModelProto.pieces")
            piece, score, kind = _parse_piece(buf, *value)
            if kind not in (NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE):
                raise _Corrupt(f"piece {len(model.pieces)} has unknown type {kind}")
            model.pieces.append(piece)
            model.scores.append(score)
            model.types.append(kind)
        elif number == 2:  # TrainerSpec
            _expect(wire, 2, "ModelProto.trainer_spec")
            for n, w, v in _fields(buf, *value):
                if n in (3, 24, 35, 40, 41, 42, 43):
                    _expect(w, 0, f"TrainerSpec field {n}")
                    if n == 3:
                        model.model_type = v
                    elif n == 24:
                        model.treat_whitespace_as_suffix = bool(v)
                    elif n == 35:
                        model.byte_fallback = bool(v)
                    else:
                        setattr(model, {40: "unk_id", 41: "bos_id", 42: "eos_id", 43: "pad_id"}[n], _int32(v))
                elif n == 45:
                    _expect(w, 2, "TrainerSpec.unk_piece")
                    model.unk_piece = _text(buf, v, "unk_piece")
        elif number in (3, 5):  # NormalizerSpec / denormalizer NormalizerSpec
            _expect(wire, 2, "ModelProto.normalizer_spec")
            for n, w, v in _fields(buf, *value):
                if n in (1, 2):
                    _expect(w, 2, f"NormalizerSpec field {n}")
                    if number == 5:
                        if n == 2:
                            model.denormalizer_charsmap = buf[v[0] : v[1]]
                    elif n == 1:
                        model.normalizer_name = _text(buf, v, "normalizer name")
                    else:
                        model.precompiled_charsmap = buf[v[0] : v[1]]
                elif n in (3, 4, 5) and number == 3:
                    _expect(w, 0, f"NormalizerSpec field {n}")
                    setattr(model, {3: "add_dummy_prefix", 4: "remove_extra_whitespaces", 5: "escape_whitespaces"}[n], bool(v))
    return model


def read_sentencepiece_model(path: str | PathLike) -> SentencePieceModel:
    """Parse a SentencePiece `tokenizer.model` (protobuf ModelProto) without sentencepiece/protobuf.

    Field numbers follow sentencepiece_model.proto: ModelProto {1 pieces, 2 trainer_spec,
    3 normalizer_spec, 5 denormalizer_spec}; SentencePiece {1 piece, 2 score, 3 type};
    TrainerSpec {3 model_type, 24 treat_whitespace_as_suffix, 35 byte_fallback, 40-43 unk/bos/eos/pad
    id, 45 unk_piece}; NormalizerSpec {1 name, 2 precompiled_charsmap, 3 add_dummy_prefix,
    4 remove_extra_whitespaces, 5 escape_whitespaces}.
    """
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read the SentencePiece model ({err})") from err
    try:
        model = _parse_model(buf)
    except (_Corrupt, struct.error) as err:
        raise CheckpointError(f"{path}: not a valid SentencePiece model ({err})") from err
    if not model.pieces:
        raise CheckpointError(f"{path}: not a valid SentencePiece model (it has no pieces)")
    if len(set(model.pieces)) != len(model.pieces):
        raise CheckpointError(f"{path}: not a valid SentencePiece model (a piece string occurs twice)")
    return model


def _check_supported(model: SentencePieceModel, path: Path) -> None:
    """Only the settings whose behaviour the conversion reproduces exactly are accepted."""
    problems = []
    if model.model_type != BPE_MODEL:
        problems.append(f"model_type {model.model_type} (only BPE, 2, is supported)")
    if model.precompiled_charsmap:
        problems.append(f"normalization rule {model.normalizer_name or 'precompiled'!r} (only identity is supported)")
    if model.denormalizer_charsmap:
        problems.append("a denormalizer")
    if model.treat_whitespace_as_suffix:
        problems.append("treat_whitespace_as_suffix")
    if not model.escape_whitespaces:
        problems.append("escape_whitespaces=false")
    if problems:
        raise CheckpointError(f"{path}: unsupported SentencePiece settings: {', '.join(problems)}")


# ---------------------------------------------------------------------------------------------
# the backend tokenizers.Tokenizer
# ---------------------------------------------------------------------------------------------


@dataclass
class _Added:
    content: str
    special: bool
    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False


def _merges(model: SentencePieceModel, names: list[str]) -> list[tuple[str, str]]:
    """BPE merges equivalent to SentencePiece's: at each step it merges the adjacent pair whose
    concatenation is the highest-scoring normal piece, so every split of a normal piece into two
    normal pieces is a merge, ranked by the piece's score. Linear in the total piece length (plus
    one sort of the pieces)."""
    scores = model.scores
    order = sorted((i for i, kind in enumerate(model.types) if kind == NORMAL), key=lambda i: (-scores[i], i))
    is_normal = {names[i] for i in order}.__contains__
    merges: list[tuple[str, str]] = []
    append = merges.append
    for piece_id in order:
        piece = names[piece_id]
        for cut in range(1, len(piece)):
            left = piece[:cut]
            if is_normal(left):
                right = piece[cut:]
                if is_normal(right):
                    append((left, right))
    return merges


def _post_processor(bos: str | None, bos_id: int | None, eos: str | None, eos_id: int | None, add_bos: bool, add_eos: bool):
    """The official build_inputs_with_special_tokens: [BOS] A [B] [EOS] (one BOS even for pairs)."""
    add_bos = add_bos and bos is not None and bos_id is not None
    add_eos = add_eos and eos is not None and eos_id is not None
    head = f"{bos}:0 " if add_bos else ""
    tail = f" {eos}:1" if add_eos else ""
    special = ([(bos, bos_id)] if add_bos else []) + ([(eos, eos_id)] if add_eos and eos != bos else [])
    return processors.TemplateProcessing(
        single=f"{head}$A:0{(' ' + eos + ':0') if add_eos else ''}",
        pair=f"{head}$A:0 $B:1{tail}",
        special_tokens=special,
    )


def _decoder(model: SentencePieceModel, sp_size: int, specials: dict[int, str], invisible: list[str]):
    """A decoder pipeline for tokenizer.json that follows the official decode rules.

    Special tokens become private-use marker characters before the pieces are fused, so regex
    replacements on the fused text can apply the per-segment and per-run rules; the markers turn
    back into the tokens at the end. With skip_special_tokens (the backend removes every special
    before the decoder runs) it reduces to SentencePiece decoding plus the English clean-up.
    """
    marks = {i: chr(_MARK_BASE + k) for k, i in enumerate(sorted(specials))}
    vision = "".join(marks[i] for i in specials if i >= sp_size)
    in_vocab = "".join(marks[i] for i in specials if i < sp_size)
    strip_prefix = model.add_dummy_prefix or model.remove_extra_whitespaces
    steps = [decoders.Replace(Regex(r"\A" + re.escape(specials[i]) + r"\z"), marks[i]) for i in sorted(specials)]
    if invisible:  # control pieces that are not special tokens decode to nothing
        steps.append(decoders.Replace(Regex(r"\A(?:" + "|".join(map(re.escape, invisible)) + r")\z"), ""))
    if strip_prefix and model.byte_fallback:
        steps.append(decoders.Replace(Regex(r"\A<0x20>\z"), _BYTE_SPACE))
    steps.append(decoders.Replace(SPACE, " "))
    if model.byte_fallback:
        steps.append(decoders.ByteFallback())
    steps.append(decoders.Fuse())
    any_mark = vision + in_vocab + _FINAL
    if strip_prefix and vision:
        # a final segment that is one stripped "▁" still counts as a segment when joining
        steps.append(decoders.Replace(Regex(f"(?<=[{vision}]) \\z"), _FINAL))
    if in_vocab:
        # one space before the run preceding an in-vocab special, unless that special follows another
        start = f"(?:\\A|(?<=[{vision}]))" if vision else r"\A"
        steps.append(decoders.Replace(Regex(f"{start}(?=[^{any_mark}]*[{in_vocab}])|(?<=[{in_vocab}])(?=[^{any_mark}]+[{in_vocab}])"), _INSERT))
    if strip_prefix:
        # SentencePiece drops the leading space of each separately decoded run
        run_start = f"(?:\\A|(?<=[{vision + in_vocab}]))" if vision + in_vocab else r"\A"
        steps.append(decoders.Replace(Regex(run_start + r"\x20"), ""))
        if in_vocab:
            steps.append(decoders.Replace(Regex(run_start + _INSERT + r"\x20"), _INSERT))
        if model.byte_fallback:
            steps.append(decoders.Replace(_BYTE_SPACE, " "))
    if in_vocab:
        steps.append(decoders.Replace(_INSERT, " "))
    steps += [decoders.Replace(old, new) for old, new in CLEAN_UP]
    if vision:
        # segments (non-empty ones, and the last one if it has pieces) and vision tokens joined by one space
        steps.append(decoders.Replace(Regex(f"(?<=[{vision}])(?=[^{vision}])"), " "))
        steps.append(decoders.Replace(Regex(f"(?=[{vision}])"), " "))
        steps.append(decoders.Replace(Regex(f"\\A (?=[{vision}])"), ""))
        if strip_prefix:
            steps.append(decoders.Replace(_FINAL, ""))
    steps += [decoders.Replace(marks[i], specials[i]) for i in sorted(specials)]
    return decoders.Sequence(steps)


def build_backend(model: SentencePieceModel, added: dict[int, _Added], bos: str | None, eos: str | None, add_bos: bool, add_eos: bool, source: Path) -> Tokenizer:
    """The tokenizers.Tokenizer for a SentencePiece BPE model and the checkpoint's added tokens.

    `added` maps ids to added tokens: ids inside the SentencePiece vocab rename that piece (the chat
    tokens replace the last spare pieces); the others must follow it without gaps.
    """
    sp_size = len(model.pieces)
    names = list(model.pieces)
    piece_ids = {piece: i for i, piece in enumerate(model.pieces)}
    for token_id, token in sorted(added.items()):
        other = piece_ids.get(token.content)
        if other is not None and other != token_id:
            raise CheckpointError(f"{source}: added token {token.content!r} has id {token_id}, but it is also SentencePiece piece {other}")
        if token_id < sp_size:
            names[token_id] = token.content
    beyond = sorted(i for i in added if i >= sp_size)
    if beyond != list(range(sp_size, sp_size + len(beyond))):
        raise CheckpointError(f"{source}: added token ids {beyond} do not follow the {sp_size} SentencePiece pieces without gaps")
    if len(set(names)) != len(names):
        raise CheckpointError(f"{source}: renaming pieces by the added tokens makes two ids share a token")

    vocab = {name: i for i, name in enumerate(names)}
    unk = names[model.unk_id] if 0 <= model.unk_id < sp_size else None
    backend = Tokenizer(models.BPE(vocab=vocab, merges=_merges(model, names), unk_token=unk, fuse_unk=True, byte_fallback=model.byte_fallback, dropout=None))

    steps = []
    if model.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex(r"\A +| +\z"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    steps.append(normalizers.Replace(" ", SPACE))
    if model.add_dummy_prefix:
        # applied to each stretch between added tokens (they are matched on the raw text), as the
        # official class passes each stretch to SentencePiece on its own; empty stretches stay empty
        steps.append(normalizers.Prepend(SPACE))
    backend.normalizer = normalizers.Sequence(steps)

    # Added tokens, in id order so new ids follow the vocab; user-defined pieces are atomic in
    # SentencePiece, so they are added (not special) unless the checkpoint renamed them.
    to_add = {i: _Added(model.pieces[i], special=False) for i, kind in enumerate(model.types) if kind == USER_DEFINED and i not in added}
    to_add.update(added)
    for token_id in sorted(to_add):
        token = to_add[token_id]
        added_token = AddedToken(token.content, single_word=token.single_word, lstrip=token.lstrip, rstrip=token.rstrip, normalized=False, special=token.special)
        if token.special:
            backend.add_special_tokens([added_token])
        else:
            backend.add_tokens([added_token])
        if backend.token_to_id(token.content) != token_id:
            raise CheckpointError(f"{source}: added token {token.content!r} should have id {token_id}, got {backend.token_to_id(token.content)}")

    specials = {i: t.content for i, t in added.items() if t.special}
    invisible = [names[i] for i, kind in enumerate(model.types) if kind == CONTROL and i not in specials]
    backend.decoder = _decoder(model, sp_size, specials, invisible)
    bos_id = backend.token_to_id(bos) if bos else None
    eos_id = backend.token_to_id(eos) if eos else None
    backend.post_processor = _post_processor(bos, bos_id, eos, eos_id, add_bos, add_eos)
    return backend


# ---------------------------------------------------------------------------------------------
# the transformers tokenizer
# ---------------------------------------------------------------------------------------------


@dataclass
class _Tables:
    """What the exact decoder needs, computed once per tokenizer from the backend and MARKER_KEY."""

    size: int
    pieces: list[str]  # SentencePiece piece string of each id below the piece count
    byte_values: dict[int, int]
    control: set[int]  # control pieces that are not special tokens: decoded as nothing
    special_ids: set[int]
    vision: set[int]  # added tokens past the piece count: they cut the ids into segments
    content: dict[int, str]
    aliases: dict[str, int]  # raw SentencePiece names of the pieces the config renamed
    strip: bool  # SentencePiece drops the first "▁" of each decoded run


class InternLM2SentencePieceTokenizer(PreTrainedTokenizerFast):
    """A fast tokenizer that decodes exactly like the official slow `InternLM2Tokenizer`.

    Encoding is all in the backend. Decoding overrides `_decode` with the slow class's algorithm:
    tokens whose ids lie past the SentencePiece vocab (the vision tokens) cut the ids into segments
    joined by one space; inside a segment each special is written verbatim, with one space before
    the text run preceding it unless it follows another special; each run is decoded like
    SentencePiece (bytes to UTF-8 with one U+FFFD per bad byte, the first "▁" of a run dropped when
    the model adds a dummy prefix); each segment gets the English clean-up. The SentencePiece facts
    it needs are kept under `MARKER_KEY` in the init kwargs (and so in tokenizer_config.json).

    No `__init__` of its own, so `from_pretrained` loads tokenizer.json as is.
    """

    model_input_names = MODEL_INPUT_NAMES
    padding_side = "right"

    # -- SentencePiece facts ---------------------------------------------------------------
    @property
    def sentencepiece_info(self) -> dict:
        info = self.init_kwargs.get(MARKER_KEY)
        if not isinstance(info, dict) or "sp_piece_count" not in info:
            raise ValueError(f"{type(self).__name__} needs the {MARKER_KEY!r} settings; load it with v2pe.processing.load_tokenizer")
        return info

    def _tables(self) -> _Tables:
        tables = self.__dict__.get("_v2pe_tables")
        if tables is None:
            info = self.sentencepiece_info
            sp_size = int(info["sp_piece_count"])
            id_to_piece = {i: t for t, i in self._tokenizer.get_vocab(with_added_tokens=False).items()}
            pieces = [id_to_piece.get(i, "") for i in range(sp_size)]
            byte_values = {}
            if info.get("byte_fallback", True):
                for i, piece in enumerate(pieces):
                    match = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", piece)
                    if match:
                        byte_values[i] = int(match.group(1), 16)
            special_ids = {int(i) for i in self.all_special_ids}
            content = {i: self._tokenizer.id_to_token(i) for i in special_ids}
            vision = {i for i in special_ids if i >= sp_size}
            for token_id, token in self.added_tokens_decoder.items():
                if not token.special and token_id >= sp_size:  # the slow class splits at these too
                    vision.add(token_id)
                    content[token_id] = token.content
            tables = _Tables(
                size=len(self),
                pieces=pieces,
                byte_values=byte_values,
                control={int(i) for i in info.get("control_ids") or []},
                special_ids=special_ids,
                vision=vision,
                content=content,
                aliases={str(piece): int(i) for i, piece in (info.get("renamed_pieces") or {}).items()},
                strip=bool(info.get("add_dummy_prefix")) or bool(info.get("remove_extra_whitespaces")),
            )
            self.__dict__["_v2pe_tables"] = tables
        return tables

    # -- ids and tokens --------------------------------------------------------------------
    def _convert_token_to_id_with_added_voc(self, token: str) -> int:
        index = self._tokenizer.token_to_id(token)
        if index is None:
            # the raw SentencePiece names of renamed pieces still resolve, as with piece_to_id
            index = self._tables().aliases.get(token)
        return self.unk_token_id if index is None else index

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, str):
            return self._convert_token_to_id_with_added_voc(tokens)
        return [self._convert_token_to_id_with_added_voc(token) for token in tokens]

    # -- bos / eos -------------------------------------------------------------------------
    def update_post_processor(self):
        """The official layout: BOS once in front (also for pairs), EOS at the end when enabled."""
        self._tokenizer.post_processor = _post_processor(self.bos_token, self.bos_token_id, self.eos_token, self.eos_token_id, self.add_bos_token, self.add_eos_token)

    def _post_init(self):
        super()._post_init()
        self._restore_bos_eos_flags()

    def _restore_bos_eos_flags(self) -> None:
        """save_pretrained drops add_bos_token/add_eos_token from the config (tokenizer.json keeps the
        post-processor); the flags are kept under MARKER_KEY and restored here."""
        info = self.init_kwargs.get(MARKER_KEY) or {}
        if "add_bos_token" in info and "add_bos_token" not in self.init_kwargs:
            object.__setattr__(self, "_add_bos_token", bool(info["add_bos_token"]))
            object.__setattr__(self, "_add_eos_token", bool(info.get("add_eos_token", False)))
            self.update_post_processor()

    def _add_tokens(self, new_tokens, special_tokens=False) -> int:
        self.__dict__.pop("_v2pe_tables", None)  # the decode tables list the added tokens
        return super()._add_tokens(new_tokens, special_tokens=special_tokens)

    # -- decoding --------------------------------------------------------------------------
    def _sp_decode(self, ids: list[int]) -> str:
        """SentencePieceProcessor.decode of normal, user-defined and byte pieces (0.2.0 rules)."""
        tables = self._tables()
        pieces, byte_values, control, strip = tables.pieces, tables.byte_values, tables.control, tables.strip
        out: list[str] = []
        pending = bytearray()
        is_bos_ws, bos_ws_seen = True, False
        for token_id in ids:
            if token_id in byte_values:
                pending.append(byte_values[token_id])
                continue
            if pending:
                out.append(_bytes_to_text(pending))
                pending.clear()
            if bos_ws_seen or out:
                is_bos_ws = False
            if token_id in control:  # decoded as nothing
                bos_ws_seen = False
                continue
            piece = pieces[token_id] if 0 <= token_id < len(pieces) else self._tokenizer.id_to_token(token_id) or ""
            bos_ws_seen = False
            if is_bos_ws and strip and piece.startswith(SPACE):
                piece, bos_ws_seen = piece[1:], True
            decoded = piece.replace(SPACE, " ")
            if decoded:
                out.append(decoded)
        if pending:
            out.append(_bytes_to_text(pending))
        return "".join(out)

    def _segment_to_string(self, ids: list[int]) -> str:
        """The official convert_tokens_to_string for one segment (no vision tokens in it)."""
        tables = self._tables()
        special_ids, content = tables.special_ids, tables.content
        out, run, prev_special = "", [], False
        for token_id in ids:
            if token_id in special_ids:
                if not prev_special:
                    out += " "
                out += self._sp_decode(run) + content[token_id]
                prev_special, run = True, []
            else:
                run.append(token_id)
                prev_special = False
        return _clean_up(out + self._sp_decode(run))

    def _decode(self, token_ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None, spaces_between_special_tokens: bool = True, **kwargs) -> str:
        kwargs.pop("use_source_tokenizer", None)
        if isinstance(token_ids, dict):
            token_ids = token_ids["input_ids"]
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        ids = [int(i) for i in token_ids]
        tables = self._tables()
        special_ids, vision, content = tables.special_ids, tables.vision, tables.content
        ids = [i for i in ids if 0 <= i < tables.size]  # like the backend, unknown ids are dropped
        if skip_special_tokens:
            ids = [i for i in ids if i not in special_ids]
        sub_texts, current = [], []
        for token_id in ids:
            if token_id in vision:
                if current:
                    text = self._segment_to_string(current)
                    if text:
                        sub_texts.append(text)
                    current = []
                sub_texts.append(content[token_id])
            else:
                current.append(token_id)
        if current:
            sub_texts.append(self._segment_to_string(current))
        text = (" " if spaces_between_special_tokens else "").join(sub_texts)
        if clean_up_tokenization_spaces if clean_up_tokenization_spaces is not None else self.clean_up_tokenization_spaces:
            text = _clean_up(text)
        return text

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return self._segment_to_string([self._convert_token_to_id_with_added_voc(token) for token in tokens])

    # -- saving ----------------------------------------------------------------------------
    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save a folder plain transformers loads (no auto_map, chat template in the config, a
        special_tokens_map.json) and `load_tokenizer` turns back into this class."""
        kwargs.setdefault("save_jinja_files", False)
        files = super().save_pretrained(save_directory, *args, **kwargs)
        return tuple(files) + _finish_saved_folder(self, Path(save_directory))


def _bytes_to_text(data: bytes | bytearray) -> str:
    """UTF-8 like SentencePiece: valid characters as they are, one U+FFFD for each byte that does
    not start a complete, valid character (Python's "replace" would give one per bad sequence)."""
    out, i, n = [], 0, len(data)
    while i < n:
        lead = data[i]
        size = 1 if lead < 0x80 else 2 if 0xC0 <= lead < 0xE0 else 3 if 0xE0 <= lead < 0xF0 else 4 if 0xF0 <= lead < 0xF8 else 0
        if size and i + size <= n:
            try:
                out.append(bytes(data[i : i + size]).decode("utf-8"))
                i += size
                continue
            except UnicodeDecodeError:
                pass
        out.append("\ufffd")
        i += 1
    return "".join(out)


def _finish_saved_folder(tokenizer, folder: Path) -> tuple[str, ...]:
    config_path = folder / "tokenizer_config.json"
    config = _read_json(config_path)
    config.pop("auto_map", None)
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    jinja = folder / "chat_template.jinja"
    if "chat_template" not in config and jinja.is_file() and tokenizer.chat_template:
        config["chat_template"] = tokenizer.chat_template
        jinja.unlink()
    config["padding_side"] = tokenizer.padding_side
    config["model_input_names"] = list(tokenizer.model_input_names)
    write_json_file(config_path, config, sort_keys=True)

    def state(token) -> dict:
        added = tokenizer.added_tokens_decoder.get(tokenizer.convert_tokens_to_ids(str(token)))
        added = added if added is not None and added.content == str(token) else AddedToken(str(token), normalized=False)
        return {key: getattr(added, key) for key in ("content", "lstrip", "normalized", "rstrip", "single_word")}

    special_map = {name: state(getattr(tokenizer, name)) for name in ("bos_token", "eos_token", "unk_token", "pad_token") if getattr(tokenizer, name, None)}
    extra = getattr(tokenizer, "extra_special_tokens", None) or tokenizer.init_kwargs.get("extra_special_tokens") or []
    extra = [str(t) for t in extra] if isinstance(extra, (list, tuple)) else []
    if extra:
        special_map["additional_special_tokens"] = extra
    map_path = folder / "special_tokens_map.json"
    write_json_file(map_path, special_map, sort_keys=True)
    return (str(map_path),)


def save_converted_tokenizer(tokenizer, dst: str | PathLike) -> Path:
    """Write a converted tokenizer to dst (tokenizer.json, tokenizer_config.json with the chat
    template and no auto_map, special_tokens_map.json). Returns dst."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    if isinstance(tokenizer, InternLM2SentencePieceTokenizer):
        tokenizer.save_pretrained(dst)
    else:
        tokenizer.save_pretrained(dst, save_jinja_files=False)
        _finish_saved_folder(tokenizer, dst)
    return dst


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    return read_json_object(path, "file", CheckpointError, optional=True)


def _token_str(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return None if value is None else str(value)


def _names_remote_class(config: dict) -> bool:
    auto_map = json.dumps(config.get("auto_map") or {})
    return config.get("tokenizer_class") in REMOTE_CLASSES or any(name in auto_map for name in REMOTE_CLASSES)


def _added_tokens(folder: Path, config: dict, special_map: dict, model: SentencePieceModel) -> tuple[dict[int, _Added], dict[str, str | None], list[str]]:
    """The official class's added tokens by id, its bos/eos/unk/pad strings and the additional
    special tokens, from tokenizer_config.json, special_tokens_map.json and added_tokens.json."""
    named = {}
    for name in ("bos_token", "eos_token", "unk_token", "pad_token"):
        value = config.get(name, special_map.get(name))
        named[name] = _token_str(value)
    defaults = {"bos_token": model.bos_id, "eos_token": model.eos_id, "unk_token": model.unk_id}
    for name, piece_id in defaults.items():
        if named[name] is None and 0 <= piece_id < len(model.pieces):
            named[name] = model.pieces[piece_id]
    extra = config.get("additional_special_tokens") or config.get("extra_special_tokens") or special_map.get("additional_special_tokens") or []
    extra = [_token_str(t) for t in extra] if isinstance(extra, list) else []
    special_names = {t for t in named.values() if t} | set(extra)

    added: dict[int, _Added] = {}
    for key, token in (config.get("added_tokens_decoder") or {}).items():
        try:
            token_id = int(key)
            content = token["content"] if isinstance(token, dict) else str(token)
        except (TypeError, ValueError, KeyError) as err:
            raise CheckpointError(f"{folder / 'tokenizer_config.json'}: bad added_tokens_decoder entry {key!r}") from err
        flags = token if isinstance(token, dict) else {}
        special = bool(flags.get("special", content in special_names))
        added[token_id] = _Added(content, special, bool(flags.get("lstrip")), bool(flags.get("rstrip")), bool(flags.get("single_word")))
    by_content = {t.content: i for i, t in added.items()}
    added_json = _read_json(folder / "added_tokens.json")
    for content, token_id in added_json.items():
        if not isinstance(token_id, int):
            raise CheckpointError(f"{folder / 'added_tokens.json'}: id of {content!r} is not an integer")
        if by_content.get(content, token_id) != token_id or (token_id in added and added[token_id].content != content):
            raise CheckpointError(f"{folder / 'added_tokens.json'}: {content!r} -> {token_id} disagrees with tokenizer_config.json")
        added.setdefault(token_id, _Added(content, content in special_names))
        by_content[content] = token_id
    piece_ids = {piece: i for i, piece in enumerate(model.pieces)}
    next_id = max([len(model.pieces) - 1, *added]) + 1
    for content in [t for t in named.values() if t] + extra:
        if content in by_content:
            added[by_content[content]].special = True
            continue
        token_id = piece_ids.get(content)
        if token_id is None:
            token_id, next_id = next_id, next_id + 1
        added[token_id] = _Added(content, True)
        by_content[content] = token_id
    return added, named, list(dict.fromkeys(t for t in extra if t))


def convert_sentencepiece_folder(folder: str | PathLike) -> InternLM2SentencePieceTokenizer:
    """Convert an official InternLM2Tokenizer folder (tokenizer.model + JSON configs)."""
    folder = Path(folder)
    config = _read_json(folder / "tokenizer_config.json")
    special_map = _read_json(folder / "special_tokens_map.json")
    model_path = folder / "tokenizer.model"
    model = read_sentencepiece_model(model_path)
    _check_supported(model, model_path)
    added, named, extra = _added_tokens(folder, config, special_map, model)
    add_bos = bool(config.get("add_bos_token", True))
    add_eos = bool(config.get("add_eos_token", False))
    backend = build_backend(model, added, named["bos_token"], named["eos_token"], add_bos, add_eos, model_path)
    sp_size = len(model.pieces)
    info = {
        "sp_piece_count": sp_size,
        "add_dummy_prefix": model.add_dummy_prefix,
        "remove_extra_whitespaces": model.remove_extra_whitespaces,
        "byte_fallback": model.byte_fallback,
        "control_ids": [i for i, kind in enumerate(model.types) if kind == CONTROL and not (i in added and added[i].special)],
        "renamed_pieces": {str(i): model.pieces[i] for i, t in sorted(added.items()) if i < sp_size and t.content != model.pieces[i]},
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
    }
    kwargs = {name: value for name, value in named.items() if value is not None}
    tokenizer = InternLM2SentencePieceTokenizer(
        tokenizer_object=backend,
        extra_special_tokens=extra,
        add_bos_token=add_bos,
        add_eos_token=add_eos,
        padding_side="right",  # the official (slow) class pads on the right
        truncation_side=config.get("truncation_side", "right"),
        model_max_length=config.get("model_max_length", 1 << 30),
        clean_up_tokenization_spaces=bool(config.get("clean_up_tokenization_spaces", False)),
        chat_template=config.get("chat_template"),
        model_input_names=MODEL_INPUT_NAMES,
        name_or_path=str(folder),
        **{MARKER_KEY: info},
        **kwargs,
    )
    return tokenizer


def load_tokenizer(folder: str | PathLike):
    """The tokenizer of a checkpoint folder, as a fast transformers tokenizer; no remote code.

    * a folder converted by this module (tokenizer.json + our marker): `InternLM2SentencePieceTokenizer`;
    * an official InternVL2 / V2PE folder (tokenizer.model naming `InternLM2Tokenizer`, or a bare
      tokenizer.model): converted in memory to `InternLM2SentencePieceTokenizer`;
    * any other folder with a tokenizer.json: `AutoTokenizer.from_pretrained(..., trust_remote_code=False)`.
    Raises CheckpointError when there is neither a tokenizer.json nor a tokenizer.model.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not a folder (expected a checkpoint folder holding a tokenizer)")
    config = _read_json(folder / "tokenizer_config.json")
    has_json = (folder / "tokenizer.json").is_file()
    has_model = (folder / "tokenizer.model").is_file()
    if has_json and isinstance(config.get(MARKER_KEY), dict):
        tokenizer = _from_pretrained(InternLM2SentencePieceTokenizer, folder)
        tokenizer._restore_bos_eos_flags()
        return tokenizer
    if has_model and (_names_remote_class(config) or (not has_json and not config.get("tokenizer_class"))):
        return convert_sentencepiece_folder(folder)
    if has_json or has_model:
        from transformers import AutoTokenizer

        return _from_pretrained(AutoTokenizer, folder)
    raise CheckpointError(f"{folder}: no tokenizer.json or tokenizer.model (a tokenizer folder needs one of them)")


def _from_pretrained(cls, folder: Path):
    try:
        return cls.from_pretrained(str(folder), trust_remote_code=False)
    except Exception as err:  # any loader failure means the folder's tokenizer is unusable
        raise CheckpointError(f"{folder}: cannot load its tokenizer ({type(err).__name__}: {err})") from err
