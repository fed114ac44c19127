"""Model files: saving and loading checkpoints safely.

symrnn writes one file format, the *symrnn checkpoint* (format version 1), and
also reads the two layouts of the original tutorial's model files.

symrnn checkpoint (``layout == "symrnn"``)
    A numpy ``.npz`` archive whose members are

    * ``param/<name>``: one model parameter each (float32 or float64, finite),
    * ``opt/<name>``: optimizer state (for example RMSprop caches),
    * ``train/<name>``: training state (epoch, position, random state, ...),
    * ``vocabulary`` (optional): a 1-D numpy unicode array, one word per index,
    * ``settings_json``: a 0-d unicode array holding a JSON object,
    * ``symrnn_format``: a 0-d int64 array holding the format version, 1.

    Nothing is pickled: files are written and read with ``allow_pickle=False``.

Tutorial part 4 GRU file (``layout == "tutorial-gru"``)
    Plain keys ``E`` (H, V), ``U`` and ``W`` (6, H, H), ``V`` (V, H), ``b`` (6, H)
    and ``c`` (V,), as written by ``numpy.savez(path, E=..., ...)``.

Tutorial part 2 RNN file (``layout == "tutorial-rnn"``)
    Plain keys ``U`` (H, V), ``V`` (V, H) and ``W`` (H, H).

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

import json
import logging
import math
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from symrnn.errors import CheckpointError
from symrnn.files import NotARegularFileError, ReplaceRefusedError, atomic_write, open_regular_file

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "load_checkpoint",
    "read_settings_only",
    "save_checkpoint",
    "save_tutorial_model",
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

_GRU_KEYS = frozenset({"E", "U", "W", "V", "b", "c"})
_RNN_KEYS = frozenset({"U", "V", "W"})

# A name is one or more segments separated by "/"; a segment is letters,
# digits and underscores, optionally joined by "." or "-" (never empty,
# never "." or "..").
_NAME_RE = re.compile(r"[A-Za-z0-9_]+(?:[.-][A-Za-z0-9_]+)*(?:/[A-Za-z0-9_]+(?:[.-][A-Za-z0-9_]+)*)*")

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"

# Exceptions that reading a damaged archive can raise from zipfile, zlib,
# bz2/lzma (OSError / their own errors, caught by the generic fallback) and
# numpy.lib.format.
_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    ValueError,
    OSError,
    EOFError,
    zlib.error,
    KeyError,
    IndexError,
    struct.error,
    NotImplementedError,
    RuntimeError,
    OverflowError,
    MemoryError,
    SyntaxError,
    TypeError,
)


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
        array = _as_saveable_array(path_str, "parameter", name, value)
        _check_param_array(path_str, name, array, writing=True)
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
            arrays[prefix + name] = _as_saveable_array(path_str, kind, name, value)

    if vocabulary is not None:
        arrays[_VOCABULARY_KEY] = _vocabulary_array(path_str, vocabulary)
    arrays[_SETTINGS_KEY] = np.array(_settings_json(settings), dtype=str)
    arrays[_FORMAT_KEY] = np.array(FORMAT_VERSION, dtype=np.int64)

    _atomic_savez(path_str, arrays)
    logger.debug(
        "wrote symrnn checkpoint %s (%d parameters, %d members)", path_str, len(params), len(arrays)
    )
    return path_str


def save_tutorial_model(
    path: str | os.PathLike,
    E: Any,
    U: Any,
    W: Any,
    V: Any,
    b: Any,
    c: Any,
) -> str:
    """Write a model in the original tutorial's part 4 GRU layout, atomically.

    The file has the plain keys ``E``, ``U``, ``W``, ``V``, ``b`` and ``c``, so
    the original tutorial code can read it; it is written at exactly `path`.

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
    for name, value in (("E", E), ("U", U), ("W", W), ("V", V), ("b", b), ("c", c)):
        array = _as_saveable_array(path_str, "parameter", name, value)
        _check_param_array(path_str, name, array, writing=True)
        arrays[name] = array
    _tutorial_gru_settings(path_str, arrays, writing=True)
    _atomic_savez(path_str, arrays)
    logger.debug("wrote tutorial GRU model %s", path_str)
    return path_str


