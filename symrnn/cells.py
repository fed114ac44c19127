r"""Recurrent cells as pure step functions.

A cell's step takes the *input projection* of one time step (computed for all
steps at once, outside the loop, by :func:`symrnn.layers.project`), the previous
state(s) and the recurrent weight matrix, and returns the new state(s). Only the
recurrent product ``h_prev @ W_h`` happens inside the step. Masking of padded
positions and the loop itself belong to :mod:`symrnn.recurrence`.

Every gate block of a layer is laid out side by side in one matrix, so one
matrix product serves all gates:

========  =======  =====================================
cell      blocks   order of the column blocks
========  =======  =====================================
``rnn``   1        ``[candidate]``
``gru``   3        ``[z (update) | r (reset) | candidate]``
``lstm``  4        ``[i (input) | f (forget) | o (output) | g (candidate)]``
========  =======  =====================================

Shapes: ``projected_t`` is (B, k*H) for k blocks, states are (B, H),
``W_h`` is (H, k*H), for batch size B and hidden size H.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import pytensor.tensor as pt
from pytensor.tensor.math import sigmoid

__all__ = [
    "CELLS",
    "GATES",
    "Cell",
    "gru_step",
    "hard_sigmoid",
    "lstm_step",
    "rnn_step",
]


def _const(value: float, like) -> pt.TensorConstant:
    """A scalar constant of ``like``'s dtype, so float32 graphs stay float32."""
    return pt.constant(np.asarray(value, dtype=like.dtype))


def _hidden_size(h_prev, W_h):
    """H as a Python int when a static shape knows it (JAX needs static slices), else symbolic."""
    for known in (W_h.type.shape[0], h_prev.type.shape[-1]):
        if known is not None:
            return int(known)
    return h_prev.shape[-1]


def hard_sigmoid(x):
    r"""Theano's piecewise-linear sigmoid, as the tutorial used it.

    .. math:: \mathrm{hard\_sigmoid}(x) = \mathrm{clip}(0.2 x + 0.5,\ 0,\ 1)

    Parameters
    ----------
    x : TensorVariable, any shape, float32 or float64

    Returns
    -------
    TensorVariable of the same shape and dtype.
    """
    return pt.clip(x * _const(0.2, x) + _const(0.5, x), _const(0.0, x), _const(1.0, x))


#: Gate nonlinearities by name: the tutorial's ``hard_sigmoid`` or the logistic ``sigmoid``.
GATES: dict[str, Callable] = {"hard_sigmoid": hard_sigmoid, "sigmoid": sigmoid}


def rnn_step(projected_t, h_prev, W_h):
    r"""One step of the vanilla (Elman) tanh RNN.

    .. math:: h_t = \tanh(a_t + h_{t-1} W_h)

    where :math:`a_t = x_t W_x + b` is the precomputed input projection.

    Parameters
    ----------
    projected_t : TensorVariable (B, H)
    h_prev : TensorVariable (B, H)
    W_h : TensorVariable (H, H)

    Returns
    -------
    h_t : TensorVariable (B, H)
    """
    return pt.tanh(projected_t + pt.dot(h_prev, W_h))


def gru_step(projected_t, h_prev, W_h, gate: Callable = hard_sigmoid):
    r"""One step of the GRU as in the WildML tutorial.

    .. math::

        z_t &= \sigma(a^z_t + h_{t-1} W^z_h) \\
        r_t &= \sigma(a^r_t + h_{t-1} W^r_h) \\
        c_t &= \tanh(a^c_t + (r_t \odot h_{t-1}) W^c_h) \\
        h_t &= (1 - z_t) \odot c_t + z_t \odot h_{t-1}

    with :math:`\sigma` the gate nonlinearity (``hard_sigmoid`` in the
    tutorial) and :math:`a_t = [a^z_t | a^r_t | a^c_t] = x_t W_x + b` the
    precomputed input projection. The tutorial writes the same with
    ``U[k] e + W[k] s + b[k]``; its matrices are the transposes of our blocks.

    Parameters
    ----------
    projected_t : TensorVariable (B, 3H)
    h_prev : TensorVariable (B, H)
    W_h : TensorVariable (H, 3H)
    gate : callable
        Elementwise gate nonlinearity, one of :data:`GATES`' values.

    Returns
    -------
    h_t : TensorVariable (B, H)
    """
    hidden = _hidden_size(h_prev, W_h)
    zr = gate(projected_t[:, : 2 * hidden] + pt.dot(h_prev, W_h[:, : 2 * hidden]))
    z = zr[:, :hidden]
    r = zr[:, hidden:]
    candidate = pt.tanh(projected_t[:, 2 * hidden :] + pt.dot(r * h_prev, W_h[:, 2 * hidden :]))
    return (_const(1.0, z) - z) * candidate + z * h_prev


def lstm_step(projected_t, h_prev, c_prev, W_h, gate: Callable = sigmoid):
    r"""One step of the LSTM (no peepholes); the cell state is separate from the output.

    .. math::

        [\tilde i_t | \tilde f_t | \tilde o_t | \tilde g_t] &= a_t + h_{t-1} W_h \\
        i_t = \sigma(\tilde i_t),\quad f_t &= \sigma(\tilde f_t),\quad
        o_t = \sigma(\tilde o_t),\quad g_t = \tanh(\tilde g_t) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t &= o_t \odot \tanh(c_t)

    Parameters
    ----------
    projected_t : TensorVariable (B, 4H)
    h_prev, c_prev : TensorVariable (B, H)
    W_h : TensorVariable (H, 4H)
    gate : callable
        Gate nonlinearity (logistic sigmoid by default).

    Returns
    -------
    h_t, c_t : TensorVariable (B, H)
    """
    hidden = _hidden_size(h_prev, W_h)
    pre = projected_t + pt.dot(h_prev, W_h)
    ifo = gate(pre[:, : 3 * hidden])
    i = ifo[:, :hidden]
    f = ifo[:, hidden : 2 * hidden]
    o = ifo[:, 2 * hidden :]
    g = pt.tanh(pre[:, 3 * hidden :])
    c = f * c_prev + i * g
    return o * pt.tanh(c), c


class Cell(NamedTuple):
    """What the model builder needs to know about a cell kind.

    Attributes
    ----------
    name : str
    blocks : int
        Number of H-wide column blocks in ``W_x``, ``W_h`` and ``b``.
    states : int
        Number of (B, H) states carried between steps (the LSTM has 2: h, c);
        the first state is the layer's output.
    step : callable
        ``step(projected_t, *states, W_h, gate=...) -> state or tuple of states``.
    """

    name: str
    blocks: int
    states: int
    step: Callable


def _rnn(projected_t, h_prev, W_h, gate=None):
    return rnn_step(projected_t, h_prev, W_h)


#: The cell kinds by name.
CELLS: dict[str, Cell] = {
    "rnn": Cell("rnn", 1, 1, _rnn),
    "gru": Cell("gru", 3, 1, gru_step),
    "lstm": Cell("lstm", 4, 2, lstm_step),
}
