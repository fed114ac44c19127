r"""The fused GRU layer: one PyTensor Op over all time steps, and its gradient Op.

PyTensor's ``scan`` is slow on CPU, above all its gradient. :func:`fused_gru`
(Ops :class:`FusedGRU` and :class:`FusedGRUGrad`) runs a whole GRU layer over
T time steps, with padding mask, in one Op whose ``perform`` is vectorised
NumPy (matrix products through BLAS via ``numpy.matmul``) and whose gradient is
again one Op. float32 inputs stay float32 throughout (no upcasts); float64 is
accepted. :mod:`symrnn.recurrence` chooses between it and ``scan``.

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
import pytensor.tensor as pt
from pytensor.gradient import grad_not_implemented, grad_undefined
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.tensor.type import TensorType
from scipy.special import expit

from symrnn.ops.checks import FLOAT_DTYPES, as_float_tensor, first_known, is_disconnected, same_dtype

__all__ = ["GATES", "FusedGRU", "FusedGRUGrad", "fused_gru"]

GATES = ("hard_sigmoid", "sigmoid")


def _check_gate(gate):
    if gate not in GATES:
        raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
    return gate


class FusedGRU(Op):
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

    def __init__(self, gate="hard_sigmoid"):
        self.gate = _check_gate(gate)

    def make_node(self, projected, mask, h0, W_h):
        projected = as_float_tensor(projected, "projected", 3)
        mask = as_float_tensor(mask, "mask", 2)
        h0 = as_float_tensor(h0, "h0", 2)
        W_h = as_float_tensor(W_h, "W_h", 2)
        dtype = same_dtype({"projected": projected, "mask": mask, "h0": h0, "W_h": W_h})
        T, B, H3 = projected.type.shape
        H = first_known(W_h.type.shape[0], h0.type.shape[1], None if H3 is None else H3 // 3)
        B = first_known(B, h0.type.shape[0], mask.type.shape[1])
        T = first_known(T, mask.type.shape[0])
        hs = TensorType(dtype, shape=(T, B, H))()
        acts = TensorType(dtype, shape=(T, B, None if H is None else 3 * H))()
        return Apply(self, [projected, mask, h0, W_h], [hs, acts])

    def infer_shape(self, fgraph, node, input_shapes):
        p_shape, _, _, w_shape = input_shapes
        return [(p_shape[0], p_shape[1], w_shape[0]), (p_shape[0], p_shape[1], 3 * w_shape[0])]

    def perform(self, node, inputs, output_storage):
        projected, mask, h0, W_h = inputs
        T, B, H, dtype = _check_gru_shapes(projected, mask, h0, W_h)
        H2 = 2 * H
        hard = self.gate == "hard_sigmoid"
        zero, one = dtype.type(0), dtype.type(1)
        hs = np.empty((T, B, H), dtype=dtype)
        acts = np.empty((T, B, 3 * H), dtype=dtype)
        S = acts[:, :, :H2]  # hard: unclipped 0.2 v + 0.5; sigmoid: [z | r]
        C = acts[:, :, H2:]  # candidates c
        A_c = projected[:, :, H2:]
        if hard:
            # 0.2 (a + h W) + 0.5 is computed as (0.2 a + 0.5) + h (0.2 W): the
            # input part for all steps at once, one product per step.
            W_zr = np.multiply(W_h[:, :H2], 0.2)
            np.multiply(projected[:, :, :H2], 0.2, out=S)
            np.add(S, 0.5, out=S)
            zr = np.empty((B, H2), dtype=dtype)
        else:
            W_zr = np.ascontiguousarray(W_h[:, :H2])
            A_zr = projected[:, :, :H2]
        W_c = np.ascontiguousarray(W_h[:, H2:])
        pre_zr = np.empty((B, H2), dtype=dtype)
        pre_c = np.empty((B, H), dtype=dtype)
        q = np.empty((B, H), dtype=dtype)
        d = np.empty((B, H), dtype=dtype)
        full = np.all(mask == 1, axis=1)
        m_col = mask[:, :, None]
        h = h0
        for t in range(T):
            np.matmul(h, W_zr, out=pre_zr)
            if hard:
                s = S[t]
                np.add(s, pre_zr, out=s)
                np.maximum(s, zero, out=zr)
                np.minimum(zr, one, out=zr)
            else:
                np.add(pre_zr, A_zr[t], out=pre_zr)
                zr = S[t]
                expit(pre_zr, out=zr)
            c = C[t]
            np.multiply(zr[:, H:], h, out=q)  # q = r * h
            np.matmul(q, W_c, out=pre_c)
            np.add(pre_c, A_c[t], out=pre_c)
            np.tanh(pre_c, out=c)
            # h_new = c + z * (h - c)
            np.subtract(h, c, out=d)
            np.multiply(d, zr[:, :H], out=d)
            h_out = hs[t]
            if full[t]:
                np.add(d, c, out=h_out)
            else:  # h_out = h + m * (h_new - h)
                np.add(d, c, out=d)
                np.subtract(d, h, out=d)
                np.multiply(d, m_col[t], out=d)
                np.add(h, d, out=h_out)
            h = h_out
        output_storage[0][0] = hs
        output_storage[1][0] = acts

    def pullback(self, inputs, outputs, cotangents):
        projected, mask, h0, W_h = inputs
        hs, acts = outputs
        g_hs, g_acts = cotangents
        if not is_disconnected(g_acts):
            return [
                grad_not_implemented(self, i, x, "the activations output of FusedGRU is not differentiable")
                for i, x in enumerate(inputs)
            ]
        if is_disconnected(g_hs):
            g_hs = pt.zeros_like(hs)
        elif g_hs.type.dtype != hs.type.dtype:
            g_hs = pt.cast(g_hs, hs.type.dtype)
        d_proj, d_h0, d_W = FusedGRUGrad(self.gate)(mask, h0, W_h, hs, acts, g_hs)
        return [
            d_proj,
            grad_undefined(self, 1, mask, "mask is data (1 on tokens, 0 on padding); it has no gradient"),
            d_h0,
            d_W,
        ]


class FusedGRUGrad(Op):
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

    def __init__(self, gate="hard_sigmoid"):
        self.gate = _check_gate(gate)

    def make_node(self, mask, h0, W_h, hs, acts, g_hs):
        mask = as_float_tensor(mask, "mask", 2)
        h0 = as_float_tensor(h0, "h0", 2)
        W_h = as_float_tensor(W_h, "W_h", 2)
        hs = as_float_tensor(hs, "hs", 3)
        acts = as_float_tensor(acts, "acts", 3)
        g_hs = as_float_tensor(g_hs, "g_hs", 3)
        same_dtype({"mask": mask, "h0": h0, "W_h": W_h, "hs": hs, "acts": acts, "g_hs": g_hs})
        return Apply(self, [mask, h0, W_h, hs, acts, g_hs], [acts.type(), h0.type(), W_h.type()])

    def infer_shape(self, fgraph, node, input_shapes):
        _, h0_shape, w_shape, _, acts_shape, _ = input_shapes
        return [acts_shape, h0_shape, w_shape]

    def perform(self, node, inputs, output_storage):
        mask, h0, W_h, hs, acts, g_hs = inputs
        T, B, H = hs.shape
        if acts.shape != (T, B, 3 * H) or g_hs.shape != hs.shape:
            raise ValueError(f"FusedGRUGrad: shapes hs {hs.shape}, acts {acts.shape}, g_hs {g_hs.shape} disagree")
        _check_gru_shapes(acts, mask, h0, W_h)
        dtype = hs.dtype
        H2 = 2 * H
        d_proj = np.empty((T, B, 3 * H), dtype=dtype)
        d_W = np.empty((H, 3 * H), dtype=dtype)
        carry = np.zeros((B, H), dtype=dtype)  # gradient w.r.t. the state before step t+1
        if T == 0:
            d_W.fill(0)
            output_storage[0][0] = d_proj
            output_storage[1][0] = carry
            output_storage[2][0] = d_W
            return
        # Everything that depends on the forward pass alone, for all steps at once.
        h_prev = np.empty((T, B, H), dtype=dtype)
        h_prev[0] = h0
        h_prev[1:] = hs[:-1]
        S = acts[:, :, :H2]
        C = acts[:, :, H2:]
        if self.gate == "hard_sigmoid":
            ZR = np.maximum(S, dtype.type(0))
            np.minimum(ZR, dtype.type(1), out=ZR)
            G = np.equal(ZR, S).astype(dtype)  # 1 where 0 <= 0.2 v + 0.5 <= 1
            np.multiply(G, 0.2, out=G)
        else:
            ZR = S
            G = np.subtract(1, ZR)
            np.multiply(G, ZR, out=G)
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
        # Transposed weights: BLAS reads the transposed views directly; copying
        # them (a slow strided copy) pays off only for larger batches.
        W_zrT = W_h[:, :H2].T
        W_cT = W_h[:, H2:].T
        if B > 8:
            W_zrT = np.ascontiguousarray(W_zrT)
            W_cT = np.ascontiguousarray(W_cT)
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
        output_storage[0][0] = d_proj
        output_storage[1][0] = carry
        output_storage[2][0] = d_W

    def pullback(self, inputs, outputs, cotangents):
        return [
            grad_not_implemented(self, i, x, "second derivatives of the fused GRU are not implemented")
            for i, x in enumerate(inputs)
        ]


def _check_gru_shapes(projected, mask, h0, W_h):
    """Check the runtime shapes of a GRU's arrays; return T, B, H and dtype."""
    T, B, H3 = projected.shape
    H = W_h.shape[0]
    if W_h.shape != (H, 3 * H) or H3 != 3 * H or h0.shape != (B, H) or mask.shape != (T, B):
        raise ValueError(
            "fused GRU shapes disagree: expected projected (T, B, 3H), mask (T, B), h0 (B, H), "
            f"W_h (H, 3H); got projected {projected.shape}, mask {mask.shape}, h0 {h0.shape}, "
            f"W_h {W_h.shape}"
        )
    return T, B, H, projected.dtype


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
    projected = pt.as_tensor_variable(projected)
    mask = pt.as_tensor_variable(mask)
    if projected.type.dtype in FLOAT_DTYPES and mask.type.dtype != projected.type.dtype:
        mask = pt.cast(mask, projected.type.dtype)
    return FusedGRU(gate)(projected, mask, h0, W_h)[0]

