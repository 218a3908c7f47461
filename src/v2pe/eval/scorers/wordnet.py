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
(`corpora/wordnet`, unzipped), and `/usr/share/wordnet` (Debian `wordnet-base`).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from v2pe.errors import ConfigError

NOUN_SUFFIX_RULES = (
    ("s", ""), ("ses", "s"), ("ves", "f"), ("xes", "x"), ("zes", "z"),
    ("ches", "ch"), ("shes", "sh"), ("men", "man"), ("ies", "y"),
)


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


class NounLemmatizer:
    """WordNet noun morphy over a noun lemma set and an exception map."""

    def __init__(self, nouns: frozenset[str], exceptions: dict[str, tuple[str, ...]]):
        self.nouns = nouns
        self.exceptions = exceptions

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
        return cls(frozenset(nouns), exceptions)

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
    """The lemmatizer over the first WordNet 3.0 data folder found (cached)."""
    folder = find_wordnet_dir()
    if folder is None:
        searched = ", ".join(str(p) for p in wordnet_dir_candidates())
        raise ConfigError(
            "WordNet 3.0 noun data (index.noun, noun.exc) not found; Long-VQA rectify needs it. "
            "Install Debian 'wordnet-base' (apt-get install wordnet-base) or set V2PE_WORDNET_DIR "
            f"to a WordNet 3.0 dict folder. Searched: {searched}"
        )
    return NounLemmatizer.from_dir(folder)
