r"""Numba kernels of the fused GRU layer: the forward and the backward pass over all T time steps.

:class:`symrnn.ops.gru.FusedGRU` and :class:`symrnn.ops.gru.FusedGRUGrad` call
:func:`gru_forward` and :func:`gru_backward` (the equations and the layout of
``acts`` are in :mod:`symrnn.ops.gru`). Each kernel runs its whole loop over
time in compiled code: per step two matrix products through BLAS and the
elementwise work in loops over the rows of (B, H) blocks, which the compiler
vectorises (the nonlinearities come from :mod:`symrnn.ops.cell_math`).

Matrix products: :func:`matmul_into` calls Numba's own C wrappers of SciPy's
BLAS (those behind ``np.dot``) with leading dimensions and ``alpha``,
``beta``, so that the blocks of ``W_h``, ``acts`` and ``d_projected`` are read
and written in place, with no copies or transposes, and products add to what
the block holds (``acts[t, :, :2H] = (0.2 a + 0.5) + 0.2 (h @ W_h[:, :2H])``).
Up to 8 rows it calls ``gemv`` per row instead of ``gemm``.

Fast-math flags: no ``nnan`` / ``ninf`` (a NaN or infinity in the inputs
must reach the states and the gradients: training skips a step whose loss is
not finite) and no ``contract`` (fusing ``0.2 a + 0.5`` into one rounding
would move the hard sigmoid's clip boundaries off PyTensor's). Float
division does not check for zero (``error_model="numpy"``), which lets the
loops vectorise.

One compiled specialisation per dtype: the Ops hand over C-contiguous,
writeable arrays, the gate as a flag and its constants as scalars of the
dtype; :func:`matmul_into` takes strided views only (layout ``"A"``).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from symrnn.ops.cell_math import gate_and_slope, hard_sigmoid_clip, one, sigmoid, tanh

__all__ = ["gru_backward", "gru_forward", "matmul_into"]

_FASTMATH = {"nsz", "arcp"}
_BLAS_KINDS = {types.float32: "s", types.float64: "d"}
_NO_TRANSPOSE, _TRANSPOSE = ord("N"), ord("T")
_NO_BLAS = "SciPy's BLAS (scipy.linalg.cython_blas) could not be loaded"
# OpenBLAS's gemm packs the whole right-hand matrix on every call, which costs
# more than one matrix-vector product per row for up to about 8 rows.
_MOST_ROWS_FOR_GEMV = 8


# The arguments of Numba's BLAS wrappers after the kind letter ("s" or "d"): a flag byte, an
# integer, a pointer to a scalar of the dtype, or an array's data pointer.
_GEMM_ARGUMENTS = (
    "flag", "flag", "int", "int", "int", "scalar", "array", "int", "array", "int", "scalar", "array", "int",
)  # fmt: skip
_GEMV_ARGUMENTS = ("flag", "int", "int", "scalar", "array", "int", "array", "scalar", "array")


def _blas_codegen(symbol, argument_kinds, dtype):
    """Code generator of a call to Numba's C wrapper ``symbol`` (``numba_xxgemm`` ...), returning its status."""

    def codegen(context, builder, signature, args):
        byte, void_p = ir.IntType(8), ir.IntType(8).as_pointer()
        intp = context.get_value_type(types.intp)
        llvm_types = {"flag": byte, "int": intp, "scalar": void_p, "array": void_p}
        function_type = ir.FunctionType(ir.IntType(32), [byte, *(llvm_types[kind] for kind in argument_kinds)])
        function = cgutils.get_or_insert_function(builder.module, function_type, symbol)
        values = [ir.Constant(byte, ord(_BLAS_KINDS[dtype]))]
        for kind, value_type, value in zip(argument_kinds, signature.args, args):
            if kind == "array":
                values.append(builder.bitcast(context.make_array(value_type)(context, builder, value).data, void_p))
            elif kind == "scalar":
                slot = cgutils.alloca_once_value(builder, context.cast(builder, value, value_type, dtype))
                values.append(builder.bitcast(slot, void_p))
            else:
                integer = context.cast(builder, value, value_type, types.intp)
                values.append(builder.trunc(integer, byte) if kind == "flag" else integer)
        return builder.call(function, values)

    return codegen


