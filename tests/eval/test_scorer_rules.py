"""Hand-worked checks of the scoring rules, independent of the official fixture."""

from __future__ import annotations

import math

import pytest

from v2pe.eval.scorers import get_scorer
from v2pe.eval.scorers.anls import anls_due, anls_infographicsvqa, anls_owl, anls_stvqa
from v2pe.eval.scorers.due import due_f1
from v2pe.eval.scorers.longvqa import LONGVQA_TASK_METRICS, score_longvqa_task
from v2pe.eval.scorers.longvqa_rectify import rectify
from v2pe.eval.scorers.milebench import match_choice, milebench_multichoice, option_letter
from v2pe.eval.scorers.mmniah import mmniah_is_correct
from v2pe.eval.scorers.normalize import evalai_normalize, strip_vqa_punctuation, vqa_eval_normalize
from v2pe.eval.scorers.relaxed import relaxed_accuracy_owl, relaxed_accuracy_vqa
from v2pe.eval.scorers.text_metrics import corpus_bleu, ptb_tokenize
from v2pe.eval.scorers.vqa_accuracy import longvqa_textvqa_accuracy, textvqa_accuracy
from v2pe.eval.scorers.wordnet import NounLemmatizer
from v2pe.eval.scorers.wtq import wtq_denotation_match

pytestmark = pytest.mark.filterwarnings("ignore:NLTK 'words' corpus not found")


def keep_word(word: str) -> str:
    """Stand-in lemmatizer so rectify tests do not need WordNet data."""
    return word


# --- ANLS: the four flavours differ exactly at the threshold ------------------

def test_anls_threshold_edges_differ_between_flavours():
    # "ab" vs "abcd": distance 2 over length 4 -> similarity exactly 0.5.
    assert anls_infographicsvqa("ab", ["abcd"]) == 0.5  # kept: >= threshold
    assert anls_stvqa("ab", ["abcd"]) == 0.5  # kept: >= 0.5
    assert anls_owl("ab", ["abcd"]) == 0.0  # distance must be < 0.5
    assert anls_due("ab", ["abcd"]) == 0.0  # similarity must be > 0.5


def test_anls_infographicsvqa_divides_by_raw_length():
    # Whitespace-only prediction: distance("", "a") = 1 but length = len("   ") = 3.
    assert anls_infographicsvqa("   ", ["a"]) == pytest.approx(1 - 1 / 3)


def test_anls_takes_best_answer():
    assert anls_stvqa("Paris", ["London", "paris"]) == 1.0


# --- relaxed accuracy: which side is the target --------------------------------

def test_relaxed_accuracy_tolerance_is_relative_to_the_target():
    # Gold 10, model 9.5: |10-9.5|/10 = 5% passes when gold is the target (owl) ...
    assert relaxed_accuracy_owl("9.5", ["10"]) == 1.0
    # ... but evaluate_vqa.py makes the model answer the target: 0.5/9.5 > 5%.
    assert relaxed_accuracy_vqa("9.5", ["10"]) == 0.0
    assert relaxed_accuracy_vqa("10.5", ["10"]) == 1.0  # 0.5/10.5 < 5%


def test_relaxed_accuracy_percent_and_zero_target():
    assert relaxed_accuracy_owl("45%", ["0.45"]) == 1.0
    assert relaxed_accuracy_owl("0.01", ["0"]) == 0.0  # zero target: string equality
    assert relaxed_accuracy_owl("Apple", ["apple"]) == 1.0


# --- VQA normalizers -------------------------------------------------------------

def test_period_strip_stops_after_32_periods():
    text = "a." * 40
    assert strip_vqa_punctuation(text) == "a" * 32 + "a." * 8


def test_vqa_eval_normalize_deletes_punctuation_when_a_digit_comma_digit_is_present():
    assert vqa_eval_normalize("Two dogs, 1,000 cats.") == "2 dogs 1000 cats"


def test_evalai_normalize_splits_possessive_and_drops_articles():
    assert evalai_normalize("The dog's bone, isn't it?") == "dog 's bone isn't it"
    assert evalai_normalize("x/y") == "x y"  # slash not touching a space -> space
    assert evalai_normalize("a/b") == "b"  # ... and the article "a" is then dropped


def test_textvqa_accuracy_leave_one_out():
    answers = ["x", "x"] + ["y"] * 8
    # Leaving out an 'x' (2 ways): 1 match -> 1/3; leaving out a 'y' (8 ways): 2 -> 2/3.
    assert textvqa_accuracy("x", answers) == pytest.approx((2 * 1 / 3 + 8 * 2 / 3) / 10)
    assert textvqa_accuracy("y", answers) == 1.0


