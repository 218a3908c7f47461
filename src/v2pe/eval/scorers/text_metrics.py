"""Text-generation metrics: COCO-caption BLEU-4 (pure Python) and MileBench ROUGE-L.

BLEU follows `pycocoevalcap.bleu` (the scorer the Long-VQA OwlEvaluator calls
for textcaps/visualmrc), without its Java PTB tokenizer:

* captions are lowercased and tokenized PTB-style (`ptb_tokenize`), and
  punctuation tokens are dropped, as pycocoevalcap's PTBTokenizer does;
* for each hypothesis: clipped n-gram matches against the max count over its
  references, candidate n-gram counts, and the reference length *closest* to
  the hypothesis length (shorter one on ties);
* corpus BLEU-n = (prod_{k<=n} (matches_k + 1e-15) / (candidates_k + 1e-9)) ** (1/n)
  times the brevity penalty exp(1 - ref_len / hyp_len) when hyp_len < ref_len
  (lengths and counts summed over the corpus; the tiny constants are the
  pycocoevalcap smoothing, which makes a zero-match BLEU a tiny positive number).

`ptb_tokenize` reproduces the Stanford PTBTokenizer on ordinary caption text
(words, hyphenated words, numbers, clitics such as n't/'s, punctuation); it is
not a full re-implementation (e.g. its abbreviation list and Unicode quote
handling are simplified).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

# pycocoevalcap removes these tokens after PTB tokenization.
_DROPPED_TOKENS = frozenset({
    "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":",
    "-", "--", "...", ";",
})
# Brackets and double quotes are escaped to the dropped tokens above by the tokenizer.
_DROPPED_CHARACTERS = frozenset('()[]{}"')

# Clitics are split off their word first ("don't" -> "do n't", "it's" -> "it 's").
_NEGATION = re.compile(r"(?<=\w)n't\b")
_CLITIC = re.compile(r"(?<=\w)'(s|re|ve|ll|d|m)\b")
_TOKEN = re.compile(
    r"""
    n't | '(?:s|re|ve|ll|d|m)\b             # clitics
    | (?:[a-z]\.){2,}                        # abbreviations such as u.s.
    | \w+(?:(?:[-/&']|(?<=\d)[.,:](?=\d))\w+)*   # words, hyphenated words, 1,000 3.5 12:30
    | \.\.\. | --                              # ellipsis, double dash
    | \S                                     # any other single character
    """,
    re.VERBOSE,
)


def ptb_tokenize(caption: str) -> list[str]:
    """Lowercased PTB-style tokens of a caption, punctuation tokens removed."""
    text = caption.lower().replace("\n", " ")
    text = _CLITIC.sub(r" '\1", _NEGATION.sub(" n't", text))
    tokens = _TOKEN.findall(text)
    return [t for t in tokens if t not in _DROPPED_TOKENS and t not in _DROPPED_CHARACTERS]


def _ngram_counts(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


def _closest_length(ref_lengths: list[int], hyp_length: int) -> int:
    return min((abs(length - hyp_length), length) for length in ref_lengths)[1]


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], n: int = 4) -> float:
    """pycocoevalcap corpus BLEU-n (0..1) of tokenized hypotheses vs their references.

    Inputs are raw strings; each is tokenized with `ptb_tokenize`.
    """
    if len(hypotheses) != len(references):
        raise ValueError("one reference list per hypothesis is required")
    matches, candidates = [0] * n, [0] * n
    hyp_total = ref_total = 0
    for hypothesis, refs in zip(hypotheses, references, strict=True):
        words = ptb_tokenize(hypothesis)
        ref_words = [ptb_tokenize(ref) for ref in refs]
        max_ref_counts: Counter = Counter()
        for ref in ref_words:
            max_ref_counts |= _ngram_counts(ref, n)  # element-wise max
        for gram, count in _ngram_counts(words, n).items():
            matches[len(gram) - 1] += min(count, max_ref_counts[gram])
        for k in range(n):
            candidates[k] += max(len(words) - k, 0)
        hyp_total += len(words)
        ref_total += _closest_length([len(r) for r in ref_words], len(words))
    precision_product = 1.0
    for k in range(n):
        precision_product *= (matches[k] + 1e-15) / (candidates[k] + 1e-9)
    bleu = precision_product ** (1.0 / n)
    ratio = (hyp_total + 1e-15) / (ref_total + 1e-9)
    if ratio < 1:
        bleu *= math.exp(1 - 1 / ratio)
    return bleu


def rouge_l_f(prediction: str, reference: str) -> float:
    """'rouge-l' F of the pip `rouge` package (the MileBench dependency, rouge==1.0.1).

    Summary-level LCS over sentences split on '.', with unique-token counts as
    lengths and F = 2PR / (P + R + 1e-8). Both strings must be non-empty.
    """
    from rouge import Rouge  # optional dependency (eval extra)

    return Rouge().get_scores(prediction, reference)[0]["rouge-l"]["f"]
