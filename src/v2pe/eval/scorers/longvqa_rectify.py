"""Long-VQA answer preprocessing: `rectify(task, s)` of V2PE eval/longvqa/calculate_scores.py.

`calculate_scores` applies it to the prediction and to every gold answer
before scoring. Every task gets ``s.strip().strip('.')`` and a final strip;
some tasks add steps, applied in this order:

* svqa: keep only the first character when it is A, B, C or D;
* tabfact: "Yes"/"yes"... -> "Yes", "No"/"no"... -> "No" (case-sensitive prefix);
* chartqa, clevr, deepform, okvqa, dvqa, gqa, infovqa, ocrvqa, visualmrc,
  vizwiz, wikitablequestions (`NORMALIZED_TASKS`):
  1. the Yes/No prefix rule above;
  2. number words zero..twenty -> digits (space-separated words);
  3. commas between digits removed ("1,000" -> "1000");
  4. "<number> <letters/spaces>" -> the number ("3 years" -> "3");
  5. one trailing '%' removed;
  6. brackets stripped from both ends, one kind after another: [ ] ( ) { };
  7. "-ing" removal: a space-separated word ending in "ing" whose root (or
     root minus a doubled consonant, or root + 'e') is an English word becomes
     that root; the word list is NLTK's `words` corpus;
  8. each space-separated word lowercased and singularized with the WordNet
     noun lemmatizer;
  9. "a/b" or "a:b" with two numbers -> str(a / b).

Other tasks (docvqa, textcaps, kleistercharity, textvqa...) get only the strip.

The `-ing` word list: NLTK's `words` corpus cannot be downloaded on a fresh
machine, so it is read from the NLTK data folders when present and is
otherwise empty (no -ing removal; a warning is issued once). The fixture
harness ran with an empty list, so the reference numbers match the default.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable, Collection
from pathlib import Path

from v2pe.eval.scorers.wordnet import default_noun_lemmatizer, nltk_data_dirs

NORMALIZED_TASKS = frozenset({
    "chartqa", "clevr", "deepform", "okvqa", "dvqa", "gqa", "infovqa",
    "ocrvqa", "visualmrc", "vizwiz", "wikitablequestions",
})

_NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen twenty"
).split()
NUMBER_WORDS = {word: str(i) for i, word in enumerate(_NUMBER_WORDS)}

_NUMBER_WITH_UNIT = re.compile(r"^([0-9]+\.?[0-9]*)\s+[A-Za-z\s]+$", re.DOTALL)
_COMMA_BETWEEN_DIGITS = re.compile(r"(?<=\d),(?=\d)")


def decide_choice(s: str) -> str:
    """First character when it is one of A-D (multiple-choice letter)."""
    return s[0] if s[:1] in ("A", "B", "C", "D") else s


def decide_yes_or_no(s: str) -> str:
    """'Yes...'/'yes...' -> 'Yes'; 'No...'/'no...' -> 'No' (so 'Not sure' -> 'No')."""
    if s.startswith(("Yes", "yes")):
        return "Yes"
    if s.startswith(("No", "no")):
        return "No"
    return s


def number_words_to_digits(s: str) -> str:
    return " ".join(NUMBER_WORDS.get(word.lower(), word) for word in s.split(" "))


def remove_commas_in_numbers(s: str) -> str:
    return _COMMA_BETWEEN_DIGITS.sub("", s)


def remove_unit(s: str) -> str:
    match = _NUMBER_WITH_UNIT.match(s)
    return match.group(1) if match else s


def remove_percent(s: str) -> str:
    return s[:-1] if s.endswith("%") else s


def remove_brackets(s: str) -> str:
    for bracket in "[]()":
        s = s.strip(bracket)
    return s.strip("{").strip("}")


def remove_ing(s: str, vocabulary: Collection[str]) -> str:
    """Replace '<root>ing' words by their root when the root is a known word."""
    words = s.split(" ")
    for i, word in enumerate(words):
        if not word.endswith("ing"):
            continue
        root = word[:-3].lower()
        if len(root) <= 1:
            continue
        if root in vocabulary:
            words[i] = root
        elif root[-1] == root[-2] and root[:-1] in vocabulary:  # "running" -> "run"
            words[i] = root[:-1]
        elif root + "e" in vocabulary:  # "making" -> "make"
            words[i] = root + "e"
    return " ".join(words)


def plural_to_singular(s: str, lemmatize: Callable[[str], str] | None = None) -> str:
    """Lowercase and WordNet-lemmatize (as a noun) each space-separated word."""
    lemmatize = lemmatize or default_noun_lemmatizer().lemmatize
    return " ".join(lemmatize(word.lower()) for word in s.split(" "))


def fraction_to_float(s: str) -> str:
    """'a:b' or 'a/b' of two numbers -> str(a / b); anything else unchanged."""
    for separator in (":", "/"):
        parts = s.split(separator)
        if len(parts) != 2:
            continue
        try:
            return str(float(parts[0]) / float(parts[1]))
        except (ValueError, ZeroDivisionError, OverflowError):
            continue
    return s


@functools.lru_cache(maxsize=1)
def default_ing_vocabulary() -> frozenset[str]:
    """NLTK's `words` corpus (all its files) if installed, else an empty set."""
    for data_dir in nltk_data_dirs():
        folder = data_dir / "corpora" / "words"
        if folder.is_dir():
            return frozenset(_read_word_files(folder))
    warnings.warn(
        "NLTK 'words' corpus not found: Long-VQA rectify skips its '-ing' removal step "
        "(as in the reference fixtures).",
        stacklevel=2,
    )
    return frozenset()


def _read_word_files(folder: Path) -> set[str]:
    words: set[str] = set()
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name != "README":
            words.update(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return words


def rectify(task: str, s: str, *, ing_vocabulary: Collection[str] | None = None,
            lemmatize: Callable[[str], str] | None = None) -> str:
    """Long-VQA `rectify(task, s)` (see module docstring for the steps per task)."""
    s = s.strip().strip(".")
    if task == "svqa":
        s = decide_choice(s)
    elif task == "tabfact":
        s = decide_yes_or_no(s)
    elif task in NORMALIZED_TASKS:
        vocabulary = default_ing_vocabulary() if ing_vocabulary is None else ing_vocabulary
        s = decide_yes_or_no(s)
        s = number_words_to_digits(s)
        s = remove_commas_in_numbers(s)
        s = remove_unit(s)
        s = remove_percent(s)
        s = remove_brackets(s)
        s = remove_ing(s, vocabulary)
        s = plural_to_singular(s, lemmatize)
        s = fraction_to_float(s)
    return s.strip()
