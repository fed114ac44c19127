"""The symrnn checkpoint: symrnn's model file format, saved and loaded safely.

symrnn writes one file format, the *symrnn checkpoint* (format version 1): a
numpy ``.npz`` archive (read and written by :mod:`symrnn.npz`) whose members are

* ``param/<name>``: one model parameter each (float32 or float64, finite),
* ``opt/<name>``: optimizer state (for example RMSprop caches),
* ``train/<name>``: training state (epoch, position, random state, ...),
* ``vocabulary`` (optional): a 1-D numpy unicode array, one word per index,
* ``settings_json``: a 0-d unicode array holding a JSON object,
* ``symrnn_format``: a 0-d int64 array holding the format version, 1.

Nothing is pickled: files are written and read with ``allow_pickle=False``.
:func:`load_checkpoint` also reads the original tutorial's two layouts, which
:mod:`symrnn.legacy` knows (``layout`` ``"tutorial-gru"`` and ``"tutorial-rnn"``).

Every file is written atomically: into a temporary file in the target
directory, flushed and fsynced, then renamed over the target. A failed write
leaves any previous file untouched; a folder, a special file (device, FIFO,
socket) or a read-only file at the path is never replaced. Unlike the original tutorial (whose
``numpy.savez(path)`` silently appended ``.npz`` to names without that suffix),
the file is written at exactly the path given.

Every problem with a model file raises :class:`symrnn.errors.CheckpointError`
with a one-line message naming the file, what is wrong and what to do.
Loading never writes anything.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from symrnn import legacy
from symrnn.errors import CheckpointError
from symrnn.npz import check_parameter_array, plain_array, read_npz, write_npz
from symrnn.settings_json import settings_from_json, settings_to_json

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "load_checkpoint",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

#: Version of the symrnn checkpoint format this module writes and reads.
FORMAT_VERSION = 1

_FORMAT_KEY = "symrnn_format"
_SETTINGS_KEY = "settings_json"
_VOCABULARY_KEY = "vocabulary"
_PARAM_PREFIX = "param/"
_OPT_PREFIX = "opt/"
_TRAIN_PREFIX = "train/"

# A name is one or more segments separated by "/"; a segment is letters,
# digits and underscores, optionally joined by "." or "-" (never empty,
# never "." or "..").
_NAME_RE = re.compile(r"[A-Za-z0-9_]+(?:[.-][A-Za-z0-9_]+)*(?:/[A-Za-z0-9_]+(?:[.-][A-Za-z0-9_]+)*)*")


@dataclass
class Checkpoint:
    """Everything read from one model file.

    Attributes
    ----------
    params : dict of str to numpy.ndarray
        Model parameters by name, float32 or float64, all finite, in the
        order they were saved.
    vocabulary : list of str or None
        Word of each index, or None when the file holds no vocabulary (always
        None for the tutorial layouts).
    settings : dict
        Settings saved with the model. For tutorial layouts, the sizes inferred
        from the arrays: ``word_dim`` and ``hidden_dim`` (and ``embedding_dim``,
        equal to ``hidden_dim``, for the GRU layout).
    optimizer_state : dict of str to numpy.ndarray
        Optimizer state by name (empty for tutorial layouts).
    training_state : dict of str to numpy.ndarray
        Training state by name (empty for tutorial layouts).
    layout : str
        ``"symrnn"``, ``"tutorial-gru"`` or ``"tutorial-rnn"``.
    path : str
        The file this was read from.
    """

    params: dict[str, np.ndarray]
    vocabulary: list[str] | None = None
    settings: dict = field(default_factory=dict)
    optimizer_state: dict[str, np.ndarray] = field(default_factory=dict)
    training_state: dict[str, np.ndarray] = field(default_factory=dict)
    layout: str = "symrnn"
    path: str = ""


# --------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------


def save_checkpoint(
    path: str | os.PathLike,
    params: Mapping[str, Any],
    *,
    vocabulary: list[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    optimizer_state: Mapping[str, Any] | None = None,
    training_state: Mapping[str, Any] | None = None,
) -> str:
    """Write a symrnn checkpoint (format version 1) atomically.

    Parameters
    ----------
    path : str or os.PathLike
        File to write, at exactly this path whatever its suffix. Its directory
        must exist. An existing file is replaced only once the new one is
        completely written.
    params : mapping of str to array_like
        Model parameters (numpy arrays or scalars), float32 or float64 and
        finite. Names are letters, digits and underscores, optionally joined
        by ``/``, ``.`` or ``-`` (for example ``E``, ``W_x_0``, ``gru0/U``).
    vocabulary : list of str, optional
        Word of each index; stored as a 1-D numpy unicode array.
    settings : mapping, optional
        JSON-serialisable settings (str keys; numpy scalars are converted to
        Python numbers; NaN and infinity are not allowed).
    optimizer_state : mapping of str to array_like, optional
        Optimizer state arrays (any numeric, bool or string dtype).
    training_state : mapping of str to array_like, optional
        Training state arrays (any numeric, bool or string dtype).

    Returns
    -------
    str
        The path written.

    Raises
    ------
    CheckpointError
        The directory does not exist, the path is a directory, a special
        file or a read-only file (see :func:`symrnn.paths.replace_problem`), a name is
        invalid, there are no parameters, a parameter is not float32/float64
        or holds NaN/infinity, a word holds a NUL character, or writing fails.
    TypeError
        An argument has the wrong type: a mapping or the vocabulary is not
        one, a value holds Python objects, or settings are not
        JSON-serialisable.
    """
    path_str = os.fspath(path)
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping of name to array, not {type(params).__name__}")
    if len(params) == 0:
        raise CheckpointError(
            f"refusing to write model file {path_str!r}: no parameters given; pass the model's parameters"
        )

    arrays: dict[str, np.ndarray] = {}
    for name, value in params.items():
        array = _saveable_array(path_str, "parameter", name, value)
        check_parameter_array(path_str, name, array, writing=True)
        arrays[_PARAM_PREFIX + name] = array
    for kind, prefix, mapping in (
        ("optimizer state", _OPT_PREFIX, optimizer_state),
        ("training state", _TRAIN_PREFIX, training_state),
    ):
        if mapping is None:
            continue
        if not isinstance(mapping, Mapping):
            raise TypeError(f"{kind} must be a mapping of name to array, not {type(mapping).__name__}")
        for name, value in mapping.items():
            arrays[prefix + name] = _saveable_array(path_str, kind, name, value)

    if vocabulary is not None:
        arrays[_VOCABULARY_KEY] = _vocabulary_array(path_str, vocabulary)
    arrays[_SETTINGS_KEY] = np.array(settings_to_json(settings), dtype=str)
    arrays[_FORMAT_KEY] = np.array(FORMAT_VERSION, dtype=np.int64)

    write_npz(path_str, arrays)
    logger.debug(
        "wrote symrnn checkpoint %s (%d parameters, %d members)", path_str, len(params), len(arrays)
    )
    return path_str


def _saveable_array(path: str, kind: str, name: Any, value: Any) -> np.ndarray:
    """Check a member name and turn its value into a plain numpy array."""
    if not isinstance(name, str):
        raise TypeError(f"{kind} names must be str, not {type(name).__name__} ({name!r})")
    if not _NAME_RE.fullmatch(name):
        raise CheckpointError(
            f"cannot write model file {path!r}: invalid {kind} name {name!r}; use letters, digits and "
            "underscores, optionally joined by '/', '.' or '-'"
        )
    return plain_array(kind, name, value)


def _vocabulary_array(path: str, vocabulary: Any) -> np.ndarray:
    """Turn a list of words into a 1-D numpy unicode array."""
    if isinstance(vocabulary, (str, bytes)) or not hasattr(vocabulary, "__iter__"):
        raise TypeError(f"vocabulary must be a list of str, not {type(vocabulary).__name__}")
    words = list(vocabulary)
    for index, word in enumerate(words):
        if not isinstance(word, str):
            raise TypeError(f"vocabulary entry {index} is {type(word).__name__} ({word!r}), not str")
        if "\x00" in word:
            raise CheckpointError(
                f"cannot write model file {path!r}: vocabulary entry {index} ({word!r}) holds a NUL "
                "character, which numpy string arrays cannot keep; remove it from the vocabulary"
            )
    if not words:
        return np.zeros(0, dtype="<U1")
    return np.array(words, dtype=str)


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def load_checkpoint(
    path: str | os.PathLike,
    *,
    expected_shapes: Mapping[str, tuple[int, ...]] | None = None,
    expected_dtype: Any = None,
) -> Checkpoint:
    """Read and validate a model file (symrnn checkpoint or tutorial layout).

    Every member is read completely and checked before anything is returned;
    nothing is ever written.

    Parameters
    ----------
    path : str or os.PathLike
        The model file.
    expected_shapes : mapping of str to tuple of int, optional
        If given, the parameters must be exactly these names with exactly
        these shapes (no missing and no extra names).
    expected_dtype : numpy dtype-like, optional
        If given, every parameter must have this dtype.

    Returns
    -------
    Checkpoint
        The parameters, vocabulary, settings, optimizer and training state,
        and the layout detected.

    Raises
    ------
    CheckpointError
        The file is missing, a directory, not a regular file (a named pipe,
        a device, a socket: refused without blocking), empty, not an ``.npz``
        archive (a single ``.npy`` array, a pickle, anything else), truncated
        or corrupt, declares members that would inflate beyond any model file
        (a decompression bomb; checked before inflating, as are the arrays'
        declared sizes and, with `expected_shapes`, shapes),
        holds pickled objects, has an unknown layout or an unsupported format
        version, has invalid settings or vocabulary, has a parameter that is
        not float32/float64 or not finite, has inconsistent tutorial shapes,
        or does not match `expected_shapes` / `expected_dtype`.
    """
    path_str = os.fspath(path)
    members = read_npz(path_str, _declared_shape_check(path_str, expected_shapes))
    if _FORMAT_KEY in members:
        checkpoint = _interpret_symrnn(path_str, members)
    else:
        tutorial = legacy.read_tutorial_layout(path_str, members)
        if tutorial is None:
            raise CheckpointError(_unknown_layout_message(path_str, set(members)))
        layout, params, settings = tutorial
        checkpoint = Checkpoint(params=params, settings=settings, layout=layout, path=path_str)
    _check_expected(path_str, checkpoint.params, expected_shapes, expected_dtype)
    logger.debug("loaded %s model file %s (%d parameters)", checkpoint.layout, path_str, len(checkpoint.params))
    return checkpoint


def _interpret_symrnn(path: str, members: dict[str, np.ndarray]) -> Checkpoint:
    """Validate and unpack a symrnn checkpoint's members."""
    fmt = members[_FORMAT_KEY]
    if fmt.ndim != 0 or fmt.dtype.kind not in "iu":
        raise CheckpointError(
            f"model file {path!r} has an invalid {_FORMAT_KEY} member (dtype {fmt.dtype}, shape "
            f"{fmt.shape}); the file is damaged: restore it from a backup or re-save the model"
        )
    version = int(fmt[()])
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"model file {path!r} uses symrnn checkpoint format version {version}, but this symrnn reads only "
            f"version {FORMAT_VERSION}; use the symrnn version that wrote it"
        )

    if _SETTINGS_KEY not in members:
        raise CheckpointError(
            f"model file {path!r} lacks its {_SETTINGS_KEY} member; the file is damaged: restore it from a "
            "backup or re-save the model"
        )
    settings = _parse_settings(path, members[_SETTINGS_KEY])

    vocabulary = None
    if _VOCABULARY_KEY in members:
        vocab = members[_VOCABULARY_KEY]
        if vocab.ndim != 1 or vocab.dtype.kind != "U":
            raise CheckpointError(
                f"model file {path!r} has an invalid vocabulary (dtype {vocab.dtype}, shape {vocab.shape}); "
                "it must be a 1-D unicode array: re-save the model"
            )
        vocabulary = [str(word) for word in vocab.tolist()]

    params: dict[str, np.ndarray] = {}
    optimizer_state: dict[str, np.ndarray] = {}
    training_state: dict[str, np.ndarray] = {}
    for key, value in members.items():
        if key in (_FORMAT_KEY, _SETTINGS_KEY, _VOCABULARY_KEY):
            continue
        for prefix, target in ((_PARAM_PREFIX, params), (_OPT_PREFIX, optimizer_state), (_TRAIN_PREFIX, training_state)):
            if key.startswith(prefix):
                name = key[len(prefix):]
                if not _NAME_RE.fullmatch(name):
                    raise CheckpointError(
                        f"model file {path!r} has a member with an invalid name {key!r}; the file is damaged "
                        "or not written by symrnn: re-save the model"
                    )
                target[name] = value
                break
        else:
            raise CheckpointError(
                f"model file {path!r} has an unexpected member {key!r} for a symrnn checkpoint; the file is "
                "damaged or not written by symrnn: re-save the model"
            )
    if not params:
        raise CheckpointError(
            f"model file {path!r} holds no parameters (no 'param/...' members); re-save the model"
        )
    for name in list(params):
        params[name] = check_parameter_array(path, name, params[name], writing=False)
    return Checkpoint(
        params=params,
        vocabulary=vocabulary,
        settings=settings,
        optimizer_state=optimizer_state,
        training_state=training_state,
        layout="symrnn",
        path=path,
    )


