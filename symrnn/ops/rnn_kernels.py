r"""Numba kernels of the fused tanh RNN layer (:mod:`symrnn.ops.rnn`), and the pieces the cells' kernels share.

:func:`rnn_forward` and :func:`rnn_backward` each run the whole time loop of
the layer in compiled code: per step one matrix product through BLAS
(``np.dot`` with an output array, which Numba hands to SciPy's BLAS) and one
pass per batch row over contiguous memory for the elementwise work, which
vectorises. Each runs the rows ``start:stop`` of the batch (rows are
independent through time), so that threads can share a batch
(:mod:`symrnn.ops.fused_layer`); the kernels release the GIL.
:class:`~symrnn.ops.rnn.FusedRNN` and
:class:`~symrnn.ops.rnn.FusedRNNGrad` allocate the outputs and call them;
the equations are documented there. :mod:`symrnn.ops.lstm_kernels` reuses
:data:`LOOP_FASTMATH`, :func:`carry_padding` and :func:`carry_through_product`.

Shapes: T steps (T >= 1), B batch rows, H hidden units. Every array is
C-contiguous except where a parameter says otherwise, and all share one float
dtype (float32 or float64). The nonlinearities are those of
:mod:`symrnn.ops.cell_math`: approximations in float32 that vectorise, the
exact functions in float64.

Compiled with ``error_model="numpy"`` (no zero-division check per division,
which would stop vectorisation) and the fast-math flags :data:`LOOP_FASTMATH`,
which leave out ``nnan`` and ``ninf``: a NaN in the inputs or weights must
reach the states and gradients, since training skips a step whose loss is
NaN. LLVM vectorises a loop over arrays that may overlap only behind a
run-time overlap check per pair of them, and gives up beyond 8 checks: each
loop reads few arrays and writes fewer. NumPy and Numba only; compiled on
first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from symrnn.ops import cell_math

__all__ = ["LOOP_FASTMATH", "carry_padding", "carry_through_product", "rnn_backward", "rnn_forward"]

#: Fast-math flags of the kernels: contraction (FMA), reciprocals and signed
#: zeros; without "nnan" and "ninf", under which LLVM may turn the clamps of
#: :mod:`symrnn.ops.cell_math` into min/max that drop NaNs.
LOOP_FASTMATH = frozenset({"nsz", "arcp", "contract"})


@njit(cache=True, error_model="numpy", fastmath=set(LOOP_FASTMATH))
def carry_padding(new, old, m):
    """``new[j] = old[j] + m * (new[j] - old[j])`` in place: a padded row (``m`` 0) keeps ``old``.

    Parameters
    ----------
    new, old : ndarray (H,)
    m : scalar
        The row's mask value.
    """
    for j in range(new.shape[0]):
        new[j] = old[j] + m * (new[j] - old[j])


@njit(cache=True, nogil=True, error_model="numpy", fastmath=set(LOOP_FASTMATH))
def carry_through_product(dv, W_T, mask_t, back, dh, start, stop):
    """``dh[b] = (1 - m_b) dh[b] + (dv @ W_h.T)[b]`` for the rows ``start:stop``: the state gradient step t passes back.

    Parameters
    ----------
    dv : ndarray (B, kH)
        Step t's gradient with respect to its pre-activations.
    W_T : ndarray (kH, H), C- or F-contiguous
        ``W_h.T``.
    mask_t : ndarray (B,)
    back : ndarray (stop - start, H)
        Scratch space for the product.
    dh : ndarray (B, H)
        In: the gradient with respect to the state after step t; out: before it.
    start, stop : int
    """
    np.dot(dv[start:stop], W_T, back)
    for b in range(start, stop):
        d, bk = dh[b], back[b - start]
        m = mask_t[b]
        for j in range(d.shape[0]):
            d[j] = (d[j] - m * d[j]) + bk[j]  # (1 - m) dh, exactly 0 on a real token, + dv @ W_h.T


@njit(cache=True, nogil=True, error_model="numpy", fastmath=set(LOOP_FASTMATH))
def rnn_forward(projected, mask, h0, W_h, hs, acts, start, stop):
    """Run the tanh RNN forward over all T steps, for batch rows ``start:stop``.

    Parameters
    ----------
    projected : ndarray (T, B, H)
    mask : ndarray (T, B)
    h0 : ndarray (B, H)
    W_h : ndarray (H, H)
    hs : ndarray (T, B, H)
        Out: the state after every step.
    acts : ndarray (T, B, H)
        Out: ``h_new`` of every step.
    start, stop : int
        The rows this call computes (``0, B``: all); other threads may run
        other rows of the same arrays at the same time.
    """
    T, B, H = projected.shape
    pre = np.empty((stop - start, H), dtype=projected.dtype)
    for t in range(T):
        h_prev = h0 if t == 0 else hs[t - 1]
        np.dot(h_prev[start:stop], W_h, pre)
        for b in range(start, stop):
            x, p, a, h = projected[t, b], pre[b - start], acts[t, b], hs[t, b]
            for j in range(H):
                a[j] = cell_math.tanh(x[j] + p[j])
                h[j] = a[j]
            m = mask[t, b]
            if m != cell_math.one(m):
                carry_padding(h, h_prev[b], m)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=set(LOOP_FASTMATH))
def rnn_backward(mask, W_T, acts, g_hs, d_projected, d_h0, start, stop):
    """Backpropagate through all T steps of the tanh RNN, from t = T-1 down to 0, for batch rows ``start:stop``.

    Parameters
    ----------
    mask : ndarray (T, B)
    W_T : ndarray (H, H), C- or F-contiguous
        ``W_h.T``; the transposed view of a C-contiguous ``W_h`` is
        F-contiguous, and BLAS reads it as it is.
    acts : ndarray (T, B, H)
        ``h_new`` of every step, from the forward pass.
    g_hs : ndarray (T, B, H)
        Gradient of the cost with respect to ``hs``.
    d_projected : ndarray (T, B, H)
        Out: gradient with respect to ``projected``.
    d_h0 : ndarray (B, H)
        Out: gradient with respect to ``h0``.
    start, stop : int
        The rows this call computes, as for :func:`rnn_forward`.
    """
    T, B, H = acts.shape
    back = np.empty((stop - start, H), dtype=acts.dtype)
    # d_h0 carries dh, the gradient with respect to the state after step t
    d_h0[start:stop] = 0
    for t in range(T - 1, -1, -1):
        for b in range(start, stop):
            dh, g, a, dv = d_h0[b], g_hs[t, b], acts[t, b], d_projected[t, b]
            m = mask[t, b]
            one = cell_math.one(m)
            for j in range(H):
                d = dh[j] + g[j]
                dh[j] = d
                dv[j] = m * d * (one - a[j] * a[j])
        carry_through_product(d_projected[t], W_T, mask[t], back, d_h0, start, stop)