def _as_saveable_array(path: str, kind: str, name: Any, value: Any) -> np.ndarray:
    """Check a member name and turn its value into a plain numpy array."""
    if not isinstance(name, str):
        raise TypeError(f"{kind} names must be str, not {type(name).__name__} ({name!r})")
    if not _NAME_RE.fullmatch(name):
        raise CheckpointError(
            f"cannot write model file {path!r}: invalid {kind} name {name!r}; use letters, digits and "
            "underscores, optionally joined by '/', '.' or '-'"
        )
    array = np.asarray(value)
    if array.dtype.hasobject or array.dtype.kind not in "biufcUS":
        raise TypeError(
            f"{kind} {name!r} has dtype {array.dtype} (Python objects or an unsupported type); "
            "only numeric, bool and string arrays can be saved (nothing is pickled)"
        )
    return array


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


def _json_value(value: Any, where: str) -> Any:
    """Return `value` as plain JSON types, or raise TypeError saying why not."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic) and not isinstance(value, (np.str_, np.bytes_, np.void)):
        value = value.item()
        if isinstance(value, (bool, str)) or value is None:
            return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"settings value {where} is {value!r}; NaN and infinity are not JSON")
        return float(value)
    if isinstance(value, np.str_):
        return str(value)
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"settings key {key!r} in {where} is {type(key).__name__}, not str")
            result[key] = _json_value(item, f"{where}[{key!r}]")
        return result
    if isinstance(value, (list, tuple)):
        return [_json_value(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(f"settings value {where} is {type(value).__name__} ({value!r}), which is not JSON-serialisable")


def _settings_json(settings: Mapping[str, Any] | None) -> str:
    """Serialise the settings dict to JSON text."""
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping):
        raise TypeError(f"settings must be a dict, not {type(settings).__name__}")
    plain = _json_value(settings, "settings")
    return json.dumps(plain, allow_nan=False, ensure_ascii=False)


def _atomic_savez(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` as an .npz archive at exactly `path`, atomically (:func:`symrnn.files.atomic_write`)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CheckpointError(
            f"cannot write model file {path!r}: directory {directory!r} does not exist; create it first"
        )
    try:
        # Writing to the open file object: numpy never renames it.
        atomic_write(path, lambda handle: np.savez(handle, allow_pickle=False, **arrays))
    except ReplaceRefusedError as exc:
        raise CheckpointError(f"cannot write model file {path!r}: {exc.strerror}") from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise CheckpointError(
            f"cannot write model file {path!r}: {reason}; check free disk space and permissions "
            "(any previous file there is unchanged)"
        ) from exc


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
    members = _read_members(path_str, expected_shapes)
    keys = set(members)
    if _FORMAT_KEY in keys:
        checkpoint = _interpret_symrnn(path_str, members)
    elif keys == _GRU_KEYS:
        params = _tutorial_params(path_str, members, ("E", "U", "W", "V", "b", "c"))
        settings = _tutorial_gru_settings(path_str, params, writing=False)
        checkpoint = Checkpoint(params=params, settings=settings, layout="tutorial-gru", path=path_str)
    elif keys == _RNN_KEYS:
        params = _tutorial_params(path_str, members, ("U", "V", "W"))
        settings = _tutorial_rnn_settings(path_str, params)
        checkpoint = Checkpoint(params=params, settings=settings, layout="tutorial-rnn", path=path_str)
    else:
        raise CheckpointError(_unknown_layout_message(path_str, keys))
    _check_expected(path_str, checkpoint.params, expected_shapes, expected_dtype)
    logger.debug("loaded %s model file %s (%d parameters)", checkpoint.layout, path_str, len(checkpoint.params))
    return checkpoint


def read_settings_only(path: str | os.PathLike) -> dict:
    """Return the settings of a model file.

    The whole file is read and validated as by :func:`load_checkpoint`, so a
    damaged file is reported here too.

    Parameters
    ----------
    path : str or os.PathLike
        The model file.

    Returns
    -------
    dict
        The saved settings (for tutorial layouts, the inferred sizes).

    Raises
    ------
    CheckpointError
        As :func:`load_checkpoint`.
    """
    return load_checkpoint(path).settings


def _corrupt(path: str, detail: str) -> CheckpointError:
    return CheckpointError(
        f"model file {path!r} is truncated or corrupt ({detail}); restore it from a backup or re-save the model"
    )


def _npy_header(member: Any) -> tuple[int, int | None, bool, tuple | None] | None:
    """Read a .npy member's header.

    Returns
    -------
    tuple or None
        ``(header_length, data_bytes, holds_objects, shape)``: the header's
        length in bytes (magic included), the number of data bytes it
        describes (None when the header version cannot be parsed here or the
        array holds pickled objects), whether its dtype holds Python objects
        and the shape it declares (None where ``data_bytes`` is); or None when
        the member is not a .npy array at all.
    """
    start = member.read(12)
    if len(start) < 10 or not start.startswith(_NPY_MAGIC):
        return None
    major = start[6]
    if major == 1:
        length = 10 + struct.unpack("<H", start[8:10])[0]
    elif len(start) == 12:
        length = 12 + struct.unpack("<I", start[8:12])[0]
    else:
        return None
    if major not in (1, 2):
        return length, None, False, None
    member.seek(0)
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    if dtype.hasobject:
        return length, None, True, None
    return length, math.prod(int(n) for n in shape) * dtype.itemsize, False, tuple(int(n) for n in shape)


# A deflated member may inflate to at most this many times its compressed
# size (deflate reaches about 1000 on zeros; float parameters compress barely
# at all), beyond a small allowance; the whole archive likewise. symrnn and
# numpy.savez store members uncompressed, so this only limits
# numpy.savez_compressed files, and stops decompression bombs.
_MAX_COMPRESSION_RATIO = 200
_INFLATE_ALLOWANCE = 64 * 2**20


def _check_declared_sizes(path: str, infos: list, archive_size: int) -> None:
    """Refuse members whose declared sizes are impossible or a decompression bomb,
    before anything is inflated."""
    total = 0
    for info in infos:
        total += info.file_size
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise _corrupt(path, f"stored member {info.filename!r} declares {info.file_size} bytes but holds "
                               f"{info.compress_size}")
        elif info.file_size > max(_INFLATE_ALLOWANCE, _MAX_COMPRESSION_RATIO * info.compress_size):
            raise _bomb(path, f"member {info.filename!r} would inflate from {info.compress_size} to {info.file_size} bytes")
    if total > max(_INFLATE_ALLOWANCE, _MAX_COMPRESSION_RATIO * archive_size):
        raise _bomb(path, f"its members would inflate to {total} bytes from a file of {archive_size}")


def _bomb(path: str, detail: str) -> CheckpointError:
    return CheckpointError(
        f"model file {path!r} is refused: {detail}, more than any model file compresses (a damaged file or a "
        "decompression bomb); use a file written by symrnn or numpy.savez"
    )


def _check_declared_shape(path: str, name: str, shape: tuple, expected_shapes) -> None:
    """Compare a parameter member's declared shape with the one expected, before inflating it."""
    if expected_shapes is None:
        return
    param = name[len(_PARAM_PREFIX):] if name.startswith(_PARAM_PREFIX) else name
    if param in expected_shapes and shape != tuple(int(n) for n in expected_shapes[param]):
        raise CheckpointError(
            f"model file {path!r}: parameter {param!r} has shape {shape} but "
            f"{tuple(int(n) for n in expected_shapes[param])} was expected; the file was saved with different model "
            "sizes: check the settings (word_dim, hidden_dim, ...)"
        )


