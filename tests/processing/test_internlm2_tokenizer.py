"""The converted InternLM2 tokenizer against golden data from the official slow `InternLM2Tokenizer`.

The fixture (shared/fixtures/internlm2-tokenizer, see its README) holds two official-format
tokenizer folders and, for each, cases and facts recorded by running the official class. Every
case is checked on `load_tokenizer(folder)`; the saved folder is checked with plain
`AutoTokenizer` and reloaded with `load_tokenizer`.
"""

from __future__ import annotations

import json
import shutil
import struct
import sys

import pytest
from transformers import AutoTokenizer

from tests.conftest import fixture_dir, shared_dir
from v2pe.errors import CheckpointError
from v2pe.processing import Processor, byte_tokenizer, load_tokenizer, save_converted_tokenizer
from v2pe.processing.internlm2_tokenizer import InternLM2SentencePieceTokenizer, read_sentencepiece_model

NAME = "internlm2-tokenizer"
FOLDERS = ("spm-no-dummy-prefix", "spm-dummy-prefix")
CASES_FILE = shared_dir() / "fixtures" / NAME / "cases.jsonl"
CASES = [json.loads(line) for line in CASES_FILE.read_text(encoding="utf-8").splitlines() if line.strip()] if CASES_FILE.is_file() else []
CASE_PARAMS = [pytest.param(case, id=case["id"]) for case in CASES] or [pytest.param(None, id="absent", marks=pytest.mark.skip(reason=f"official-format fixture {CASES_FILE} is absent"))]


@pytest.fixture(scope="session")
def fixture_root():
    return fixture_dir(NAME)


@pytest.fixture(scope="session")
def facts(fixture_root):
    return json.loads((fixture_root / "facts.json").read_text(encoding="utf-8"))["tokenizers"]


@pytest.fixture(scope="session")
def converted(fixture_root):
    return {name: load_tokenizer(fixture_root / name) for name in FOLDERS}


@pytest.fixture(scope="session")
def saved(converted, tmp_path_factory):
    root = tmp_path_factory.mktemp("converted")
    return {name: save_converted_tokenizer(tok, root / name) for name, tok in converted.items()}


@pytest.fixture(scope="session")
def plain(saved):
    """The saved folders loaded by plain transformers (no v2pe code involved)."""
    return {name: AutoTokenizer.from_pretrained(path) for name, path in saved.items()}


@pytest.fixture(scope="session")
def reloaded(saved):
    return {name: load_tokenizer(path) for name, path in saved.items()}


def case_mismatches(tok, case) -> list[str]:
    """Every field of a case the tokenizer gets wrong, as readable lines."""
    bad = []

    def check(what, got, expected):
        if got != expected:
            bad.append(f"{what}: got {got!r}, expected {expected!r}")

    kind = case["kind"]
    if kind == "encode":
        text = case["text"]
        check("input_ids", tok(text).input_ids, case["ids"])
        check("encode", tok.encode(text), case["ids"])
        check("ids_no_special", tok.encode(text, add_special_tokens=False), case["ids_no_special"])
        check("tokens", tok.tokenize(text), case["tokens"])
        for source in ("ids", "ids_no_special"):
            for mode, skip in (("keep", False), ("skip", True)):
                check(f"decode.{source}.{mode}", tok.decode(case[source], skip_special_tokens=skip), case["decode"][source][mode])
    elif kind == "decode":
        check("tokens", tok.convert_ids_to_tokens(case["ids"]), case["tokens"])
        for mode, skip in (("keep", False), ("skip", True)):
            check(f"decode.{mode}", tok.decode(case["ids"], skip_special_tokens=skip), case["decode"][mode])
    elif kind == "batch_decode":
        for mode, skip in (("keep", False), ("skip", True)):
            check(f"batch_decode.{mode}", tok.batch_decode(case["batch"], skip_special_tokens=skip), case["decoded"][mode])
    elif kind == "batch_encode":
        out = tok(case["texts"], **case["kwargs"])
        check("input_ids", out["input_ids"], case["input_ids"])
        check("attention_mask", out["attention_mask"], case["attention_mask"])
        check("keys", sorted(out.keys()), ["attention_mask", "input_ids"])
    else:
        bad.append(f"unknown case kind {kind!r}")
    return bad


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_case_matches_official(converted, case):
    assert case_mismatches(converted[case["tokenizer"]], case) == []


