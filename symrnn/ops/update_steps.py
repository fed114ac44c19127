r"""Fused Ops of the update rules: one RMSprop step per parameter, and a squared norm.

PyTensor's C-VM runs an update rule's elementwise graph (new cache, new
parameter, the skip-on-NaN switch) as a loop over generic strided pointers
that does not vectorise the square root and the division; over the output
layer's 128 x 8000 weights it costs about as much as the whole recurrent
layer at batch 1. These Ops do the same arithmetic in one pass of a Numba
loop per parameter.

:class:`RMSpropStep` (built by :func:`rmsprop_step`), for a parameter
:math:`p`, its cache :math:`m` and gradient :math:`g`, when ``apply`` is
true:

.. math::

    m \leftarrow \rho m + (1-\rho) g^2, \qquad
    p \leftarrow p - lr\, g / \sqrt{m + \epsilon}

and nothing at all when ``apply`` is false (the training step's guard
against a non-finite loss or gradient). The products are evaluated in this
order, in the parameter's dtype, as the graph of :func:`symrnn.updates.rmsprop`
evaluates them.

:class:`SquaredNorm` (built by :func:`squared_norm`) is :math:`\sum_i g_i^2`
of one array, accumulated in float64 (the gradient norm of every step).

Both run only on the CPU backends (``perform``); neither has a gradient.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from numba import njit
from pytensor.gradient import grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from symrnn.ops.background_compile import compile_in_background
from symrnn.ops.cell_math import one
from symrnn.ops.checks import FLOAT_DTYPES, same_dtype

__all__ = ["RMSpropStep", "SquaredNorm", "rmsprop_step", "squared_norm"]

# No "nnan"/"ninf": a NaN gradient must give NaN values (the step guard sees
# it in the norm first, but the arithmetic must not hide it either).
_FASTMATH = {"nsz", "arcp", "contract"}


@njit(fastmath=_FASTMATH, error_model="numpy", cache=True)
def _rmsprop(param, cache, grad, learning_rate, decay, epsilon, new_param, new_cache):
    """One RMSprop step over flat arrays of one dtype, into ``new_param`` and ``new_cache``."""
    keep = one(decay) - decay
    for i in range(param.shape[0]):
        g = grad[i]
        m = decay * cache[i] + keep * (g * g)
        new_cache[i] = m
        new_param[i] = param[i] - learning_rate * g / np.sqrt(m + epsilon)


@njit(fastmath={"reassoc", "contract"}, cache=True)
def _sum_of_squares(values):
    total = 0.0
    for i in range(values.shape[0]):
        v = np.float64(values[i])
        total += v * v
    return total


def _warm_up_rmsprop(dtype):
    """Run :func:`_rmsprop` once on one-element arrays of ``dtype`` (compiles it)."""
    values, scalar = np.ones(1, dtype), dtype.type(1)
    _rmsprop(values, values, values, scalar, scalar, scalar, np.empty(1, dtype), np.empty(1, dtype))


def _flat(array):
    """A flat view of a C-contiguous array, or a flat copy of any other."""
    return np.ascontiguousarray(array).reshape(-1)


class RMSpropStep(Op):
    """One RMSprop step of one parameter (see the module docstring).

    Inputs
    ------
    param, cache, grad : tensors of one shape and float dtype
    learning_rate, decay, epsilon : scalars of that dtype
    apply : scalar (bool or integer); 0 leaves ``param`` and ``cache`` unchanged

    Outputs
    -------
    new_param, new_cache : new arrays (copies of the inputs where ``apply`` is 0)
    """

    __props__ = ()

    def make_node(self, param, cache, grad, learning_rate, decay, epsilon, apply):
        param, cache, grad = (pt.as_tensor_variable(x) for x in (param, cache, grad))
        scalars = [pt.as_tensor_variable(x) for x in (learning_rate, decay, epsilon)]
        apply = pt.as_tensor_variable(apply)
        dtype = same_dtype({"param": param, "cache": cache, "grad": grad, "learning_rate": scalars[0],
                            "decay": scalars[1], "epsilon": scalars[2]})
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"RMSpropStep needs float32 or float64 arrays, got {dtype}")
        if not (param.type.ndim == cache.type.ndim == grad.type.ndim):
            raise TypeError(f"param, cache and grad must have one number of dimensions, got {param.type}, "
                            f"{cache.type}, {grad.type}")
        if any(s.type.ndim != 0 for s in (*scalars, apply)):
            raise TypeError("learning_rate, decay, epsilon and apply must be scalars")
        compile_in_background(("rmsprop", dtype), lambda: _warm_up_rmsprop(np.dtype(dtype)))
        return Apply(self, [param, cache, grad, *scalars, apply], [param.type(), cache.type()])

    def infer_shape(self, fgraph, node, input_shapes):
        return [input_shapes[0], input_shapes[1]]

    def perform(self, node, inputs, output_storage):
        param, cache, grad, learning_rate, decay, epsilon, apply = inputs
        if not (param.shape == cache.shape == grad.shape):
            raise ValueError(f"RMSpropStep: param {param.shape}, cache {cache.shape} and grad {grad.shape} "
                             "must have one shape")
        if not apply:
            output_storage[0][0], output_storage[1][0] = param.copy(), cache.copy()
            return
        new_param, new_cache = np.empty_like(param, order="C"), np.empty_like(cache, order="C")
        dtype = param.dtype.type
        _rmsprop(_flat(param), _flat(cache), _flat(grad), dtype(learning_rate), dtype(decay), dtype(epsilon),
                 new_param.reshape(-1), new_cache.reshape(-1))
        output_storage[0][0], output_storage[1][0] = new_param, new_cache

    def pullback(self, inputs, outputs, cotangents):
        return [grad_not_implemented(self, i, x, "an update step has no gradient") for i, x in enumerate(inputs)]


class SquaredNorm(Op):
    """``sum(x ** 2)`` of one float array, accumulated in float64, as a float64 scalar."""

    __props__ = ()

    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        if x.type.dtype not in FLOAT_DTYPES:
            raise TypeError(f"SquaredNorm needs a float32 or float64 array, got {x.type.dtype}")
        compile_in_background(("sum_of_squares", x.type.dtype), lambda: _sum_of_squares(np.ones(1, x.type.dtype)))
        return Apply(self, [x], [pt.scalar(dtype="float64")])

    def infer_shape(self, fgraph, node, input_shapes):
        return [()]

    def perform(self, node, inputs, output_storage):
        (x,) = inputs
        output_storage[0][0] = np.asarray(_sum_of_squares(_flat(x)), dtype=np.float64)

    def pullback(self, inputs, outputs, cotangents):
        return [grad_not_implemented(self, 0, inputs[0], "the fused squared norm has no gradient")]


def rmsprop_step(param, cache, grad, learning_rate, decay, epsilon, apply=1):
    """The new ``(param, cache)`` of one RMSprop step (:class:`RMSpropStep`), skipped where ``apply`` is 0."""
    return RMSpropStep()(param, cache, grad, learning_rate, decay, epsilon, apply)


def squared_norm(x):
    """``sum(x ** 2)`` in float64 (:class:`SquaredNorm`)."""
    return SquaredNorm()(x)