def _open_model_file(path: str):
    """Open a model file that is a regular file (never blocking on a pipe or reading a device)."""
    if not os.path.exists(path):
        raise CheckpointError(f"model file {path!r} does not exist; check the path")
    if os.path.isdir(path):
        raise CheckpointError(f"model file {path!r} is a directory, not a file; give the path of the model file")
    try:
        return open_regular_file(path)
    except NotARegularFileError as exc:
        raise CheckpointError(
            f"model file {path!r} is {exc.kind}, not a regular file; give the path of a model file (.npz)"
        ) from None
    except OSError as exc:
        raise CheckpointError(
            f"cannot read model file {path!r}: {exc.strerror or exc}; check that it is readable"
        ) from exc


def _read_members(path: str, expected_shapes: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, np.ndarray]:
    """Read every member of an .npz archive fully, turning every failure
    into a CheckpointError.

    Declared sizes (:func:`_check_declared_sizes`) and each member's .npy
    header (its size, dtype and, where ``expected_shapes`` names it, shape)
    are checked before the member is inflated.
    """
    with _open_model_file(path) as handle:
        try:
            head = handle.read(8)
            archive_size = os.fstat(handle.fileno()).st_size
            handle.seek(0)
        except OSError as exc:
            raise CheckpointError(
                f"cannot read model file {path!r}: {exc.strerror or exc}; check that it is readable"
            ) from exc
        _check_magic(path, head)
        return _read_npz(path, handle, archive_size, expected_shapes)


