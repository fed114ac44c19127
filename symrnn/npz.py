"""Model files as numpy ``.npz`` archives: hardened reading, atomic writing, parameter checks.

Every model file symrnn reads or writes, whatever its layout (the symrnn
checkpoint of :mod:`symrnn.checkpoint`, the tutorial's files of
:mod:`symrnn.legacy`), is an ``.npz`` archive of ``.npy`` members. This module
knows the archive and nothing about the layouts:

* :func:`read_npz` reads every member of a regular file (a named pipe, a
  device or a socket is refused without blocking), with ``allow_pickle=False``.
  Before anything is inflated it checks the archive's magic bytes, the
  members' declared sizes (a decompression bomb is refused), their checksums,
  and each member's ``.npy`` header (dtype, shape, size); every failure is a
  one-line :class:`symrnn.errors.CheckpointError` naming the file.
* :func:`write_npz` writes an archive at exactly the path given, atomically
  (:func:`symrnn.files.atomic_write`): a failed write leaves any previous file
  untouched.
* :func:`plain_array` and :func:`check_parameter_array` are the checks every
  member and every model parameter passes (no Python objects; parameters
  float32/float64 and finite).

NumPy only: no PyTensor.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import zipfile
import zlib
from typing import Any, BinaryIO, Callable

import numpy as np

from symrnn.errors import CheckpointError
from symrnn.files import NotARegularFileError, open_regular_file, write_or_raise

__all__ = ["check_parameter_array", "plain_array", "read_npz", "write_npz"]

logger = logging.getLogger(__name__)

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

# A deflated member may inflate to at most this many times its compressed
# size (deflate reaches about 1000 on zeros; float parameters compress barely
# at all), beyond a small allowance; the whole archive likewise. symrnn and
# numpy.savez store members uncompressed, so this only limits
# numpy.savez_compressed files, and stops decompression bombs.
_MAX_COMPRESSION_RATIO = 200
_INFLATE_ALLOWANCE = 64 * 2**20


# --------------------------------------------------------------------------
# Checks shared by every layout
# --------------------------------------------------------------------------


def plain_array(kind: str, name: str, value: Any) -> np.ndarray:
    """Turn a value to be saved into a plain numpy array (numeric, bool or string).

    Parameters
    ----------
    kind : str
        What the value is, for messages ("parameter", "training state", ...).
    name : str
        Its name, for messages.
    value : array_like

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    TypeError
        The value holds Python objects or has an unsupported dtype (nothing is pickled).
    """
    array = np.asarray(value)
    if array.dtype.hasobject or array.dtype.kind not in "biufcUS":
        raise TypeError(
            f"{kind} {name!r} has dtype {array.dtype} (Python objects or an unsupported type); "
            "only numeric, bool and string arrays can be saved (nothing is pickled)"
        )
    return array


def check_parameter_array(path: str, name: str, array: np.ndarray, *, writing: bool) -> np.ndarray:
    """Check one model parameter is float32/float64 and finite.

    Parameters
    ----------
    path : str
        The model file, for messages.
    name : str
        The parameter's name, for messages.
    array : numpy.ndarray
    writing : bool
        Whether the file is being written (the messages say what to do).

    Returns
    -------
    numpy.ndarray
        `array` in native byte order.

    Raises
    ------
    CheckpointError
        The dtype is not float32/float64, or a value is NaN or infinite.
    """
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


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` as an ``.npz`` archive at exactly `path`, atomically.

    Parameters
    ----------
    path : str
        The file; its directory must exist. Whatever its suffix, no ``.npz``
        is appended.
    arrays : dict of str to numpy.ndarray
        Members by name (plain arrays: see :func:`plain_array`).

    Raises
    ------
    CheckpointError
        The directory does not exist, the path is a folder, a special or a
        read-only file, or writing fails (any previous file is unchanged).
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CheckpointError(
            f"cannot write model file {path!r}: directory {directory!r} does not exist; create it first"
        )
    # Writing to the open file object: numpy never renames it.
    write_or_raise(
        path, lambda handle: np.savez(handle, allow_pickle=False, **arrays), "model file", CheckpointError,
        "; check free disk space and permissions (any previous file there is unchanged)",
    )


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def read_npz(path: str | os.PathLike, check_shape: Callable[[str, tuple[int, ...]], None] | None = None) -> dict[str, np.ndarray]:
    """Read every member of an ``.npz`` model file fully, turning every failure into a CheckpointError.

    Parameters
    ----------
    path : str or os.PathLike
        The model file.
    check_shape : callable, optional
        ``check_shape(member_name, declared_shape)``, called for each member
        before it is inflated; it raises to refuse the file (for example a
        parameter of the wrong size, before numpy allocates it).

    Returns
    -------
    dict of str to numpy.ndarray
        Every member by name (without ``.npy``), in the archive's order.

    Raises
    ------
    CheckpointError
        The file is missing, a directory, not a regular file, empty, not an
        ``.npz`` archive (a single ``.npy`` array, a pickle, anything else),
        truncated or corrupt, declares members that would inflate beyond any
        model file, holds pickled objects or a member that is not a numpy
        array.
    """
    path = os.fspath(path)
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
        return _read_members(path, handle, archive_size, check_shape)


def _open_model_file(path: str) -> BinaryIO:
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


def _read_members(path: str, handle: BinaryIO, archive_size: int, check_shape) -> dict[str, np.ndarray]:
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
                if shape is not None and check_shape is not None:
                    check_shape(name, shape)
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


def _corrupt(path: str, detail: str) -> CheckpointError:
    return CheckpointError(
        f"model file {path!r} is truncated or corrupt ({detail}); restore it from a backup or re-save the model"
    )


def _bomb(path: str, detail: str) -> CheckpointError:
    return CheckpointError(
        f"model file {path!r} is refused: {detail}, more than any model file compresses (a damaged file or a "
        "decompression bomb); use a file written by symrnn or numpy.savez"
    )


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