@pytest.mark.parametrize("which", ["plain", "reloaded"])
def test_saved_folder_matches_every_case(request, which):
    # plain AutoTokenizer runs the tokenizer.json pipeline only (no subclass): it matches too
    tokenizers = request.getfixturevalue(which)
    failures = {case["id"]: bad for case in CASES if (bad := case_mismatches(tokenizers[case["tokenizer"]], case))}
    assert failures == {}


@pytest.mark.parametrize("name", FOLDERS)
def test_facts_match_official(converted, facts, name):
    tok, fact = converted[name], facts[name]
    assert isinstance(tok, InternLM2SentencePieceTokenizer) and tok.is_fast
    for key in ("bos", "eos", "pad", "unk"):
        assert [getattr(tok, f"{key}_token"), getattr(tok, f"{key}_token_id")] == fact[key]
    assert len(tok) == fact["len"] and tok.vocab_size == fact["vocab_size"] and len(tok.get_vocab()) == fact["get_vocab_len"]
    assert tok.padding_side == fact["padding_side"] == "right" and tok.truncation_side == fact["truncation_side"]
    assert tok.model_max_length == fact["model_max_length"]
    assert (tok.add_bos_token, tok.add_eos_token) == (fact["add_bos_token"], fact["add_eos_token"])
    assert tok.clean_up_tokenization_spaces == fact["clean_up_tokenization_spaces"]
    assert tok.all_special_tokens == fact["all_special_tokens"] and tok.all_special_ids == fact["all_special_ids"]
    assert {t: tok.convert_tokens_to_ids(t) for t in fact["added_tokens"]} == fact["added_tokens"]
    assert {t: tok.convert_tokens_to_ids(t) for t in fact["convert_tokens_to_ids_other"]} == fact["convert_tokens_to_ids_other"]
    assert tok.convert_ids_to_tokens(list(range(fact["len"]))) == fact["id_to_token"]
    assert [tok.convert_ids_to_tokens(i) for i in range(fact["len"])] == fact["id_to_token"]
    assert tok.chat_template == fact["chat_template"]


def test_plain_placeholder_piece_is_atomic(converted, facts):
    # a user-defined SentencePiece piece is matched whole (exact for the model without a dummy prefix)
    expected = facts["spm-no-dummy-prefix"]["info_literal_placeholder_text"]["[UNUSED_TOKEN_140]"]
    assert converted["spm-no-dummy-prefix"].encode("[UNUSED_TOKEN_140]", add_special_tokens=False) == expected


@pytest.mark.parametrize("name", FOLDERS)
def test_plain_autotokenizer_facts(plain, facts, name):
    tok, fact = plain[name], facts[name]
    assert not isinstance(tok, InternLM2SentencePieceTokenizer) and tok.is_fast
    for key in ("bos", "eos", "pad", "unk"):
        assert [getattr(tok, f"{key}_token"), getattr(tok, f"{key}_token_id")] == fact[key]
    assert len(tok) == fact["len"] and tok.padding_side == "right" and tok.model_max_length == fact["model_max_length"]
    assert tok.convert_tokens_to_ids("<IMG_CONTEXT>") == fact["added_tokens"]["<IMG_CONTEXT>"]
    assert {t: tok.convert_tokens_to_ids(t) for t in fact["added_tokens"]} == fact["added_tokens"]
    assert tok.convert_ids_to_tokens(list(range(fact["len"]))) == fact["id_to_token"]
    assert tok.chat_template == fact["chat_template"]


