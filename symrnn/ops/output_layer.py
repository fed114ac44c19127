r"""The fused output layer: product, softmax and masked cross-entropy in one Op.

The output layer of a language model, ``hidden @ W + b`` and the summed
cross-entropy of its softmax weighted by the padding mask, is the costliest
part of a training step over a large vocabulary. :func:`output_layer_nll`
(Op :class:`OutputLayerNLL`) computes it in one Op whose forward pass also
leaves the gradient with respect to the logits, so that the backward pass is
two matrix products, with no second pass over the (N, V) logits. For float32
the softmax runs in the Numba kernel of :mod:`symrnn.ops.kernels`, for float64
in NumPy; float32 stays float32. :func:`symrnn.losses.masked_nll` chooses
between it and the plain ``log_softmax`` graph.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import disconnected_type, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.tensor.type import TensorType

from symrnn.ops.checks import FLOAT_DTYPES, INT_DTYPES, as_float_tensor, first_known, is_disconnected, same_dtype

__all__ = ["OutputLayerNLL", "output_layer_nll"]

# Rows of logits processed together by the float64 softmax: a block of about
# this many bytes stays in cache between the subtract, exp and sum passes.
_BLOCK_BYTES = 1 << 18
# Batches with at least this many logits run the softmax kernel on all threads.
_PARALLEL_LOGITS = 1 << 20


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
        hidden = as_float_tensor(hidden, "hidden", 2)
        W = as_float_tensor(W, "W", 2)
        b = as_float_tensor(b, "b", 1)
        weights = as_float_tensor(weights, "weights", 1)
        targets = pt.as_tensor_variable(targets)
        if targets.type.ndim != 1 or targets.type.dtype not in INT_DTYPES:
            raise TypeError(f"targets must be a 1-d integer tensor, got {targets.type}")
        dtype = same_dtype({"hidden": hidden, "W": W, "b": b, "weights": weights})
        N = first_known(hidden.type.shape[0], targets.type.shape[0], weights.type.shape[0])
        V = first_known(W.type.shape[1], b.type.shape[0])
        if dtype == "float32":
            # Numba compiles the kernel in the background while the graph is
            # built, rewritten and C-compiled, instead of at the first step.
            from symrnn.ops import kernels

            kernels.start_compiling_softmax(targets.type.dtype)
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

            total, d_b = kernels.softmax_cross_entropy_inplace(logits, b, targets, weights, _softmax_threads(N, V))
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
        if not (is_disconnected(g_d_logits) and is_disconnected(g_d_b)):
            return [
                disconnected_type() if i == 3
                else grad_not_implemented(self, i, x, "d_logits and d_b of OutputLayerNLL are not differentiable")
                for i, x in enumerate(inputs)
            ]
        if is_disconnected(g_total):
            return [disconnected_type() for _ in inputs]
        g = pt.cast(g_total, hidden.type.dtype)
        return [
            pt.dot(d_logits, W.T) * g,
            pt.dot(hidden.T, d_logits) * g,
            d_b * g,
            disconnected_type(),
            grad_not_implemented(self, 4, weights, "the mask of output_layer_nll gets no gradient"),
        ]


def _softmax_threads(N, V):
    """How many threads the softmax kernel uses for an (N, V) batch.

    One below about a million logits (a millisecond of work): waking worker
    threads costs more there, and right after a matrix product those
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
    if hidden.type.dtype in FLOAT_DTYPES and weights.type.dtype != hidden.type.dtype:
        weights = pt.cast(weights, hidden.type.dtype)
    return OutputLayerNLL()(hidden, W, b, targets, weights)[0]