def test_longvqa_textvqa_single_answer_is_exact_match_after_normalization():
    assert longvqa_textvqa_accuracy("Two.", ["2"]) == 1.0
    assert longvqa_textvqa_accuracy("3", ["2"]) == 0.0


# --- WTQ and DUE -------------------------------------------------------------------

@pytest.mark.parametrize(("predicted", "gold", "expected"), [
    (["2001"], ["2001-xx-xx"], True),  # year-only date is the number 2001
    (["2.0", "1"], ["1", "2"], True),  # numbers, order-free
    (["a"], ["a", "a"], True),  # duplicates collapse
    (["paris"], ["Paris (France)"], True),  # trailing details in parentheses dropped
    (["x"], ["x", "y"], False),  # sizes differ
    (["2001-02-03"], ["2001-2-3"], True),  # same date, different spelling
])
def test_wtq_denotation(predicted, gold, expected):
    assert wtq_denotation_match(predicted, gold) is expected


def test_due_f1_pools_precision_and_recall():
    items = [
        {"id": "a", "pr": "X.", "an": "x"},  # match after lowercase + rstrip('.')
        {"id": "b", "pr": "y", "an": "z"},
        {"id": "c", "pr": [], "an": "w"},  # an empty prediction is still one (unmatched) prediction annotation
    ]
    precision, recall = 1 / 3, 1 / 3
    assert due_f1(items) == pytest.approx(100 * 2 * precision * recall / (precision + recall))


# --- BLEU and tokenization ---------------------------------------------------------------

def test_ptb_tokenize_splits_clitics_and_drops_punctuation():
    assert ptb_tokenize('Don\'t stop-sign (big), "OK".') == ["do", "n't", "stop-sign", "big", "ok"]


def test_bleu4_smoothing_of_missing_ngrams():
    # "the cat" vs itself: 1- and 2-gram precision 1; 3/4-grams have no candidates,
    # each contributing (0 + 1e-15) / (0 + 1e-9) = 1e-6 -> BLEU-4 = (1e-12) ** 0.25.
    assert corpus_bleu(["the cat"], [["the cat"]]) == pytest.approx(1e-3, rel=1e-6)


def test_bleu4_brevity_penalty_and_closest_reference():
    # 4 of 4 words match; closest reference length is 5 (not 9) -> exp(1 - 5/4).
    refs = [["a b c d e", "a b c d e f g h i"]]
    assert corpus_bleu(["a b c d"], refs) == pytest.approx(math.exp(-0.25), rel=1e-6)


# --- Long-VQA rectify ----------------------------------------------------------------------

@pytest.mark.parametrize(("task", "text", "expected"), [
    ("chartqa", " 1,234 apples. ", "1234"),  # commas, then unit dropped
    ("chartqa", "Three quarters", "3"),  # number word, then unit dropped
    ("chartqa", "3/4", "0.75"),
    ("chartqa", "1:0", "1:0"),  # division by zero leaves the text
    ("chartqa", "[12%]", "12%"),  # '%' is removed before the brackets
    ("chartqa", "Not sure", "no"),  # yes/no prefix, then lowercased
    ("svqa", "B) cat", "B"),
    ("svqa", "b) cat", "b) cat"),  # only capital A-D
    ("tabfact", "no way", "No"),
    ("tabfact", "YES", "YES"),  # case-sensitive prefixes
    ("docvqa", " The End. ", "The End"),  # only the strip
])
def test_rectify_steps(task, text, expected):
    assert rectify(task, text, ing_vocabulary=set(), lemmatize=keep_word) == expected


def test_rectify_ing_removal_uses_the_word_list():
    words = {"run", "make", "sing"}
    assert rectify("gqa", "running", ing_vocabulary=words, lemmatize=keep_word) == "run"  # doubled consonant
    assert rectify("gqa", "making", ing_vocabulary=words, lemmatize=keep_word) == "make"  # root + e
    assert rectify("gqa", "singing", ing_vocabulary=words, lemmatize=keep_word) == "sing"
    assert rectify("gqa", "running", ing_vocabulary=set(), lemmatize=keep_word) == "running"


def test_noun_lemmatizer_morphy_rules():
    lemmatizer = NounLemmatizer(
        nouns=frozenset({"dog", "box", "a", "as", "wolf", "child"}),
        exceptions={"children": ("child",), "is": ("is",)},
    )
    assert lemmatizer.lemmatize("dogs") == "dog"
    assert lemmatizer.lemmatize("boxes") == "box"  # 'xes' -> 'x'
    assert lemmatizer.lemmatize("wolves") == "wolf"  # 'ves' -> 'f'
    assert lemmatizer.lemmatize("as") == "a"  # both nouns: the shortest wins
    assert lemmatizer.lemmatize("children") == "child"  # exception list
    assert lemmatizer.lemmatize("is") == "is"  # exception to a non-noun: unchanged
    assert lemmatizer.lemmatize("dogses") == "dogses"  # suffixes are removed once only