def _check_magic(path: str, head: bytes) -> None:
    if not head:
        raise CheckpointError(
            f"model file {path!r} is empty (0 bytes), probably from an interrupted write; "
            "restore it from a backup or re-save the model"
        )
    if head.startswith(_NPY_MAGIC):
        raise CheckpointError(
            f"model file {path!r} is a single .npy array, not a model file (.npz archive); "
            "give a file written by symrnn or the tutorial's numpy.savez"
        )
    if not head.startswith(_ZIP_MAGICS):
        if head[:1] == b"\x80":
            raise CheckpointError(
                f"model file {path!r} is a Python pickle, not a model file; symrnn never loads pickles: "
                "give an .npz file written by symrnn or numpy.savez"
            )
        raise CheckpointError(
            f"model file {path!r} is not a model file (not a numpy .npz archive); "
            "give a file written by symrnn or the tutorial's numpy.savez"
        )


def _read_npz(path: str, handle, archive_size: int, expected_shapes) -> dict[str, np.ndarray]:
    members: dict[str, np.ndarray] = {}
    current = None
    try:
        with np.load(handle, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):  # pragma: no cover - excluded by magic check
                raise CheckpointError(f"model file {path!r} is not a model file (.npz archive)")
            _check_declared_sizes(path, npz.zip.infolist(), archive_size)
            bad = npz.zip.testzip()
            if bad is not None:
                raise _corrupt(path, f"member {bad!r} fails its checksum")
            names = set(npz.zip.namelist())
            for name in npz.files:
                current = name
                member_name = name + ".npy" if name + ".npy" in names else name
                info = npz.zip.getinfo(member_name)
                with npz.zip.open(info) as member:
                    header = _npy_header(member)
                if header is None:
                    raise CheckpointError(
                        f"model file {path!r} is not a model file: member {name!r} is not a numpy array; "
                        "give a file written by symrnn or numpy.savez"
                    )
                header_length, data_bytes, holds_objects, shape = header
                if holds_objects:
                    raise _pickled(path, name)
                if data_bytes is not None and header_length + data_bytes != info.file_size:
                    # Checked before numpy allocates the array the header describes.
                    raise _corrupt(path, f"member {name!r} is {info.file_size} bytes but its header describes "
                                   f"{header_length + data_bytes}")
                if shape is not None:
                    _check_declared_shape(path, name, shape, expected_shapes)
                value = npz[name]
                if not isinstance(value, np.ndarray):  # pragma: no cover - excluded by header check
                    raise _corrupt(path, f"member {name!r} is not a numpy array")
                if header_length + value.nbytes != info.file_size:
                    raise _corrupt(path, f"member {name!r} is {info.file_size} bytes but its header describes "
                                   f"{header_length + value.nbytes}")
                members[name] = value
    except CheckpointError:
        raise
    except _READ_ERRORS as exc:
        raise _classify_read_error(path, current, exc) from exc
    except Exception as exc:  # noqa: BLE001 - any other decoder failure means a damaged file
        logger.debug("unexpected %s while reading %s", type(exc).__name__, path, exc_info=True)
        raise _classify_read_error(path, current, exc) from exc
    return members


def _pickled(path: str, member: str | None) -> CheckpointError:
    what = f"member {member!r}" if member is not None else "an object array"
    return CheckpointError(
        f"model file {path!r} holds pickled objects ({what}), which symrnn never loads for safety; "
        "re-save the model with plain numeric and string arrays"
    )


def _classify_read_error(path: str, member: str | None, exc: BaseException) -> CheckpointError:
    text = str(exc)
    where = f"member {member!r}: " if member is not None else ""
    if isinstance(exc, ValueError) and ("allow_pickle" in text or "Object arrays" in text or "pickled" in text):
        return _pickled(path, member)
    if isinstance(exc, MemoryError):
        return _corrupt(path, f"{where}an array header claims more memory than is available")
    detail = f"{where}{type(exc).__name__}: {text}" if text else f"{where}{type(exc).__name__}"
    detail = " ".join(detail.split())  # keep the message on one line
    if len(detail) > 200:
        detail = detail[:197] + "..."
    return _corrupt(path, detail)


