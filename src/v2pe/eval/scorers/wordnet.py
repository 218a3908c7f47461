"""Noun lemmatization as NLTK's `WordNetLemmatizer().lemmatize(word, 'n')`, without NLTK.

Long-VQA `rectify` singularizes every word with the NLTK WordNet lemmatizer.
Its noun rule (WordNet "morphy") only needs two WordNet 3.0 files, read here
directly:

1. if the word is in the noun exception list (`noun.exc`), the candidates are
   the word and its listed base forms;
2. otherwise the candidates are the word and the forms made by removing one
   detachment suffix (s, ses->s, ves->f, xes->x, zes->z, ches->ch, shes->sh,
   men->man, ies->y);
3. candidates that are WordNet nouns (`index.noun`) are kept (suffixes are
   removed once only, as in NLTK 3.10, the version behind the fixtures);
4. the shortest kept candidate is the lemma (first one on ties); with no
   candidate the word is returned unchanged.

The data is looked up, in order, in `$V2PE_WORDNET_DIR`, the NLTK data folders
(`corpora/wordnet`, unzipped), and `/usr/share/wordnet` (Debian `wordnet-base`);
when none of them holds it, the copy shipped in the package is used
(`data/wordnet3_nouns.txt.gz`: the same noun lemmas and exceptions, made from
Princeton WordNet 3.0 by `tools/make_wordnet_nouns.py`; licence in
`data/WORDNET_LICENSE`).
"""

from __future__ import annotations

import functools
import gzip
import os
import sys
import zlib
from importlib import resources
from pathlib import Path

from v2pe.errors import ConfigError

NOUN_SUFFIX_RULES = (
    ("s", ""), ("ses", "s"), ("ves", "f"), ("xes", "x"), ("zes", "z"),
    ("ches", "ch"), ("shes", "sh"), ("men", "man"), ("ies", "y"),
)

# The packaged noun data. Format (UTF-8 text, gzip with mtime 0): a header line
# `PACKED_MAGIC <number of nouns> <number of exceptions>`, the sorted noun lemmas one
# a line, an empty line, then the exceptions sorted by word, `word base ...` a line.
PACKAGED_NOUNS = resources.files("v2pe.eval.scorers") / "data" / "wordnet3_nouns.txt.gz"
PACKED_MAGIC = "v2pe-wordnet3-nouns/1"


def nltk_data_dirs() -> list[Path]:
    """NLTK's default search path for its data (environment first)."""
    dirs = [Path(p) for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    dirs += [Path.home() / "nltk_data", Path(sys.prefix) / "nltk_data",
             Path(sys.prefix) / "share" / "nltk_data", Path(sys.prefix) / "lib" / "nltk_data"]
    dirs += [Path(p) for p in ("/usr/share/nltk_data", "/usr/local/share/nltk_data",
                               "/usr/lib/nltk_data", "/usr/local/lib/nltk_data")]
    return dirs


def wordnet_dir_candidates() -> list[Path]:
    """Folders searched for `index.noun` + `noun.exc`, in priority order."""
    candidates = []
    if os.environ.get("V2PE_WORDNET_DIR"):
        candidates.append(Path(os.environ["V2PE_WORDNET_DIR"]))
    candidates += [d / "corpora" / "wordnet" for d in nltk_data_dirs()]
    candidates.append(Path("/usr/share/wordnet"))
    return candidates


def find_wordnet_dir() -> Path | None:
    """The first candidate folder holding the WordNet noun index and exceptions."""
    for folder in wordnet_dir_candidates():
        if (folder / "index.noun").is_file() and (folder / "noun.exc").is_file():
            return folder
    return None


def encode_packed(nouns: frozenset[str], exceptions: dict[str, tuple[str, ...]]) -> bytes:
    """The packaged-data bytes for a noun lemma set and exception map (deterministic)."""
    for word in [*nouns, *exceptions, *(base for bases in exceptions.values() for base in bases)]:
        if not word or word != word.strip() or any(ch.isspace() for ch in word):
            raise ValueError(f"WordNet noun data holds a word that cannot be packed: {word!r}")
    lines = [f"{PACKED_MAGIC} {len(nouns)} {len(exceptions)}", *sorted(nouns), ""]
    lines += [" ".join((word, *exceptions[word])) for word in sorted(exceptions)]
    return gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), compresslevel=9, mtime=0)


