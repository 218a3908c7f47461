"""VQA-style answer normalizers shared by several benchmarks.

Three close relatives of the VQA v2 answer normalization are in use, and each
benchmark's numbers depend on its own flavour, so all three are kept:

* `evalai_normalize` -- the EvalAI / MMF processor used by TextVQA-style soft
  accuracy (V2PE `eval/vqa/textvqa_eval.py` and the Long-VQA textvqa scorer).
* `vqa_eval_normalize` -- the `VQAEval` punctuation + digit/article processing
  used by MM-NIAH string answers.
* `milebench_process` -- MileBench `Eval.process`: punctuation only, then quote
  stripping and lowercasing (no digit/article step).

Quirks kept on purpose (they change scores):
* the period-stripping regex is applied with ``count=32``: the official code
  passes ``re.UNICODE`` (== 32) as the positional *count* argument;
* punctuation is deleted (not replaced by a space) for *every* listed mark as
  soon as one of them touches a space, or the text holds a digit-comma-digit.
"""

from __future__ import annotations

import re

# Marks handled by the VQA punctuation step, in the official order.
VQA_PUNCTUATION = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\",
    "_", "-", ">", "<", "@", "`", ",", "?", "!",
)
ARTICLES = frozenset({"a", "an", "the"})

# A period not followed by a digit ("3.5" keeps its point).
_PERIOD = re.compile(r"\.(?!\d)")
# The official code passes re.UNICODE (== 32) as `count`: at most 32 periods go.
_PERIOD_STRIP_COUNT = 32
# Digit, comma, digit ("1,000"): switches every mark to deletion.
_VQA_DIGIT_COMMA = re.compile(r"\d,\d")
_EVALAI_DIGIT_COMMA = re.compile(r"(?<=\d),+(?=\d)")

# VQA v2 contraction table: token without apostrophe -> canonical form.
# Capitalised keys never match (text is lowercased first); kept for fidelity.
_CONTRACTION_PAIRS = """
aint ain't|arent aren't|cant can't|couldve could've|couldnt couldn't
couldn'tve couldn't've|couldnt've couldn't've|didnt didn't|doesnt doesn't
dont don't|hadnt hadn't|hadnt've hadn't've|hadn'tve hadn't've|hasnt hasn't
havent haven't|hed he'd|hed've he'd've|he'dve he'd've|hes he's|howd how'd
howll how'll|hows how's|Id've I'd've|I'dve I'd've|Im I'm|Ive I've|isnt isn't
itd it'd|itd've it'd've|it'dve it'd've|itll it'll|let's let's|maam ma'am
mightnt mightn't|mightnt've mightn't've|mightn'tve mightn't've|mightve might've
mustnt mustn't|mustve must've|neednt needn't|notve not've|oclock o'clock
oughtnt oughtn't|ow's'at 'ow's'at|'ows'at 'ow's'at|'ow'sat 'ow's'at|shant shan't
shed've she'd've|she'dve she'd've|she's she's|shouldve should've
shouldnt shouldn't|shouldnt've shouldn't've|shouldn'tve shouldn't've
somebody'd somebodyd|somebodyd've somebody'd've|somebody'dve somebody'd've
somebodyll somebody'll|somebodys somebody's|someoned someone'd
someoned've someone'd've|someone'dve someone'd've|someonell someone'll
someones someone's|somethingd something'd|somethingd've something'd've
something'dve something'd've|somethingll something'll|thats that's
thered there'd|thered've there'd've|there'dve there'd've|therere there're
theres there's|theyd they'd|theyd've they'd've|they'dve they'd've
theyll they'll|theyre they're|theyve they've|twas 'twas|wasnt wasn't
wed've we'd've|we'dve we'd've|weve we've|werent weren't|whatll what'll
whatre what're|whats what's|whatve what've|whens when's|whered where'd
wheres where's|whereve where've|whod who'd|whod've who'd've|who'dve who'd've
wholl who'll|whos who's|whove who've|whyll why'll|whyre why're|whys why's
wont won't|wouldve would've|wouldnt wouldn't|wouldnt've wouldn't've
wouldn'tve wouldn't've|yall y'all|yall'll y'all'll|y'allll y'all'll
yall'd've y'all'd've|y'alld've y'all'd've|y'all'dve y'all'd've|youd you'd
youd've you'd've|you'dve you'd've|youll you'll|youre you're|youve you've
"""
CONTRACTIONS = dict(
    pair.split(" ") for pair in _CONTRACTION_PAIRS.replace("\n", "|").split("|") if pair.strip()
)

_UNITS = "zero one two three four five six seven eight nine ten".split()
# EvalAI maps only zero..ten (and "none" -> "0").
EVALAI_NUMBERS = {"none": "0", **{word: str(i) for i, word in enumerate(_UNITS)}}
# VQAEval (MM-NIAH) maps zero..twenty and the tens up to ninety.
_TEENS = "eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
VQA_EVAL_NUMBERS = {
    **{word: str(i) for i, word in enumerate(_UNITS)},
    **{word: str(11 + i) for i, word in enumerate(_TEENS)},
    **{word: str(20 + 10 * i) for i, word in enumerate(_TENS)},
}


def strip_vqa_punctuation(text: str, digit_comma: re.Pattern = _VQA_DIGIT_COMMA) -> str:
    """VQA punctuation step: each mark is deleted or turned into a space.

    A mark is deleted when it touches a space anywhere in the *original* text or
    when the text holds a digit-comma-digit; otherwise it becomes a space. Then
    up to 32 periods not followed by a digit are deleted.
    """
    has_digit_comma = digit_comma.search(text) is not None
    out = text
    for mark in VQA_PUNCTUATION:
        touches_space = (mark + " " in text) or (" " + mark in text)
        out = out.replace(mark, "" if (touches_space or has_digit_comma) else " ")
    return _PERIOD.sub("", out, count=_PERIOD_STRIP_COUNT)


def _digits_articles_contractions(text: str, numbers: dict[str, str]) -> str:
    """Lowercase, map number words, drop articles, expand contractions."""
    words = [numbers.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def evalai_normalize(answer: str) -> str:
    """EvalAI/MMF answer processor (TextVQA soft accuracy).

    lowercase; drop ',' and '?'; split off "'s"; newlines/tabs to spaces; VQA
    punctuation; number words zero..ten and 'none' to digits; drop articles;
    expand contractions.
    """
    text = answer.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    text = strip_vqa_punctuation(text, _EVALAI_DIGIT_COMMA)
    return _digits_articles_contractions(text, EVALAI_NUMBERS)


def vqa_eval_normalize(answer: str) -> str:
    """MM-NIAH `VQAEval` processing: whitespace, punctuation, digits/articles."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    text = strip_vqa_punctuation(text)
    return _digits_articles_contractions(text, VQA_EVAL_NUMBERS)


def contains_whole_words(sentence: str, phrase: str) -> bool:
    r"""True when `phrase` occurs in `sentence` between regex word boundaries (\b).

    An empty phrase matches any sentence, as in the official `has_word`.
    """
    return re.search(r"\b" + re.escape(phrase) + r"\b", sentence) is not None


def milebench_process(answer: str) -> str:
    """MileBench `Eval.process`: whitespace, VQA punctuation, quotes, lowercase."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    text = strip_vqa_punctuation(text)
    return text.strip("'").strip('"').strip().lower()