@pytest.mark.parametrize("name", FOLDERS)
def test_saved_folder_layout(saved, facts, name):
    folder = saved[name]
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= {p.name for p in folder.iterdir()}
    raw = (folder / "tokenizer_config.json").read_text(encoding="utf-8")
    config = json.loads(raw)
    assert "auto_map" not in config and "InternLM2Tokenizer" not in raw
    assert config["chat_template"] == facts[name]["chat_template"]
    assert config["padding_side"] == "right" and config["model_max_length"] == 34000
    assert (config["bos_token"], config["eos_token"], config["pad_token"], config["unk_token"]) == ("<s>", "</s>", "</s>", "<unk>")
    special_map = json.loads((folder / "special_tokens_map.json").read_text(encoding="utf-8"))
    assert special_map["pad_token"]["content"] == "</s>" and "<IMG_CONTEXT>" in special_map["additional_special_tokens"]


@pytest.mark.parametrize("name", FOLDERS)
def test_reloaded_is_the_subclass_with_the_same_facts(reloaded, facts, name):
    tok, fact = reloaded[name], facts[name]
    assert isinstance(tok, InternLM2SentencePieceTokenizer)
    assert (tok.add_bos_token, tok.add_eos_token, len(tok), tok.pad_token_id) == (True, False, fact["len"], 2)
    assert tok.convert_tokens_to_ids("[UNUSED_TOKEN_146]") == fact["convert_tokens_to_ids_other"]["[UNUSED_TOKEN_146]"]


@pytest.mark.parametrize("which", ["converted", "plain"])
def test_pairs_and_truncation_follow_the_official_layout(request, which):
    tok = request.getfixturevalue(which)["spm-no-dummy-prefix"]
    a, b = tok.encode("Hello", add_special_tokens=False), tok.encode(" world", add_special_tokens=False)
    assert tok("Hello", " world").input_ids == [1, *a, *b]  # one BOS, no EOS
    long = tok.encode("Hello world, this is long", add_special_tokens=False)
    assert tok("Hello world, this is long", truncation=True, max_length=4).input_ids == [1, *long[:3]]


def test_offsets_work_for_the_processor(converted):
    tok = converted["spm-no-dummy-prefix"]
    text = "<|im_start|>user\n<img><IMG_CONTEXT></img>\nhi<|im_end|>\n<|im_start|>assistant\nA cat.<|im_end|>"
    enc = tok(text, return_offsets_mapping=True)
    pieces = [text[s:e] for s, e in enc["offset_mapping"]]
    assert pieces[:3] == ["", "<|im_start|>", "us"] and "".join(pieces) == text
    processor = Processor(tok, tokens_per_tile=1)
    answer = text.index("A cat.")
    ids, labels = processor.tokenize_with_labels(text, [(answer, len(text))])
    assert ids == enc["input_ids"]
    answer_ids = [i for i in labels if i != -100]
    assert answer_ids == tok.encode("A cat.<|im_end|>", add_special_tokens=False)
    assert tok.decode(answer_ids) == " A cat.<|im_end|>"  # the official space before a special's text run
    assert tok.decode(answer_ids, skip_special_tokens=True) == "A cat."


@pytest.mark.parametrize("name", FOLDERS)
def test_parser_agrees_with_protobuf(fixture_root, name):
    pb2 = pytest.importorskip("transformers.utils.sentencepiece_model_pb2_new", reason="needs protobuf to cross-check the reader")
    path = fixture_root / name / "tokenizer.model"
    proto = pb2.ModelProto()
    proto.ParseFromString(path.read_bytes())
    model = read_sentencepiece_model(path)
    assert model.pieces == [p.piece for p in proto.pieces]
    assert model.scores == [p.score for p in proto.pieces]
    assert model.types == [p.type for p in proto.pieces]
    spec, norm = proto.trainer_spec, proto.normalizer_spec
    assert (model.model_type, model.byte_fallback, model.unk_id, model.bos_id, model.eos_id, model.pad_id) == (spec.model_type, spec.byte_fallback, spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id)
    assert (model.normalizer_name, model.add_dummy_prefix, model.remove_extra_whitespaces, model.escape_whitespaces) == (norm.name, norm.add_dummy_prefix, norm.remove_extra_whitespaces, norm.escape_whitespaces)


