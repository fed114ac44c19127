r"""Numba kernels behind :class:`symrnn.ops.output_layer.OutputLayerNLL` (float32).

The output layer's softmax over V = 8000 words is the costliest elementwise
work of a training step, and NumPy's ``exp`` takes about 3 ns per float32
element on an AVX2 machine. These kernels make one pass per row over the
logits (the row stays in cache): add the bias, find the maximum, exponentiate
with a vectorisable polynomial (:func:`exp_shifted_inplace`), sum, and turn the row
into the gradient with respect to the logits, in place, rows split across
Numba's threads.

For a row :math:`z = o + b` with target :math:`y` and weight :math:`w` (the
mask), :math:`m = \max_j z_j` and :math:`s = \sum_j e^{z_j - m}`:

.. math::

    \ell = w\,(\log s + m - z_y), \qquad
    \frac{\partial \ell}{\partial z_j} = w\,\Big(\frac{e^{z_j - m}}{s} - [j = y]\Big).

:mod:`symrnn.ops.sampling_kernels` draws the next words during generation
from the same exponentials.

Numba is a dependency of PyTensor itself; the kernels compile on first use
and are cached on disk (``cache=True``). Which threading layer runs the
parallel kernel is the scripts' choice (``scripts/process.py`` selects Numba's
``workqueue`` layer, whose threads sleep between kernels); this module changes
no process-wide setting.
"""

from __future__ import annotations

import types

import numba
import numpy as np
from numba import njit, prange

__all__ = [
    "exp_shifted_inplace",
    "softmax_cross_entropy_inplace",
    "softmax_cross_entropy_inplace_serial",
    "thread_count",
]

# Fast-math without reassociation: the Cody-Waite range reduction below is
# only exact if the compiler keeps its order of operations.
_ORDERED_FASTMATH = {"nnan", "ninf", "nsz", "arcp", "contract"}

_LOG2E = np.float32(1.4426950408889634)
_LN2_HIGH = np.float32(0.693359375)  # ln 2 = _LN2_HIGH - _LN2_LOW, split for exact n * _LN2_HIGH
_LN2_LOW = np.float32(2.12194440e-4)
_LOWEST = np.float32(-87.0)  # exp(-87) is about the smallest normal float32


@njit(fastmath=_ORDERED_FASTMATH, cache=True)
def exp_shifted_inplace(x, shift, scale_bits):
    """``x[j] = exp(x[j] - shift)`` in place, for ``x[j] - shift <= 0``, float32.

    Cephes' ``expf`` (relative error below 2.5e-7 on [-87, 0], exactly 0 below -87):
    ``x = n ln 2 + r`` with ``|r| <= ln 2 / 2``, a degree-6 polynomial for
    ``exp(r)``, and ``2^n`` built from its exponent bits, so that the loop
    vectorises (no libm call per element). In place on purpose: given an
    output array that may overlap ``x``, the compiler keeps a scalar loop,
    about 6 times slower.

    Parameters
    ----------
    x : ndarray (V,) float32
    shift : float32
        At least ``max(x)``.
    scale_bits : ndarray (V,) int32
        Scratch space.
    """
    for j in range(x.shape[0]):
        d = x[j] - shift
        v = max(d, _LOWEST)
        # Round half away from zero of v / ln 2 (v <= 0), by truncation.
        k = np.int32(v * _LOG2E - np.float32(0.5))
        n = np.float32(k)
        r = v - n * _LN2_HIGH + n * _LN2_LOW
        p = np.float32(1.9875691500e-4)
        p = p * r + np.float32(1.3981999507e-3)
        p = p * r + np.float32(8.3333337680e-3)
        p = p * r + np.float32(4.1665795894e-2)
        p = p * r + np.float32(1.6666665459e-1)
        p = p * r + np.float32(5.0000001201e-1)
        x[j] = p * r * r + r + np.float32(1.0)
        # Below the range the scale is +0.0 (all bits 0): exp(-inf) is exactly 0.
        scale_bits[j] = (k + np.int32(127)) << 23 if d >= _LOWEST else np.int32(0)
    scale = scale_bits.view(np.float32)
    for j in range(x.shape[0]):
        x[j] *= scale[j]


@njit(fastmath=True, cache=True)
def _add_bias_and_max(row, bias):
    """``row += bias`` in place; returns ``max(row)``."""
    top = np.float32(-np.inf)
    for j in range(row.shape[0]):
        z = row[j] + bias[j]
        row[j] = z
        top = max(top, z)
    return top


