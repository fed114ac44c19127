"""Beyond the tutorial: part 2's RNN, character models, validation split, annealing."""

from pathlib import Path

import numpy as np
import pytest

from tests.numpy_reference import numerical_gradient, softmax, tutorial_rnn_forward
from symrnn.batching import split_train_validation
from symrnn.tokenize import tokenize_characters
from symrnn.vocab import Vocabulary, sentences_to_pairs
from symrnn.training import anneal_learning_rate, evaluate, train

PART2_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "rnnlm-part2-trained-model-theano.npz"


@pytest.fixture(scope="module")
def small_rnn():
    from models.rnn import RNNTheano

    np.random.seed(3)
    return RNNTheano(20, hidden_dim=5, bptt_truncate=-1, dtype="float64")


def test_rnn_theano_probabilities_equal_the_numpy_part2_reference(small_rnn):
    x = np.array([0, 4, 7, 19, 3], dtype=np.int32)
    U, V, W = (p.get_value() for p in small_rnn.params)
    np.testing.assert_allclose(small_rnn.forward_propagation(x), tutorial_rnn_forward(U, V, W, x), rtol=1e-10)
    np.testing.assert_array_equal(small_rnn.predict(x), tutorial_rnn_forward(U, V, W, x).argmax(axis=1))


def test_rnn_theano_gradients_equal_finite_differences_of_the_reference_loss(small_rnn):
    x = np.array([0, 4, 7, 19, 3], dtype=np.int32)
    y = np.array([4, 7, 19, 3, 1], dtype=np.int32)
    values = [p.get_value() for p in small_rnn.params]

    def loss():
        probs = tutorial_rnn_forward(*values, x)
        return -np.sum(np.log(probs[np.arange(len(y)), y]))

    assert small_rnn.ce_error(x, y) == pytest.approx(loss(), rel=1e-10)
    for grad, value in zip(small_rnn.bptt(x, y), values):
        np.testing.assert_allclose(grad, numerical_gradient(loss, value), rtol=1e-5, atol=1e-8)


def test_rnn_theano_sgd_step_is_plain_gradient_descent(small_rnn):
    x = np.array([1, 2, 3], dtype=np.int32)
    y = np.array([2, 3, 4], dtype=np.int32)
    before = [p.get_value() for p in small_rnn.params]
    grads = small_rnn.bptt(x, y)
    small_rnn.sgd_step(x, y, 0.1)
    for param, old, grad in zip(small_rnn.params, before, grads):
        np.testing.assert_allclose(param.get_value(), old - 0.1 * grad, rtol=1e-12)
    for param, old in zip(small_rnn.params, before):
        param.set_value(old)


def test_rnn_theano_truncation_changes_only_the_recurrent_gradient():
    from models.rnn import RNNTheano

    np.random.seed(5)
    full = RNNTheano(15, hidden_dim=4, bptt_truncate=-1, dtype="float64")
    np.random.seed(5)
    truncated = RNNTheano(15, hidden_dim=4, bptt_truncate=2, dtype="float64")
    x = np.arange(1, 9, dtype=np.int32)
    y = np.arange(2, 10, dtype=np.int32)
    g_full, g_trunc = full.bptt(x, y), truncated.bptt(x, y)
    np.testing.assert_allclose(g_trunc[1], g_full[1], rtol=1e-12)  # V: every step's output gradient
    assert not np.allclose(g_trunc[2], g_full[2])  # W: cut after 2 steps


@pytest.mark.skipif(not PART2_FILE.exists(), reason="../shared/data is not present (as on a user's machine)")
def test_the_tutorials_own_part2_model_loads_and_matches_the_numpy_reference():
    from models.loading import model_from_checkpoint
    from models.rnn import RNNTheano
    from symrnn.checkpoint import load_checkpoint

    model = RNNTheano.from_file(str(PART2_FILE), dtype="float64")
    raw = np.load(PART2_FILE)
    U, V, W = (raw[k].astype(np.float64) for k in ("U", "V", "W"))
    assert U.shape == (50, 8000) and V.shape == (8000, 50) and W.shape == (50, 50)
    x = np.array([0, 1, 17, 523, 7999, 2, 64], dtype=np.int32)
    reference = tutorial_rnn_forward(U, V, W, x)
    np.testing.assert_allclose(model.forward_propagation(x), reference, rtol=1e-6, atol=1e-12)

    library = model_from_checkpoint(load_checkpoint(str(PART2_FILE)), dtype="float64")
    step, states = library.compile_step(), library.initial_state_values(1)
    for t, word in enumerate(x):
        logits, *states = step(np.array([word], dtype=np.int32), *states)
        np.testing.assert_allclose(softmax(logits[0]), reference[t], rtol=1e-6, atol=1e-12, err_msg=f"step {t}")


def test_a_character_model_learns_a_small_text():
    from models.language_model import RNNLanguageModel

    text = ["the quick brown fox jumps over the lazy dog", "a stitch in time saves nine", "the cat sat on the mat"] * 6
    sentences = tokenize_characters(text)
    vocabulary = Vocabulary.build(sentences, 100)
    X, Y = sentences_to_pairs(sentences, vocabulary)
    model = RNNLanguageModel(len(vocabulary), 8, 24, num_layers=1, cell="lstm", gate="sigmoid", seed=0)
    loss_fn = model.compile_loss()
    before = evaluate(loss_fn, X, Y)
    train(model.compile_train(optimizer="adam"), X, Y, epochs=40, batch_size=6, report_every=10**9, seed=0, learning_rate=0.02)
    after = evaluate(loss_fn, X, Y)
    assert before[0] / before[1] > 0.9 * np.log(len(vocabulary))
    assert after[0] / after[1] < 0.5 * before[0] / before[1]


def test_the_validation_split_is_disjoint_complete_and_seeded():
    train_idx, valid_idx = split_train_validation(1000, 0.1, seed=7)
    assert len(valid_idx) == 100 and len(train_idx) == 900
    assert not set(train_idx) & set(valid_idx)
    assert sorted(set(train_idx) | set(valid_idx)) == list(range(1000))
    again = split_train_validation(1000, 0.1, seed=7)
    np.testing.assert_array_equal(again[1], valid_idx)
    assert not np.array_equal(split_train_validation(1000, 0.1, seed=8)[1], valid_idx)
    assert len(split_train_validation(5, 0.0, seed=1)[1]) == 0


def test_plateau_annealing_halves_the_rate_only_when_validation_loss_rises():
    assert anneal_learning_rate("plateau", 0.1, 0.5, [3.0, 2.5], end_of_epoch=False) == 0.1
    assert anneal_learning_rate("plateau", 0.1, 0.5, [2.5, 2.6], end_of_epoch=False) == 0.05
    assert anneal_learning_rate("plateau", 0.1, 0.5, [2.5, 2.6], end_of_epoch=True) == 0.1
    assert anneal_learning_rate("exponential", 0.1, 0.9, [], end_of_epoch=True) == pytest.approx(0.09)
    assert anneal_learning_rate("none", 0.1, 0.5, [1, 2], end_of_epoch=True) == 0.1
