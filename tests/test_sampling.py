"""Sentence generation (symrnn.sampling) with a fake NumPy one-step function, and once
through a real GRUTheano (models.tutorial.generate_sentence)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from symrnn import sampling
from symrnn.errors import ConfigError
from symrnn.sampling import generate, sample_tokens
from tests import numpy_reference as ref

MASK, UNK, START, END = 0, 1, 2, 3
VOCAB = 10  # words are 4..9
WORDS = list(range(4, VOCAB))


class FakeModel:
    """A deterministic stand-in for a compiled one-step function.

    Its single state (B, 1) counts the tokens fed since the sentence began, so
    ``logits_fn(position, last_token)`` gives the logits for the token at
    ``position`` (the start marker is position 0). Every call is recorded.
    """

    def __init__(self, logits_fn):
        self.logits_fn = logits_fn
        self.calls = []

    def initial_states(self, batch):
        return [np.zeros((batch, 1))]

    def step(self, ids, position):
        assert isinstance(ids, np.ndarray) and ids.ndim == 1 and ids.dtype == np.int32
        assert position.shape == (len(ids), 1)
        self.calls.append(ids.copy())
        position = position + 1
        logits = np.stack([self.logits_fn(int(p), int(t)) for p, t in zip(position[:, 0], ids)])
        return logits, position

    def fed(self, skip=0):
        """All ids fed after the first ``skip`` calls, in order (batch_size 1)."""
        return [int(i) for call in self.calls[skip:] for i in call]


def chain(words, strength=8.0):
    """Logits that make ``words`` then END by far the most likely continuation."""

    def logits_fn(position, token):
        logits = np.zeros(VOCAB)
        logits[words[position - 1] if position - 1 < len(words) else END] = strength
        return logits

    return logits_fn


def noisy(unknown=0.0, end=1.0):
    """Deterministic pseudo-random logits for each (position, token); END grows likelier with length."""

    def logits_fn(position, token):
        logits = np.random.default_rng(position * 1000 + token).normal(size=VOCAB)
        logits[[MASK, START]] = -np.inf
        logits[UNK] = unknown
        logits[END] = end + 0.4 * position
        return logits

    return logits_fn


def run(model, n, seed=0, **kwargs):
    return generate(model.step, model.initial_states, n, START, END, np.random.default_rng(seed), **kwargs)


# --------------------------------------------------------------------------
# Steps, prefix and greedy decoding
# --------------------------------------------------------------------------


def test_greedy_generation_calls_the_step_function_once_for_the_start_marker_and_once_per_word():
    model = FakeModel(chain([4, 5, 6, 7]))
    result = run(model, 1, temperature=0, batch_size=1)
    assert result.sentences == [[4, 5, 6, 7]]
    assert result.attempts == 1 and not result.exhausted
    # START, then each word; the end marker is never fed.
    assert [list(c) for c in model.calls] == [[START], [4], [5], [6], [7]]
    assert result.steps == len(model.calls) == 5


def test_temperature_0_follows_the_argmax_path_of_the_model():
    logits_fn = noisy(end=-2.0)
    expected, token = [], START
    while True:
        token = int(np.argmax(logits_fn(len(expected) + 1, token)))
        if token == END:
            break
        expected.append(token)
    assert 3 <= len(expected) <= 98  # a real sentence, within the default limits
    result = run(FakeModel(logits_fn), 3, temperature=0, min_length=1)
    assert result.sentences == [expected] * 3


def test_every_sampled_token_is_fed_once_in_order_and_the_prefix_only_once(monkeypatch):
    sampled = []

    def recording_sample_tokens(logits, rng, temperature=1.0, top_k=0):
        tokens = sample_tokens(logits, rng, temperature, top_k)
        sampled.extend(int(t) for t in tokens)
        return tokens

    monkeypatch.setattr(sampling, "sample_tokens", recording_sample_tokens)
    model = FakeModel(noisy(unknown=0.5))
    prompt = [5, 6]
    result = run(model, 6, seed=3, batch_size=1, prompt=prompt, reject_ids=[UNK])
    assert not result.exhausted and len(result.sentences) == 6
    assert result.attempts > 6  # some attempts were rejected and restarted
    assert all(len(call) == 1 for call in model.calls)
    assert model.fed()[:3] == [START, *prompt]
    fed = model.fed(skip=3)
    # The step function sees exactly the sampled tokens, in order (the very last one,
    # an end marker, needs no step): one call per produced token, never a replay.
    assert fed == sampled[: len(fed)] and len(sampled) - len(fed) == 1
    assert sampled[-1] == END
    assert result.steps == len(model.calls) == 3 + len(sampled) - 1
    assert START not in fed


def test_a_prompt_starts_every_sentence_and_is_fed_once_after_the_start_marker():
    model = FakeModel(noisy())
    result = run(model, 5, seed=1, prompt=[8, 9], min_length=1)
    assert len(result.sentences) == 5
    assert [list(c) for c in model.calls[:3]] == [[START], [8], [9]]
    for sentence in result.sentences:
        assert sentence[:2] == [8, 9]


def test_restarted_slots_in_a_batch_start_again_from_the_state_after_the_prefix():
    model = FakeModel(chain([4, 5, 6, 7]))
    result = run(model, 7, temperature=0, batch_size=3)
    assert result.sentences == [[4, 5, 6, 7]] * 7
    assert [len(c) for c in model.calls[:2]] == [1, 3]  # the prefix once, then the whole batch


def test_no_sentences_asked_means_no_steps():
    model = FakeModel(noisy())
    result = run(model, 0)
    assert result.sentences == [] and result.steps == 0 and model.calls == [] and not result.exhausted


# --------------------------------------------------------------------------
# The tutorial's acceptance rules, bounded
# --------------------------------------------------------------------------


def test_sentences_with_an_unknown_token_are_rejected():
    model = FakeModel(noisy(unknown=1.5))
    result = run(model, 20, seed=2, reject_ids=[UNK], min_length=1)
    assert len(result.sentences) == 20
    assert result.attempts > 20
    assert all(UNK not in s for s in result.sentences)
    # Without the rule the same model does produce unknown tokens.
    unrestricted = run(FakeModel(noisy(unknown=1.5)), 20, seed=2, min_length=1)
    assert any(UNK in s for s in unrestricted.sentences)


@pytest.mark.parametrize("min_length,accepted", [(5, True), (6, False)])
def test_min_length_counts_the_start_and_end_markers(min_length, accepted):
    # Three words: five tokens with the markers, as the tutorial counts them.
    result = run(FakeModel(chain([4, 5, 6])), 1, temperature=0, min_length=min_length, max_attempts=4)
    assert result.sentences == ([[4, 5, 6]] if accepted else [])
    assert result.exhausted is (not accepted)


@pytest.mark.parametrize("max_length,accepted", [(6, True), (5, False)])
def test_max_length_counts_the_markers_and_longer_sentences_are_rejected(max_length, accepted):
    # Four words: six tokens with the markers.
    model = FakeModel(chain([4, 5, 6, 7]))
    result = run(model, 1, temperature=0, min_length=1, max_length=max_length, max_attempts=3, batch_size=1)
    assert result.sentences == ([[4, 5, 6, 7]] if accepted else [])
    assert result.exhausted is (not accepted)
    if not accepted:
        assert result.attempts == 3
        assert result.steps <= 1 + 3 * max_length


def test_attempts_are_bounded_when_no_sentence_can_ever_be_accepted():
    never_ends = FakeModel(lambda position, token: np.where(np.arange(VOCAB) >= 4, 0.0, -np.inf))
    result = run(never_ends, 2, max_length=5, max_attempts=7, batch_size=2)
    assert result.exhausted and result.sentences == [] and result.attempts == 7
    assert result.steps <= 1 + 7 * 5
    # The default bound (100 n + 100 attempts) ends too.
    result = run(FakeModel(never_ends.logits_fn), 2, max_length=4)
    assert result.exhausted and result.attempts == 300


def test_accepted_sentences_obey_every_rule_at_once():
    result = run(FakeModel(noisy(unknown=0.8, end=-1.0)), 30, seed=5, reject_ids=[UNK, MASK, START],
                 min_length=6, max_length=9)
    assert len(result.sentences) == 30
    for sentence in result.sentences:
        assert 6 <= len(sentence) + 2 <= 9
        assert not set(sentence) & {UNK, MASK, START, END}


# --------------------------------------------------------------------------
# Randomness
# --------------------------------------------------------------------------


def test_equal_seeds_give_equal_sentences_and_different_seeds_differ():
    first = run(FakeModel(noisy()), 8, seed=7, min_length=1)
    second = run(FakeModel(noisy()), 8, seed=7, min_length=1)
    other = run(FakeModel(noisy()), 8, seed=8, min_length=1)
    assert first.sentences == second.sentences
    assert first.sentences != other.sentences


LOGITS = np.array([0.0, 1.0, 2.0, -1.0, 0.5, -np.inf])


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_sample_tokens_draws_from_the_softmax_of_logits_over_temperature(temperature):
    draws = 40000
    tokens = sample_tokens(np.tile(LOGITS, (draws, 1)), np.random.default_rng(11), temperature)
    assert tokens.dtype == np.int32 and tokens.shape == (draws,)
    expected = ref.softmax(LOGITS / temperature)
    counts = np.bincount(tokens, minlength=len(LOGITS))
    assert counts[-1] == 0  # probability 0 is never drawn
    chi2 = np.sum((counts[:-1] - draws * expected[:-1]) ** 2 / (draws * expected[:-1]))
    assert chi2 < stats.chi2.ppf(0.9999, df=len(LOGITS) - 2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sample_tokens_picks_what_float64_inverse_cdf_sampling_picks_with_the_same_draws(dtype):
    rng = np.random.default_rng(14)
    logits = (rng.normal(size=(500, 300)) * 3).astype(dtype)
    logits[:, 7] = -np.inf
    for temperature in (0.5, 1.0):
        tokens = sample_tokens(logits, np.random.default_rng(15), temperature)
        draws = np.random.default_rng(15).random(len(logits))
        cdf = np.cumsum(ref.softmax(logits.astype(np.float64) / temperature), axis=1)
        expected = (cdf <= draws[:, None] * cdf[:, -1:]).sum(axis=1)
        # float32 exponentials can move a draw that lies within 1e-6 of a
        # boundary to the neighbouring token; nothing else may differ.
        assert np.mean(tokens == expected) > 0.995
        assert np.all(np.abs(tokens - expected) <= 1)
        assert not np.any(tokens == 7)


def test_sample_tokens_at_temperature_0_is_the_argmax_of_each_row():
    logits = np.random.default_rng(12).normal(size=(50, 7))
    np.testing.assert_array_equal(sample_tokens(logits, np.random.default_rng(0), 0), np.argmax(logits, axis=1))


def test_a_temperature_too_small_for_float32_samples_greedily_without_overflow_warnings():
    import warnings

    logits = np.random.default_rng(12).normal(size=(50, 7)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokens = sample_tokens(logits, np.random.default_rng(0), 1e-300)
    np.testing.assert_array_equal(tokens, np.argmax(logits, axis=1))


# --------------------------------------------------------------------------
# Top-k sampling
# --------------------------------------------------------------------------


@pytest.mark.parametrize("top_k,temperature", [(3, 1.0), (2, 0.5), (4, 2.0)])
def test_top_k_draws_only_the_k_largest_logits_from_their_softmax_over_temperature(top_k, temperature):
    draws = 40000
    logits = np.array([0.5, 2.0, -1.0, 1.5, 0.0, 1.0, -np.inf])
    tokens = sample_tokens(np.tile(logits, (draws, 1)), np.random.default_rng(21), temperature, top_k)
    assert tokens.dtype == np.int32 and tokens.shape == (draws,)
    best = np.argsort(-logits, kind="stable")[:top_k]
    counts = np.bincount(tokens, minlength=len(logits))
    assert counts.sum() == counts[best].sum()  # nothing outside the k best is ever drawn
    expected = ref.softmax(logits[best] / temperature)
    chi2 = np.sum((counts[best] - draws * expected) ** 2 / (draws * expected))
    assert chi2 < stats.chi2.ppf(0.9999, df=top_k - 1)


def test_top_k_of_1_is_the_argmax_of_each_row_whatever_the_temperature():
    logits = np.random.default_rng(24).normal(size=(60, 9))
    for temperature in (0.5, 1.0, 3.0):
        np.testing.assert_array_equal(sample_tokens(logits, np.random.default_rng(0), temperature, 1),
                                      np.argmax(logits, axis=1))


@pytest.mark.parametrize("top_k", [9, 10, 1000])
def test_top_k_of_the_vocabulary_size_or_more_samples_exactly_as_without_top_k(top_k):
    logits = np.random.default_rng(25).normal(size=(200, 9)).astype(np.float32)
    np.testing.assert_array_equal(sample_tokens(logits, np.random.default_rng(3), 1.0, top_k),
                                  sample_tokens(logits, np.random.default_rng(3), 1.0))


def test_a_negative_top_k_is_refused():
    with pytest.raises(ConfigError, match="top_k"):
        sample_tokens(np.zeros((1, 4)), np.random.default_rng(0), 1.0, -1)


def test_sentences_with_top_k_1_are_the_greedy_sentences():
    greedy = run(FakeModel(noisy()), 4, temperature=0, min_length=1)
    top_1 = run(FakeModel(noisy()), 4, seed=9, temperature=1.5, top_k=1, min_length=1)
    assert len(greedy.sentences) == 4
    assert top_1.sentences == greedy.sentences


# --------------------------------------------------------------------------
# Through a real GRUTheano
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_gru():
    from models.gru import GRUTheano

    original = GRUTheano.__theano_build__
    # generate_sentence needs only compile_step: skip compiling the five training functions.
    GRUTheano.__theano_build__ = lambda self: setattr(self, "_step", None)
    try:
        np.random.seed(4)
        model = GRUTheano(12, hidden_dim=4, dtype="float64")
    finally:
        GRUTheano.__theano_build__ = original
    model.V.set_value(model.V.get_value() * 4)  # sharper distributions
    return model


def test_generate_sentence_through_a_real_gru_returns_none_or_a_marked_sentence(tiny_gru):
    from models.tutorial import SENTENCE_END_TOKEN, SENTENCE_START_TOKEN, UNKNOWN_TOKEN, generate_sentence

    index_to_word = ["<MASK/>", UNKNOWN_TOKEN, SENTENCE_START_TOKEN, SENTENCE_END_TOKEN] + [f"w{i}" for i in range(4, 12)]
    word_to_index = {w: i for i, w in enumerate(index_to_word)}
    results = [generate_sentence(tiny_gru, index_to_word, word_to_index, rng=np.random.default_rng(seed)) for seed in range(40)]
    accepted = [r for r in results if r is not None]
    assert accepted, "no sentence accepted in 40 attempts"
    for sentence in accepted:
        assert sentence[0] == word_to_index[SENTENCE_START_TOKEN]
        assert sentence[-1] == word_to_index[SENTENCE_END_TOKEN]
        assert 5 <= len(sentence) <= 100
        assert word_to_index[UNKNOWN_TOKEN] not in sentence
        assert word_to_index[SENTENCE_END_TOKEN] not in sentence[:-1]
    # Equal generators give equal sentences.
    again = [generate_sentence(tiny_gru, index_to_word, word_to_index, rng=np.random.default_rng(seed)) for seed in range(40)]
    assert again == results