# Reassociation (so that the sum vectorises) but no assumption that values are
# finite: a NaN or infinity must survive into the result.
_IEEE_SUM = {"reassoc", "contract"}


@njit(fastmath=_IEEE_SUM, cache=True)
def _is_finite_row(row):
    """Whether every value of ``row`` is finite (their sum is; NaN and inf propagate)."""
    total = np.float32(0.0)
    for j in range(row.shape[0]):
        total += row[j] * np.float32(0.0)
    return total == 0


@njit(fastmath=True, cache=True)
def _sum64(row):
    total = 0.0
    for j in range(row.shape[0]):
        total += np.float64(row[j])
    return total


@njit(fastmath=True, cache=True)
def _scale_and_accumulate(row, factor, column_sums):
    """``row *= factor`` in place and ``column_sums += row``."""
    for j in range(row.shape[0]):
        d = row[j] * factor
        row[j] = d
        column_sums[j] += d


def _softmax_cross_entropy_inplace(logits, bias, targets, weights, n_chunks):
    """Weighted softmax cross-entropy of logits plus bias, and its gradient, in place.

    Parameters
    ----------
    logits : ndarray (N, V) float32, C-contiguous
        Overwritten with the gradient of the loss with respect to the logits,
        ``weights[:, None] * (softmax(logits + bias) - onehot(targets))``.
    bias : ndarray (V,) float32
    targets : ndarray (N,) int, values in [0, V) (not checked here)
    weights : ndarray (N,) float32
        The mask; rows of weight 0 cost nothing and get a zero gradient.
    n_chunks : int >= 1
        Row blocks run in parallel (Numba's threads).

    Returns
    -------
    loss : float
        ``sum_i weights[i] * (logsumexp(z_i) - z_i[targets[i]])``, accumulated
        in float64, with ``z_i = logits[i] + bias``; NaN when a weighted row
        holds a NaN or an infinity.
    bias_grad : ndarray (V,) float32
        Column sums of the gradient (the gradient with respect to ``bias``).
    """
    N, V = logits.shape
    row_loss = np.zeros(N, dtype=np.float64)
    column_sums = np.zeros((n_chunks, V), dtype=logits.dtype)
    for c in prange(n_chunks):
        scale_bits = np.empty(V, dtype=np.int32)
        part = column_sums[c]
        for i in range(c * N // n_chunks, (c + 1) * N // n_chunks):
            row = logits[i]
            w = weights[i]
            if w == 0:
                row[:] = 0
                continue
            top = _add_bias_and_max(row, bias)
            if not _is_finite_row(row):
                # The fast-math passes below may turn NaN or inf into finite
                # numbers; a non-finite logit must make the loss non-finite
                # (as log_softmax does for NaN and +inf; -inf, which no
                # trained parameter produces, is treated alike) so that
                # training skips the step.
                row_loss[i] = np.nan
                continue
            t = targets[i]
            z_target = row[t]
            exp_shifted_inplace(row, top, scale_bits)
            total = _sum64(row)
            row_loss[i] = w * (np.log(total) + top - z_target)
            _scale_and_accumulate(row, np.float32(w / total), part)
            row[t] -= w
            part[t] -= w
    return row_loss.sum(), column_sums.sum(axis=0)


def _renamed(function, name: str):
    """A copy of ``function`` under another qualified name.

    Numba's disk cache keys compiled code by the function's qualified name and
    signature, not by ``parallel=``: two dispatchers of one function share one
    cache entry, and whichever compiled first is loaded by both. Under one name
    the serial kernel, compiled first for a small batch, was loaded as the
    parallel one by every later process, which then ran on one thread.
    """
    copy = types.FunctionType(function.__code__, function.__globals__, name, function.__defaults__, function.__closure__)
    copy.__qualname__ = name
    copy.__doc__ = function.__doc__
    return copy


softmax_cross_entropy_inplace = njit(parallel=True, cache=True)(_softmax_cross_entropy_inplace)
# The same on the calling thread alone: a parallel kernel wakes Numba's worker
# threads even for one row block, which costs more than a small batch's softmax.
softmax_cross_entropy_inplace_serial = njit(cache=True)(
    _renamed(_softmax_cross_entropy_inplace, "_softmax_cross_entropy_inplace_serial")
)


def thread_count() -> int:
    """Numba's current thread count (row blocks per call)."""
    return numba.get_num_threads()