def decode_packed(data: bytes) -> tuple[frozenset[str], dict[str, tuple[str, ...]]]:
    """The noun lemma set and exception map of packaged-data bytes (ValueError when malformed)."""
    try:
        text = gzip.decompress(data).decode("utf-8")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as err:
        raise ValueError(f"not a gzip-compressed UTF-8 file ({err})") from None
    lines = text.split("\n")
    header = lines[0].split(" ")
    if len(header) != 3 or header[0] != PACKED_MAGIC or not (header[1].isdigit() and header[2].isdigit()):
        raise ValueError(f"unexpected header {lines[0][:80]!r} (expected {PACKED_MAGIC!r} and two counts)")
    n_nouns, n_exceptions = int(header[1]), int(header[2])
    nouns = frozenset(lines[1:1 + n_nouns])
    separator = 1 + n_nouns
    body = lines[separator + 1:]
    if body[-1:] == [""]:
        body.pop()
    if len(nouns) != n_nouns or lines[separator:separator + 1] != [""] or len(body) != n_exceptions:
        raise ValueError(f"truncated or inconsistent: the header promises {n_nouns} nouns and "
                         f"{n_exceptions} exceptions")
    exceptions = {}
    for line in body:
        word, *bases = line.split(" ")
        exceptions[word] = tuple(bases)
    return nouns, exceptions


class NounLemmatizer:
    """WordNet noun morphy over a noun lemma set and an exception map."""

    def __init__(self, nouns: frozenset[str], exceptions: dict[str, tuple[str, ...]], source: str = ""):
        self.nouns = nouns
        self.exceptions = exceptions
        self.source = source  # where the data came from (a folder or the packaged file)

    @classmethod
    def from_dir(cls, folder: Path) -> NounLemmatizer:
        """Read `index.noun` (first field of each non-header line) and `noun.exc`."""
        nouns = set()
        with open(folder / "index.noun", encoding="utf-8") as index:
            for line in index:
                if line.startswith(" "):  # license header lines start with spaces
                    continue
                nouns.add(line.split(" ", 1)[0])
        exceptions: dict[str, tuple[str, ...]] = {}
        with open(folder / "noun.exc", encoding="utf-8") as exc:
            for line in exc:
                fields = line.split()
                if fields:
                    exceptions[fields[0]] = tuple(fields[1:])
        return cls(frozenset(nouns), exceptions, source=str(folder))

    @classmethod
    def from_packaged(cls, path=None) -> NounLemmatizer:
        """Read the WordNet 3.0 noun data shipped in the package (or `path` in its format);
        ConfigError, naming the file, when it is missing or corrupt."""
        path = PACKAGED_NOUNS if path is None else path
        advice = ("reinstall v2pe, or install Debian 'wordnet-base' (apt-get install wordnet-base) "
                  "or set V2PE_WORDNET_DIR to a WordNet 3.0 dict folder")
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ConfigError(f"packaged WordNet 3.0 noun data {path} is missing ({err.strerror or err}); "
                              f"Long-VQA rectify needs it: {advice}") from None
        try:
            nouns, exceptions = decode_packed(data)
        except ValueError as err:
            raise ConfigError(f"packaged WordNet 3.0 noun data {path} is corrupt ({err}); "
                              f"Long-VQA rectify needs it: {advice}") from None
        return cls(nouns, exceptions, source=str(path))

    def _known(self, forms: list[str]) -> list[str]:
        """Forms that are WordNet nouns, without repeats, in order."""
        return list(dict.fromkeys(form for form in forms if form in self.nouns))

    @staticmethod
    def _detach_suffixes(word: str) -> list[str]:
        return [word[: -len(old)] + new for old, new in NOUN_SUFFIX_RULES if word.endswith(old)]

    def candidates(self, word: str) -> list[str]:
        """All morphy noun lemmas of `word` (possibly empty)."""
        if word in self.exceptions:
            return self._known([word, *self.exceptions[word]])
        return self._known([word, *self._detach_suffixes(word)])

    def lemmatize(self, word: str) -> str:
        """Shortest candidate lemma, or the word itself when WordNet knows none."""
        found = self.candidates(word)
        return min(found, key=len) if found else word


@functools.lru_cache(maxsize=1)
def default_noun_lemmatizer() -> NounLemmatizer:
    """The lemmatizer over the first WordNet 3.0 data folder found, else over the packaged
    data (cached). ConfigError only when no folder is found and the packaged file is
    missing or corrupt."""
    folder = find_wordnet_dir()
    if folder is not None:
        return NounLemmatizer.from_dir(folder)
    return NounLemmatizer.from_packaged()
