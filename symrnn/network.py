r"""The stacked recurrent network as graph functions: parameters in, expressions out.

Time-major, batch B, steps T, vocabulary V, embedding size D, state size H::

    ids (T, B) --embedding--> (T, B, D)
      for each layer l:  a = x @ W_x + b            (one product for all steps)
                         h = recurrence(cell, a, mask, W_h)   (only h @ W_h inside the loop)
                         x = dropout(h)             (training only, between layers)
    logits = x @ W_out + b_out                      (one product for all steps)

Parameters are named:

====================  ===============  ==========================================
name                  shape            initial values (:func:`initial_values`)
====================  ===============  ==========================================
``embedding``         (V, D)           uniform(+-sqrt(1/V))
``layer<l>/W_x``      (D or H, k*H)    uniform(+-sqrt(1/H))
``layer<l>/W_h``      (H, k*H)         uniform(+-sqrt(1/H))
``layer<l>/b``        (k*H,)           zeros
``output/W``          (H, V)           uniform(+-sqrt(1/H))
``output/b``          (V,)             zeros
====================  ===============  ==========================================

with k = 3 gate blocks for the GRU, 4 for the LSTM, 1 for the vanilla RNN. The
functions take the parameters as a mapping name -> TensorVariable (shared
variables, or expressions of them such as the tutorial layout's blocks) and
build no state of their own: random draws return the generator's next state.

With tied weights (``tie_weights=True``, needs D == H) there is no
``output/W``: the output matrix is ``embedding.T`` (:func:`output_weights`),
so one parameter serves both ends and its gradient sums both uses.

:func:`stacked_layers` starts from given states and returns every layer's
final states too (stream training carries them from one window to the next;
the gradient stops at the states given, truncating backpropagation there).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

import numpy as np
import pytensor.tensor as pt

from symrnn.cells import CELLS
from symrnn.layers import embed, project
from symrnn.recurrence import recurrent_layer, step_layer

__all__ = [
    "dropout", "initial_values", "one_step", "output_weights", "parameter_shapes", "stacked_layers", "stacked_states",
    "state_count",
]


def parameter_shapes(word_dim: int, embedding_dim: int, hidden_dim: int, num_layers: int, cell: str,
                     tie_weights: bool = False) -> "OrderedDict[str, tuple]":
    """Names and shapes of a network's parameters, in a fixed order.

    Parameters
    ----------
    word_dim, embedding_dim, hidden_dim : int
        V, D and H.
    num_layers : int
    cell : ``"gru"``, ``"lstm"`` or ``"rnn"``
    tie_weights : bool
        No ``output/W``: the output matrix is the embedding's transpose.

    Returns
    -------
    OrderedDict name -> shape tuple (see the module's table)

    Raises
    ------
    ValueError
        For tied weights with ``embedding_dim != hidden_dim``.
    """
    if tie_weights and embedding_dim != hidden_dim:
        raise ValueError(f"tied weights need embedding_dim == hidden_dim, not {embedding_dim} and {hidden_dim}")
    k = CELLS[cell].blocks
    shapes = OrderedDict(embedding=(word_dim, embedding_dim))
    for layer in range(num_layers):
        fan_in = embedding_dim if layer == 0 else hidden_dim
        shapes[f"layer{layer}/W_x"] = (fan_in, k * hidden_dim)
        shapes[f"layer{layer}/W_h"] = (hidden_dim, k * hidden_dim)
        shapes[f"layer{layer}/b"] = (k * hidden_dim,)
    if not tie_weights:
        shapes["output/W"] = (hidden_dim, word_dim)
    shapes["output/b"] = (word_dim,)
    return shapes


def output_weights(params: Mapping):
    """The output matrix (H, V): ``output/W``, or ``embedding.T`` where the weights are tied."""
    return params["output/W"] if "output/W" in params else params["embedding"].T


def state_count(num_layers: int, cell: str) -> int:
    """Number of (B, H) states of a stack: ``num_layers`` times the cell's (2 for the LSTM: h and c)."""
    return num_layers * CELLS[cell].states


def initial_values(shapes: Mapping[str, tuple], rng: np.random.Generator) -> "OrderedDict[str, np.ndarray]":
    """Random initial parameter values: zero biases, uniform weights.

    Parameters
    ----------
    shapes : mapping name -> shape, from :func:`parameter_shapes`
    rng : numpy.random.Generator
        Drawn from in the order of ``shapes`` (weights only).

    Returns
    -------
    OrderedDict name -> float64 ndarray: the embedding uniform in +-sqrt(1/V),
    other weights in +-sqrt(1/H), biases zero.
    """
    word_dim, hidden_dim = shapes["embedding"][0], shapes["layer0/W_h"][0]
    values = OrderedDict()
    for name, shape in shapes.items():
        if name.endswith("/b"):
            values[name] = np.zeros(shape)
        else:
            bound = np.sqrt(1.0 / (word_dim if name == "embedding" else hidden_dim))
            values[name] = rng.uniform(-bound, bound, shape)
    return values


def dropout(x, rate: float, rng):
    """Zero each unit of ``x`` with probability ``rate``, scaling the rest by 1 / (1 - rate).

    Parameters
    ----------
    x : TensorVariable (any shape)
    rate : float in (0, 1)
    rng : random generator variable (a shared generator, or the next state
        returned by an earlier draw)

    Returns
    -------
    dropped : TensorVariable, the shape and dtype of ``x``
    next_rng : the generator's state after the draw
    """
    keep = np.asarray(1.0 - rate, dtype=x.dtype)
    next_rng, kept = rng.binomial(1, keep, size=x.shape)
    return x * kept.astype(x.dtype) / pt.constant(keep), next_rng


def stacked_states(params: Mapping, ids, mask, num_layers: int, cell: str, gate: str,
                   truncate_gradient: int = -1, recurrence: str = "auto", dropout_rate: float = 0.0, rng=None):
    """Top layer's states of a stacked recurrent network over a padded batch, from zero states.

    Parameters
    ----------
    params, ids, mask, num_layers, cell, gate, truncate_gradient, recurrence, dropout_rate, rng
        As :func:`stacked_layers`.

    Returns
    -------
    hidden : TensorVariable (T, B, H)
    rng_updates : dict ``{rng: next_rng}`` to pass to ``pytensor.function``'s
        updates (empty without dropout)
    """
    W_h = params["layer0/W_h"]
    zeros = pt.zeros((ids.shape[1], W_h.shape[0]), dtype=W_h.dtype)
    hidden, _, rng_updates = stacked_layers(
        params, ids, mask, [zeros] * state_count(num_layers, cell), num_layers, cell, gate,
        truncate_gradient=truncate_gradient, recurrence=recurrence, dropout_rate=dropout_rate, rng=rng,
    )
    return hidden, rng_updates


def stacked_layers(params: Mapping, ids, mask, initial_states, num_layers: int, cell: str, gate: str,
                   truncate_gradient: int = -1, recurrence: str = "auto", dropout_rate: float = 0.0, rng=None):
    """A stacked recurrent network over a batch from given states: top states and every final state.

    Parameters
    ----------
    params : mapping name -> TensorVariable
        ``embedding`` (V, D) and ``layer<l>/W_x``, ``layer<l>/W_h``, ``layer<l>/b``.
    ids : TensorVariable (T, B) int32
    mask : TensorVariable (T, B) float, 1 on real tokens, 0 on padding
    initial_states : sequence of TensorVariable (B, H)
        :func:`state_count` of them, layer by layer, each layer's output state
        first (the order of :func:`one_step`'s states).
    num_layers : int
    cell : ``"gru"``, ``"lstm"`` or ``"rnn"``
    gate : ``"hard_sigmoid"`` or ``"sigmoid"``
    truncate_gradient : int
        -1 for full backpropagation through time.
    recurrence : ``"auto"``, ``"scan"`` or ``"fused"`` (see :func:`symrnn.recurrence.recurrent_layer`)
    dropout_rate : float in [0, 1)
        Applied (with :func:`dropout`) to each layer's input above the first
        and to the top output; 0 for none.
    rng : random generator variable, needed when ``dropout_rate > 0``

    Returns
    -------
    hidden : TensorVariable (T, B, H)
    final_states : list of TensorVariable (B, H), in the order of ``initial_states``
        (a padded position keeps the state, so these are the states after each
        column's last real token)
    rng_updates : dict ``{rng: next_rng}`` (empty without dropout)
    """
    state = {"rng": rng}
    n_states = CELLS[cell].states
    if len(initial_states) != num_layers * n_states:
        raise ValueError(f"{len(initial_states)} initial states given, {num_layers * n_states} needed")

    def drop(x):
        if not dropout_rate:
            return x
        x, state["rng"] = dropout(x, dropout_rate, state["rng"])
        return x

    x = embed(params["embedding"], ids)
    final_states = []
    for layer in range(num_layers):
        if layer > 0:
            x = drop(x)
        projected = project(x, params[f"layer{layer}/W_x"], params[f"layer{layer}/b"])
        sequences = recurrent_layer(
            cell, projected, mask, list(initial_states[layer * n_states : (layer + 1) * n_states]),
            params[f"layer{layer}/W_h"], gate=gate, truncate_gradient=truncate_gradient, implementation=recurrence,
        )
        final_states.extend(sequence[-1] for sequence in sequences)
        x = sequences[0]
    hidden = drop(x)
    return hidden, final_states, ({rng: state["rng"]} if dropout_rate else {})


def one_step(params: Mapping, ids, states, num_layers: int, cell: str, gate: str, recurrence: str = "scan"):
    """One time step of the whole network, for generation.

    Parameters
    ----------
    params : mapping name -> TensorVariable, as :func:`stacked_states` plus
        ``output/W`` (H, V) (absent where tied, :func:`output_weights`) and ``output/b`` (V,)
    ids : TensorVariable (B,) int32
    states : list of TensorVariable (B, H), ``num_layers * cell.states`` of them
        (layer by layer, each layer's output state first)
    num_layers, cell, gate : as :func:`stacked_states`
    recurrence : ``"scan"``, ``"auto"`` or ``"fused"`` (see :func:`symrnn.recurrence.step_layer`)

    Returns
    -------
    logits : TensorVariable (B, V)
    new_states : list of TensorVariable (B, H), in the order of ``states``
    """
    n_states = CELLS[cell].states
    x = params["embedding"][ids]
    new_states = []
    for layer in range(num_layers):
        projected = pt.dot(x, params[f"layer{layer}/W_x"]) + params[f"layer{layer}/b"]
        layer_states = step_layer(cell, projected, states[layer * n_states : (layer + 1) * n_states],
                                  params[f"layer{layer}/W_h"], gate, recurrence)
        new_states.extend(layer_states)
        x = layer_states[0]
    return pt.dot(x, output_weights(params)) + params["output/b"], new_states
