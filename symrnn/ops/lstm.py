r"""The fused LSTM layer: one PyTensor Op over all time steps, and its gradient Op.

:func:`fused_lstm` (Ops :class:`FusedLSTM` and :class:`FusedLSTMGrad`) runs a
whole LSTM layer over T time steps, with padding mask, in one Op whose
``perform`` is NumPy (one matrix product per step through BLAS), and whose
gradient is again one Op; the graph side is shared with the other cells in
:mod:`symrnn.ops.fused_layer`. float32 stays float32; float64 is accepted.
:mod:`symrnn.recurrence` chooses between it and ``scan``.

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

import numpy as np

from symrnn.ops.fused_layer import (
    FusedLayer,
    FusedLayerGrad,
    activate_gates,
    apply_fused_layer,
    carry_padding,
    check_gate,
    gate_inputs,
    gate_values_and_slopes,
    previous_states,
    transposed_for_batch,
)

__all__ = ["FusedLSTM", "FusedLSTMGrad", "fused_lstm"]


class FusedLSTM(FusedLayer):
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
    cell, blocks, initial_names = "LSTM", 4, ("h0", "c0")

    def __init__(self, gate="sigmoid"):
        self.gate = check_gate(gate)

    def grad_op(self):
        return FusedLSTMGrad(self.gate)

    def forward(self, projected, mask, initial, W_h):
        h0, c0 = initial
        T, B, H4 = projected.shape
        H = H4 // 4
        H3 = 3 * H
        dtype = projected.dtype
        hard = self.gate == "hard_sigmoid"
        hs = np.empty((T, B, H), dtype=dtype)
        cs = np.empty((T, B, H), dtype=dtype)
        acts = np.empty((T, B, H4), dtype=dtype)
        W_gates = gate_inputs(projected[:, :, :H3], W_h[:, :H3], hard, out=acts[:, :, :H3])
        W = np.concatenate([W_gates, W_h[:, H3:]], axis=1) if hard else np.ascontiguousarray(W_h)
        acts[:, :, H3:] = projected[:, :, H3:]
        pre = np.empty((B, H4), dtype=dtype)
        ifo_buf = np.empty((B, H3), dtype=dtype)
        c_new = np.empty((B, H), dtype=dtype)
        h_new = np.empty((B, H), dtype=dtype)
        tmp = np.empty((B, H), dtype=dtype)
        full = np.all(mask == 1, axis=1)
        m_col = mask[:, :, None]
        h, c = h0, c0
        for t in range(T):
            a = acts[t]
            np.matmul(h, W, out=pre)
            np.add(a, pre, out=a)
            ifo = activate_gates(a[:, :H3], hard, ifo_buf)
            g = a[:, H3:]
            np.tanh(g, out=g)
            c_out, h_out = (cs[t], hs[t]) if full[t] else (c_new, h_new)
            np.multiply(ifo[:, H : 2 * H], c, out=c_out)
            np.multiply(ifo[:, :H], g, out=tmp)
            np.add(c_out, tmp, out=c_out)
            np.tanh(c_out, out=tmp)
            np.multiply(ifo[:, 2 * H :], tmp, out=h_out)
            if not full[t]:
                carry_padding(c_new, c, m_col[t], out=cs[t])
                carry_padding(h_new, h, m_col[t], out=hs[t])
            h, c = hs[t], cs[t]
        return [hs, cs], acts


class FusedLSTMGrad(FusedLayerGrad):
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
    is recomputed from ``acts``, and the factors that depend on the forward
    pass alone are computed for all steps before the loop: a step costs one
    matrix product and about ten elementwise NumPy calls.
    """

    __props__ = ("gate",)
    cell, blocks, initial_names = "LSTM", 4, ("h0", "c0")

    def __init__(self, gate="sigmoid"):
        self.gate = check_gate(gate)

    def backward(self, mask, initial, W_h, states, acts, g_states):
        h0, c0 = initial
        hs, cs = states
        g_hs, g_cs = g_states
        T, B, H = hs.shape
        dtype = hs.dtype
        H3 = 3 * H
        h_prev = previous_states(h0, hs)
        c_prev = previous_states(c0, cs)
        IFO, slopes = gate_values_and_slopes(acts[:, :, :H3], self.gate == "hard_sigmoid")
        I, F, O = IFO[:, :, :H], IFO[:, :, H : 2 * H], IFO[:, :, 2 * H :]
        Gv = acts[:, :, H3:]
        TC = np.multiply(F, c_prev)  # tanh(c_new)
        np.add(TC, np.multiply(I, Gv), out=TC)
        np.tanh(TC, out=TC)
        # factors of dv: [g sig'_i | c sig'_f | tc sig'_o | i (1 - g**2)]
        factors = np.empty((T, B, 4 * H), dtype=dtype)
        np.multiply(slopes[:, :, :H], Gv, out=factors[:, :, :H])
        np.multiply(slopes[:, :, H : 2 * H], c_prev, out=factors[:, :, H : 2 * H])
        np.multiply(slopes[:, :, 2 * H :], TC, out=factors[:, :, 2 * H : H3])
        np.multiply(Gv, Gv, out=factors[:, :, H3:])
        np.subtract(1, factors[:, :, H3:], out=factors[:, :, H3:])
        np.multiply(factors[:, :, H3:], I, out=factors[:, :, H3:])
        through_h = np.multiply(TC, TC)  # o (1 - tc**2): dc_new per dh_new
        np.subtract(1, through_h, out=through_h)
        np.multiply(through_h, O, out=through_h)
        f_if, f_o, f_g = factors[:, :, : 2 * H], factors[:, :, 2 * H : H3], factors[:, :, H3:]
        W_T = transposed_for_batch(W_h, B)
        d_proj = np.empty((T, B, 4 * H), dtype=dtype)
        dh = np.empty((B, H), dtype=dtype)
        dc = np.empty((B, H), dtype=dtype)
        dhn_buf = np.empty((B, H), dtype=dtype)
        dcn_buf = np.empty((B, H), dtype=dtype)
        dct = np.empty((B, H), dtype=dtype)
        back = np.empty((B, H), dtype=dtype)
        carry_h = np.zeros((B, H), dtype=dtype)
        carry_c = np.zeros((B, H), dtype=dtype)
        full = np.all(mask == 1, axis=1)
        m_col = mask[:, :, None]
        for t in range(T - 1, -1, -1):
            np.add(g_hs[t], carry_h, out=dh)
            np.add(g_cs[t], carry_c, out=dc)
            if full[t]:
                dhn, dcn = dh, dc
            else:
                dhn = np.multiply(dh, m_col[t], out=dhn_buf)
                dcn = np.multiply(dc, m_col[t], out=dcn_buf)
            np.multiply(dhn, through_h[t], out=dct)
            np.add(dct, dcn, out=dct)
            dv = d_proj[t]
            np.multiply(f_if[t].reshape(B, 2, H), dct[:, None, :], out=dv[:, : 2 * H].reshape(B, 2, H))
            np.multiply(f_o[t], dhn, out=dv[:, 2 * H : H3])
            np.multiply(f_g[t], dct, out=dv[:, H3:])
            if full[t]:
                np.matmul(dv, W_T, out=carry_h)
                np.multiply(dct, F[t], out=carry_c)
            else:
                np.matmul(dv, W_T, out=back)
                np.subtract(dh, dhn, out=carry_h)  # (1 - m) * dh
                np.add(carry_h, back, out=carry_h)
                np.multiply(dct, F[t], out=back)
                np.subtract(dc, dcn, out=carry_c)
                np.add(carry_c, back, out=carry_c)
        d_W = h_prev.reshape(T * B, H).T @ d_proj.reshape(T * B, 4 * H)
        return d_proj, [carry_h, carry_c], d_W


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
