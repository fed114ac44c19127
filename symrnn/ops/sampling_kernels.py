r"""The Numba kernel behind :func:`symrnn.sampling.sample_tokens`: one draw per row of logits.

Row ``i`` takes the first index ``j`` whose cumulative probability under
``softmax(logits[i] * inverse_temperature)`` exceeds ``uniforms[i]``
(inverse-CDF sampling, as NumPy's ``cumsum`` and ``searchsorted`` would do in
float64). The exponentials come from the output layer's vectorised ``exp``
(:func:`symrnn.ops.kernels.exp_shifted_inplace`); every pass over a row is
written so that it vectorises:

* the scaled copy and its maximum keep 16 running maxima (Numba's ``max`` of
  two floats handles NaN with a branch, which keeps a one-accumulator loop
  scalar);
* the search sums blocks of :data:`BLOCK` weights (vectorised, in float64)
  until the running sum would pass the target, then walks that one block.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from symrnn.ops import kernels
from symrnn.ops.kernels import exp_shifted_inplace

__all__ = ["BLOCK", "PARALLEL_LOGITS", "sample_rows", "sample_rows_in_blocks"]

#: Weights summed at once while looking for the block that holds the draw.
BLOCK = 64
#: Batches with at least this many logits draw in row blocks on the kernels' threads.
PARALLEL_LOGITS = 1 << 17
_MIN_BLOCK_ROWS = 4


@njit(fastmath=True, cache=True)
def _scaled_copy_and_max(row, factor, out):
    """``out = row * factor`` (as float32); returns ``max(out)``."""
    V = row.shape[0]
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = np.float32(-np.inf)
    whole = V - V % 8
    for j in range(0, whole, 8):
        v0 = np.float32(row[j] * factor)
        v1 = np.float32(row[j + 1] * factor)
        v2 = np.float32(row[j + 2] * factor)
        v3 = np.float32(row[j + 3] * factor)
        v4 = np.float32(row[j + 4] * factor)
        v5 = np.float32(row[j + 5] * factor)
        v6 = np.float32(row[j + 6] * factor)
        v7 = np.float32(row[j + 7] * factor)
        out[j], out[j + 1], out[j + 2], out[j + 3] = v0, v1, v2, v3
        out[j + 4], out[j + 5], out[j + 6], out[j + 7] = v4, v5, v6, v7
        m0 = v0 if v0 > m0 else m0
        m1 = v1 if v1 > m1 else m1
        m2 = v2 if v2 > m2 else m2
        m3 = v3 if v3 > m3 else m3
        m4 = v4 if v4 > m4 else m4
        m5 = v5 if v5 > m5 else m5
        m6 = v6 if v6 > m6 else m6
        m7 = v7 if v7 > m7 else m7
    top = max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))
    for j in range(whole, V):
        v = np.float32(row[j] * factor)
        out[j] = v
        top = v if v > top else top
    return top


@njit(fastmath=True, cache=True)
def _block_sum(weights, start, stop):
    total = 0.0
    for j in range(start, stop):
        total += np.float64(weights[j])
    return total


@njit(cache=True)
def _last_with_weight(weights, start, stop):
    """The last index in ``[start, stop)`` with a nonzero weight (``stop - 1`` if none)."""
    for j in range(stop - 1, start - 1, -1):
        if weights[j] > 0:
            return j
    return stop - 1


@njit(fastmath=True, cache=True)
def _draw(weights, u):
    """The first index whose cumulative weight exceeds ``u`` times the total weight."""
    V = weights.shape[0]
    target = u * _block_sum(weights, 0, V)
    running = 0.0
    for start in range(0, V, BLOCK):
        stop = min(start + BLOCK, V)
        block = _block_sum(weights, start, stop)
        if running + block > target:
            for j in range(start, stop):
                running += weights[j]
                if running > target:
                    return j
            # The block's sum in another order passed the target; its own walk
            # fell short by rounding: the last index of the block with weight.
            return _last_with_weight(weights, start, stop)
        running += block
    # Rounding left the running sum just short of the target at the end of
    # the row: the last index with a nonzero probability then.
    return _last_with_weight(weights, 0, V)


@njit(cache=True, nogil=True)
def sample_rows(logits, inverse_temperature, uniforms, out):
    """Draw one index per row from ``softmax(logits * inverse_temperature)``.

    Parameters
    ----------
    logits : ndarray (B, V) float32 or float64, C-contiguous
    inverse_temperature : float32 > 0
    uniforms : ndarray (B,) float64 in [0, 1)
    out : ndarray (B,) int32
        Filled with the drawn indices.
    """
    B, V = logits.shape
    weights = np.empty(V, dtype=np.float32)
    scale_bits = np.empty(V, dtype=np.int32)
    for i in range(B):
        top = _scaled_copy_and_max(logits[i], inverse_temperature, weights)
        exp_shifted_inplace(weights, top, scale_bits)
        out[i] = _draw(weights, uniforms[i])


def sample_rows_in_blocks(logits, inverse_temperature, uniforms, out):
    """:func:`sample_rows` with the rows split into one block per kernel thread (``kernels.thread_count``).

    One block below :data:`PARALLEL_LOGITS` logits, where handing a block to
    a thread costs more than it saves. The uniforms are drawn before, so the
    tokens do not depend on the number of blocks.
    """
    B, V = logits.shape
    bounds = kernels.thread_blocks(B, _MIN_BLOCK_ROWS) if B * V >= PARALLEL_LOGITS else [0, B]
    kernels.on_row_blocks(lambda a, b: sample_rows(logits[a:b], inverse_temperature, uniforms[a:b], out[a:b]), bounds)