def test_native_folder_loads_with_autotokenizer(tmp_path):
    byte_tokenizer().save_pretrained(tmp_path)
    tok = load_tokenizer(tmp_path)
    assert not isinstance(tok, InternLM2SentencePieceTokenizer)
    assert tok("hé<img>").input_ids == byte_tokenizer()("hé<img>").input_ids


def test_folder_without_tokenizer_files_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError) as err:
        load_tokenizer(tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and "tokenizer.json" in message and "tokenizer.model" in message and "\n" not in message
    with pytest.raises(CheckpointError, match="not a folder"):
        load_tokenizer(tmp_path / "missing")


@pytest.mark.parametrize("content", [b"", b"this is not a sentencepiece model", "truncated"])
def test_corrupt_model_names_the_file(fixture_root, tmp_path, content):
    folder = tmp_path / "ckpt"
    shutil.copytree(fixture_root / "spm-no-dummy-prefix", folder)
    model = folder / "tokenizer.model"
    model.write_bytes(model.read_bytes()[:1001] if content == "truncated" else content)
    with pytest.raises(CheckpointError) as err:
        load_tokenizer(folder)
    assert str(model) in str(err.value) and "\n" not in str(err.value)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
            value >>= 7
            if not value:
                return bytes(out)

    key = varint(number << 3 | wire)
    return key + (varint(len(payload)) + payload if wire == 2 else payload)


def test_unsupported_sentencepiece_settings_are_refused(tmp_path):
    # a hand-written unigram model (TrainerSpec.model_type = 1): its encoding is not reproduced
    piece = _field(1, 2, _field(1, 2, b"<unk>") + _field(2, 5, struct.pack("<f", 0.0)) + _field(3, 0, b"\x02"))
    trainer = _field(2, 2, _field(3, 0, b"\x01"))
    (tmp_path / "tokenizer.model").write_bytes(piece + trainer)
    with pytest.raises(CheckpointError, match="unsupported SentencePiece settings: model_type 1"):
        load_tokenizer(tmp_path)


def test_python_files_in_the_folder_are_never_imported(fixture_root, saved, tmp_path):
    marker = tmp_path / "imported.txt"
    code = f"open({str(marker)!r}, 'w').write('imported')\nclass InternLM2Tokenizer: pass\nclass InternLM2TokenizerFast: pass\n"
    official = tmp_path / "official"
    shutil.copytree(fixture_root / "spm-no-dummy-prefix", official)
    converted_copy = tmp_path / "converted"
    shutil.copytree(saved["spm-no-dummy-prefix"], converted_copy)
    native = tmp_path / "native"  # a tokenizer.json folder whose config points at remote code
    byte_tokenizer().save_pretrained(native)
    config = json.loads((native / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer", "tokenization_internlm2.InternLM2TokenizerFast"]}
    (native / "tokenizer_config.json").write_text(json.dumps(config))
    for folder in (official, converted_copy, native):
        (folder / "tokenization_internlm2.py").write_text(code)
        (folder / "tokenization_internlm2_fast.py").write_text(code)
    assert isinstance(load_tokenizer(official), InternLM2SentencePieceTokenizer)
    assert isinstance(load_tokenizer(converted_copy), InternLM2SentencePieceTokenizer)
    try:
        load_tokenizer(native)
    except CheckpointError:
        pass  # refusing remote code is fine; running it is not
    assert not marker.exists()
    assert "tokenization_internlm2" not in sys.modules
