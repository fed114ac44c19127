r"""The fused vanilla (Elman) tanh RNN layer: one PyTensor Op over all time steps, and its gradient Op.

:func:`fused_rnn` (Ops :class:`FusedRNN` and :class:`FusedRNNGrad`) runs a
whole tanh RNN layer over T time steps, with padding mask, in one Op whose
``perform`` runs all steps in one Numba kernel (one matrix product per step
through BLAS, the elementwise work vectorised; :mod:`symrnn.ops.rnn_kernels`),
and whose gradient is again one Op and one kernel; the graph side is shared
with the other cells in :mod:`symrnn.ops.fused_layer`. float32 stays float32
(with the float32 ``tanh`` of :mod:`symrnn.ops.cell_math`); float64 is
accepted, with the exact functions. :mod:`symrnn.recurrence` chooses between it and ``scan``.

Equations (time-major, ``H`` hidden units, as :func:`symrnn.cells.rnn_step`),
for t = 0 .. T-1 with ``h = h0`` before step 0::

    h_new = tanh(projected[t] + h @ W_h)
    h     = m * h_new + (1 - m) * h,    m = mask[t][:, None]
    hs[t] = h

The cell has no gates, so the Ops take no ``gate``.
"""

from __future__ import annotations

from symrnn.ops.fused_layer import CellLayout, FusedLayer, FusedLayerGrad, apply_fused_layer, transposed_weights
from symrnn.ops.rnn_kernels import rnn_backward, rnn_forward

__all__ = ["FusedRNN", "FusedRNNGrad", "fused_rnn"]


class _RNNLayout(CellLayout):
    """What both RNN Ops declare: one block of ``W_h``, one state."""

    cell, blocks, initial_names = "RNN", 1, ("h0",)
    row_block_work = 1 << 23  # its steps are light: row blocks pay at large sizes only (fused_layer)


class FusedRNN(_RNNLayout, FusedLayer):
    """One tanh RNN layer over all time steps, as a single Op.

    Inputs
    ------
    projected : tensor, shape (T, B, H)
        Input projections of every step, bias included.
    mask : tensor, shape (T, B)
        1 on real tokens, 0 on padding (padded steps keep the state).
    h0 : tensor, shape (B, H)
        Initial state.
    W_h : tensor, shape (H, H)
        Recurrent weights.

    All four must have the same dtype, float32 or float64.

    Outputs
    -------
    hs : tensor, shape (T, B, H)
        States after every step (module docstring).
    acts : tensor, shape (T, B, H)
        ``h_new`` of every step, kept for the backward pass (it differs from
        ``hs`` on padding). Not differentiable.

    Notes
    -----
    The gradient is :class:`FusedRNNGrad` with respect to ``projected``,
    ``h0`` and ``W_h``.
    """

    __props__ = ()

    def grad_op(self):
        return FusedRNNGrad()

    def forward_rows(self, projected, mask, initial, W_h, states, acts, start, stop):
        rnn_forward(projected, mask, initial[0], W_h, states[0], acts, start, stop)


class FusedRNNGrad(_RNNLayout, FusedLayerGrad):
    """Backward pass (BPTT) of :class:`FusedRNN`.

    Inputs
    ------
    mask (T, B), h0 (B, H), W_h (H, H), hs (T, B, H), acts (T, B, H), g_hs (T, B, H) : tensors
        The forward Op's inputs and outputs and the gradient of the cost with
        respect to ``hs``.

    Outputs
    -------
    d_projected (T, B, H), d_h0 (B, H), d_W_h (H, H) : tensors

    Notes
    -----
    Going backwards from t = T-1 with ``dh`` the gradient with respect to the
    state after step t (``g_hs[t]`` plus what step t+1 passed back)::

        dv  = m * dh * (1 - h_new**2)          -> d_projected[t]
        dh <- (1 - m) * dh + dv @ W_h.T

    then ``d_h0 = dh`` and ``d_W_h = h_prev.T @ d_projected`` summed over t and B.
    """

    __props__ = ()

    def backward_weights(self, W_h):
        return transposed_weights(W_h)

    def backward_rows(self, mask, initial, W_T, states, acts, g_states, d_projected, d_initial, d_W_h, start, stop):
        rnn_backward(mask, W_T, acts, g_states[0], d_projected, d_initial[0], start, stop)


def fused_rnn(projected, mask, h0, W_h):
    """Apply a tanh RNN layer to all time steps with one fused Op.

    Parameters
    ----------
    projected : tensor_like, shape (T, B, H), float32 or float64
        Input projections of every step, bias included.
    mask : tensor_like, shape (T, B)
        1 on real tokens, 0 on padding; cast to the dtype of ``projected``.
    h0 : tensor_like, shape (B, H)
        Initial state, same dtype as ``projected``.
    W_h : tensor_like, shape (H, H)
        Recurrent weights, same dtype as ``projected``.

    Returns
    -------
    hs : TensorVariable, shape (T, B, H)
        The state after every step, ``h <- m * tanh(a + h @ W_h) + (1 - m) * h``;
        differentiable with respect to ``projected``, ``h0`` and ``W_h``.

    Raises
    ------
    TypeError
        If the inputs do not share one float dtype or have the wrong number of dimensions.
    """
    (hs,) = apply_fused_layer(FusedRNN(), projected, mask, [h0], W_h)
    return hs
