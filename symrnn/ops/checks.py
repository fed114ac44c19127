"""Input checks shared by the Ops of :mod:`symrnn.ops`.

Each Op's ``make_node`` turns its inputs into tensor variables, checks their
number of dimensions and float dtype, and derives the static shapes of its
outputs from the first input that knows a length; its ``pullback`` treats a
missing and a disconnected gradient alike.
"""

from __future__ import annotations

import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType

__all__ = ["FLOAT_DTYPES", "INT_DTYPES", "as_float_tensor", "first_known", "is_disconnected", "same_dtype"]

FLOAT_DTYPES = ("float32", "float64")
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32")


def as_float_tensor(x, name, ndim):
    """``x`` as a tensor variable of ``ndim`` dimensions and dtype float32 or float64.

    Parameters
    ----------
    x : tensor_like
    name : str
        Named in the error message.
    ndim : int

    Returns
    -------
    TensorVariable

    Raises
    ------
    TypeError
        If ``x`` has another number of dimensions or a non-float dtype.
    """
    x = pt.as_tensor_variable(x)
    if x.type.ndim != ndim:
        raise TypeError(f"{name} must be {ndim}-dimensional, got {x.type.ndim} dimensions ({x.type})")
    if x.type.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {x.type.dtype}")
    return x


def same_dtype(named):
    """The one dtype of the variables in ``named`` (name -> variable); TypeError if they differ."""
    dtypes = {x.type.dtype for x in named.values()}
    if len(dtypes) != 1:
        listing = ", ".join(f"{k}: {v.type.dtype}" for k, v in named.items())
        raise TypeError(f"all float inputs must share one dtype (float32 or float64); got {listing}")
    return dtypes.pop()


def first_known(*dims):
    """The first known (not None) static length among ``dims``, else None."""
    for d in dims:
        if d is not None:
            return d
    return None


def is_disconnected(g):
    """Whether an output's gradient ``g`` is missing (None) or disconnected."""
    return g is None or isinstance(g.type, DisconnectedType)
