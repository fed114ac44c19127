r"""Numba kernels of the fused LSTM layer (:mod:`symrnn.ops.lstm`): all T steps of its forward and backward pass.

:func:`lstm_forward` and :func:`lstm_backward` each run the whole time loop
in compiled code: per step one matrix product through BLAS (``np.dot`` with
an output array, which Numba hands to SciPy's BLAS) and a few passes per
batch row over contiguous memory for the elementwise work, which vectorise.
Each runs the rows ``start:stop`` of the batch, so that threads can share a
batch (:mod:`symrnn.ops.fused_layer`); the kernels release the GIL.
:class:`~symrnn.ops.lstm.FusedLSTM` and
:class:`~symrnn.ops.lstm.FusedLSTMGrad` allocate the outputs and call them;
the equations and the layout of ``acts`` are documented there.

Shapes: T steps (T >= 1), B batch rows, H hidden units, gate blocks
``[i | f | o | g]`` (4H columns). Every array is C-contiguous except where a
parameter says otherwise, and all share one float dtype (float32 or float64).
The nonlinearities are those of :mod:`symrnn.ops.cell_math`: approximations
in float32 that vectorise, the exact functions in float64. Compiler settings
(``error_model="numpy"``, fast-math without ``nnan`` and ``ninf``, so that
NaNs propagate) and the few-arrays-per-loop rule are those of
:mod:`symrnn.ops.rnn_kernels`. NumPy and Numba only; compiled on first use
and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from symrnn.ops import cell_math
# Numba's disk cache checks this file alone: after changing carry_padding or carry_through_product, touch this file too.
from symrnn.ops.rnn_kernels import LOOP_FASTMATH, carry_padding, carry_through_product

__all__ = ["HARD_SIGMOID_SLOPE", "lstm_backward", "lstm_forward"]

#: The hard sigmoid's slope: ``clip(0.2 v + 0.5, 0, 1)``.
HARD_SIGMOID_SLOPE = 0.2


@njit(cache=True, nogil=True, error_model="numpy", fastmath=set(LOOP_FASTMATH))
def lstm_forward(projected, mask, h0, c0, W_h, hard, slope, hs, cs, acts, start, stop):
    """Run the LSTM forward over all T steps, for batch rows ``start:stop``.

    Parameters
    ----------
    projected : ndarray (T, B, 4H)
    mask : ndarray (T, B)
    h0, c0 : ndarray (B, H)
    W_h : ndarray (H, 4H)
    hard : bool
        Hard sigmoid gates ``clip(slope v + 0.5, 0, 1)`` (else the logistic sigmoid).
    slope : scalar of the arrays' dtype
        The hard sigmoid's slope, 0.2 (unused for the sigmoid).
    hs, cs : ndarray (T, B, H)
        Out: the output and cell state after every step.
    acts : ndarray (T, B, 4H)
        Out: ``g``, and the gates (sigmoid) or their unclipped arguments
        ``slope v + 0.5`` (hard sigmoid), as :class:`~symrnn.ops.lstm.FusedLSTM` keeps them.
    start, stop : int
        The rows this call computes (``0, B``: all); other threads may run
        other rows of the same arrays at the same time.
    """
    T, B, H4 = projected.shape
    H = H4 // 4
    H3 = 3 * H
    one = cell_math.one(slope)
    half = one / (one + one)
    pre = np.empty((stop - start, H4), dtype=projected.dtype)
    for t in range(T):
        h_prev = h0 if t == 0 else hs[t - 1]
        c_prev = c0 if t == 0 else cs[t - 1]
        np.dot(h_prev[start:stop], W_h, pre)
        for b in range(start, stop):
            x, p, a, c, c_new, h_new = projected[t, b], pre[b - start], acts[t, b], c_prev[b], cs[t, b], hs[t, b]
            x_ifo, p_ifo, a_ifo = x[:H3], p[:H3], a[:H3]
            if hard:
                for j in range(H3):
                    a_ifo[j] = slope * (x_ifo[j] + p_ifo[j]) + half
            else:
                for j in range(H3):
                    a_ifo[j] = cell_math.sigmoid(x_ifo[j] + p_ifo[j])
            x_g, p_g, a_g = x[H3:], p[H3:], a[H3:]
            for j in range(H):
                a_g[j] = cell_math.tanh(x_g[j] + p_g[j])
            a_i, a_f, a_o = a[:H], a[H : 2 * H], a[2 * H : H3]
            for j in range(H):
                i = cell_math.hard_sigmoid_clip(a_i[j]) if hard else a_i[j]
                f = cell_math.hard_sigmoid_clip(a_f[j]) if hard else a_f[j]
                o = cell_math.hard_sigmoid_clip(a_o[j]) if hard else a_o[j]
                cn = f * c[j] + i * a_g[j]
                c_new[j] = cn
                h_new[j] = o * cell_math.tanh(cn)
            m = mask[t, b]
            if m != one:
                carry_padding(c_new, c, m)
                carry_padding(h_new, h_prev[b], m)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=set(LOOP_FASTMATH))
def lstm_backward(mask, c0, W_T, cs, acts, g_hs, g_cs, hard, slope, d_projected, d_h0, d_c0, start, stop):
    """Backpropagate through all T steps of the LSTM, from t = T-1 down to 0, for batch rows ``start:stop``.

    Parameters
    ----------
    mask : ndarray (T, B)
    c0 : ndarray (B, H)
    W_T : ndarray (4H, H), C- or F-contiguous
        ``W_h.T``; the transposed view of a C-contiguous ``W_h`` is
        F-contiguous, and BLAS reads it as it is.
    cs, acts : ndarray (T, B, H), (T, B, 4H)
        The forward pass's outputs.
    g_hs, g_cs : ndarray (T, B, H)
        Gradients of the cost with respect to ``hs`` and ``cs``.
    hard : bool
        Hard sigmoid gates (else the logistic sigmoid).
    slope : scalar of the arrays' dtype
        The hard sigmoid's slope, 0.2 (unused for the sigmoid).
    d_projected : ndarray (T, B, 4H)
        Out: gradient with respect to ``projected``, the arguments ``v`` of every step.
    d_h0, d_c0 : ndarray (B, H)
        Out: gradients with respect to ``h0`` and ``c0``.
    start, stop : int
        The rows this call computes, as for :func:`lstm_forward`.
    """
    T, B, H = cs.shape
    H3 = 3 * H
    one = cell_math.one(slope)
    zero = one - one
    back = np.empty((stop - start, H), dtype=cs.dtype)
    # d_h0 and d_c0 carry dh and dc, the gradients with respect to the states after step t
    d_h0[start:stop] = zero
    d_c0[start:stop] = zero
    for t in range(T - 1, -1, -1):
        c_prev = c0 if t == 0 else cs[t - 1]
        for b in range(start, stop):
            dh, dc, gh, gc = d_h0[b], d_c0[b], g_hs[t, b], g_cs[t, b]
            for j in range(H):
                dh[j] += gh[j]
                dc[j] += gc[j]
            a, c, dv = acts[t, b], c_prev[b], d_projected[t, b]
            a_i, a_f, a_o, a_g = a[:H], a[H : 2 * H], a[2 * H : H3], a[H3:]
            dv_i, dv_f, dv_o, dv_g = dv[:H], dv[H : 2 * H], dv[2 * H : H3], dv[H3:]
            m = mask[t, b]
            for j in range(H):
                g = a_g[j]
                i, s_i = cell_math.gate_and_slope(a_i[j], hard, slope)
                f, s_f = cell_math.gate_and_slope(a_f[j], hard, slope)
                o, s_o = cell_math.gate_and_slope(a_o[j], hard, slope)
                tc = cell_math.tanh(f * c[j] + i * g)
                dhn, dcn = m * dh[j], m * dc[j]
                dct = dcn + dhn * (o * (one - tc * tc))
                dv_i[j] = dct * g * s_i
                dv_f[j] = dct * c[j] * s_f
                dv_o[j] = dhn * tc * s_o
                dv_g[j] = dct * i * (one - g * g)
                dc[j] = (dc[j] - dcn) + dct * f  # (1 - m) dc + dct f
        carry_through_product(d_projected[t], W_T, mask[t], back, d_h0, start, stop)
