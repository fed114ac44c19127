"""Numba compilation on a background thread, started while a graph is built.

The fused Ops call :func:`compile_in_background` from their ``make_node`` so
that Numba compiles (or loads from its disk cache) their kernels while
PyTensor rewrites the graph and gcc compiles its C code, instead of at the
first step. Only threads are started; no process-wide setting changes.
"""

from __future__ import annotations

import threading
from typing import Callable

__all__ = ["compile_in_background"]

_lock = threading.Lock()
_compiling = set()  # the keys compile_in_background has started


def compile_in_background(key, first_call: Callable[[], object]) -> None:
    """Run ``first_call`` on a background thread, once per ``key`` in this process.

    ``first_call`` calls Numba kernels on tiny arrays of the types they will
    get, which compiles them (or loads them from Numba's disk cache). Called
    while a graph is built, so that the compilation overlaps with PyTensor's
    rewriting and C compilation (gcc runs in other processes) instead of
    delaying the first step. A call of a kernel meanwhile waits for that
    compilation (Numba's compiler lock) and then uses it. A failure here is
    left for that call to raise.
    """
    with _lock:
        if key in _compiling:
            return
        _compiling.add(key)
    threading.Thread(target=_quietly, args=(first_call,), name="symrnn-compile").start()


def _quietly(first_call):
    try:
        first_call()
    except Exception:  # noqa: BLE001 - the first real call raises it, where it belongs
        pass
