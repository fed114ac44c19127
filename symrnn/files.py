"""Reading and writing files safely: atomic writes, bounded reads of regular files.

Writing: :func:`atomic_write` writes a file so that it is either completely
there or not changed at all, even after a crash or a power cut.

Reading: :func:`open_regular_file` and :func:`read_regular_file` read regular
files only. A named pipe would block forever, a device such as ``/dev/zero``
never ends, a socket cannot be read as a file: each is refused at once with
:class:`NotARegularFileError`. :func:`read_regular_file` also refuses files
over a size limit (:class:`FileTooLargeError`).

Both errors are ``OSError`` subclasses; callers turn them into their own
:class:`symrnn.errors.SymrnnError` with a message naming the file.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import tempfile
from typing import BinaryIO, Callable

from symrnn.errors import SymrnnError
from symrnn.paths import replace_problem, temporary_prefix

__all__ = [
    "FileTooLargeError",
    "NotARegularFileError",
    "ReplaceRefusedError",
    "atomic_write",
    "write_or_raise",
    "new_file_mode",
    "open_regular_file",
    "read_regular_file",
]

logger = logging.getLogger(__name__)


class NotARegularFileError(OSError):
    """The path is a named pipe, a device, a socket or a directory.

    Attributes
    ----------
    kind : str
        What the path is, for messages ("a named pipe (FIFO)", ...).
    """

    def __init__(self, path: str, kind: str):
        super().__init__(f"{path} is {kind}, not a regular file")
        self.filename = path
        self.kind = kind


class ReplaceRefusedError(OSError):
    """A writer refused to replace what is at the path (a folder, a special or read-only file)."""


class FileTooLargeError(OSError):
    """A file holds more bytes than the limit allows.

    Attributes
    ----------
    size : int
        Bytes in the file (at least; a file still growing may hold more).
    limit : int
        The limit in bytes.
    """

    def __init__(self, path: str, size: int, limit: int):
        super().__init__(f"{path} holds {size} bytes, more than the limit of {limit}")
        self.filename = path
        self.size = size
        self.limit = limit


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def _check_regular(path: str, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _SPECIAL_KINDS if test(mode)), "not a regular file")
    raise NotARegularFileError(path, kind)


def open_regular_file(path: str | os.PathLike) -> BinaryIO:
    """Open a regular file for binary reading, refusing anything else at once.

    The path is checked with ``os.stat`` before opening (so a device is never
    opened) and the open file again with ``os.fstat``: the file is opened
    non-blocking, so a named pipe put in its place between the two checks
    cannot make the open hang.

    Parameters
    ----------
    path : str or os.PathLike
        The file (symbolic links are followed).

    Returns
    -------
    binary file object, positioned at the start

    Raises
    ------
    NotARegularFileError
        The path is a named pipe, a device, a socket or a directory.
    OSError
        The path does not exist or cannot be opened.
    """
    name = os.fspath(path)
    _check_regular(name, os.stat(name).st_mode)
    fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        _check_regular(name, os.fstat(fd).st_mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: str | os.PathLike, max_bytes: int | None = None) -> bytes:
    """Read a whole regular file, at most ``max_bytes`` of it.

    Parameters
    ----------
    path : str or os.PathLike
    max_bytes : int or None, optional
        Refuse files holding more bytes than this (None: no limit). The size
        is checked before reading and the read itself is bounded, so a file
        that grows while it is read cannot exceed the limit either.

    Returns
    -------
    bytes

    Raises
    ------
    NotARegularFileError, FileTooLargeError, OSError
    """
    name = os.fspath(path)
    with open_regular_file(name) as handle:
        if max_bytes is None:
            return handle.read()
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes:
            raise FileTooLargeError(name, size, max_bytes)
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileTooLargeError(name, len(data), max_bytes)
    return data


def new_file_mode(path: str | os.PathLike) -> int:
    """Permission bits for a file written at ``path``.

    Those of the file it replaces, else the usual ones of a new file:
    ``0o666`` less the process's umask (read from ``/proc/self/status`` where
    it can be, because reading it with ``os.umask`` briefly changes it for
    every thread).
    """
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        pass
    umask = None
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    umask = int(line.split()[1], 8)
                    break
    except (OSError, ValueError, IndexError):
        umask = None
    if umask is None:
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable (POSIX; best effort)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError as exc:
        logger.debug("cannot open directory %s to fsync it: %s", directory, exc)
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        logger.debug("cannot fsync directory %s: %s", directory, exc)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write a file at exactly ``path`` so that it is either complete or unchanged.

    ``write`` writes the content into a temporary file in the same folder
    (``.<name>.<random>.tmp``); the file is flushed and fsynced, given its
    permissions (:func:`new_file_mode`: those of the file it replaces, else
    ``0o666`` less the umask) and renamed over ``path``; then the folder is
    fsynced so the rename survives a power cut. On any failure, an exception
    from ``write`` or Ctrl-C included, the temporary file is removed and an
    existing file at ``path`` is left as it was.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write; its folder must exist.
    write : callable
        ``write(handle)`` with a binary file object open for writing (for
        text, write encoded bytes or wrap it in ``io.TextIOWrapper``).

    Raises
    ------
    ReplaceRefusedError
        ``path`` is a folder, a special file or a read-only file
        (:func:`symrnn.paths.replace_problem`); its ``strerror`` says which.
    OSError
        The folder is missing or not writable, the disk is full, ...;
        whatever ``write`` raises is raised unchanged.
    """
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    problem = replace_problem(target)
    if problem:
        raise ReplaceRefusedError(errno.EEXIST, problem, target)
    mode = new_file_mode(target)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=temporary_prefix(target), suffix=".tmp")
    try:
        with open(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError as exc:  # pragma: no cover - best effort cleanup
            logger.warning("could not remove the temporary file %s: %s", temporary, exc)
        raise
    _fsync_directory(directory)


def write_or_raise(path: str, write: Callable[[BinaryIO], None], what: str, error: type = SymrnnError,
                   advice: str = "") -> None:
    """:func:`atomic_write`, with its failures turned into one ``error``.

    The message reads ``cannot write <what> <path>: <reason><advice>``: a
    refused replacement gives :func:`symrnn.paths.replace_problem`'s reason,
    any other ``OSError`` its ``strerror``.

    Parameters
    ----------
    path : str
    write : callable
        As for :func:`atomic_write`.
    what : str
        What the file is, for the message (``"loss curve"``, ``"model file"``).
    error : type
        A :class:`symrnn.errors.SymrnnError` subclass.
    advice : str
        Appended to the reason of an ``OSError`` (not to a refusal).
    """
    try:
        atomic_write(path, write)
    except ReplaceRefusedError as exc:
        raise error(f"cannot write {what} {path!r}: {exc.strerror}") from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise error(f"cannot write {what} {path!r}: {reason}{advice}") from exc