def _parse_settings(path: str, array: np.ndarray) -> dict:
    """Parse the settings_json member into a dict."""
    if array.ndim != 0 or array.dtype.kind != "U":
        raise CheckpointError(
            f"model file {path!r} has an invalid {_SETTINGS_KEY} member (dtype {array.dtype}, shape "
            f"{array.shape}); it must be a 0-d unicode array: re-save the model"
        )
    return settings_from_json(path, str(array[()]))


def _unknown_layout_message(path: str, keys: set[str]) -> str:
    if any(key.startswith((_PARAM_PREFIX, _OPT_PREFIX, _TRAIN_PREFIX)) for key in keys):
        hint = (f" (looks like a symrnn checkpoint without its {_FORMAT_KEY} member)"
                if any(key.startswith(_PARAM_PREFIX) for key in keys) else "")
    else:
        hint = legacy.closest_layout_hint(keys)
    text = (
        f"model file {path!r} has an unknown layout: keys {sorted(keys)}{hint}; expected a symrnn checkpoint or "
        f"{legacy.LAYOUTS_TEXT}"
    )
    return " ".join(text.split())


def _shape_mismatch(path: str, name: str, found: tuple[int, ...], wanted: tuple[int, ...]) -> CheckpointError:
    return CheckpointError(
        f"model file {path!r}: parameter {name!r} has shape {found} but {wanted} was expected; the file was "
        "saved with different model sizes: check the settings (word_dim, hidden_dim, ...)"
    )


