"""Part 2's RNNTheano computes its loss through the fused output layer: float32 stays float32, large logits stay finite."""

import numpy as np

from models.rnn import RNNTheano
from tests.numpy_reference import softmax, tutorial_rnn_forward

X = np.array([0, 4, 7, 11, 3, 3], dtype=np.int32)
Y = np.array([4, 7, 11, 3, 3, 1], dtype=np.int32)


def rnn_states_and_logits(U, V, W, x):
    """Part 2's states s_t (T, H) and logits V s_t (T, word_dim), in float64."""
    s = np.zeros(W.shape[0])
    states = []
    for word in x:
        s = np.tanh(U[:, word] + W @ s)
        states.append(s)
    states = np.array(states)
    return states, states @ V.T


def test_a_float32_rnn_theano_keeps_float32_and_agrees_with_the_float64_reference():
    np.random.seed(7)
    model = RNNTheano(12, hidden_dim=5, bptt_truncate=-1, dtype="float32")
    np.random.seed(7)
    model64 = RNNTheano(12, hidden_dim=5, bptt_truncate=-1, dtype="float64")
    U, V, W = (p.get_value().astype(np.float64) for p in model.params)
    for p, value in zip(model64.params, (U, V, W)):
        p.set_value(value)
    loss = model.ce_error(X, Y)
    grads = model.bptt(X, Y)
    assert np.asarray(loss).dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads)
    assert model.forward_propagation(X).dtype == np.float32
    probs = tutorial_rnn_forward(U, V, W, X)
    np.testing.assert_allclose(loss, -np.sum(np.log(probs[np.arange(len(Y)), Y])), rtol=1e-5)
    for g, want in zip(grads, model64.bptt(X, Y)):
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-6)


def test_rnn_theano_loss_and_gradients_stay_finite_for_large_logits():
    np.random.seed(3)
    model = RNNTheano(12, hidden_dim=4, bptt_truncate=-1, dtype="float64")
    model.V.set_value(model.V.get_value() * 5000)
    U, V, W = (p.get_value() for p in model.params)
    states, logits = rnn_states_and_logits(U, V, W, X)
    assert logits.max() > 710  # exp(710) overflows float64: only the shift by the row maximum keeps it finite
    top = logits.max(axis=1)
    lse = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
    rows = np.arange(len(Y))
    loss = model.ce_error(X, Y)
    grads = model.bptt(X, Y)
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads)
    np.testing.assert_allclose(loss, np.sum(lse - logits[rows, Y]), rtol=1e-12)
    d_logits = softmax(logits)
    d_logits[rows, Y] -= 1
    np.testing.assert_allclose(grads[1], d_logits.T @ states, rtol=1e-10, atol=1e-10)
