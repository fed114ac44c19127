r"""Numba kernels behind :class:`symrnn.ops.output_layer.OutputLayerNLL` (float32).

The output layer's softmax over V = 8000 words is the costliest elementwise
work of a training step, and NumPy's ``exp`` takes about 3 ns per float32
element on an AVX2 machine. These kernels make one pass per row over the
logits (the row stays in cache): add the bias, find the maximum, exponentiate
with a vectorisable polynomial (:func:`exp_shifted_inplace`), sum, and turn the row
into the gradient with respect to the logits, in place, row blocks split across
a few threads of this module's own (the kernel releases the GIL).

For a row :math:`z = o + b` with target :math:`y` and weight :math:`w` (the
mask), :math:`m = \max_j z_j` and :math:`s = \sum_j e^{z_j - m}`:

.. math::

    \ell = w\,(\log s + m - z_y), \qquad
    \frac{\partial \ell}{\partial z_j} = w\,\Big(\frac{e^{z_j - m}}{s} - [j = y]\Big).

:mod:`symrnn.ops.sampling_kernels` draws the next words during generation
from the same exponentials.

Numba is a dependency of PyTensor itself; the kernels compile on first use
and are cached on disk (``cache=True``). No kernel is ``parallel=True``:
Numba compiled the parallel softmax for seconds at every cold start, and its
threading layers' workers either spin after each kernel (GNU OpenMP, taking a
core from the matrix products that follow) or need choosing process-wide.
This module changes no process-wide setting.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit

from symrnn.ops.background_compile import compile_in_background

__all__ = [
    "even_bounds",
    "exp_shifted_inplace",
    "on_row_blocks",
    "softmax_cross_entropy_inplace",
    "softmax_cross_entropy_rows",
    "start_compiling_softmax",
    "thread_blocks",
    "thread_count",
    "worker_pool",
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


_SIGN_FOLD = np.int32(0x7FFFFFFF)


@njit(fastmath=True, cache=True)
def _max_of(x, scratch):
    """``max(x)`` of float32 ``x`` (V >= 1), through integer keys; ``scratch``: int32, at least one value.

    A float32 maximum does not vectorise in Numba (LLVM keeps the compare and
    select scalar: 0.65 ns per value, two thirds of the whole softmax) but an
    int32 one does (0.08 ns). A float32's bits read as int32, with those of a
    negative number's magnitude flipped (``b ^ ((b >> 31) & 0x7fffffff)``),
    are ordered as the numbers are (-0.0 just below 0.0; a NaN of positive
    sign above +inf, so it is the maximum).
    """
    bits = x.view(np.int32)
    top = np.int32(-2147483648)
    for j in range(bits.shape[0]):
        b = bits[j]
        top = max(top, b ^ ((b >> np.int32(31)) & _SIGN_FOLD))
    scratch[0] = top ^ ((top >> np.int32(31)) & _SIGN_FOLD)
    return scratch[:1].view(np.float32)[0]


@njit(fastmath=True, cache=True)
def _add_bias_and_max(row, bias, scratch):
    """``row += bias`` in place; returns ``max(row)`` (:func:`_max_of`)."""
    for j in range(row.shape[0]):
        row[j] += bias[j]
    return _max_of(row, scratch)


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


@njit(nogil=True, cache=True)
def softmax_cross_entropy_rows(logits, bias, targets, weights):
    """Weighted softmax cross-entropy of logits plus bias, and its gradient, in place, on the calling thread.

    Parameters
    ----------
    logits : ndarray (N, V) float32, C-contiguous
        Overwritten with the gradient of the loss with respect to the logits,
        ``weights[:, None] * (softmax(logits + bias) - onehot(targets))``.
    bias : ndarray (V,) float32
    targets : ndarray (N,) int, values in [0, V) (not checked here)
    weights : ndarray (N,) float32
        The mask; rows of weight 0 cost nothing and get a zero gradient.

    Returns
    -------
    loss : float
        ``sum_i weights[i] * (logsumexp(z_i) - z_i[targets[i]])``, accumulated
        in float64, with ``z_i = logits[i] + bias``; NaN when a weighted row
        holds a NaN or an infinity.
    bias_grad : ndarray (V,) float32
        Column sums of the gradient (the gradient with respect to ``bias``).

    Notes
    -----
    Releases the GIL (``nogil``): :func:`softmax_cross_entropy_inplace` runs
    row blocks of one batch on several threads through it.
    """
    N, V = logits.shape
    loss = 0.0
    column_sums = np.zeros(V, dtype=logits.dtype)
    scale_bits = np.empty(V, dtype=np.int32)
    for i in range(N):
        row = logits[i]
        w = weights[i]
        if w == 0:
            row[:] = 0
            continue
        top = _add_bias_and_max(row, bias, scale_bits)
        if not _is_finite_row(row):
            # The fast-math passes below may turn NaN or inf into finite
            # numbers; a non-finite logit must make the loss non-finite
            # (as log_softmax does for NaN and +inf; -inf, which no
            # trained parameter produces, is treated alike) so that
            # training skips the step.
            loss = np.nan
            continue
        t = targets[i]
        z_target = row[t]
        exp_shifted_inplace(row, top, scale_bits)
        total = _sum64(row)
        loss += w * (np.log(total) + top - z_target)
        _scale_and_accumulate(row, np.float32(w / total), column_sums)
        row[t] -= w
        column_sums[t] -= w
    return loss, column_sums


_pool_lock = threading.Lock()
_pool = None  # (process id, worker count, ThreadPoolExecutor), created at the first call on several threads


def worker_pool(count: int) -> ThreadPoolExecutor:
    """The Numba kernels' pool of at least ``count`` worker threads (created, or replaced by a larger one, on demand).

    The row blocks of the softmax kernel, the fused layers
    (:mod:`symrnn.ops.fused_layer`) and the sampler
    (:mod:`symrnn.ops.sampling_kernels`) run on it (:func:`on_row_blocks`).

    A forked child process has none of its parent's threads: it makes its own pool.
    """
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid() or _pool[1] < count:
            if _pool is not None and _pool[0] == os.getpid():
                _pool[2].shutdown(wait=False)
            _pool = (os.getpid(), count, ThreadPoolExecutor(max_workers=count, thread_name_prefix="symrnn-kernels"))
        return _pool[2]


def even_bounds(rows, blocks):
    """Bounds ``[0, ..., rows]`` of ``blocks`` row blocks of equal size (within one row)."""
    return [rows * c // blocks for c in range(blocks + 1)]


def thread_blocks(rows, min_rows):
    """:func:`even_bounds` of one block per kernel thread (:func:`thread_count`), each at least ``min_rows`` rows."""
    return even_bounds(rows, max(1, min(thread_count(), rows // min_rows)))


def on_row_blocks(run, bounds):
    """``[run(a, b) for each block a:b of bounds]``, the first block on the calling thread, the others at once on :func:`worker_pool`.

    Returns when every block is done (an error in any block is raised here).
    ``run`` must release the GIL (a ``nogil`` kernel) for the blocks to run in parallel.
    """
    pairs = list(zip(bounds[:-1], bounds[1:]))
    others = [worker_pool(len(pairs) - 1).submit(run, a, b) for a, b in pairs[1:]]
    first = run(*pairs[0])
    return [first, *(other.result() for other in others)]


def start_compiling_softmax(targets_dtype) -> None:
    """:func:`compile_in_background` for the softmax kernel with targets of ``targets_dtype`` (about 2 s of Numba)."""
    dtype = np.dtype(targets_dtype)
    compile_in_background(("softmax", dtype), lambda: softmax_cross_entropy_rows(
        np.zeros((1, 1), np.float32), np.zeros(1, np.float32), np.zeros(1, dtype), np.ones(1, np.float32)))


def softmax_cross_entropy_inplace(logits, bias, targets, weights, n_threads=1):
    """:func:`softmax_cross_entropy_rows` with the rows split into ``n_threads`` blocks run at once.

    The calling thread takes the first block; the others go to this module's
    worker threads (``n_threads - 1`` of them, created at the first call that
    needs them; they sleep between calls). One compiled kernel serves every
    block and every thread count, so a cold start compiles one kernel, not a
    serial and a parallel one (Numba's ``parallel=True`` compiled for seconds).

    Parameters
    ----------
    logits, bias, targets, weights
        As for :func:`softmax_cross_entropy_rows`.
    n_threads : int >= 1

    Returns
    -------
    loss : float
    bias_grad : ndarray (V,) float32
    """
    N = logits.shape[0]
    n_threads = max(1, min(n_threads, N))
    (loss, bias_grad), *others = on_row_blocks(
        lambda a, b: softmax_cross_entropy_rows(logits[a:b], bias, targets[a:b], weights[a:b]), even_bounds(N, n_threads))
    for block_loss, block_grad in others:
        loss += block_loss
        bias_grad += block_grad
    return loss, bias_grad


def thread_count() -> int:
    """Threads for the kernels' row blocks (softmax, fused layers, sampler): Numba's thread count (``numba.set_num_threads``, the scripts' ``BLAS_THREADS``)."""
    return numba.get_num_threads()
