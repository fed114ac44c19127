r"""The WildML tutorial's part 2 vanilla RNN, as a drop-in ``RNNTheano``.

``from models.rnn import RNNTheano`` replaces the tutorial's ``from rnn_theano
import RNNTheano``. One step, for input word id :math:`x_t`:

.. math::

    s_t = \tanh(U[:, x_t] + W s_{t-1}), \qquad o_t = \mathrm{softmax}(V s_t)

with ``U`` (H, V), ``V`` (V, H), ``W`` (H, H) and no biases. The column lookup
``U[:, x_t]`` is the input projection (done for all steps at once, outside the
loop); only ``W s_{t-1}`` is inside it; the output layer and loss come after
it, as in the other models (:func:`symrnn.losses.masked_nll`, with no bias).

Difference from the original, on purpose: ``bptt_truncate`` truncates the
recurrent gradient only (``scan``'s ``truncate_gradient``). The original put the
softmax inside its scan, so its truncation also cut the output weights' gradient
to the last steps; here ``V`` gets the gradient of every step.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.tensor.special import softmax

from symrnn import updates as update_rules
from symrnn.backend import compile_mode
from symrnn.checkpoint import load_checkpoint
from symrnn.errors import CheckpointError
from symrnn.legacy import RNN_NAMES
from symrnn.layers import embed
from symrnn.losses import masked_nll
from symrnn.recurrence import recurrent_layer

__all__ = ["RNNTheano"]


class RNNTheano:
    """The tutorial's ``RNNTheano(word_dim, hidden_dim=100, bptt_truncate=4)``.

    Parameters
    ----------
    word_dim : int
    hidden_dim : int
    bptt_truncate : int
        Steps of backpropagation through time (-1: all).
    dtype : str, optional
        Defaults to ``pytensor.config.floatX``.

    Initial values come from NumPy's global random state in the tutorial's
    order (U, V, W).
    """

    def __init__(self, word_dim, hidden_dim=100, bptt_truncate=4, dtype=None):
        self.word_dim, self.hidden_dim, self.bptt_truncate = int(word_dim), int(hidden_dim), int(bptt_truncate)
        self.dtype = dtype or pytensor.config.floatX
        wb, hb = np.sqrt(1.0 / word_dim), np.sqrt(1.0 / hidden_dim)
        U = np.random.uniform(-wb, wb, (hidden_dim, word_dim))
        V = np.random.uniform(-hb, hb, (word_dim, hidden_dim))
        W = np.random.uniform(-hb, hb, (hidden_dim, hidden_dim))
        self.U = pytensor.shared(U.astype(self.dtype), name="U")
        self.V = pytensor.shared(V.astype(self.dtype), name="V")
        self.W = pytensor.shared(W.astype(self.dtype), name="W")
        self.params = [self.U, self.V, self.W]
        self.mode = compile_mode("c")
        self.__theano_build__()

    def __theano_build__(self):
        x, y = pt.ivector("x"), pt.ivector("y")
        learning_rate = pt.scalar("learning_rate", dtype=self.dtype)
        ids = x[:, None]
        mask = pt.ones_like(ids, dtype=self.dtype)
        zeros = pt.zeros((1, self.hidden_dim), dtype=self.dtype)
        projected = embed(self.U.T, ids)  # (T, 1, H): U[:, x_t] for every step
        (states,) = recurrent_layer("rnn", projected, mask, [zeros], self.W.T, truncate_gradient=self.bptt_truncate)
        probabilities = softmax(pt.dot(states[:, 0, :], self.V.T), axis=-1)
        no_bias = pt.zeros((self.word_dim,), dtype=self.dtype)
        cost, _ = masked_nll(states, self.V.T, no_bias, y[:, None], mask)
        grads = pytensor.grad(cost, self.params)
        self.forward_propagation = pytensor.function([x], probabilities, mode=self.mode)
        self.predict = pytensor.function([x], pt.argmax(probabilities, axis=1), mode=self.mode)
        self.ce_error = pytensor.function([x, y], cost, mode=self.mode)
        self.bptt = pytensor.function([x, y], grads, mode=self.mode)
        self._sgd_step = pytensor.function(
            [x, y, learning_rate], [], updates=update_rules.sgd(grads, self.params, learning_rate), mode=self.mode
        )

    def sgd_step(self, x, y, learning_rate):
        """One plain SGD step on one sentence: ``p -= learning_rate * dp``."""
        self._sgd_step(x, y, np.dtype(self.dtype).type(learning_rate))
        return []

    def calculate_total_loss(self, X: Sequence, Y: Sequence) -> float:
        """Sum of :meth:`ce_error` over sentences."""
        return float(np.sum([self.ce_error(x, y) for x, y in zip(X, Y)]))

    def calculate_loss(self, X: Sequence, Y: Sequence) -> float:
        """Total loss divided by the number of predicted words."""
        return self.calculate_total_loss(X, Y) / float(np.sum([len(y) for y in Y]))

    def load(self, path):
        """Set U, V, W from a part-2 model file (keys U, V, W) or fail with CheckpointError."""
        shapes = {name: getattr(self, name).get_value().shape for name in RNN_NAMES}
        self._set_values(_part2_params(path, expected_shapes=shapes))
        return self

    @classmethod
    def from_file(cls, path, bptt_truncate=4, dtype=None):
        """A model sized and filled from a part-2 file (the tutorial's ``load_model_parameters_theano``)."""
        params = _part2_params(path)
        hidden_dim, word_dim = params["U"].shape
        model = cls(word_dim, hidden_dim=hidden_dim, bptt_truncate=bptt_truncate, dtype=dtype)
        model._set_values(params)
        return model

    def _set_values(self, params):
        for name in RNN_NAMES:
            getattr(self, name).set_value(params[name].astype(self.dtype))


def _part2_params(path, expected_shapes=None) -> dict:
    """The U, V, W of a part-2 model file (see :mod:`symrnn.legacy`), or a CheckpointError."""
    checkpoint = load_checkpoint(path, expected_shapes=expected_shapes)
    if checkpoint.layout != "tutorial-rnn":
        raise CheckpointError(f"{path}: holds a {checkpoint.layout} model, not the tutorial's part 2 RNN (U, V, W)")
    return checkpoint.params
