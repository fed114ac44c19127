r"""The fused GRU layer: one PyTensor Op over all time steps, and its gradient Op.

PyTensor's ``scan`` is slow on CPU, above all its gradient. :func:`fused_gru`
(Ops :class:`FusedGRU` and :class:`FusedGRUGrad`) runs a whole GRU layer over
T time steps, with padding mask, in one Op whose ``perform`` is vectorised
NumPy (matrix products through BLAS via ``numpy.matmul``) and whose gradient is
again one Op (the shared graph side is in :mod:`symrnn.ops.fused_layer`).
float32 inputs stay float32 throughout (no upcasts); float64 is accepted.
:mod:`symrnn.recurrence` chooses between it and ``scan``.

GRU equations (time-major, ``H`` hidden units, gate blocks ordered
``[z | r | candidate]``), for t = 0 .. T-1 with ``h = h0`` before step 0::

    a     = projected[t]                                   # (B, 3H)
    z     = sig(a[:, :H]   + h @ W_h[:, :H])               # update gate
    r     = sig(a[:, H:2H] + h @ W_h[:, H:2H])             # reset gate
    c     = tanh(a[:, 2H:] + (r * h) @ W_h[:, 2H:])        # candidate
    h_new = (1 - z) * c + z * h
    h     = m * h_new + (1 - m) * h,    m = mask[t][:, None]
    hs[t] = h

with ``sig(v) = clip(0.2 v + 0.5, 0, 1)`` (``gate="hard_sigmoid"``, the
WildML tutorial's choice) or the logistic sigmoid (``gate="sigmoid"``).
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

__all__ = ["FusedGRU", "FusedGRUGrad", "fused_gru"]


class FusedGRU(FusedLayer):
    """One GRU layer over all time steps, as a single Op.

    Inputs
    ------
    projected : tensor, shape (T, B, 3H)
        Input projections of every step, bias included, blocks ``[z | r | c]``.
    mask : tensor, shape (T, B)
        1 on real tokens, 0 on padding (padded steps keep the state).
    h0 : tensor, shape (B, H)
        Initial state.
    W_h : tensor, shape (H, 3H)
        Recurrent weights, blocks ``[z | r | c]``.

    All four must have the same dtype, float32 or float64.

    Outputs
    -------
    hs : tensor, shape (T, B, H)
        States after every step (see the module docstring for the equations).
    acts : tensor, shape (T, B, 3H)
        Activations kept for the backward pass: ``acts[t, :, 2H:]`` is the
        candidate ``c``; ``acts[t, :, :2H]`` holds the gates ``[z | r]`` for
        ``gate="sigmoid"`` and their unclipped arguments ``0.2 v + 0.5``
        (so that ``[z | r] = clip(acts[t, :, :2H], 0, 1)``) for
        ``gate="hard_sigmoid"``. Not differentiable.

    Parameters
    ----------
    gate : {"hard_sigmoid", "sigmoid"}
        Gate nonlinearity ``sig``.

    Notes
    -----
    The gradient (:meth:`pullback`) is :class:`FusedGRUGrad` with respect to
    ``projected``, ``h0`` and ``W_h``; ``mask`` is data and its gradient is
    undefined. Hard-sigmoid derivatives follow PyTensor's ``clip`` gradient:
    0.2 where ``0 <= 0.2 v + 0.5 <= 1`` (boundaries included), else 0.
    """

    __props__ = ("gate",)
    cell, blocks, initial_names = "GRU", 3, ("h0",)

    def __init__(self, gate="hard_sigmoid"):
        self.gate = check_gate(gate)

    def grad_op(self):
        return FusedGRUGrad(self.gate)

    def forward(self, projected, mask, initial, W_h):
        (h0,) = initial
        T, B, H3 = projected.shape
        H = H3 // 3
        H2 = 2 * H
        dtype = projected.dtype
        hard = self.gate == "hard_sigmoid"
        hs = np.empty((T, B, H), dtype=dtype)
        acts = np.empty((T, B, 3 * H), dtype=dtype)
        S = acts[:, :, :H2]  # hard: unclipped 0.2 v + 0.5; sigmoid: [z | r]
        C = acts[:, :, H2:]  # candidates c
        A_c = projected[:, :, H2:]
        W_zr = gate_inputs(projected[:, :, :H2], W_h[:, :H2], hard, out=S)
        W_c = np.ascontiguousarray(W_h[:, H2:])
        pre_zr = np.empty((B, H2), dtype=dtype)
        zr_buf = np.empty((B, H2), dtype=dtype)
        pre_c = np.empty((B, H), dtype=dtype)
        q = np.empty((B, H), dtype=dtype)
        d = np.empty((B, H), dtype=dtype)
        full = np.all(mask == 1, axis=1)
        m_col = mask[:, :, None]
        h = h0
        for t in range(T):
            np.matmul(h, W_zr, out=pre_zr)
            np.add(S[t], pre_zr, out=S[t])
            zr = activate_gates(S[t], hard, zr_buf)
            c = C[t]
            np.multiply(zr[:, H:], h, out=q)  # q = r * h
            np.matmul(q, W_c, out=pre_c)
            np.add(pre_c, A_c[t], out=pre_c)
            np.tanh(pre_c, out=c)
            # h_new = c + z * (h - c)
            np.subtract(h, c, out=d)
            np.multiply(d, zr[:, :H], out=d)
            if full[t]:
                np.add(d, c, out=hs[t])
            else:
                np.add(d, c, out=d)
                carry_padding(d, h, m_col[t], out=hs[t])
            h = hs[t]
        return [hs], acts


class FusedGRUGrad(FusedLayerGrad):
    """Backward pass (BPTT) of :class:`FusedGRU`.

    Inputs
    ------
    mask : tensor, shape (T, B)
    h0 : tensor, shape (B, H)
    W_h : tensor, shape (H, 3H)
    hs : tensor, shape (T, B, H)
        Output 0 of the forward Op.
    acts : tensor, shape (T, B, 3H)
        Output 1 of the forward Op.
    g_hs : tensor, shape (T, B, H)
        Gradient of the cost with respect to ``hs``.

    Outputs
    -------
    d_projected : tensor, shape (T, B, 3H)
    d_h0 : tensor, shape (B, H)
    d_W_h : tensor, shape (H, 3H)

    Parameters
    ----------
    gate : {"hard_sigmoid", "sigmoid"}

    Notes
    -----
    Going backwards from t = T-1 with ``dh`` the gradient with respect to the
    state after step t (``g_hs[t]`` plus what step t+1 passed back) and
    ``h`` the state before step t::

        dn    = m * dh
        dz    = dn * (h - c)                    -> d_projected[t, :, :H]  = dz * sig'
        dac   = dn * (1 - z) * (1 - c**2)       -> d_projected[t, :, 2H:] = dac
        dq    = dac @ W_h[:, 2H:].T
        dr    = dq * h                          -> d_projected[t, :, H:2H] = dr * sig'
        dh    <- (1 - m) * dh + dn * z + dq * r + d_projected[t, :, :2H] @ W_h[:, :2H].T

    with ``sig' = 0.2 * [0 <= 0.2 v + 0.5 <= 1]`` (hard sigmoid) or
    ``sig * (1 - sig)``. Finally ``d_h0 = dh`` and, with ``h_prev[t]`` the
    state before step t and ``q[t] = r * h_prev[t]``, summed over t and B::

        d_W_h[:, :2H] = h_prev.T @ d_projected[:, :, :2H]
        d_W_h[:, 2H:] = q.T @ d_projected[:, :, 2H:]

    The factors that depend on the forward pass alone (``sig' * (h - c)``,
    ``sig' * h``, ``(1 - z) * (1 - c**2)`` and ``q``) are computed for all
    steps at once before the loop, so that a step costs two matrix products
    and about nine elementwise NumPy calls.
    """

    __props__ = ("gate",)
    cell, blocks, initial_names = "GRU", 3, ("h0",)

    def __init__(self, gate="hard_sigmoid"):
        self.gate = check_gate(gate)

    def backward(self, mask, initial, W_h, states, acts, g_states):
        (h0,), (hs,), (g_hs,) = initial, states, g_states
        T, B, H = hs.shape
        dtype = hs.dtype
        H2 = 2 * H
        d_proj = np.empty((T, B, 3 * H), dtype=dtype)
        d_W = np.empty((H, 3 * H), dtype=dtype)
        carry = np.zeros((B, H), dtype=dtype)  # gradient w.r.t. the state before step t+1
        # Everything that depends on the forward pass alone, for all steps at once.
        h_prev = previous_states(h0, hs)
        C = acts[:, :, H2:]
        ZR, G = gate_values_and_slopes(acts[:, :, :H2], self.gate == "hard_sigmoid")
        Z = ZR[:, :, :H]
        R = ZR[:, :, H:]
        G_z = G[:, :, :H]  # sig'(z pre-activation) * (h - c)
        np.multiply(G_z, np.subtract(h_prev, C), out=G_z)
        G_r = G[:, :, H:]  # sig'(r pre-activation) * h
        np.multiply(G_r, h_prev, out=G_r)
        G_c = np.multiply(C, C)  # (1 - z) * (1 - c**2)
        np.subtract(1, G_c, out=G_c)
        np.multiply(G_c, np.subtract(1, Z), out=G_c)
        Q = np.multiply(R, h_prev)  # q = r * h
        W_zrT = transposed_for_batch(W_h[:, :H2], B)
        W_cT = transposed_for_batch(W_h[:, H2:], B)
        dh = np.empty((B, H), dtype=dtype)
        dn_buf = np.empty((B, H), dtype=dtype)
        dq = np.empty((B, H), dtype=dtype)
        tmp = np.empty((B, H), dtype=dtype)
        back = np.empty((B, H), dtype=dtype)
        full = np.all(mask == 1, axis=1)
        m_col = mask[:, :, None]
        for t in range(T - 1, -1, -1):
            np.add(g_hs[t], carry, out=dh)
            if full[t]:
                dn = dh
            else:
                dn = np.multiply(dh, m_col[t], out=dn_buf)
            da = d_proj[t]
            np.multiply(dn, G_z[t], out=da[:, :H])
            np.multiply(dn, G_c[t], out=da[:, H2:])
            np.matmul(da[:, H2:], W_cT, out=dq)
            np.multiply(dq, G_r[t], out=da[:, H:H2])
            # gradient w.r.t. the state before step t
            if full[t]:
                np.multiply(dn, Z[t], out=carry)
            else:
                np.subtract(dh, dn, out=carry)  # (1 - m) * dh
                np.multiply(dn, Z[t], out=tmp)
                np.add(carry, tmp, out=carry)
            np.multiply(dq, R[t], out=tmp)
            np.add(carry, tmp, out=carry)
            np.matmul(da[:, :H2], W_zrT, out=back)
            np.add(carry, back, out=carry)
        flat = d_proj.reshape(T * B, 3 * H)
        np.matmul(h_prev.reshape(T * B, H).T, flat[:, :H2], out=d_W[:, :H2])
        np.matmul(Q.reshape(T * B, H).T, flat[:, H2:], out=d_W[:, H2:])
        return d_proj, [carry], d_W


def fused_gru(projected, mask, h0, W_h, gate="hard_sigmoid"):
    """Apply a GRU layer to all time steps with one fused Op.

    Parameters
    ----------
    projected : tensor_like, shape (T, B, 3H), float32 or float64
        Input projections of every step, bias included, blocks
        ``[z | r | candidate]``.
    mask : tensor_like, shape (T, B)
        1 on real tokens, 0 on padding; cast to the dtype of ``projected``.
    h0 : tensor_like, shape (B, H)
        Initial state, same dtype as ``projected``.
    W_h : tensor_like, shape (H, 3H)
        Recurrent weights, same dtype and block order as ``projected``.
    gate : {"hard_sigmoid", "sigmoid"}, optional
        Gate nonlinearity: ``clip(0.2 v + 0.5, 0, 1)`` (default) or
        ``1 / (1 + exp(-v))``.

    Returns
    -------
    hs : TensorVariable, shape (T, B, H)
        The state after every step::

            z = sig(a[:, :H] + h @ W_h[:, :H]),  r = sig(a[:, H:2H] + h @ W_h[:, H:2H])
            c = tanh(a[:, 2H:] + (r * h) @ W_h[:, 2H:])
            h <- m * ((1 - z) * c + z * h) + (1 - m) * h,   hs[t] = h

        with ``a = projected[t]`` and ``m = mask[t][:, None]``. Differentiable
        with respect to ``projected``, ``h0`` and ``W_h``.

    Raises
    ------
    TypeError
        If ``projected``, ``h0`` and ``W_h`` do not share one float dtype or
        have the wrong number of dimensions.
    """
    (hs,) = apply_fused_layer(FusedGRU(gate), projected, mask, [h0], W_h)
    return hs
