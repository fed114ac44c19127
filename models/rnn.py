r"""The WildML tutorial's part 2 vanilla RNN, as a drop-in ``RNNTheano``.

``from models.rnn import RNNTheano`` replaces the tutorial's ``from rnn_theano
import RNNTheano``. One step, for input word id :math:`x_t`:

.. math::

    s_t = \tanh(U[:, x_t] + W s_{t-1}), \qquad o_t = \mathrm{softmax}(V s_t)

with ``U`` (H, V), ``V`` (V, H), ``W`` (H, H) and no biases. The column lookup
``U[:, x_t]`` is the input projection (done for all steps at once, outside the
loop); only ``W s_{t-1}`` is inside it; the output layer and loss are one
product and a log-softmax after it.

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
from symrnn.layers import embed
from symrnn.losses import token_nll
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
        logits = pt.dot(states[:, 0, :], self.V.T)
        probabilities = softmax(logits, axis=-1)
        cost = pt.sum(token_nll(logits, y))
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
        from symrnn.checkpoint import load_checkpoint
        from symrnn.errors import CheckpointError

        checkpoint = load_checkpoint(path, expected_shapes={"U": self.U.get_value().shape, "V": self.V.get_value().shape, "W": self.W.get_value().shape})
        if checkpoint.layout != "tutorial-rnn":
            raise CheckpointError(f"{path}: holds a {checkpoint.layout} model, not the tutorial's part 2 RNN (U, V, W)")
        for name in ("U", "V", "W"):
            getattr(self, name).set_value(checkpoint.params[name].astype(self.dtype))
        return self

    @classmethod
    def from_file(cls, path, bptt_truncate=4, dtype=None):
        """A model sized and filled from a part-2 file (the tutorial's ``load_model_parameters_theano``)."""
        from symrnn.checkpoint import load_checkpoint
        from symrnn.errors import CheckpointError

        checkpoint = load_checkpoint(path)
        if checkpoint.layout != "tutorial-rnn":
            raise CheckpointError(f"{path}: holds a {checkpoint.layout} model, not the tutorial's part 2 RNN (U, V, W)")
        hidden_dim, word_dim = checkpoint.params["U"].shape
        model = cls(word_dim, hidden_dim=hidden_dim, bptt_truncate=bptt_truncate, dtype=dtype)
        for name in ("U", "V", "W"):
            getattr(model, name).set_value(checkpoint.params[name].astype(model.dtype))
        return model
