"""Compilation modes: which PyTensor linker runs the graphs.

``"cpu"`` (default)
    PyTensor's C virtual machine (``cvm`` linker, ``fast_run`` rewrites). With the
    fused recurrent and loss Ops (:mod:`symrnn.ops`) this was the fastest on
    CPU in ``scripts/benchmark.py``.
``"numba"``
    PyTensor's Numba backend (its default mode in version 3).
``"jax"``
    PyTensor's JAX backend, for GPUs; needs ``jax`` installed and static shapes
    (fixed-length batches); uses the ``scan`` implementation. JAX's own settings
    (full float32 products instead of TF32, its persistent compile cache) are
    the scripts' to make (``scripts/process.py``): this module sets none.
"""

from __future__ import annotations

import logging

from pytensor.compile.mode import Mode, get_mode

__all__ = ["BACKENDS", "compile_mode", "uses_fused_ops"]

BACKENDS = ("cpu", "numba", "jax")

log = logging.getLogger(__name__)


def compile_mode(backend: str = "cpu") -> Mode:
    """The PyTensor ``Mode`` for a backend name.

    Parameters
    ----------
    backend : ``"cpu"``, ``"numba"`` or ``"jax"``

    Returns
    -------
    pytensor.compile.mode.Mode
    """
    if backend == "cpu":
        # PyTensor folds a scalar factor into a matrix product (Dot22Scalar)
        # even when the product has other users, so the RMSprop update's
        # learning_rate * gradient recomputed the output layer's (H x V)
        # gradient product that the gradient norm also reads: 30 ms a step
        # at batch 64. Without that rewrite the product is computed once.
        return Mode(linker="cvm", optimizer="fast_run").excluding("local_dot22_to_dot22scalar")
    if backend == "numba":
        return get_mode("NUMBA")
    if backend == "jax":
        try:
            import jax  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("the jax backend needs JAX: pip install 'symrnn[gpu]' or pip install jax") from exc
        _keep_reduction_dtypes_in_jax()
        return get_mode("JAX")
    raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")


def uses_fused_ops(backend: str) -> bool:
    """Whether the fused NumPy Ops can run under ``backend`` (not under JAX)."""
    return backend != "jax"


_JAX_PATCHED = False


def _keep_reduction_dtypes_in_jax() -> None:
    """Make PyTensor's JAX reductions return their declared dtype.

    PyTensor 3.0's JAX translation of ``CAReduce`` (``Sum`` and friends) returns
    the accumulator dtype (float64 for float32 sums) instead of the output
    dtype, so float32 parameters silently became float64 after one update and
    the next call's ``scan`` refused the mixed carry types. We wrap the
    translation to cast back to the node's output dtype.
    """
    global _JAX_PATCHED
    if _JAX_PATCHED:
        return
    from pytensor.link.jax.dispatch import jax_funcify
    from pytensor.tensor.elemwise import CAReduce

    translate = jax_funcify.dispatch(CAReduce)

    @jax_funcify.register(CAReduce)
    def _careduce_with_output_dtype(op, node=None, **kwargs):
        reduce = translate(op, node=node, **kwargs)
        if node is None:
            return reduce
        dtype = node.outputs[0].dtype

        def careduce(x):
            return reduce(x).astype(dtype)

        return careduce

    _JAX_PATCHED = True
