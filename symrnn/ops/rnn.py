r"""The fused vanilla (Elman) tanh RNN layer: one PyTensor Op over all time steps, and its gradient Op.

:func:`fused_rnn` (Ops :class:`FusedRNN` and :class:`FusedRNNGrad`) runs a
whole tanh RNN layer over T time steps, with padding mask, in one Op whose
``perform`` is NumPy (one matrix product per step through BLAS), and whose
gradient is again one Op; the graph side is shared with the other cells in
:mod:`symrnn.ops.fused_layer`. float32 stays float32; float64 is accepted.
:mod:`symrnn.recurrence` chooses between it and ``scan``.

Equations (time-major, ``H`` hidden units, as :func:`symrnn.cells.rnn_step`),
for t = 0 .. T-1 with ``h = h0`` before step 0::

    h_new = tanh(projected[t] + h @ W_h)
    h     = m * h_new + (1 - m) * h,    m = mask[t][:, None]
    hs[t] = h

The cell has no gates, so the Ops take no ``gate``.
"""

from __future__ import annotations

import numpy as np

from symrnn.ops.fused_layer import (
    FusedLayer,
    FusedLayerGrad,
    apply_fused_layer,
    carry_padding,
    previous_states,
    transposed_for_batch,
)

__all__ = ["FusedRNN", "FusedRNNGrad", "fused_rnn"]


class FusedRNN(FusedLayer):
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
    cell, blocks, initial_names = "RNN", 1, ("h0",)

    def grad_op(self):
        return FusedRNNGrad()

    def forward(self, projected, mask, initial, W_h):
        (h0,) = initial
        T, B, H = projected.shape
        dtype = projected.dtype
        hs = np.empty((T, B, H), dtype=dtype)
        acts = np.empty((T, B, H), dtype=dtype)
        W = np.ascontiguousarray(W_h)
        pre = np.empty((B, H), dtype=dtype)
        h_new = np.empty((B, H), dtype=dtype)
        full = np.all(mask == 1, axis=1)
        m_col = mask[:, :, None]
        h = h0
        for t in range(T):
            np.matmul(h, W, out=pre)
            np.add(pre, projected[t], out=acts[t])
            np.tanh(acts[t], out=acts[t])
            if full[t]:
                np.copyto(hs[t], acts[t])
            else:
                np.copyto(h_new, acts[t])
                carry_padding(h_new, h, m_col[t], out=hs[t])
            h = hs[t]
        return [hs], acts


class FusedRNNGrad(FusedLayerGrad):
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
    cell, blocks, initial_names = "RNN", 1, ("h0",)

    def backward(self, mask, initial, W_h, states, acts, g_states):
        (h0,), (hs,), (g_hs,) = initial, states, g_states
        T, B, H = hs.shape
        dtype = hs.dtype
        slopes = np.multiply(acts, acts)  # 1 - h_new**2
        np.subtract(1, slopes, out=slopes)
        W_T = transposed_for_batch(W_h, B)
        d_proj = np.empty((T, B, H), dtype=dtype)
        dh = np.empty((B, H), dtype=dtype)
        dn_buf = np.empty((B, H), dtype=dtype)
        back = np.empty((B, H), dtype=dtype)
        carry = np.zeros((B, H), dtype=dtype)
        full = np.all(mask == 1, axis=1)
        m_col = mask[:, :, None]
        for t in range(T - 1, -1, -1):
            np.add(g_hs[t], carry, out=dh)
            if full[t]:
                np.multiply(dh, slopes[t], out=d_proj[t])
                np.matmul(d_proj[t], W_T, out=carry)
            else:
                dn = np.multiply(dh, m_col[t], out=dn_buf)
                np.multiply(dn, slopes[t], out=d_proj[t])
                np.matmul(d_proj[t], W_T, out=back)
                np.subtract(dh, dn, out=carry)  # (1 - m) * dh
                np.add(carry, back, out=carry)
        d_W = previous_states(h0, hs).reshape(T * B, H).T @ d_proj.reshape(T * B, H)
        return d_proj, [carry], d_W


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