def _check_param_array(path: str, name: str, array: np.ndarray, *, writing: bool) -> np.ndarray:
    """Check one parameter is float32/float64 and finite; return it in native byte order."""
    action = "cannot write" if writing else "cannot use"
    if array.dtype.kind != "f" or array.dtype.itemsize not in (4, 8):
        raise CheckpointError(
            f"{action} model file {path!r}: parameter {name!r} has dtype {array.dtype}, but model "
            "parameters must be float32 or float64"
            + ("; convert it first" if writing else "; the file is not a valid model file")
        )
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if not np.all(np.isfinite(array)):
        raise CheckpointError(
            f"{action} model file {path!r}: parameter {name!r} holds NaN or infinite values "
            + ("(training diverged?); lower the learning rate or resume from an earlier checkpoint"
               if writing else "(training diverged or the file is damaged); use an earlier checkpoint")
        )
    return array


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
        params[name] = _check_param_array(path, name, params[name], writing=False)
    return Checkpoint(
        params=params,
        vocabulary=vocabulary,
        settings=settings,
        optimizer_state=optimizer_state,
        training_state=training_state,
        layout="symrnn",
        path=path,
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_settings(path: str, array: np.ndarray) -> dict:
    """Parse the settings_json member into a dict."""
    if array.ndim != 0 or array.dtype.kind != "U":
        raise CheckpointError(
            f"model file {path!r} has an invalid {_SETTINGS_KEY} member (dtype {array.dtype}, shape "
            f"{array.shape}); it must be a 0-d unicode array: re-save the model"
        )
    text = str(array[()])
    try:
        settings = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(
            f"model file {path!r} has settings that are not valid JSON ({' '.join(str(exc).split())[:120]}); "
            "re-save the model"
        ) from exc
    if not isinstance(settings, dict):
        raise CheckpointError(
            f"model file {path!r} has settings that are a JSON {type(settings).__name__}, not a JSON object; "
            "re-save the model"
        )
    return settings


def _tutorial_params(path: str, members: dict[str, np.ndarray], order: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {name: _check_param_array(path, name, members[name], writing=False) for name in order}


def _shape_error(path: str, name: str, expected: str, found: tuple[int, ...], layout: str, writing: bool) -> CheckpointError:
    action = "cannot write" if writing else "cannot use"
    return CheckpointError(
        f"{action} model file {path!r}: parameter {name!r} has shape {tuple(found)}, but the {layout} layout "
        f"needs {expected}; the arrays do not belong to one model"
    )


def _tutorial_gru_settings(path: str, params: Mapping[str, np.ndarray], *, writing: bool) -> dict:
    """Check the part 4 GRU shapes; return the inferred sizes."""
    layout = "tutorial GRU"
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


def _tutorial_rnn_settings(path: str, params: Mapping[str, np.ndarray]) -> dict:
    """Check the part 2 RNN shapes; return the inferred sizes."""
    layout = "tutorial RNN"
    U = params["U"]
    if U.ndim != 2 or 0 in U.shape:
        raise _shape_error(path, "U", "2 non-zero dimensions (hidden_dim, word_dim)", U.shape, layout, False)
    hidden, words = U.shape
    for name, shape in (("V", (words, hidden)), ("W", (hidden, hidden))):
        if params[name].shape != shape:
            raise _shape_error(path, name, f"{shape} (from U's shape {U.shape})", params[name].shape, layout, False)
    return {"word_dim": int(words), "hidden_dim": int(hidden)}


def _unknown_layout_message(path: str, keys: set[str]) -> str:
    listed = sorted(keys)
    hint = ""
    best = max(
        (("tutorial GRU", _GRU_KEYS), ("tutorial RNN", _RNN_KEYS)),
        key=lambda item: len(keys & item[1]) - len(keys - item[1]),
    )
    if len(keys & best[1]) >= 2 and not any(k.startswith((_PARAM_PREFIX, _OPT_PREFIX, _TRAIN_PREFIX)) for k in keys):
        parts = []
        missing = sorted(best[1] - keys)
        extra = sorted(keys - best[1])
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"extra {extra}")
        hint = f" (closest: {best[0]} layout, {', '.join(parts)})"
    elif any(k.startswith(_PARAM_PREFIX) for k in keys):
        hint = f" (looks like a symrnn checkpoint without its {_FORMAT_KEY} member)"
    text = (
        f"model file {path!r} has an unknown layout: keys {listed}{hint}; expected a symrnn checkpoint or a "
        "tutorial file with keys E, U, W, V, b, c (GRU) or U, V, W (RNN)"
    )
    return " ".join(text.split())


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
                raise CheckpointError(
                    f"model file {path!r}: parameter {name!r} has shape {params[name].shape} but {wanted} was "
                    "expected; the file was saved with different model sizes: check the settings (word_dim, "
                    "hidden_dim, ...)"
                )
    if expected_dtype is not None:
        wanted_dtype = np.dtype(expected_dtype)
        for name, array in params.items():
            if array.dtype != wanted_dtype:
                raise CheckpointError(
                    f"model file {path!r}: parameter {name!r} has dtype {array.dtype} but {wanted_dtype} was "
                    "expected; convert the file or change the float type setting"
                )
