"""The BLAS products of the fused GRU's Numba kernels (symrnn.ops.gru_kernels.matmul_into) against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from symrnn.ops.gru_kernels import matmul_into


@njit
def _matmul_into(a, b, c, alpha, beta):
    # strided views ("A" layout), as the kernels pass them
    matmul_into(a[:, :], b[:, :], c[:, :], alpha, beta)


def _operand(rng, rows, columns, dtype, by_columns):
    """A (rows, columns) block of a bigger random array, stored by rows or (a transposed view) by columns."""
    if by_columns:
        return rng.normal(size=(columns + 3, rows + 2)).astype(dtype)[1 : columns + 1, 2:].T
    return rng.normal(size=(rows + 2, columns + 3)).astype(dtype)[1 : rows + 1, 2 : columns + 2]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("M", [1, 3, 8, 9, 20])  # up to 8 rows: one gemv per row; more: gemm
@pytest.mark.parametrize("a_by_columns", [False, True])
@pytest.mark.parametrize("b_by_columns", [False, True])
def test_matmul_into_adds_alpha_a_times_b_to_beta_c_in_a_block_of_c_only(dtype, M, a_by_columns, b_by_columns):
    K, N = 7, 5
    rng = np.random.default_rng(M)
    a = _operand(rng, M, K, dtype, a_by_columns)
    b = _operand(rng, K, N, dtype, b_by_columns)
    big_c = rng.normal(size=(M + 2, N + 4)).astype(dtype)
    before = big_c.copy()
    alpha, beta = np.dtype(dtype).type(0.3), np.dtype(dtype).type(-1.5)
    _matmul_into(a, b, big_c[1 : M + 1, 2 : N + 2], alpha, beta)
    want = 0.3 * (a.astype("float64") @ b.astype("float64")) - 1.5 * before[1 : M + 1, 2 : N + 2].astype("float64")
    tolerance = 1e-5 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(big_c[1 : M + 1, 2 : N + 2], want, rtol=tolerance, atol=tolerance)
    outside = np.ones(big_c.shape, dtype=bool)
    outside[1 : M + 1, 2 : N + 2] = False
    np.testing.assert_array_equal(big_c[outside], before[outside])


@pytest.mark.parametrize("M", [2, 12])
@pytest.mark.parametrize("K", [0, 4])
def test_matmul_into_with_beta_zero_overwrites_c_even_where_it_holds_nan(M, K):
    rng = np.random.default_rng(K)
    a = rng.normal(size=(M, K)).astype("float32")
    b = rng.normal(size=(K, 3)).astype("float32")
    c = np.full((M, 3), np.nan, dtype="float32")
    _matmul_into(a, b, c, np.float32(1), np.float32(0))
    np.testing.assert_allclose(c, a.astype("float64") @ b.astype("float64"), rtol=1e-6, atol=1e-6)


def test_matmul_into_with_an_empty_inner_dimension_scales_c_by_beta():
    c = np.arange(6, dtype="float64").reshape(2, 3)
    _matmul_into(np.empty((2, 0)), np.empty((0, 3)), c, 1.0, 0.5)
    np.testing.assert_array_equal(c, np.arange(6).reshape(2, 3) * 0.5)


def test_matmul_into_refuses_arrays_without_a_unit_stride():
    a = np.ones((3, 8))[:, ::2]
    with pytest.raises(ValueError, match="unit strides"):
        _matmul_into(a, np.ones((4, 2)), np.zeros((3, 2)), 1.0, 0.0)


@pytest.mark.parametrize("M,K,N", [(1, 1, 1), (1, 3, 1), (9, 1, 4), (2, 1, 1), (9, 3, 1), (1, 1, 4)])
@pytest.mark.parametrize("a_by_columns", [False, True])
@pytest.mark.parametrize("b_by_columns", [False, True])
def test_matmul_into_takes_single_rows_and_columns_in_either_layout(M, K, N, a_by_columns, b_by_columns):
    # a dimension of length 1 leaves its stride arbitrary; the leading dimension must still suit BLAS
    rng = np.random.default_rng(M * 100 + K * 10 + N)
    a = _operand(rng, M, K, "float64", a_by_columns)
    b = _operand(rng, K, N, "float64", b_by_columns)
    c = np.zeros((M, N))
    _matmul_into(a, b, c, 1.0, 0.0)
    np.testing.assert_allclose(c, a @ b, rtol=1e-13, atol=1e-13)
