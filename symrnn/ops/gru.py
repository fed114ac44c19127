r"""The fused GRU layer: one PyTensor Op over all time steps, and its gradient Op.

PyTensor's ``scan`` is slow on CPU, above all its gradient. :func:`fused_gru`
(Ops :class:`FusedGRU` and :class:`FusedGRUGrad`) runs a whole GRU layer over
T time steps, with padding mask, in one Op, and its gradient in another (the
shared graph side is in :mod:`symrnn.ops.fused_layer`). Their ``perform``
allocates the outputs and calls a Numba kernel of
:mod:`symrnn.ops.gru_kernels` that runs the whole loop over time in compiled
code (matrix products through BLAS). float32 inputs stay float32 throughout
(no upcasts); float64 is accepted.
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

from symrnn.ops.fused_layer import CellLayout, FusedLayer, FusedLayerGrad, apply_fused_layer, check_gate
from symrnn.ops.gru_kernels import gru_backward, gru_forward

__all__ = ["FusedGRU", "FusedGRUGrad", "fused_gru"]


class _GRULayout(CellLayout):
    """What both GRU Ops declare: three gate blocks of ``W_h`` (update, reset, candidate), one state."""

    cell, blocks, initial_names = "GRU", 3, ("h0",)


class FusedGRU(_GRULayout, FusedLayer):
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
        self.gate = check_gate(gate)

    def grad_op(self):
        return FusedGRUGrad(self.gate)

    def forward_rows(self, projected, mask, initial, W_h, states, acts, start, stop):
        scale, shift = _gate_scale_and_shift(self.gate, projected.dtype)
        gru_forward(projected, mask, initial[0], W_h, scale, shift, self.gate == "hard_sigmoid", states[0], acts, start, stop)


class FusedGRUGrad(_GRULayout, FusedLayerGrad):
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

    :func:`symrnn.ops.gru_kernels.gru_backward` runs this loop: per step the
    products with ``W_h[:, 2H:].T`` and ``W_h[:, :2H].T`` through BLAS, the
    rest in two elementwise passes over the rows; the two products for
    ``d_W_h`` follow the loop.
    """

    __props__ = ("gate",)

    def __init__(self, gate="hard_sigmoid"):
        self.gate = check_gate(gate)

    weights_in_kernel = True

    def backward_rows(self, mask, initial, W_h, states, acts, g_states, d_projected, d_initial, d_W_h, start, stop):
        slope, _ = _gate_scale_and_shift(self.gate, acts.dtype)
        gru_backward(mask, initial[0], W_h, states[0], acts, g_states[0], slope, self.gate == "hard_sigmoid",
                     d_projected, d_initial[0], d_W_h, start, stop)


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


def _gate_scale_and_shift(gate, dtype):
    """The gate argument's ``u = scale * v + shift`` as ``dtype`` scalars: 0.2 and 0.5 (hard sigmoid) or 1 and 0."""
    scale, shift = (0.2, 0.5) if gate == "hard_sigmoid" else (1.0, 0.0)
    return dtype.type(scale), dtype.type(shift)
