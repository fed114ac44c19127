"""The loop over time: the one place in symrnn that calls ``scan``.

A cell (:mod:`symrnn.cells`) says what one step computes; this module runs it
over a padded, time-major batch. Where a position is padding (``mask == 0``)
the state is carried through unchanged, so padded positions never affect later
steps, the loss or the gradients.

Two implementations compute the same thing:

``"scan"``
    ``pytensor.scan`` over the cell's step function: works for every cell,
    every backend (JAX included) and supports truncated backpropagation.
``"fused"``
    a single Op per layer whose forward and backward loops over time are
    Numba kernels
    (:mod:`symrnn.ops.gru`, :mod:`symrnn.ops.lstm`, :mod:`symrnn.ops.rnn`),
    much faster on CPU. Every cell, full backpropagation only, not under JAX;
    tests check it against ``"scan"``.

``"auto"`` picks ``"fused"`` where it applies (full backpropagation) and
``"scan"`` otherwise; the models pass ``"scan"`` for the JAX backend
(:func:`symrnn.backend.uses_fused_ops`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.gradient import zero_grad

from symrnn.cells import CELLS, GATES, Cell

__all__ = ["IMPLEMENTATIONS", "masked_update", "recurrent_layer", "step_layer"]

IMPLEMENTATIONS = ("auto", "scan", "fused")


def _check_implementation(implementation: str) -> None:
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, not {implementation!r}")


def _cell(cell: Cell | str) -> Cell:
    return CELLS[cell] if isinstance(cell, str) else cell


def _as_tuple(states) -> tuple:
    return tuple(states) if isinstance(states, (tuple, list)) else (states,)


def masked_update(mask_t, new, old):
    """Keep ``old`` where ``mask_t`` is 0.

    Parameters
    ----------
    mask_t : TensorVariable (B,)
    new, old : TensorVariable (B, H)

    Returns
    -------
    TensorVariable (B, H): ``m * new + (1 - m) * old`` with ``m = mask_t[:, None]``.
    """
    m = mask_t[:, None]
    return m * new + (pt.constant(np.asarray(1, dtype=m.dtype)) - m) * old


def step_layer(
    cell: Cell | str, projected_t, states: Sequence, W_h, gate: str = "hard_sigmoid", implementation: str = "scan"
) -> tuple:
    """One unmasked step of one layer (used by the compiled one-step generator).

    Parameters
    ----------
    cell : Cell or name
    projected_t : TensorVariable (B, k*H)
    states : sequence of TensorVariable (B, H), ``cell.states`` of them
    W_h : TensorVariable (H, k*H)
    gate : name of the gate nonlinearity
    implementation : ``"scan"`` (the cell's step function as graph Ops), or
        ``"auto"`` / ``"fused"``: the cell's fused Op over one time step
        (the faster on CPU; docs/performance.md has the figures).

    Returns
    -------
    tuple of TensorVariable (B, H): the new states, the layer's output first.
    """
    cell = _cell(cell)
    _check_implementation(implementation)
    if implementation != "scan":
        every_row = pt.ones((1, projected_t.shape[0]), dtype=projected_t.dtype)
        return tuple(s[0] for s in _fused(cell, projected_t[None], every_row, states, W_h, gate))
    return _as_tuple(cell.step(projected_t, *states, W_h, gate=GATES[gate]))


def recurrent_layer(
    cell: Cell | str,
    projected,
    mask,
    initial_states: Sequence,
    W_h,
    gate: str = "hard_sigmoid",
    truncate_gradient: int = -1,
    implementation: str = "auto",
) -> tuple:
    """Run one recurrent layer over a padded batch.

    Parameters
    ----------
    cell : Cell or name (``"rnn"``, ``"gru"``, ``"lstm"``)
    projected : TensorVariable (T, B, k*H)
        Input projections of all steps, bias included (computed outside the loop).
    mask : TensorVariable (T, B)
        1 on real tokens, 0 on padding; same float dtype as ``projected``.
    initial_states : sequence of TensorVariable (B, H)
    W_h : TensorVariable (H, k*H)
        Recurrent weights.
    gate : str
        Gate nonlinearity name (GRU and LSTM).
    truncate_gradient : int
        ``-1`` for full backpropagation through time, else the number of steps
        the gradient runs back (``scan``'s ``truncate_gradient``, as the
        tutorial's ``bptt_truncate``).
    implementation : ``"auto"``, ``"scan"`` or ``"fused"``

    Returns
    -------
    tuple of TensorVariable (T, B, H): the state sequences, the output first.
    """
    cell = _cell(cell)
    _check_implementation(implementation)
    fused_applies = truncate_gradient == -1
    if implementation == "fused" and not fused_applies:
        raise ValueError("the fused implementation supports full backpropagation only (truncate_gradient=-1)")
    if implementation in ("auto", "fused") and fused_applies:
        return _fused(cell, projected, mask, initial_states, W_h, gate)

    if truncate_gradient == -1:
        return _scan(cell, projected, mask, list(initial_states), W_h, gate)
    # Truncated BPTT with scan's meaning: the gradient flows back through the
    # last ``truncate_gradient`` steps only, so the earlier steps (their
    # outputs, and the state entering the window) pass no gradient. One scan
    # whose gradient is cut where the window starts, rather than two scans
    # split there: a batch of ``truncate_gradient`` steps or fewer would give
    # an empty scan, which PyTensor's gradient cannot handle (and PyTensor's
    # own ``truncate_gradient`` returns sequence gradients of the wrong length).
    steps = pt.arange(projected.shape[0])
    window_start = projected.shape[0] - truncate_gradient  # <= 0: the whole sequence is in the window
    cut = pt.and_(pt.eq(steps, window_start), pt.gt(steps, 0))  # the initial states are inside a full window
    states = _scan(cell, projected, mask, list(initial_states), W_h, gate, cut=cut)
    before_window = pt.lt(steps, window_start)[:, None, None]
    return tuple(pt.switch(before_window, zero_grad(s), s) for s in states)


def _fused(cell: Cell, projected, mask, initial_states: Sequence, W_h, gate: str) -> tuple:
    """The cell's fused layer Op (:mod:`symrnn.ops`) over all steps: the tuple of state sequences."""
    from symrnn.ops import gru, lstm, rnn
    from symrnn.ops.fused_layer import apply_fused_layer

    op = rnn.FusedRNN() if cell.name == "rnn" else {"gru": gru.FusedGRU, "lstm": lstm.FusedLSTM}[cell.name](gate)
    return tuple(apply_fused_layer(op, projected, mask, list(initial_states), W_h))


def _scan(cell: Cell, projected, mask, initial_states: list, W_h, gate: str, cut=None) -> tuple:
    """``scan`` of a masked cell step over time.

    ``cut`` (T,) bool, optional: at the steps where it is true the gradient
    does not flow back into the incoming states (full backpropagation without it).
    """
    n_states = cell.states
    gate_fn = GATES[gate]

    def step(projected_t, mask_t, *rest):
        if cut is not None:
            cut_t, rest = rest[0], rest[1:]
        states, (weights,) = rest[:n_states], rest[n_states:]
        if cut is not None:
            states = tuple(pt.switch(cut_t, zero_grad(s), s) for s in states)
        new = _as_tuple(cell.step(projected_t, *states, weights, gate=gate_fn))
        return [masked_update(mask_t, n, o) for n, o in zip(new, states)]

    outputs = pytensor.scan(
        step,
        sequences=[projected, mask] + ([] if cut is None else [cut]),
        outputs_info=initial_states,
        non_sequences=[W_h],
        strict=True,
        return_updates=False,
    )
    return _as_tuple(outputs)
