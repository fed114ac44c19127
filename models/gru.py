r"""The WildML tutorial's two-layer GRU language model, as a drop-in ``GRUTheano``.

``from models.gru import GRUTheano`` replaces the tutorial's ``from gru_theano
import GRUTheano``: same constructor, same attributes (``E, U, W, V, b, c``
shared variables of the same shapes), same methods. The graph is built from
symrnn's library pieces, so it is the same model as
:class:`models.language_model.RNNLanguageModel` with ``cell="gru"``,
``num_layers=2``, ``gate="hard_sigmoid"``; :func:`symrnn.legacy.tutorial_to_library` and
:func:`symrnn.legacy.library_to_tutorial` convert parameter values between the two layouts:

=========================  =========================================
tutorial                   library
=========================  =========================================
``E`` (D, V)               ``embedding`` = ``E.T``
``U[0..2]`` (H, D)         ``layer0/W_x`` = ``[U[0].T | U[1].T | U[2].T]``
``W[0..2]`` (H, H)         ``layer0/W_h`` = ``[W[0].T | W[1].T | W[2].T]``
``b[0..2]`` (H,)           ``layer0/b``   = ``[b[0] | b[1] | b[2]]``
``U, W, b [3..5]``         ``layer1/...`` likewise
``V`` (V, H), ``c`` (V,)   ``output/W`` = ``V.T``, ``output/b`` = ``c``
=========================  =========================================

Unlike the original, ``embedding_dim`` may differ from ``hidden_dim``. Then the
first layer's input weights cannot live in the (6, H, H) tensor ``U``: they are
the separate shared variable ``U_in`` (3, H, D), ``U`` is (3, H, H) and holds
the second layer's, and the parameter order (and ``bptt``'s) is ``E, U_in, U, W, b, V, c``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.tensor.special import softmax

from symrnn import updates as update_rules
from symrnn.backend import compile_mode
from symrnn.legacy import gru_library_terms
from symrnn.layers import project
from symrnn.losses import masked_nll
from symrnn.network import one_step, stacked_states

__all__ = ["GRUTheano"]


class GRUTheano:
    """The tutorial's ``GRUTheano(word_dim, hidden_dim=128, bptt_truncate=-1)``.

    Parameters
    ----------
    word_dim : int
        Vocabulary size V.
    hidden_dim : int
        State size H of both GRU layers.
    bptt_truncate : int
        -1 for full backpropagation through time, else ``scan``'s gradient truncation.
    embedding_dim : int, optional
        Word vector size D; defaults to ``hidden_dim`` (the tutorial's layout).
    dtype : str, optional
        Defaults to ``pytensor.config.floatX`` like the original.

    Initial values are drawn from NumPy's global random state in the
    tutorial's order (E, U, W, V), so ``np.random.seed(s)`` reproduces them.
    """

    def __init__(self, word_dim, hidden_dim=128, bptt_truncate=-1, embedding_dim=None, dtype=None):
        self.word_dim = int(word_dim)
        self.hidden_dim = int(hidden_dim)
        self.bptt_truncate = int(bptt_truncate)
        self.embedding_dim = int(embedding_dim or hidden_dim)
        self.dtype = dtype or pytensor.config.floatX
        H, D, Vw = self.hidden_dim, self.embedding_dim, self.word_dim
        hb, wb = np.sqrt(1.0 / H), np.sqrt(1.0 / Vw)
        E = np.random.uniform(-wb, wb, (D, Vw))
        separate = D != H
        if separate:
            U_in = np.random.uniform(-hb, hb, (3, H, D))
            U = np.random.uniform(-hb, hb, (3, H, H))
        else:
            U = np.random.uniform(-hb, hb, (6, H, H))
        W = np.random.uniform(-hb, hb, (6, H, H))
        V = np.random.uniform(-hb, hb, (Vw, H))
        b = np.zeros((6, H))
        c = np.zeros(Vw)
        as_shared = lambda value, name: pytensor.shared(value.astype(self.dtype), name=name)
        self.E, self.U, self.W = as_shared(E, "E"), as_shared(U, "U"), as_shared(W, "W")
        self.V, self.b, self.c = as_shared(V, "V"), as_shared(b, "b"), as_shared(c, "c")
        self.U_in = as_shared(U_in, "U_in") if separate else None
        # The tutorial's order, which is also bptt's: dE, dU, dW, db, dV, dc.
        self.params = [self.E] + ([self.U_in] if separate else []) + [self.U, self.W, self.b, self.V, self.c]
        self.mode = compile_mode("c")
        self.__theano_build__()

    def _library(self) -> dict:
        return gru_library_terms(self.E, self.U, self.W, self.V, self.b, self.c, U_in=self.U_in, concatenate=pt.concatenate)

    def __theano_build__(self):
        x = pt.ivector("x")
        y = pt.ivector("y")
        learning_rate = pt.scalar("learning_rate", dtype=self.dtype)
        decay = pt.scalar("decay", dtype=self.dtype)
        ids, targets = x[:, None], y[:, None]
        mask = pt.ones_like(ids, dtype=self.dtype)
        params = self._library()
        hidden, _ = stacked_states(params, ids, mask, 2, "gru", "hard_sigmoid", truncate_gradient=self.bptt_truncate)
        probabilities = softmax(project(hidden, params["output/W"], params["output/b"])[:, 0, :], axis=-1)
        cost, _ = masked_nll(hidden, params["output/W"], params["output/b"], targets, mask)
        grads = pytensor.grad(cost, self.params)
        rule = update_rules.rmsprop(grads, self.params, learning_rate, decay=decay)
        self.optimizer_state = update_rules.optimizer_state(rule, self.params)
        # The tutorial's names for the caches: mE, mU, mW, mV, mb, mc.
        for param in self.params:
            setattr(self, "m" + param.name, self.optimizer_state[f"{param.name}/rmsprop_cache"])

        self.predict = pytensor.function([x], probabilities, mode=self.mode)
        self.predict_class = pytensor.function([x], pt.argmax(probabilities, axis=1), mode=self.mode)
        self.ce_error = pytensor.function([x, y], cost, mode=self.mode)
        self.bptt = pytensor.function([x, y], grads, mode=self.mode)
        self._sgd_step = pytensor.function([x, y, learning_rate, decay], [], updates=rule, mode=self.mode)
        self._step = None

    def sgd_step(self, x, y, learning_rate, decay=0.9):
        """One RMSprop step on one sentence (the tutorial's update, epsilon 1e-6 inside the root)."""
        cast = np.dtype(self.dtype).type
        self._sgd_step(x, y, cast(learning_rate), cast(decay))
        return []

    def calculate_total_loss(self, X: Sequence, Y: Sequence) -> float:
        """Sum of :meth:`ce_error` over sentences."""
        return float(np.sum([self.ce_error(x, y) for x, y in zip(X, Y)]))

    def calculate_loss(self, X: Sequence, Y: Sequence) -> float:
        """Total loss divided by the number of predicted words."""
        num_words = int(np.sum([len(y) for y in Y]))
        return self.calculate_total_loss(X, Y) / float(num_words)

    def compile_step(self):
        """Compiled one-step function ``f(ids (B,), s1 (B,H), s2 (B,H)) -> (logits (B,V), s1', s2')``."""
        if self._step is None:
            ids = pt.ivector("ids")
            states = [pt.matrix(f"s{i}", dtype=self.dtype) for i in (1, 2)]
            logits, new_states = one_step(self._library(), ids, states, 2, "gru", "hard_sigmoid", "auto")
            self._step = pytensor.function([ids, *states], [logits, *new_states], mode=self.mode)
        return self._step

    def initial_state_values(self, batch: int) -> list:
        """Zero states (B, H) for :meth:`compile_step`."""
        return [np.zeros((batch, self.hidden_dim), dtype=self.dtype) for _ in range(2)]

    def get_values(self) -> "OrderedDict[str, np.ndarray]":
        """Parameter values in the tutorial's names."""
        return OrderedDict((p.name, p.get_value()) for p in self.params)
