"""Fused PyTensor Ops for the GRU recurrence and the softmax cross-entropy.

PyTensor's ``scan`` is slow on CPU, above all its gradient, and
``pytensor.tensor.special.log_softmax`` runs as a Python Op under the C-VM
linker. This module provides drop-in replacements whose ``perform`` methods are
vectorised NumPy (matrix products through BLAS via ``numpy.matmul``) and whose
gradients are again fused Ops:

* :func:`fused_gru` (Ops :class:`FusedGRU` and :class:`FusedGRUGrad`): a whole
  GRU layer over T time steps, with padding mask, in one Op;
* :func:`softmax_nll` (Ops :class:`SoftmaxNLL` and :class:`SoftmaxNLLGrad`):
  per-row negative log-likelihood of integer targets under softmax(logits);
* :func:`output_layer_nll` (Op :class:`OutputLayerNLL`): the whole output
  layer of a language model, ``hidden @ W + b`` and its masked summed
  cross-entropy, whose forward pass also leaves the gradient with respect to
  the logits, so that the backward pass is two matrix products. For float32
  its softmax runs in the Numba kernel of :mod:`symrnn.kernels`.

Both keep float32 inputs float32 throughout (no upcasts) and accept float64.
:func:`log_softmax_reference_nll` builds the plain PyTensor graph of the same
loss, for tests and comparisons.

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
from pytensor.gradient import DisconnectedType, disconnected_type, grad_not_implemented, grad_undefined
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.tensor.type import TensorType
from scipy.special import expit

__all__ = [
    "GATES",
    "FusedGRU",
    "FusedGRUGrad",
    "fused_gru",
    "SoftmaxNLL",
    "SoftmaxNLLGrad",
    "softmax_nll",
    "OutputLayerNLL",
    "output_layer_nll",
    "log_softmax_reference_nll",
]

GATES = ("hard_sigmoid", "sigmoid")
_FLOAT_DTYPES = ("float32", "float64")
_INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32")

# Rows of logits processed together by the softmax Ops: a block of about this
# many bytes stays in cache between the subtract, exp and sum passes.
_BLOCK_BYTES = 1 << 18
# Batches with at least this many logits run the softmax kernel on all threads.
_PARALLEL_LOGITS = 1 << 20


def _check_gate(gate):
    if gate not in GATES:
        raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
    return gate


def _as_float_tensor(x, name, ndim):
    x = pt.as_tensor_variable(x)
    if x.type.ndim != ndim:
        raise TypeError(f"{name} must be {ndim}-dimensional, got {x.type.ndim} dimensions ({x.type})")
    if x.type.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {x.type.dtype}")
    return x


def _same_dtype(named):
    dtypes = {x.type.dtype for x in named.values()}
    if len(dtypes) != 1:
        listing = ", ".join(f"{k}: {v.type.dtype}" for k, v in named.items())
        raise TypeError(f"all float inputs must share one dtype (float32 or float64); got {listing}")
    return dtypes.pop()


def _static(*dims):
    """The first known (not None) static length among ``dims``, else None."""
    for d in dims:
        if d is not None:
            return d
    return None


def _is_disconnected(g):
    return g is None or isinstance(g.type, DisconnectedType)


# --------------------------------------------------------------------------
# GRU
# --------------------------------------------------------------------------


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
        projected = _as_float_tensor(projected, "projected", 3)
        mask = _as_float_tensor(mask, "mask", 2)
        h0 = _as_float_tensor(h0, "h0", 2)
        W_h = _as_float_tensor(W_h, "W_h", 2)
        dtype = _same_dtype({"projected": projected, "mask": mask, "h0": h0, "W_h": W_h})
        T, B, H3 = projected.type.shape
        H = _static(W_h.type.shape[0], h0.type.shape[1], None if H3 is None else H3 // 3)
        B = _static(B, h0.type.shape[0], mask.type.shape[1])
        T = _static(T, mask.type.shape[0])
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
        if not _is_disconnected(g_acts):
            return [
                grad_not_implemented(self, i, x, "the activations output of FusedGRU is not differentiable")
                for i, x in enumerate(inputs)
            ]
        if _is_disconnected(g_hs):
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
        mask = _as_float_tensor(mask, "mask", 2)
        h0 = _as_float_tensor(h0, "h0", 2)
        W_h = _as_float_tensor(W_h, "W_h", 2)
        hs = _as_float_tensor(hs, "hs", 3)
        acts = _as_float_tensor(acts, "acts", 3)
        g_hs = _as_float_tensor(g_hs, "g_hs", 3)
        _same_dtype({"mask": mask, "h0": h0, "W_h": W_h, "hs": hs, "acts": acts, "g_hs": g_hs})
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
    if projected.type.dtype in _FLOAT_DTYPES and mask.type.dtype != projected.type.dtype:
        mask = pt.cast(mask, projected.type.dtype)
    return FusedGRU(gate)(projected, mask, h0, W_h)[0]


# --------------------------------------------------------------------------
# Softmax cross-entropy
# --------------------------------------------------------------------------


def _block_rows(V, itemsize):
    return max(1, _BLOCK_BYTES // max(1, V * itemsize))


def _check_targets(targets, N, V):
    if targets.shape != (N,):
        raise ValueError(f"targets must have shape ({N},) to match logits of shape ({N}, {V}), got {targets.shape}")
    if N and (targets.min() < 0 or targets.max() >= V):
        raise ValueError(f"targets must lie in [0, {V}); got values in [{targets.min()}, {targets.max()}]")


def _row_logsumexp(logits):
    """Row-wise ``log(sum(exp(logits), axis=1))``, stably, in the input dtype."""
    N, V = logits.shape
    dtype = logits.dtype
    row_max = np.max(logits, axis=1) if V else np.full(N, -np.inf, dtype=dtype)
    sums = np.empty(N, dtype=dtype)
    rows = _block_rows(V, logits.itemsize)
    buf = np.empty((min(rows, N), V), dtype=dtype)
    for start in range(0, N, rows):
        stop = min(start + rows, N)
        b = buf[: stop - start]
        np.subtract(logits[start:stop], row_max[start:stop, None], out=b)
        np.exp(b, out=b)
        np.sum(b, axis=1, out=sums[start:stop])
    np.log(sums, out=sums)
    np.add(sums, row_max, out=sums)
    return sums


class SoftmaxNLL(Op):
    """Per-row softmax cross-entropy with integer targets, as one Op.

    Inputs
    ------
    logits : tensor, shape (N, V), float32 or float64
    targets : tensor, shape (N,), integer, values in [0, V)

    Outputs
    -------
    nll : tensor, shape (N,), dtype of logits
        ``nll[i] = lse[i] - logits[i, targets[i]]``.
    lse : tensor, shape (N,), dtype of logits
        ``lse[i] = m[i] + log(sum_j exp(logits[i, j] - m[i]))`` with
        ``m[i] = max_j logits[i, j]``; kept for the backward pass, not
        differentiable.

    Notes
    -----
    The gradient with respect to logits is :class:`SoftmaxNLLGrad`;
    ``targets`` get none (disconnected).
    """

    __props__ = ()

    def make_node(self, logits, targets):
        logits = _as_float_tensor(logits, "logits", 2)
        targets = pt.as_tensor_variable(targets)
        if targets.type.ndim != 1 or targets.type.dtype not in _INT_DTYPES:
            raise TypeError(f"targets must be a 1-d integer tensor, got {targets.type}")
        N = _static(logits.type.shape[0], targets.type.shape[0])
        out = TensorType(logits.type.dtype, shape=(N,))
        return Apply(self, [logits, targets], [out(), out()])

    def infer_shape(self, fgraph, node, input_shapes):
        n = input_shapes[0][0]
        return [(n,), (n,)]

    def connection_pattern(self, node):
        return [[True, True], [False, False]]

    def perform(self, node, inputs, output_storage):
        logits, targets = inputs
        N, V = logits.shape
        _check_targets(targets, N, V)
        lse = _row_logsumexp(logits)
        nll = np.subtract(lse, logits[np.arange(N), targets])
        output_storage[0][0] = nll
        output_storage[1][0] = lse

    def pullback(self, inputs, outputs, cotangents):
        logits, targets = inputs
        nll, lse = outputs
        g_nll, g_lse = cotangents
        if not _is_disconnected(g_lse):
            return [
                grad_not_implemented(self, 0, logits, "the logsumexp output of SoftmaxNLL is not differentiable"),
                disconnected_type(),
            ]
        if _is_disconnected(g_nll):
            return [disconnected_type(), disconnected_type()]
        if g_nll.type.dtype != logits.type.dtype:
            g_nll = pt.cast(g_nll, logits.type.dtype)
        return [SoftmaxNLLGrad()(logits, targets, g_nll, lse), disconnected_type()]


class SoftmaxNLLGrad(Op):
    """Gradient of :class:`SoftmaxNLL` with respect to the logits.

    Inputs
    ------
    logits : tensor, shape (N, V)
    targets : tensor, shape (N,), integer
    g : tensor, shape (N,)
        Gradient of the cost with respect to ``nll``.
    lse : tensor, shape (N,), optional
        Row logsumexp of ``logits`` (output 1 of :class:`SoftmaxNLL`); computed
        here when not given.

    Outputs
    -------
    d_logits : tensor, shape (N, V)
        ``(softmax(logits) - onehot(targets)) * g[:, None]`` with
        ``softmax(logits)[i, j] = exp(logits[i, j] - lse[i])``.
    """

    __props__ = ()

    def make_node(self, logits, targets, g, lse=None):
        logits = _as_float_tensor(logits, "logits", 2)
        targets = pt.as_tensor_variable(targets)
        if targets.type.ndim != 1 or targets.type.dtype not in _INT_DTYPES:
            raise TypeError(f"targets must be a 1-d integer tensor, got {targets.type}")
        g = _as_float_tensor(g, "g", 1)
        inputs = [logits, targets, g]
        named = {"logits": logits, "g": g}
        if lse is not None:
            lse = _as_float_tensor(lse, "lse", 1)
            inputs.append(lse)
            named["lse"] = lse
        _same_dtype(named)
        return Apply(self, inputs, [logits.type()])

    def infer_shape(self, fgraph, node, input_shapes):
        return [input_shapes[0]]

    def perform(self, node, inputs, output_storage):
        logits, targets, g = inputs[:3]
        N, V = logits.shape
        _check_targets(targets, N, V)
        lse = inputs[3] if len(inputs) > 3 else _row_logsumexp(logits)
        out = np.empty_like(logits, order="C")
        rows = _block_rows(V, logits.itemsize)
        for start in range(0, N, rows):
            stop = min(start + rows, N)
            b = out[start:stop]
            np.subtract(logits[start:stop], lse[start:stop, None], out=b)
            np.exp(b, out=b)
            b[np.arange(stop - start), targets[start:stop]] -= 1
            np.multiply(b, g[start:stop, None], out=b)
        output_storage[0][0] = out

    def pullback(self, inputs, outputs, cotangents):
        return [
            grad_not_implemented(self, i, x, "second derivatives of softmax_nll are not implemented")
            for i, x in enumerate(inputs)
        ]


class OutputLayerNLL(Op):
    r"""Output layer and masked summed softmax cross-entropy, as one Op.

    Inputs
    ------
    hidden : tensor, shape (N, H), float32 or float64
    W : tensor, shape (H, V), dtype of ``hidden``
    b : tensor, shape (V,), dtype of ``hidden``
    targets : tensor, shape (N,), integer, values in [0, V)
    weights : tensor, shape (N,), dtype of ``hidden`` (the mask)

    Outputs
    -------
    total : scalar, dtype of ``hidden``
        :math:`\sum_i w_i (\log \sum_j e^{z_{ij}} - z_{i, y_i})` with
        :math:`z = \text{hidden} \, W + b`.
    d_logits : tensor, shape (N, V)
        :math:`\partial\,\text{total} / \partial z
        = w_i (\text{softmax}(z_i)_j - [j = y_i])`; kept for the backward
        pass, not differentiable.
    d_b : tensor, shape (V,)
        Column sums of ``d_logits`` (the gradient with respect to ``b``); not
        differentiable.

    Notes
    -----
    The gradient of ``total`` is ``g * d_logits @ W.T`` for ``hidden``,
    ``g * hidden.T @ d_logits`` for ``W`` and ``g * d_b`` for ``b``: two matrix
    products, with no second pass over the (N, V) logits. The forward pass
    computes ``d_logits`` even where only the loss is wanted (evaluation);
    that costs one multiply per logit inside a pass that is made anyway.
    ``targets`` get no gradient (disconnected), ``weights`` none either
    (not implemented: a mask is not learnt).
    """

    __props__ = ()

    def make_node(self, hidden, W, b, targets, weights):
        hidden = _as_float_tensor(hidden, "hidden", 2)
        W = _as_float_tensor(W, "W", 2)
        b = _as_float_tensor(b, "b", 1)
        weights = _as_float_tensor(weights, "weights", 1)
        targets = pt.as_tensor_variable(targets)
        if targets.type.ndim != 1 or targets.type.dtype not in _INT_DTYPES:
            raise TypeError(f"targets must be a 1-d integer tensor, got {targets.type}")
        dtype = _same_dtype({"hidden": hidden, "W": W, "b": b, "weights": weights})
        N = _static(hidden.type.shape[0], targets.type.shape[0], weights.type.shape[0])
        V = _static(W.type.shape[1], b.type.shape[0])
        outputs = [
            TensorType(dtype, shape=())(),
            TensorType(dtype, shape=(N, V))(),
            TensorType(dtype, shape=(V,))(),
        ]
        return Apply(self, [hidden, W, b, targets, weights], outputs)

    def infer_shape(self, fgraph, node, input_shapes):
        hidden_shape, W_shape = input_shapes[0], input_shapes[1]
        return [(), (hidden_shape[0], W_shape[1]), (W_shape[1],)]

    def connection_pattern(self, node):
        # Rows: inputs; columns: outputs. Only targets influence no output smoothly.
        return [[True, True, True], [True, True, True], [True, True, True], [False, False, False], [True, True, True]]

    def perform(self, node, inputs, output_storage):
        hidden, W, b, targets, weights = inputs
        N, H = hidden.shape
        V = W.shape[1]
        if W.shape[0] != H or b.shape != (V,) or weights.shape != (N,):
            raise ValueError(
                f"output_layer_nll: shapes do not match: hidden {hidden.shape}, W {W.shape}, b {b.shape}, "
                f"weights {weights.shape}"
            )
        _check_targets(targets, N, V)
        logits = np.matmul(hidden, W)
        if logits.dtype == np.float32:
            from symrnn.ops import kernels

            blocks = _row_blocks(N, V)
            kernel = kernels.softmax_cross_entropy_inplace if blocks > 1 else kernels.softmax_cross_entropy_inplace_serial
            total, d_b = kernel(logits, b, targets, weights, blocks)
        else:
            total, d_b = _softmax_cross_entropy_numpy(logits, b, targets, weights)
        dtype = node.outputs[0].dtype
        output_storage[0][0] = np.asarray(total, dtype=dtype)
        output_storage[1][0] = logits
        output_storage[2][0] = np.asarray(d_b, dtype=dtype)

    def pullback(self, inputs, outputs, cotangents):
        hidden, W, b, targets, weights = inputs
        _, d_logits, d_b = outputs
        g_total, g_d_logits, g_d_b = cotangents
        if not (_is_disconnected(g_d_logits) and _is_disconnected(g_d_b)):
            return [
                disconnected_type() if i == 3
                else grad_not_implemented(self, i, x, "d_logits and d_b of OutputLayerNLL are not differentiable")
                for i, x in enumerate(inputs)
            ]
        if _is_disconnected(g_total):
            return [disconnected_type() for _ in inputs]
        g = pt.cast(g_total, hidden.type.dtype)
        return [
            pt.dot(d_logits, W.T) * g,
            pt.dot(hidden.T, d_logits) * g,
            d_b * g,
            disconnected_type(),
            grad_not_implemented(self, 4, weights, "the mask of output_layer_nll gets no gradient"),
        ]


def _row_blocks(N, V):
    """How many threads the softmax kernel uses for an (N, V) batch.

    One below about a million logits (a millisecond of work): waking Numba's
    worker threads costs more there, and right after a matrix product those
    threads compete with OpenBLAS's, which spin for a while before sleeping.
    """
    from symrnn.ops import kernels

    if N * V < _PARALLEL_LOGITS:
        return 1
    return max(1, min(kernels.thread_count(), N))


def _softmax_cross_entropy_numpy(logits, b, targets, weights):
    """:func:`symrnn.ops.kernels.softmax_cross_entropy_inplace` in NumPy (float64 path)."""
    N = logits.shape[0]
    rows = np.arange(N)
    np.add(logits, b, out=logits)
    lse = _row_logsumexp(logits)
    total = float(np.dot(weights, lse - logits[rows, targets])) if N else 0.0
    np.subtract(logits, lse[:, None], out=logits)
    np.exp(logits, out=logits)
    logits[rows, targets] -= 1
    np.multiply(logits, weights[:, None], out=logits)
    return total, logits.sum(axis=0)


def output_layer_nll(hidden, W, b, targets, weights):
    """Summed weighted cross-entropy of ``softmax(hidden @ W + b)``, as one fused Op.

    Parameters
    ----------
    hidden : tensor_like, shape (N, H), float32 or float64
    W : tensor_like, shape (H, V)
    b : tensor_like, shape (V,)
    targets : tensor_like, shape (N,), integer, values in [0, V)
    weights : tensor_like, shape (N,)
        The mask (cast to the dtype of ``hidden``).

    Returns
    -------
    TensorVariable scalar
        ``sum_i weights[i] * -log softmax(hidden @ W + b)[i, targets[i]]``.
    """
    hidden = pt.as_tensor_variable(hidden)
    weights = pt.as_tensor_variable(weights)
    if hidden.type.dtype in _FLOAT_DTYPES and weights.type.dtype != hidden.type.dtype:
        weights = pt.cast(weights, hidden.type.dtype)
    return OutputLayerNLL()(hidden, W, b, targets, weights)[0]


def softmax_nll(logits, targets):
    """Per-row negative log-likelihood under a softmax, as one fused Op.

    Parameters
    ----------
    logits : tensor_like, shape (N, V), float32 or float64
    targets : tensor_like, shape (N,), integer, values in [0, V)

    Returns
    -------
    nll : TensorVariable, shape (N,), dtype of ``logits``
        ``nll[i] = log(sum_j exp(logits[i, j])) - logits[i, targets[i]]``,
        computed stably by subtracting the row maximum. Its gradient with
        respect to ``logits`` is ``(softmax(logits) - onehot(targets)) * g``.
    """
    return SoftmaxNLL()(logits, targets)[0]


def log_softmax_reference_nll(logits, targets):
    """The same loss as :func:`softmax_nll` from plain PyTensor graph Ops.

    Parameters
    ----------
    logits : tensor_like, shape (N, V)
    targets : tensor_like, shape (N,), integer

    Returns
    -------
    nll : TensorVariable, shape (N,)
        ``-log_softmax(logits, axis=-1)[arange(N), targets]``.
    """
    from pytensor.tensor.special import log_softmax

    logits = pt.as_tensor_variable(logits)
    targets = pt.as_tensor_variable(targets)
    return -log_softmax(logits, axis=-1)[pt.arange(logits.shape[0]), targets]
