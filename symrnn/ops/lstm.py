r"""The fused LSTM layer: one PyTensor Op over all time steps, and its gradient Op.

:func:`fused_lstm` (Ops :class:`FusedLSTM` and :class:`FusedLSTMGrad`) runs a
whole LSTM layer over T time steps, with padding mask, in one Op whose
``perform`` runs all steps in one Numba kernel (one matrix product per step
through BLAS, the elementwise work vectorised; :mod:`symrnn.ops.lstm_kernels`),
and whose gradient is again one Op and one kernel; the graph side is shared
with the other cells in :mod:`symrnn.ops.fused_layer`. float32 stays float32
(with the float32 approximations of :mod:`symrnn.ops.cell_math`); float64 is
accepted, with the exact functions. :mod:`symrnn.recurrence` chooses between it and ``scan``.

LSTM equations (time-major, ``H`` hidden units, gate blocks ordered
``[i | f | o | g]`` as in :func:`symrnn.cells.lstm_step`), for t = 0 .. T-1
with ``h = h0``, ``c = c0`` before step 0::

    v     = projected[t] + h @ W_h                         # (B, 4H)
    i, f, o = sig(v[:, :H]), sig(v[:, H:2H]), sig(v[:, 2H:3H])
    g     = tanh(v[:, 3H:])
    c_new = f * c + i * g
    h_new = o * tanh(c_new)
    h     = m * h_new + (1 - m) * h,    c = m * c_new + (1 - m) * c,    m = mask[t][:, None]
    hs[t], cs[t] = h, c

with ``sig`` the hard sigmoid ``clip(0.2 v + 0.5, 0, 1)`` or the logistic
sigmoid (the LSTM's default).
"""

from __future__ import annotations

from symrnn.ops.fused_layer import (
    CellLayout, FusedLayer, FusedLayerGrad, apply_fused_layer, check_gate, transposed_weights,
)
from symrnn.ops.lstm_kernels import HARD_SIGMOID_SLOPE, lstm_backward, lstm_forward

__all__ = ["FusedLSTM", "FusedLSTMGrad", "fused_lstm"]


class _LSTMLayout(CellLayout):
    """What both LSTM Ops declare: four gate blocks of ``W_h`` (input, forget, output, candidate), two states."""

    cell, blocks, initial_names = "LSTM", 4, ("h0", "c0")


class FusedLSTM(_LSTMLayout, FusedLayer):
    """One LSTM layer over all time steps, as a single Op.

    Inputs
    ------
    projected : tensor, shape (T, B, 4H)
        Input projections of every step, bias included, blocks ``[i | f | o | g]``.
    mask : tensor, shape (T, B)
        1 on real tokens, 0 on padding (padded steps keep both states).
    h0, c0 : tensor, shape (B, H)
        Initial output and cell state.
    W_h : tensor, shape (H, 4H)
        Recurrent weights, blocks ``[i | f | o | g]``.

    All must have the same dtype, float32 or float64.

    Outputs
    -------
    hs, cs : tensor, shape (T, B, H)
        Output and cell state after every step (module docstring).
    acts : tensor, shape (T, B, 4H)
        Kept for the backward pass: ``acts[t, :, 3H:]`` is ``g``;
        ``acts[t, :, :3H]`` holds the gates ``[i | f | o]`` for
        ``gate="sigmoid"`` and their unclipped arguments ``0.2 v + 0.5`` for
        ``gate="hard_sigmoid"``. Not differentiable.

    Parameters
    ----------
    gate : {"sigmoid", "hard_sigmoid"}

    Notes
    -----
    The gradient is :class:`FusedLSTMGrad` with respect to ``projected``,
    ``h0``, ``c0`` and ``W_h``, for costs on ``hs``, ``cs`` or both.
    """

    __props__ = ("gate",)

    def __init__(self, gate="sigmoid"):
        self.gate = check_gate(gate)

    def grad_op(self):
        return FusedLSTMGrad(self.gate)

    def forward_rows(self, projected, mask, initial, W_h, states, acts, start, stop):
        slope = projected.dtype.type(HARD_SIGMOID_SLOPE)
        lstm_forward(projected, mask, *initial, W_h, self.gate == "hard_sigmoid", slope, *states, acts, start, stop)


