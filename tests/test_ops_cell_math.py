"""The scalar nonlinearities of the fused layers' Numba loops (symrnn.ops.cell_math) against float64 NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from scipy.special import expit

from symrnn.ops import cell_math


@njit(error_model="numpy", fastmath={"nnan", "ninf", "nsz", "arcp", "contract"})
def _apply(x, out, which):
    for i in range(x.shape[0]):
        if which == 0:
            out[i] = cell_math.tanh(x[i])
        elif which == 1:
            out[i] = cell_math.sigmoid(x[i])
        elif which == 2:
            out[i] = cell_math.hard_sigmoid_clip(x[i])
        else:
            out[i] = cell_math.one(x[i]) + x[i] * 0


def _run(x, which):
    out = np.empty_like(x)
    _apply(x, out, which)
    return out


X32 = np.concatenate([np.linspace(-30.0, 30.0, 400_001), [0.0, -0.0, 1e-30, -1e-30, 1e30, -1e30]]).astype(np.float32)


def test_float32_tanh_is_within_three_tenths_of_a_millionth_of_float64_tanh_and_stays_float32():
    got = _run(X32, 0)
    assert got.dtype == np.float32
    want = np.tanh(X32.astype(np.float64))
    assert np.max(np.abs(got - want)) < 3e-7
    assert np.all(np.abs(got) <= 1.0)
    assert got[-6] == 0.0 and abs(got[-2] - 1.0) < 3e-7 and abs(got[-1] + 1.0) < 3e-7


def test_float32_tanh_is_odd_and_keeps_small_arguments_relative_accurate():
    small = np.float32([1e-3, 1e-5, 3e-8])
    np.testing.assert_allclose(_run(small, 0), np.tanh(small.astype(np.float64)), rtol=3e-7)
    np.testing.assert_array_equal(_run(-X32, 0), -_run(X32, 0))


def test_float32_sigmoid_is_within_two_tenths_of_a_millionth_of_the_logistic_function():
    got = _run(X32, 1)
    assert got.dtype == np.float32
    want = expit(X32.astype(np.float64))
    assert np.max(np.abs(got - want)) < 2e-7
    assert np.all((got >= 0.0) & (got <= 1.0))


@pytest.mark.parametrize("which, reference", [(0, np.tanh), (1, expit)])
def test_float64_functions_are_exact(which, reference):
    x = np.linspace(-30.0, 30.0, 10_001)
    np.testing.assert_allclose(_run(x, which), reference(x), rtol=1e-15, atol=1e-300)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hard_sigmoid_clip_and_one_keep_the_dtype(dtype):
    u = np.array([-1.0, 0.0, 0.3, 1.0, 2.0], dtype=dtype)
    clipped = _run(u, 2)
    assert clipped.dtype == dtype
    np.testing.assert_array_equal(clipped, np.clip(u, 0, 1))
    np.testing.assert_array_equal(_run(u, 3), u * 0 + 1)


def test_the_functions_refuse_to_run_outside_compiled_code():
    with pytest.raises(NotImplementedError, match="Numba-compiled"):
        cell_math.tanh(0.5)