# --- Long-VQA routing ----------------------------------------------------------------------

def test_longvqa_metric_table():
    expected = {
        "RACC": {"chartqa", "clevr", "dvqa", "gqa", "ocrvqa"},
        "EACC": {"svqa", "tabfact"},
        "F1": {"deepform", "kleistercharity"},
        "ANLS": {"docvqa", "infovqa"},
        "TEXTVQA": {"okvqa", "textvqa", "vizwiz"},
        "BLEU4": {"textcaps", "visualmrc"},
        "WTQ": {"wikitablequestions"},
    }
    assert LONGVQA_TASK_METRICS == {task: metric for metric, tasks in expected.items() for task in tasks}


def test_score_longvqa_task_per_metric():
    svqa = [{"pr": "A.", "an": "A"}, {"pr": "b", "an": "B"}]  # rectify keeps lowercase 'b'
    assert score_longvqa_task("svqa", svqa) == 50.0
    kleister = [{"id": 1, "pr": "Foo.", "an": "foo"}, {"id": 2, "pr": "bar", "an": "baz"}]
    assert score_longvqa_task("kleistercharity", kleister) == pytest.approx(50.0)
    docvqa = [{"pr": "abcd", "an": "abce"}, {"pr": "x", "an": "y"}]  # ANLS 0.75 and 0
    assert score_longvqa_task("docvqa", docvqa) == pytest.approx(37.5)


def test_longvqa_bleu_is_corpus_level_not_mean_of_items():
    items = [{"pr": "a b c d", "an": "a b c d"}, {"pr": "a b", "an": "a b c d"}]
    # Pooled: 6 words, ref 8; matches 6/6, 4/4, 2/2, 1/1 -> exp(1 - 8/6).
    assert score_longvqa_task("textcaps", items) == pytest.approx(100 * math.exp(1 - 8 / 6), rel=1e-6)


# --- MM-NIAH and MileBench variants -----------------------------------------------------------

def test_mmniah_variants_differ_on_bare_direction_words():
    assert mmniah_is_correct(1, "right", "official") == 0.0
    assert mmniah_is_correct(1, "right", "v2pe") == 1.0
    assert mmniah_is_correct(1, "The camera is moving right.", "official") == 1.0


def test_mmniah_v2pe_exact_match_rescues_non_word_answers():
    # r"\b\$5\b" cannot match: there is no word boundary before '$' at the start.
    assert mmniah_is_correct("$5", "$5", "official") == 0.0
    assert mmniah_is_correct("$5", "$5", "v2pe") == 1.0


def test_mmniah_counting_partial_credit_and_parse_failure():
    assert mmniah_is_correct([1, 2, 3, 4], "```json\n[1, 2, 0, 4, 9]\n```") == 0.75
    assert mmniah_is_correct([1, 2], "one, two") == 0.0


def test_milebench_option_letters_beyond_z():
    # char(i) of the MileBench evaluate.py the fixtures were scored with (and the V2PE copy): A..Z, AA..AZ, BA..
    for variant in ("v2pe", "official"):
        assert [option_letter(i, variant) for i in (0, 25, 26, 27, 51, 52)] == ["A", "Z", "AA", "AB", "AZ", "BA"]


def test_milebench_two_letter_answer_in_both_variants():
    choices = [f"opt{i}" for i in range(30)]
    assert milebench_multichoice("AB", "opt27", choices, "v2pe") == (1.0, "AB")
    assert milebench_multichoice("AB", "opt27", choices, "official") == (1.0, "AB")


def test_milebench_empty_prediction_picks_c():
    assert milebench_multichoice("", "three", ["one", "two", "three"]) == (1.0, "C")


def test_milebench_match_choice_order_of_rules():
    options = {"A": "red", "B": "green"}
    assert match_choice("b green", options) == "B"  # letter + text
    assert match_choice("it is green", options) == "B"  # text alone
    assert match_choice("a", options) == "A"  # bare letter
    assert match_choice("ab", options) == "AB"  # letters collected


def test_registry_variant_selection():
    assert get_scorer("mmniah_is_correct_int").variant == "official"
    assert get_scorer("mmniah_is_correct_int", source="v2pe:eval/mm_niah").variant == "v2pe"
    assert get_scorer("mmniah_is_correct_int", source="mmniah:calculate_scores.py").variant == "official"
    assert get_scorer("anls_stvqa", source="official").variant == "v2pe"  # single implementation
    with pytest.raises(KeyError):
        get_scorer("no_such_scorer")
    with pytest.raises(ValueError):
        get_scorer("anls_stvqa", source="other:repo")