class FusedLSTMGrad(_LSTMLayout, FusedLayerGrad):
    """Backward pass (BPTT) of :class:`FusedLSTM`.

    Inputs
    ------
    mask (T, B), h0 (B, H), c0 (B, H), W_h (H, 4H), hs (T, B, H), cs (T, B, H),
    acts (T, B, 4H), g_hs (T, B, H), g_cs (T, B, H) : tensors
        The forward Op's inputs and outputs, and the gradients of the cost
        with respect to ``hs`` and ``cs``.

    Outputs
    -------
    d_projected (T, B, 4H), d_h0 (B, H), d_c0 (B, H), d_W_h (H, 4H) : tensors

    Parameters
    ----------
    gate : {"sigmoid", "hard_sigmoid"}

    Notes
    -----
    Going backwards from t = T-1 with ``dh``, ``dc`` the gradients with
    respect to the states after step t (``g_hs[t]``, ``g_cs[t]`` plus what
    step t+1 passed back) and ``c`` the cell state before step t::

        dhn, dcn = m * dh, m * dc
        tc    = tanh(c_new)
        dct   = dcn + dhn * o * (1 - tc**2)
        dv    = [dct * g * sig'_i | dct * c * sig'_f | dhn * tc * sig'_o | dct * i * (1 - g**2)]
        dh    <- (1 - m) * dh + dv @ W_h.T,      dc <- (1 - m) * dc + dct * f

    and ``d_projected[t] = dv``; finally ``d_h0, d_c0 = dh, dc`` and
    ``d_W_h = h_prev.T @ dv`` summed over t and B. ``c_new = f * c + i * g``
    is recomputed from ``acts``; a step costs one matrix product and one
    pass over the batch's rows (:func:`symrnn.ops.lstm_kernels.lstm_backward`).
    """

    __props__ = ("gate",)
    row_block_layer_work = 1 << 26  # its d_W_h is one product after the blocks: they pay later (fused_layer)

    def __init__(self, gate="sigmoid"):
        self.gate = check_gate(gate)

    def backward_weights(self, W_h):
        return transposed_weights(W_h)

    def backward_rows(self, mask, initial, W_T, states, acts, g_states, d_projected, d_initial, d_W_h, start, stop):
        slope = acts.dtype.type(HARD_SIGMOID_SLOPE)
        lstm_backward(mask, initial[1], W_T, states[1], acts, *g_states, self.gate == "hard_sigmoid", slope,
                      d_projected, *d_initial, start, stop)


def fused_lstm(projected, mask, h0, c0, W_h, gate="sigmoid"):
    """Apply an LSTM layer to all time steps with one fused Op.

    Parameters
    ----------
    projected : tensor_like, shape (T, B, 4H), float32 or float64
        Input projections of every step, bias included, blocks ``[i | f | o | g]``.
    mask : tensor_like, shape (T, B)
        1 on real tokens, 0 on padding; cast to the dtype of ``projected``.
    h0, c0 : tensor_like, shape (B, H)
        Initial output and cell state, same dtype as ``projected``.
    W_h : tensor_like, shape (H, 4H)
        Recurrent weights, same dtype and block order as ``projected``.
    gate : {"sigmoid", "hard_sigmoid"}, optional
        Nonlinearity of the gates i, f, o.

    Returns
    -------
    hs, cs : TensorVariable, shape (T, B, H)
        Output and cell state after every step (module docstring);
        differentiable with respect to ``projected``, ``h0``, ``c0`` and ``W_h``.

    Raises
    ------
    TypeError
        If the inputs do not share one float dtype or have the wrong number of dimensions.
    """
    hs, cs = apply_fused_layer(FusedLSTM(gate), projected, mask, [h0, c0], W_h)
    return hs, cs
