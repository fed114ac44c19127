"""Backends: which PyTensor linker runs the graphs, and what each needs around it.

The one module of symrnn that knows linkers, JAX and devices.

``"c"`` (default)
    PyTensor's C virtual machine (``cvm`` loop, ``fast_run`` rewrites) with C
    code for the elementwise loops and reductions only
    (:class:`ElementwiseCLinker`); every other Op runs its Python ``perform``.
    With the fused recurrent and loss Ops (:mod:`symrnn.ops`) this was the
    fastest on CPU in ``scripts/benchmark.py``.
``"numba"``
    PyTensor's Numba backend (its default mode in version 3).
``"jax"``
    PyTensor's JAX backend, for GPUs; needs ``jax`` installed and static shapes
    (fixed-length batches, :func:`compile_per_shape`); uses the ``scan``
    implementation. Values stay on the device between calls
    (:func:`keep_values_on_device`, :func:`with_states_on_device`). JAX's own
    settings (full float32 products instead of TF32, its persistent compile
    cache) are the scripts' to make (``scripts/process.py``): this module sets none.
"""

from __future__ import annotations

import copy
from typing import Callable, Iterable

import numpy as np
import pytensor.tensor as pt
from pytensor.compile.mode import Mode, get_mode
from pytensor.graph.rewriting.basic import in2out, node_rewriter
from pytensor.link.c.op import COp
from pytensor.link.vm import VMLinker
from pytensor.scalar.basic import Composite
from pytensor.tensor.elemwise import CAReduce, Elemwise

__all__ = [
    "BACKENDS", "ElementwiseCLinker", "PerShapeFunction", "compile_mode", "compile_per_shape", "keep_values_on_device",
    "needs_static_shapes", "uses_fused_ops", "with_states_on_device",
]

BACKENDS = ("c", "numba", "jax")


