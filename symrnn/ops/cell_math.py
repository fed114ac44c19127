r"""Scalar nonlinearities for the Numba loops of the fused recurrent layers.

Numba compiles ``np.tanh`` and ``np.exp`` on float32 scalars to calls of the
C library's ``tanhf`` and ``expf``, which keep a loop from vectorising: a
fused layer's elementwise work then runs about twice as slow as NumPy's own
vectorised ``tanh``. For float32 the functions here are rational or
polynomial approximations that compile to SIMD code inside a loop; for
float64 (the precision of the reference tests) they are the exact functions.

* :func:`tanh` - float32: Eigen's rational approximation of degree 13/6 on
  ``[-7.9, 7.9]`` (clamped outside, where ``tanh`` rounds to +-1 in float32),
  maximum error about 2 ulp; float64: ``np.tanh``.
* :func:`sigmoid` - ``1 / (1 + exp(-v))``; float32 as ``0.5 tanh(v / 2) + 0.5``
  with the approximation above (absolute error below 1.5e-7); float64 exact.
* :func:`hard_sigmoid_clip` - ``clip(u, 0, 1)`` of an argument already
  scaled and shifted (``u = 0.2 v + 0.5``), in the dtype of ``u``.
* :func:`gate_and_slope` - a gate and its derivative with respect to its
  pre-activation, from what the forward kernels keep in ``acts``.
* :func:`one` - 1 in the dtype of its argument, so that float32 loops stay
  float32 (a Python float literal would promote them to float64).

Call them only from ``njit`` code. All but :func:`gate_and_slope` are
``inline="always"`` overloads; that one is a plain jitted helper (Numba's
own inlining of its branches warned, ``NumbaIRAssumptionWarning``), which
LLVM inlines: the kernels' loops vectorise as before.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload, register_jitable

__all__ = ["gate_and_slope", "hard_sigmoid_clip", "one", "sigmoid", "tanh"]

_TANH_CLAMP = np.float32(7.90531110763549805)
_ALPHA = tuple(
    np.float32(a)
    for a in (
        -2.76076847742355e-16,
        2.00018790482477e-13,
        -8.60467152213735e-11,
        5.12229709037114e-08,
        1.48572235717979e-05,
        6.37261928875436e-04,
        4.89352455891786e-03,
    )
)
_BETA = tuple(np.float32(b) for b in (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03))
_A13, _A11, _A9, _A7, _A5, _A3, _A1 = _ALPHA
_B6, _B4, _B2, _B0 = _BETA
_HALF32 = np.float32(0.5)


def tanh(x):
    """Hyperbolic tangent (see the module docstring); only for ``njit`` code."""
    raise NotImplementedError("symrnn.ops.cell_math.tanh is for Numba-compiled code")


def sigmoid(x):
    """Logistic sigmoid (see the module docstring); only for ``njit`` code."""
    raise NotImplementedError("symrnn.ops.cell_math.sigmoid is for Numba-compiled code")


def hard_sigmoid_clip(u):
    """``min(max(u, 0), 1)`` in the dtype of ``u``; only for ``njit`` code."""
    raise NotImplementedError("symrnn.ops.cell_math.hard_sigmoid_clip is for Numba-compiled code")


def one(x):
    """1 in the dtype of ``x``; only for ``njit`` code."""
    raise NotImplementedError("symrnn.ops.cell_math.one is for Numba-compiled code")


def _is_float32(x):
    return isinstance(x, types.Float) and x.bitwidth == 32


@register_jitable(inline="always")
def _tanh32(x):
    v = min(max(x, -_TANH_CLAMP), _TANH_CLAMP)
    v2 = v * v
    p = v2 * _A13 + _A11
    p = v2 * p + _A9
    p = v2 * p + _A7
    p = v2 * p + _A5
    p = v2 * p + _A3
    p = v2 * p + _A1
    p = v * p
    q = v2 * _B6 + _B4
    q = v2 * q + _B2
    q = v2 * q + _B0
    return p / q


@overload(tanh, inline="always")
def _tanh_overload(x):
    if _is_float32(x):
        return lambda x: _tanh32(x)
    if isinstance(x, types.Float):
        return lambda x: np.tanh(x)
    return None


@overload(sigmoid, inline="always")
def _sigmoid_overload(x):
    if _is_float32(x):
        return lambda x: _HALF32 * _tanh32(_HALF32 * x) + _HALF32
    if isinstance(x, types.Float):
        return lambda x: 1.0 / (1.0 + np.exp(-x))
    return None


@overload(hard_sigmoid_clip, inline="always")
def _hard_sigmoid_clip_overload(u):
    if _is_float32(u):
        return lambda u: min(max(u, np.float32(0.0)), np.float32(1.0))
    if isinstance(u, types.Float):
        return lambda u: min(max(u, 0.0), 1.0)
    return None


@overload(one, inline="always")
def _one_overload(x):
    if _is_float32(x):
        return lambda x: np.float32(1.0)
    if isinstance(x, types.Float):
        return lambda x: 1.0
    return None


@register_jitable
def gate_and_slope(u, hard, slope):
    """``(gate, d gate / d v)`` of a gate from what ``acts`` keeps of it; only for ``njit`` code.

    ``hard``: ``u = slope v + 0.5`` is the hard sigmoid's unclipped argument;
    the gate is ``clip(u, 0, 1)`` and its derivative ``slope`` where
    ``0 <= u <= 1`` (PyTensor's ``clip`` gradient, boundaries included), else
    0. Otherwise ``u`` is the logistic gate itself, with derivative ``u (1 - u)``.
    """
    unit = one(u)
    zero = unit - unit
    if hard:
        gate = hard_sigmoid_clip(u)
        derivative = slope if (u >= zero) & (u <= unit) else zero
    else:
        gate = u
        derivative = u * (unit - u)
    return gate, derivative
