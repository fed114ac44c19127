r"""The original tutorial's model files: detecting, validating, reading, writing, converting.

The tutorial saved its models with ``numpy.savez(path, name=array, ...)`` in
two layouts (``layout`` is what :func:`symrnn.checkpoint.load_checkpoint`
reports for them):

Part 4 GRU file (``"tutorial-gru"``)
    Plain keys ``E`` (H, V), ``U`` and ``W`` (6, H, H), ``V`` (V, H), ``b``
    (6, H) and ``c`` (V,): a two-layer GRU whose embedding size is its state
    size H, over V words.

Part 2 RNN file (``"tutorial-rnn"``)
    Plain keys ``U`` (H, V), ``V`` (V, H) and ``W`` (H, H): the vanilla RNN
    ``s_t = tanh(U[:, x_t] + W s_{t-1})``, ``o_t = softmax(V s_t)``.

Neither holds a vocabulary or settings. This is the one module that knows
them; it converts both to symrnn's parameter names (those of
:func:`symrnn.checkpoint.save_checkpoint`'s ``param/<name>`` members):

=========================  =========================================
tutorial                   symrnn
=========================  =========================================
part 4 ``E`` (D, V)        ``embedding`` = ``E.T``
``U[0..2]`` (H, D)         ``layer0/W_x`` = ``[U[0].T | U[1].T | U[2].T]``
``W[0..2]`` (H, H)         ``layer0/W_h`` = ``[W[0].T | W[1].T | W[2].T]``
``b[0..2]`` (H,)           ``layer0/b``   = ``[b[0] | b[1] | b[2]]``
``U, W, b [3..5]``         ``layer1/...`` likewise
``V`` (V, H), ``c`` (V,)   ``output/W`` = ``V.T``, ``output/b`` = ``c``
part 2 ``U`` (H, V)        ``embedding`` = ``U.T``, ``layer0/W_x`` = identity
part 2 ``W`` (H, H)        ``layer0/W_h`` = ``W.T``, ``layer0/b`` = 0
part 2 ``V`` (V, H)        ``output/W`` = ``V.T``, ``output/b`` = 0
=========================  =========================================

NumPy only: no PyTensor (:func:`gru_library_terms` builds the same mapping
from symbolic variables when given PyTensor's ``concatenate``).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Collection, Mapping
from typing import Any, Callable

import numpy as np

from symrnn.errors import CheckpointError
from symrnn.npz import check_parameter_array, plain_array, write_npz

__all__ = [
    "GRU_NAMES",
    "LAYOUTS_TEXT",
    "RNN_NAMES",
    "closest_layout_hint",
    "gru_library_terms",
    "library_model",
    "library_to_tutorial",
    "part2_to_library",
    "read_tutorial_layout",
    "save_tutorial_model",
    "tutorial_to_library",
]

logger = logging.getLogger(__name__)

#: The part 4 GRU file's keys, in the tutorial's order.
GRU_NAMES = ("E", "U", "W", "V", "b", "c")
#: The part 2 RNN file's keys, in the tutorial's order.
RNN_NAMES = ("U", "V", "W")
#: The tutorial's layouts, for messages listing what a model file may be.
LAYOUTS_TEXT = "a tutorial file with keys E, U, W, V, b, c (GRU) or U, V, W (RNN)"

_LAYOUT_TITLES = {"tutorial-gru": "tutorial GRU", "tutorial-rnn": "tutorial RNN"}
_LAYOUT_NAMES = {"tutorial-gru": GRU_NAMES, "tutorial-rnn": RNN_NAMES}


# --------------------------------------------------------------------------
# Detecting and validating
# --------------------------------------------------------------------------


def read_tutorial_layout(path: str, members: Mapping[str, np.ndarray]) -> tuple[str, dict, dict] | None:
    """Recognise and validate a tutorial file's members.

    Parameters
    ----------
    path : str
        The file, for messages.
    members : mapping of str to numpy.ndarray
        Every member of the archive (:func:`symrnn.npz.read_npz`).

    Returns
    -------
    (layout, params, settings) or None
        ``"tutorial-gru"`` or ``"tutorial-rnn"``; the parameters by their
        tutorial names in the tutorial's order (float32/float64, finite,
        native byte order); the sizes inferred from the shapes, ``word_dim``
        and ``hidden_dim`` (and ``embedding_dim``, equal to ``hidden_dim``,
        for the GRU). None when the keys are exactly neither layout's.

    Raises
    ------
    CheckpointError
        A parameter is not float32/float64 or not finite, or the shapes do
        not belong to one model.
    """
    for layout, names in _LAYOUT_NAMES.items():
        if set(members) == set(names):
            params = {name: check_parameter_array(path, name, members[name], writing=False) for name in names}
            if layout == "tutorial-gru":
                return layout, params, _gru_sizes(path, params, writing=False)
            return layout, params, _rnn_sizes(path, params)
    return None


def closest_layout_hint(keys: Collection[str]) -> str:
    """How a set of keys differs from the tutorial layout it is closest to.

    Returns
    -------
    str
        `` (closest: tutorial GRU layout, missing ['c'])`` and the like, or
        ``""`` when the keys share fewer than two names with either layout.
    """
    keys = set(keys)
    title, names = max(
        ((_LAYOUT_TITLES[layout], set(names)) for layout, names in _LAYOUT_NAMES.items()),
        # Names missing count against a layout too: otherwise the GRU's six names, a superset of
        # the RNN's three, would always score at least as high and the RNN would never be named.
        key=lambda item: len(keys & item[1]) - len(keys - item[1]) - len(item[1] - keys),
    )
    if len(keys & names) < 2:
        return ""
    parts = []
    if names - keys:
        parts.append(f"missing {sorted(names - keys)}")
    if keys - names:
        parts.append(f"extra {sorted(keys - names)}")
    return f" (closest: {title} layout, {', '.join(parts)})"


def _shape_error(path: str, name: str, expected: str, found: tuple[int, ...], layout: str, writing: bool) -> CheckpointError:
    action = "cannot write" if writing else "cannot use"
    return CheckpointError(
        f"{action} model file {path!r}: parameter {name!r} has shape {tuple(found)}, but the {layout} layout "
        f"needs {expected}; the arrays do not belong to one model"
    )


def _gru_sizes(path: str, params: Mapping[str, np.ndarray], *, writing: bool) -> dict:
    """Check the part 4 GRU shapes; return the inferred sizes."""
    layout = _LAYOUT_TITLES["tutorial-gru"]
    E = params["E"]
    if E.ndim != 2 or 0 in E.shape:
        raise _shape_error(path, "E", "2 non-zero dimensions (hidden_dim, word_dim)", E.shape, layout, writing)
    hidden, words = E.shape
    wanted = {
        "U": (6, hidden, hidden),
        "W": (6, hidden, hidden),
        "V": (words, hidden),
        "b": (6, hidden),
        "c": (words,),
    }
    for name, shape in wanted.items():
        if params[name].shape != shape:
            raise _shape_error(path, name, f"{shape} (from E's shape {E.shape})", params[name].shape, layout, writing)
    return {"word_dim": int(words), "hidden_dim": int(hidden), "embedding_dim": int(hidden)}


def _rnn_sizes(path: str, params: Mapping[str, np.ndarray]) -> dict:
    """Check the part 2 RNN shapes; return the inferred sizes."""
    layout = _LAYOUT_TITLES["tutorial-rnn"]
    U = params["U"]
    if U.ndim != 2 or 0 in U.shape:
        raise _shape_error(path, "U", "2 non-zero dimensions (hidden_dim, word_dim)", U.shape, layout, False)
    hidden, words = U.shape
    for name, shape in (("V", (words, hidden)), ("W", (hidden, hidden))):
        if params[name].shape != shape:
            raise _shape_error(path, name, f"{shape} (from U's shape {U.shape})", params[name].shape, layout, False)
    return {"word_dim": int(words), "hidden_dim": int(hidden)}


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def save_tutorial_model(path: str | os.PathLike, E: Any, U: Any, W: Any, V: Any, b: Any, c: Any) -> str:
    """Write a model in the tutorial's part 4 GRU layout, atomically.

    The file has the plain keys ``E``, ``U``, ``W``, ``V``, ``b`` and ``c``, so
    the original tutorial code can read it; it is written at exactly `path`
    (the tutorial's ``numpy.savez(path)`` appended ``.npz`` to other names).

    Parameters
    ----------
    path : str or os.PathLike
        File to write (its directory must exist).
    E : array_like
        Embedding, shape (hidden_dim, word_dim).
    U, W : array_like
        GRU input and recurrent weights, shape (6, hidden_dim, hidden_dim).
    V : array_like
        Output weights, shape (word_dim, hidden_dim).
    b : array_like
        GRU biases, shape (6, hidden_dim).
    c : array_like
        Output bias, shape (word_dim,).

    Returns
    -------
    str
        The path written.

    Raises
    ------
    CheckpointError
        The shapes are inconsistent, an array is not float32/float64 or holds
        NaN/infinity, the directory does not exist, or writing fails.
    TypeError
        An array holds Python objects.
    """
    path_str = os.fspath(path)
    arrays = {}
    for name, value in zip(GRU_NAMES, (E, U, W, V, b, c)):
        arrays[name] = check_parameter_array(path_str, name, plain_array("parameter", name, value), writing=True)
    _gru_sizes(path_str, arrays, writing=True)
    write_npz(path_str, arrays)
    logger.debug("wrote tutorial GRU model %s", path_str)
    return path_str


# --------------------------------------------------------------------------
# Converting to and from symrnn's parameter names
# --------------------------------------------------------------------------


def gru_library_terms(E, U, W, V, b, c, U_in=None, *, concatenate: Callable = np.concatenate) -> dict:
    """symrnn-named parameters of a part 4 GRU, as expressions of the tutorial's.

    Parameters
    ----------
    E : array (D, V)
    U : array (6, H, H), or (3, H, H) (the second layer's) with `U_in`
    W : array (6, H, H)
    V : array (V, H)
    b : array (6, H)
    c : array (V,)
    U_in : array (3, H, D), optional
        The first layer's input weights, when D differs from H.
    concatenate : callable
        ``numpy.concatenate`` for arrays; ``pytensor.tensor.concatenate`` to
        build the same terms from symbolic variables.

    Returns
    -------
    dict
        ``embedding`` (V, D), ``layer0/W_x`` (D, 3H), ``layer0/W_h`` (H, 3H),
        ``layer0/b`` (3H,), ``layer1/...`` likewise, ``output/W`` (H, V),
        ``output/b`` (V,), in this order (views where NumPy allows).
    """

    def gate_blocks(tensor, start):  # [T[start].T | T[start+1].T | T[start+2].T]
        return concatenate([tensor[start + i].T for i in range(3)], axis=1)

    def gate_biases(start):
        return concatenate([b[start + i] for i in range(3)])

    first_input, second_start = (U, 3) if U_in is None else (U_in, 0)
    return {
        "embedding": E.T,
        "layer0/W_x": gate_blocks(first_input, 0),
        "layer0/W_h": gate_blocks(W, 0),
        "layer0/b": gate_biases(0),
        "layer1/W_x": gate_blocks(U, second_start),
        "layer1/W_h": gate_blocks(W, 3),
        "layer1/b": gate_biases(3),
        "output/W": V.T,
        "output/b": c,
    }


def tutorial_to_library(E, U, W, V, b, c, U_in=None) -> "OrderedDict[str, np.ndarray]":
    """Convert part 4 GRU arrays to symrnn's parameter names (see :func:`gru_library_terms`).

    Parameters
    ----------
    E : ndarray (D, V)
    U : ndarray (6, H, H) (or (3, H, H) with ``U_in``)
    W : ndarray (6, H, H)
    V : ndarray (V, H)
    b : ndarray (6, H)
    c : ndarray (V,)
    U_in : ndarray (3, H, D), optional

    Returns
    -------
    OrderedDict name -> ndarray (contiguous copies)
    """
    arrays = [np.asarray(a) for a in (E, U, W, V, b, c)]
    terms = gru_library_terms(*arrays, U_in=None if U_in is None else np.asarray(U_in))
    return OrderedDict((name, np.ascontiguousarray(value)) for name, value in terms.items())


def library_to_tutorial(values: Mapping[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
    """Convert a two-layer GRU's symrnn-named values to the tutorial's ``E, U, W, V, b, c``.

    Requires embedding size == hidden size (the tutorial's layout).

    Returns
    -------
    OrderedDict with E (H, V), U (6, H, H), W (6, H, H), V (V, H), b (6, H), c (V,)

    Raises
    ------
    ValueError
        The embedding size differs from the hidden size.
    KeyError
        A parameter of a two-layer GRU is missing.
    """
    hidden = values["layer0/W_h"].shape[0]
    if values["embedding"].shape[1] != hidden:
        raise ValueError("the tutorial's file layout needs embedding_dim == hidden_dim")

    def split(matrix):  # (X, 3H) -> (3, H, X)
        return np.stack([matrix[:, i * hidden : (i + 1) * hidden].T for i in range(3)])

    U = np.concatenate([split(values["layer0/W_x"]), split(values["layer1/W_x"])])
    W = np.concatenate([split(values["layer0/W_h"]), split(values["layer1/W_h"])])
    b = np.concatenate([values["layer0/b"].reshape(3, hidden), values["layer1/b"].reshape(3, hidden)])
    return OrderedDict(
        E=np.ascontiguousarray(values["embedding"].T), U=U, W=W,
        V=np.ascontiguousarray(values["output/W"].T), b=b, c=np.array(values["output/b"]),
    )


def part2_to_library(U, V, W) -> "OrderedDict[str, np.ndarray]":
    """Convert part 2 RNN arrays (U (H, V), V (V, H), W (H, H)) to a one-layer ``rnn``'s symrnn names.

    Returns
    -------
    OrderedDict
        ``embedding`` (V, H) = ``U.T``, ``layer0/W_x`` (H, H) = identity,
        ``layer0/W_h`` (H, H) = ``W.T``, ``layer0/b`` (H,) = 0,
        ``output/W`` (H, V) = ``V.T``, ``output/b`` (V,) = 0.
    """
    hidden = W.shape[0]
    return OrderedDict(
        [
            ("embedding", np.ascontiguousarray(U.T)),
            ("layer0/W_x", np.eye(hidden, dtype=U.dtype)),
            ("layer0/W_h", np.ascontiguousarray(W.T)),
            ("layer0/b", np.zeros(hidden, dtype=U.dtype)),
            ("output/W", np.ascontiguousarray(V.T)),
            ("output/b", np.zeros(V.shape[0], dtype=U.dtype)),
        ]
    )


def library_model(layout: str, params: Mapping[str, np.ndarray]) -> tuple[dict, "OrderedDict[str, np.ndarray]"]:
    """The symrnn architecture and parameter values of a tutorial file's model.

    Parameters
    ----------
    layout : str
        ``"tutorial-gru"`` or ``"tutorial-rnn"``.
    params : mapping of str to numpy.ndarray
        The file's parameters by their tutorial names (as validated by
        :func:`read_tutorial_layout`).

    Returns
    -------
    architecture : dict
        ``word_dim``, ``embedding_dim``, ``hidden_dim``, ``num_layers``,
        ``cell`` and ``gate``: part 4 is a two-layer ``gru`` and part 2 a
        one-layer ``rnn``, both with the tutorial's ``hard_sigmoid`` gates.
    values : OrderedDict
        The parameters by symrnn's names.
    """
    if layout == "tutorial-gru":
        embedding, words = params["E"].shape
        architecture = dict(word_dim=words, embedding_dim=embedding, hidden_dim=params["W"].shape[1],
                            num_layers=2, cell="gru", gate="hard_sigmoid")
        return architecture, tutorial_to_library(**params)
    if layout == "tutorial-rnn":
        hidden, words = params["U"].shape
        architecture = dict(word_dim=words, embedding_dim=hidden, hidden_dim=hidden,
                            num_layers=1, cell="rnn", gate="hard_sigmoid")
        return architecture, part2_to_library(**params)
    raise ValueError(f"not a tutorial layout: {layout!r}")
