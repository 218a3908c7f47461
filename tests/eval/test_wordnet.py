"""WordNet 3.0 noun data: the packaged copy, its equality with the system folder, the lookup order."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from v2pe.errors import ConfigError
from v2pe.eval.scorers import wordnet
from v2pe.eval.scorers.wordnet import NounLemmatizer, decode_packed, encode_packed

SYSTEM_WORDNET = Path("/usr/share/wordnet")
HAS_SYSTEM_WORDNET = (SYSTEM_WORDNET / "index.noun").is_file() and (SYSTEM_WORDNET / "noun.exc").is_file()
needs_system_wordnet = pytest.mark.skipif(not HAS_SYSTEM_WORDNET, reason=f"no WordNet 3.0 at {SYSTEM_WORDNET}")

# NLTK 3.10 `WordNetLemmatizer().lemmatize(word, "n")` over WordNet 3.0 (shortest candidate,
# first on ties: hence teeth, men and data stay as they are).
KNOWN_LEMMAS = {
    "women": "woman", "boxes": "box", "glasses": "glass", "dogs": "dog", "mice": "mouse",
    "geese": "goose", "churches": "church", "children": "child", "wolves": "wolf", "ponies": "pony",
    "buses": "bus", "feet": "foot", "criteria": "criterion", "analyses": "analysis", "cacti": "cactus",
    "apples": "apple", "news": "news", "oxen": "ox", "teeth": "teeth", "men": "men", "data": "data",
    "xyzzys": "xyzzys",
}


@pytest.fixture
def fresh_cache():
    wordnet.default_noun_lemmatizer.cache_clear()
    yield
    wordnet.default_noun_lemmatizer.cache_clear()


@pytest.fixture
def no_wordnet_folder(tmp_path, monkeypatch, fresh_cache):
    """No user, NLTK or system WordNet folder is found: only the packaged data is left."""
    empty = tmp_path / "empty-wordnet"
    empty.mkdir()
    monkeypatch.setenv("V2PE_WORDNET_DIR", str(empty))
    monkeypatch.setattr(wordnet, "wordnet_dir_candidates", lambda: [empty])
    assert wordnet.find_wordnet_dir() is None


def test_packaged_files_are_shipped_small_and_licensed():
    data_dir = Path(wordnet.__file__).parent / "data"
    assert Path(str(wordnet.PACKAGED_NOUNS)) == data_dir / "wordnet3_nouns.txt.gz"
    assert data_dir.joinpath("wordnet3_nouns.txt.gz").stat().st_size < 1_000_000
    licence = data_dir.joinpath("WORDNET_LICENSE").read_text(encoding="utf-8")
    assert "WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved." in licence
    assert "Permission to use, copy, modify and distribute this software" in licence
    assert data_dir.joinpath("README.md").is_file()


def test_packaged_data_is_canonical_and_plausible():
    data = wordnet.PACKAGED_NOUNS.read_bytes()
    nouns, exceptions = decode_packed(data)
    assert encode_packed(nouns, exceptions) == data  # deterministic: regenerating gives the same bytes
    assert len(nouns) == 117798 and len(exceptions) == 2050  # WordNet 3.0 index.noun / noun.exc
    assert {"woman", "goose", "church", "'hood", "1-dodecanol"} <= nouns
    assert exceptions["geese"] == ("goose",) and exceptions["ancones"] == ("ancon", "ancone")


@needs_system_wordnet
def test_packaged_data_equals_the_system_wordnet():
    system = NounLemmatizer.from_dir(SYSTEM_WORDNET)
    packaged = NounLemmatizer.from_packaged()
    assert packaged.nouns == system.nouns
    assert packaged.exceptions == system.exceptions


@needs_system_wordnet
def test_generator_check_passes_against_the_system_wordnet():
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "make_wordnet_nouns.py"), "--check",
         "--wordnet-dir", str(SYSTEM_WORDNET), "--out-dir", str(Path(wordnet.__file__).parent / "data")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_lemmatizes_with_no_wordnet_folder(no_wordnet_folder):
    lemmatizer = wordnet.default_noun_lemmatizer()
    assert lemmatizer.source == str(wordnet.PACKAGED_NOUNS)
    assert {word: lemmatizer.lemmatize(word) for word in KNOWN_LEMMAS} == KNOWN_LEMMAS
    if HAS_SYSTEM_WORDNET:
        system = NounLemmatizer.from_dir(SYSTEM_WORDNET)
        for word in KNOWN_LEMMAS:
            assert lemmatizer.candidates(word) == system.candidates(word), word


def test_rectify_singularizes_with_no_wordnet_folder(no_wordnet_folder):
    from v2pe.eval.scorers.longvqa_rectify import rectify

    assert rectify("okvqa", "Geese and Churches.", ing_vocabulary=()) == "goose and church"


def test_a_user_folder_comes_before_the_packaged_data(tmp_path, monkeypatch, fresh_cache):
    folder = tmp_path / "dict"
    folder.mkdir()
    (folder / "index.noun").write_text("  1 licence header line  \ncat n 1 1 @ 1 0 02121620  \n")
    (folder / "noun.exc").write_text("kine cow\n")
    monkeypatch.setenv("V2PE_WORDNET_DIR", str(folder))
    lemmatizer = wordnet.default_noun_lemmatizer()
    assert lemmatizer.source == str(folder)
    assert (lemmatizer.lemmatize("cats"), lemmatizer.lemmatize("dogs")) == ("cat", "dogs")
    assert lemmatizer.exceptions == {"kine": ("cow",)}


def test_missing_or_corrupt_packaged_data_is_a_config_error(tmp_path, monkeypatch, fresh_cache):
    monkeypatch.setattr(wordnet, "find_wordnet_dir", lambda: None)
    missing = tmp_path / "wordnet3_nouns.txt.gz"
    monkeypatch.setattr(wordnet, "PACKAGED_NOUNS", missing)
    with pytest.raises(ConfigError, match=rf"{missing} is missing.*wordnet-base"):
        wordnet.default_noun_lemmatizer()

    good = wordnet.encode_packed(frozenset({"cat", "dog"}), {"kine": ("cow",)})
    bad_files = {
        "not gzip": b"cat\ndog\n",
        "truncated gzip": good[: len(good) // 2],
        "wrong header": gzip.compress(b"something else 2 1\ncat\ndog\n\nkine cow\n"),
        "too few nouns": gzip.compress(f"{wordnet.PACKED_MAGIC} 3 1\ncat\ndog\n\nkine cow\n".encode()),
        "too many exceptions": gzip.compress(f"{wordnet.PACKED_MAGIC} 2 1\ncat\ndog\n\nkine cow\noxen ox\n".encode()),
    }
    for what, data in bad_files.items():
        missing.write_bytes(data)
        wordnet.default_noun_lemmatizer.cache_clear()
        with pytest.raises(ConfigError, match=rf"{missing} is corrupt"):
            wordnet.default_noun_lemmatizer()
            pytest.fail(what)

    missing.write_bytes(good)
    wordnet.default_noun_lemmatizer.cache_clear()
    assert wordnet.default_noun_lemmatizer().lemmatize("kine") == "kine"  # "cow" is not a noun here
    assert wordnet.default_noun_lemmatizer().lemmatize("cats") == "cat"


def test_encode_packed_round_trips_and_refuses_unpackable_words():
    nouns, exceptions = frozenset({"a_b", "c"}), {"x": ("y", "z"), "w": ()}
    assert decode_packed(encode_packed(nouns, exceptions)) == (nouns, exceptions)
    assert decode_packed(encode_packed(frozenset(), {})) == (frozenset(), {})
    for bad in ("", "two words", "tab\there"):
        with pytest.raises(ValueError, match="cannot be packed"):
            encode_packed(frozenset({bad}), {})