@intrinsic
def _gemm(typingctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Column-major BLAS ``gemm`` through Numba's own wrapper ``numba_xxgemm`` (the one ``np.dot`` calls).

    Numba resolves that C function by name when it loads a compiled kernel,
    so the kernels stay cacheable (a ctypes function pointer would not be).
    Returns 0, or -1 if SciPy's BLAS could not be loaded.
    """
    if c.dtype not in _BLAS_KINDS:
        return None
    signature = types.int32(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    return signature, _blas_codegen("numba_xxgemm", _GEMM_ARGUMENTS, c.dtype)


@intrinsic
def _gemv(typingctx, trans, m, n, alpha, a, lda, x, beta, y):
    """Column-major BLAS ``gemv`` (unit strides of ``x`` and ``y``) through Numba's wrapper ``numba_xxgemv``."""
    if y.dtype not in _BLAS_KINDS:
        return None
    signature = types.int32(trans, m, n, alpha, a, lda, x, beta, y)
    return signature, _blas_codegen("numba_xxgemv", _GEMV_ARGUMENTS, y.dtype)


@njit(cache=True)
def matmul_into(a, b, c, alpha, beta):
    """``c = alpha * a @ b + beta * c`` in place, through BLAS (``gemm``, or ``gemv`` per row for few rows).

    Parameters
    ----------
    a : ndarray (M, K)
    b : ndarray (K, N)
    c : ndarray (M, N)
        Row-major (unit stride along its rows). With ``beta = 0`` it is only
        written, never read.
    alpha, beta : scalar of the arrays' dtype

    One dtype (float32 or float64) for all three. ``a`` and ``b`` may be
    row-major or column-major (a transposed view), and any array may be a block
    of rows and columns of a bigger one: BLAS reads and writes it in place.
    Passing every array as a strided view (layout ``"A"``, e.g. ``x[:, :]``)
    keeps this to one compiled specialisation per dtype.
    """
    M, N = c.shape
    K = a.shape[1]
    if M == 0 or N == 0:
        return
    if K == 0:
        for i in range(M):
            for j in range(N):
                c[i, j] = c[i, j] * beta if beta != 0 else beta
        return
    a_by_columns, lda = _blas_layout(a)
    b_by_columns, ldb = _blas_layout(b)
    c_by_columns, ldc = _blas_layout(c)
    if c_by_columns:
        raise ValueError("matmul_into writes row-major outputs only")
    if M <= _MOST_ROWS_FOR_GEMV and not a_by_columns:
        for i in range(M):
            # Column-major BLAS sees the row-major b as b.T: c[i] = b.T @ a[i] is its plain product.
            if b_by_columns:
                status = _gemv(_TRANSPOSE, K, N, alpha, b, ldb, a[i], beta, c[i])
            else:
                status = _gemv(_NO_TRANSPOSE, N, K, alpha, b, ldb, a[i], beta, c[i])
            if status != 0:
                raise RuntimeError(_NO_BLAS)
        return
    # Column-major BLAS sees each row-major array transposed: it computes c.T = b.T @ a.T.
    status = _gemm(
        _TRANSPOSE if b_by_columns else _NO_TRANSPOSE, _TRANSPOSE if a_by_columns else _NO_TRANSPOSE, N, M, K,
        alpha, b, ldb, a, lda, beta, c, ldc,
    )  # fmt: skip
    if status != 0:
        raise RuntimeError(_NO_BLAS)


@njit(cache=True)
def _blas_layout(x):
    """``(by_columns, leading dimension)`` of a non-empty 2-D array with unit stride along its rows or columns."""
    rows, columns = x.shape
    size = x.itemsize
    if columns == 1 or x.strides[1] == size:
        return False, x.strides[0] // size if rows > 1 else columns
    if rows == 1 or x.strides[0] == size:
        return True, x.strides[1] // size if columns > 1 else rows
    raise ValueError("matmul_into needs unit strides along the rows or the columns of each array")


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FASTMATH)
def gru_forward(projected, mask, h0, W_h, scale, shift, hard, hs, acts, start, stop):
    """The GRU layer over all T steps: fill the rows ``start:stop`` of ``hs`` and ``acts``.

    Parameters
    ----------
    projected : ndarray (T, B, 3H)
    mask : ndarray (T, B)
    h0 : ndarray (B, H)
    W_h : ndarray (H, 3H)
    scale, shift : scalar
        The gates' argument ``u = scale * v + shift`` (``v`` the pre-activation
        ``a + h @ W_h``, ``u`` computed as ``(scale * a + shift) + scale * (h @
        W_h)``): 0.2 and 0.5 for the hard sigmoid (``sig = clip(u, 0, 1)``), 1
        and 0 for the sigmoid (``sig = sigmoid(u)``).
    hard : bool
        Hard sigmoid (``acts`` keeps ``u``) or sigmoid (``acts`` keeps the gates).
    hs : ndarray (T, B, H)
        Output: the states.
    acts : ndarray (T, B, 3H)
        Output: ``[u or gates | candidates]``.
    start, stop : int
        The batch rows this call computes (``0, B``: all); other threads may
        run other rows of the same arrays at the same time.

    All arrays C-contiguous, of one dtype.
    """
    T, B, H = hs.shape
    H2 = 2 * H
    gates = np.empty((stop - start, H2), dtype=hs.dtype)
    q = np.empty((stop - start, H), dtype=hs.dtype)
    W_zr = W_h[:, :H2]
    W_c = W_h[:, H2:]
    unit = one(scale)
    for t in range(T):
        h = h0 if t == 0 else hs[t - 1]
        for b in range(start, stop):
            a = projected[t, b]
            act = acts[t, b]
            for j in range(H2):
                act[j] = a[j] * scale + shift
            for j in range(H2, 3 * H):
                act[j] = a[j]
        matmul_into(h[start:stop, :], W_zr, acts[t, start:stop, :H2], scale, unit)
        for b in range(start, stop):
            act = acts[t, b]
            zr = gates[b - start]
            if hard:
                for j in range(H2):
                    zr[j] = hard_sigmoid_clip(act[j])
            else:
                for j in range(H2):
                    zr[j] = sigmoid(act[j])
                    act[j] = zr[j]
            h_b = h[b]
            q_b = q[b - start]
            for j in range(H):
                q_b[j] = zr[H + j] * h_b[j]
        matmul_into(q[:, :], W_c, acts[t, start:stop, H2:], unit, unit)
        for b in range(start, stop):
            c_b = acts[t, b, H2:]
            z_b = gates[b - start, :H]
            h_b = h[b]
            out = hs[t, b]
            m = mask[t, b]
            for j in range(H):
                c = tanh(c_b[j])
                c_b[j] = c
                out[j] = c + z_b[j] * (h_b[j] - c)
            if m != unit:
                for j in range(H):
                    out[j] = h_b[j] + m * (out[j] - h_b[j])


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FASTMATH)
def gru_backward(mask, h0, W_h, hs, acts, g_hs, slope, hard, d_projected, d_h0, d_W_h, start, stop):
    """Backpropagation through the T steps of :func:`gru_forward` for batch rows ``start:stop``: fill the gradients.

    Parameters
    ----------
    mask : ndarray (T, B)
    h0 : ndarray (B, H)
    W_h : ndarray (H, 3H)
    hs, acts : ndarray (T, B, H), (T, B, 3H)
        What :func:`gru_forward` wrote.
    g_hs : ndarray (T, B, H)
        Gradient of the cost with respect to ``hs``.
    slope : scalar
        The hard sigmoid's slope 0.2 (unused for the sigmoid).
    hard : bool
    d_projected : ndarray (T, B, 3H)
        Output.
    d_h0 : ndarray (B, H)
        Output; holds the gradient with respect to the state before each step
        while the loop runs.
    d_W_h : ndarray (H, 3H)
        Output: the sum over the rows ``start:stop`` (and all steps).
    start, stop : int
        The rows of ``d_projected`` and ``d_h0`` this call computes, as for
        :func:`gru_forward`.

    All arrays C-contiguous, of one dtype; T >= 1.
    """
    T, B, H = hs.shape
    H2 = 2 * H
    rows = stop - start
    q = np.empty((T, rows, H), dtype=hs.dtype)  # r * h_prev, for d_W_h
    dq = np.empty((rows, H), dtype=hs.dtype)
    carry = d_h0
    carry[start:stop] = 0
    unit = one(slope)
    zero = unit - unit
    for t in range(T - 1, -1, -1):
        h = h0 if t == 0 else hs[t - 1]
        for b in range(start, stop):
            m = mask[t, b]
            g = g_hs[t, b]
            cr = carry[b]
            h_b = h[b]
            act = acts[t, b]
            d = d_projected[t, b]
            for j in range(H):
                dh = g[j] + cr[j]
                dn = m * dh
                c = act[H2 + j]
                z, s = gate_and_slope(act[j], hard, slope)
                d[j] = dn * (h_b[j] - c) * s
                d[H2 + j] = dn * (unit - z) * (unit - c * c)
                cr[j] = (dh - dn) + dn * z
        matmul_into(d_projected[t, start:stop, H2:], W_h[:, H2:].T, dq[:, :], unit, zero)
        for b in range(start, stop):
            h_b = h[b]
            act = acts[t, b]
            d = d_projected[t, b]
            cr = carry[b]
            dq_b = dq[b - start]
            q_b = q[t, b - start]
            for j in range(H):
                r, s = gate_and_slope(act[H + j], hard, slope)
                d[H + j] = dq_b[j] * h_b[j] * s
                cr[j] += dq_b[j] * r
                q_b[j] = r * h_b[j]
        matmul_into(d_projected[t, start:stop, :H2], W_h[:, :H2].T, carry[start:stop, :], unit, unit)
    # d_W_h = h_prev.T @ d_projected[..., :2H] | q.T @ d_projected[..., 2H:], summed over t and the rows
    if rows == B:  # all rows: one product over all T * B of them
        flat = d_projected.reshape(T * B, 3 * H)
        matmul_into(h0[:, :].T, flat[:B, :H2], d_W_h[:, :H2], unit, zero)
        if T > 1:
            matmul_into(hs[: T - 1].reshape((T - 1) * B, H)[:, :].T, flat[B:, :H2], d_W_h[:, :H2], unit, unit)
        matmul_into(q.reshape(T * B, H)[:, :].T, flat[:, H2:], d_W_h[:, H2:], unit, zero)
        return
    for t in range(T):  # a block of rows is strided across the steps: one product per step
        h = h0 if t == 0 else hs[t - 1]
        beta = zero if t == 0 else unit
        matmul_into(h[start:stop, :].T, d_projected[t, start:stop, :H2], d_W_h[:, :H2], unit, beta)
        matmul_into(q[t, :, :].T, d_projected[t, start:stop, H2:], d_W_h[:, H2:], unit, beta)
