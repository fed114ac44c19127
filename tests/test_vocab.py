"""Tests of symrnn.vocab: the vocabulary's ordering, encoding, pairs and the unknown share."""

import itertools
import logging
import operator

import nltk
import numpy as np
import pytest

from symrnn.errors import DataError
from symrnn.vocab import (
    MASK_TOKEN,
    SENTENCE_END,
    SENTENCE_START,
    UNKNOWN_TOKEN,
    Vocabulary,
    count_tokens,
    least_frequent_word,
    sentences_to_pairs,
    unknown_share,
    unknown_share_warning,
)

S, E = SENTENCE_START, SENTENCE_END


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
    with caplog.at_level(logging.WARNING, logger="symrnn.vocab"):
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
    counts = count_tokens(sentences)
    assert len(counts) == unique
    assert least_frequent_word(counts, Vocabulary.build(sentences, size)) == least


@pytest.mark.parametrize("size", [3, 0, -5, 2.5, "2000", None, True])
def test_vocabulary_rejects_a_size_that_cannot_hold_the_reserved_tokens(size):
    with pytest.raises(DataError, match="vocabulary_size"):
        Vocabulary.build(_hand_sentences(), size)


def test_vocabulary_from_its_word_list_round_trips_a_built_vocabulary():
    vocab = Vocabulary.build(_hand_sentences(), vocabulary_size=8)
    again = Vocabulary(list(vocab.index_to_word))
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
def test_vocabulary_rejects_invalid_word_lists(words):
    with pytest.raises(DataError):
        Vocabulary(words)




# ---------------------------------------------------------------------------
# Pairs
# ---------------------------------------------------------------------------


def test_sentences_to_pairs_shifts_ids_by_one_and_keeps_ragged_lists():
    sentences = _hand_sentences()
    vocab = Vocabulary.build(sentences, vocabulary_size=8)
    X, Y = sentences_to_pairs(sentences, vocab)
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
        sentences_to_pairs([[S]], vocab)



# ---------------------------------------------------------------------------
# The unknown share
# ---------------------------------------------------------------------------


def test_unknown_share_counts_the_tokens_encoding_maps_to_unknown_token_without_the_markers():
    vocabulary = Vocabulary([MASK_TOKEN, UNKNOWN_TOKEN, "a", "b", SENTENCE_START, SENTENCE_END])
    sentences = [[SENTENCE_START, "a", "z", SENTENCE_END], [SENTENCE_START, "b", UNKNOWN_TOKEN, "y", "a",
                                                                       SENTENCE_END]]
    ids = np.concatenate([vocabulary.encode(s[1:-1]) for s in sentences])
    assert unknown_share(sentences, vocabulary) == np.mean(ids == vocabulary.unknown_index) == 0.5
    assert unknown_share([[SENTENCE_START, SENTENCE_END]], vocabulary) == 0.0


def test_the_unknown_share_warning_starts_above_5_percent_when_the_training_share_is_unknown():
    assert unknown_share_warning(0.05) is None
    line = unknown_share_warning(0.71)
    assert line.startswith("71.0% of the tokens are not in the model's vocabulary (UNKNOWN_TOKEN)")
    assert "\n" not in line


def test_the_unknown_share_warning_starts_5_points_above_the_share_the_model_was_trained_with():
    # A 2,000-word vocabulary leaves 17% of the embedded corpus unknown: no warning on that corpus.
    assert unknown_share_warning(0.175, trained_share=0.175) is None
    assert unknown_share_warning(0.22, trained_share=0.175) is None
    line = unknown_share_warning(0.26, trained_share=0.175)
    assert line.startswith("26.0% of the tokens") and "against 17.5% in the corpus it was trained on" in line