def _check(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")


@node_rewriter([CAReduce])
def _reduce_in_accumulator_dtype(fgraph, node):
    """``Sum{acc=float64}(x)`` of declared dtype float32 -> ``cast(Sum{dtype=float64}(x), float32)``.

    PyTensor 3.0's JAX translation of ``CAReduce`` (``Sum`` and friends) returns
    the accumulator dtype (float64 for float32 sums) instead of the declared
    output dtype, so float32 parameters silently became float64 after one
    update and the next call's ``scan`` refused the mixed carry types. After
    this rewrite every reduction's declared dtype is the one JAX returns, and
    an explicit cast gives the original dtype: same precision, right types.
    """
    op = node.op
    accumulator = getattr(op, "acc_dtype", None)
    declared = node.outputs[0].dtype
    if accumulator is None or accumulator == declared:
        return None
    return [pt.cast(op.clone(dtype=accumulator)(*node.inputs), declared)]


#: After every rewrite of PyTensor's JAX mode (the last sit at 100 and 110).
_JAX_REWRITES = ((in2out(_reduce_in_accumulator_dtype, name="symrnn_reduce_in_accumulator_dtype"), 120),)


def _python_thunk_op(op: COp) -> COp:
    """A copy of ``op`` whose thunks are always its Python ``perform``."""
    python_op = copy.copy(op)
    make_thunk = type(op).make_thunk

    def make_python_thunk(node, storage_map, compute_map, no_recycling, impl=None):
        return make_thunk(python_op, node, storage_map, compute_map, no_recycling, impl="py")

    python_op.make_thunk = make_python_thunk
    return python_op


def _c_code_pays_off(node) -> bool:
    """Whether a node is worth its C module (gcc takes 0.3 to 0.5 s for each in a cold start).

    Yes for elementwise loops and reductions over matrices or larger (the
    parameters' gradients and updates: the C code reuses its output buffer,
    and NumPy's float64 accumulation along an axis was 10 times slower), and
    for elementwise Ops on vectors that are not one NumPy ufunc (a fused
    ``Composite``, whose Python ``perform`` calls Python per value). No for
    scalars, single ufuncs and sums on vectors, and every other Op.
    """
    op = node.op
    if not isinstance(op, (Elemwise, CAReduce)):
        return False
    if isinstance(op, CAReduce) and isinstance(op.scalar_op, Composite):
        # A reduction with a fused scalar Op (``sum(sqr(g))`` becomes
        # ``CAReduce{i0 + sqr(i1)}``) is wrong in Python: its ``perform``
        # reduces with the fused Op as a ufunc, which starts from the first
        # value unsquared. Only the C code starts from the identity.
        return True
    ndim = max(v.type.ndim for v in node.inputs + node.outputs)
    if ndim >= 2:
        return True
    if ndim == 0 or isinstance(op, CAReduce):
        return False
    spec = op.nfunc_spec
    return spec is None or spec[1] != len(node.inputs)


class ElementwiseCLinker(VMLinker):
    """PyTensor's C virtual machine with C code only where it pays off: elementwise loops and reductions.

    Each distinct C Op is one C module that gcc compiles (0.3 to 0.5 s) the
    first time a process meets it with an empty compile directory: the
    training step held 26, then 10 when only elementwise Ops and reductions
    were compiled, now 6 (:func:`_c_code_pays_off`). The C code pays off only
    where an Op loops over many values (``Elemwise``, fused ``Composite``
    updates, ``CAReduce`` sums, on matrices); the shape, view, indexing and
    join Ops and scalar or vector arithmetic run as fast in Python next to
    symrnn's own Ops and NumPy's matrix products, so they keep their
    ``perform``. Only this function's graph is changed: its nodes get
    private copies of those Ops that never ask for C code.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("use_cloop", True)
        super().__init__(**kwargs)

    def make_all(self, *args, **kwargs):
        for node in self.fgraph.apply_nodes:
            if isinstance(node.op, COp) and not _c_code_pays_off(node):
                node.op = _python_thunk_op(node.op)
        return super().make_all(*args, **kwargs)


def compile_mode(backend: str = "c") -> Mode:
    """The PyTensor ``Mode`` for a backend name.

    Parameters
    ----------
    backend : ``"c"``, ``"numba"`` or ``"jax"``

    Returns
    -------
    pytensor.compile.mode.Mode
    """
    _check(backend)
    if backend == "c":
        # PyTensor folds a scalar factor into a matrix product (Dot22Scalar)
        # even when the product has other users, so the RMSprop update's
        # learning_rate * gradient recomputed the output layer's (H x V)
        # gradient product that the gradient norm also reads: 30 ms a step
        # at batch 64. Without that rewrite the product is computed once.
        return Mode(linker=ElementwiseCLinker(), optimizer="fast_run").excluding("local_dot22_to_dot22scalar")
    if backend == "numba":
        return get_mode("NUMBA")
    try:
        import jax  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("the jax backend needs JAX: pip install 'symrnn[gpu]' or pip install jax") from exc
    return get_mode("JAX").register(*_JAX_REWRITES)


def uses_fused_ops(backend: str) -> bool:
    """Whether the fused NumPy Ops can run under ``backend`` (not under JAX)."""
    _check(backend)
    return backend != "jax"


def needs_static_shapes(backend: str) -> bool:
    """Whether batch functions must be compiled per (T, B) shape (JAX's static shapes)."""
    _check(backend)
    return backend == "jax"


class PerShapeFunction:
    """A batch function compiled once per input shape.

    Parameters
    ----------
    build : callable ``build(shape) -> function``
        Compiles the function for ``shape = (T, B)``, the shape of the first argument.

    The first call with a new (T, B) shape compiles; later calls reuse it, so
    batches padded to a few fixed lengths (``BUCKET_WIDTH``) compile a few
    times. :attr:`functions` holds them by shape.
    """

    def __init__(self, build: Callable):
        self.build = build
        self.functions: dict = {}

    def __call__(self, ids, *args):
        shape = tuple(np.shape(ids))
        if shape not in self.functions:
            self.functions[shape] = self.build(shape)
        return self.functions[shape](ids, *args)


def compile_per_shape(backend: str, build: Callable):
    """A batch function for ``backend``: ``build((None, None))``, or one per shape where shapes must be static.

    Parameters
    ----------
    backend : str
    build : callable ``build(shape) -> function``, ``shape`` a (T, B) tuple of ints or Nones

    Returns
    -------
    callable with the signature of the built functions
    """
    if needs_static_shapes(backend):
        return PerShapeFunction(build)
    return build((None, None))


class _StatesOnDevice:
    """A one-step function under JAX whose states stay on the device between calls.

    PyTensor's input checks turn every argument into a NumPy array, which under
    JAX copies the states (B, H) back to the host and out again at each token.
    Here only the ids are checked (cast to int32) and the states, as returned
    by the previous call, go to JAX untouched.
    """

    def __init__(self, function):
        self.function = function
        function.trust_input = True

    def __call__(self, ids, *states):
        return self.function(np.asarray(ids, dtype=np.int32), *states)


def with_states_on_device(backend: str, step):
    """The compiled ``step(ids (B,) int32, *states)``, keeping its states on the device under JAX.

    Parameters
    ----------
    backend : str
    step : compiled pytensor function whose first input is the int32 ids

    Returns
    -------
    callable ``f(ids, *states) -> outputs``: ``step`` itself except under JAX.
    """
    _check(backend)
    return _StatesOnDevice(step) if backend == "jax" else step


def keep_values_on_device(backend: str, variables: Iterable) -> None:
    """Under JAX, hold the values of these shared variables as device arrays.

    PyTensor keeps a shared variable's value as a NumPy array until a
    compiled update replaces it; under JAX each call of a function that reads
    NumPy values copies them to the device again (the 8000 x 128 output matrix
    for every generated token). Compiled updates store device arrays
    themselves; call this after setting values from NumPy. Other backends:
    nothing happens.

    Parameters
    ----------
    backend : str
    variables : iterable of shared variables
    """
    _check(backend)
    if backend != "jax":
        return
    import jax

    for variable in variables:
        variable.container.storage[0] = jax.device_put(variable.container.storage[0])