def _declared_shape_check(path: str, expected_shapes: Mapping[str, tuple[int, ...]] | None):
    """A :func:`symrnn.npz.read_npz` shape check: parameters of the wrong size are refused before inflating."""
    if expected_shapes is None:
        return None
    wanted = {name: tuple(int(n) for n in shape) for name, shape in expected_shapes.items()}

    def check(member: str, shape: tuple[int, ...]) -> None:
        name = member[len(_PARAM_PREFIX):] if member.startswith(_PARAM_PREFIX) else member
        if name in wanted and shape != wanted[name]:
            raise _shape_mismatch(path, name, shape, wanted[name])

    return check


def _check_expected(
    path: str,
    params: dict[str, np.ndarray],
    expected_shapes: Mapping[str, tuple[int, ...]] | None,
    expected_dtype: Any,
) -> None:
    """Compare the parameters with the shapes/dtype the caller expects."""
    if expected_shapes is not None:
        missing = [name for name in expected_shapes if name not in params]
        if missing:
            raise CheckpointError(
                f"model file {path!r} lacks parameter(s) {missing} that the model needs; it was saved from a "
                "different model: check the model settings or the file"
            )
        extra = [name for name in params if name not in expected_shapes]
        if extra:
            raise CheckpointError(
                f"model file {path!r} has parameter(s) {extra} that the model does not have; it was saved from "
                "a different model: check the model settings or the file"
            )
        for name, shape in expected_shapes.items():
            wanted = tuple(int(n) for n in shape)
            if params[name].shape != wanted:
                raise _shape_mismatch(path, name, params[name].shape, wanted)
    if expected_dtype is not None:
        wanted_dtype = np.dtype(expected_dtype)
        for name, array in params.items():
            if array.dtype != wanted_dtype:
                raise CheckpointError(
                    f"model file {path!r}: parameter {name!r} has dtype {array.dtype} but {wanted_dtype} was "
                    "expected; convert the file or change the float type setting"
                )
