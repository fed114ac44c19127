"""Output paths, checked before any work is done, and the rules for replacing a file.

A training run may write for hours before it first saves: :func:`check_output_path`
says at the start whether a file can be written at a path, so a run never fails
(or replaces the wrong file) only once it saves. :func:`replace_problem` is the
rule every atomic writer applies to the file it is about to replace.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterable

from symrnn.errors import ConfigError

__all__ = ["check_output_path", "replace_problem", "temporary_prefix"]

_DEFAULT_NAME_MAX = 255
_DEFAULT_PATH_MAX = 4096


def temporary_prefix(path: str) -> str:
    """Name prefix of the temporary file written beside `path`: hidden, named after it.

    The atomic writers add a random part and ``.tmp``: ``.<name>.<random>.tmp``.
    """
    return "." + os.path.basename(path)[:100] + "."


def replace_problem(path: str) -> str | None:
    """Why an atomic writer must not rename a new file over `path` (None: it may).

    A rename replaces whatever is at the path, so a folder, a device, a FIFO or a
    socket there would be swapped for an ordinary file (as root even ``/dev/null``),
    and a file the user made read-only would be replaced despite its mode. Only a
    missing path or a writable regular file may be replaced. A symbolic link is
    judged by what it points to.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
    if stat.S_ISDIR(info.st_mode):
        return "it is a directory; give a file name inside it"
    if not stat.S_ISREG(info.st_mode):
        return f"it is a special file ({_file_kind(info.st_mode)}), which writing would replace by an ordinary file; give a file name"
    if not info.st_mode & stat.S_IWUSR:
        return (
            f"it is read-only (mode {stat.S_IMODE(info.st_mode):04o}); make it writable (chmod u+w) "
            "or write elsewhere"
        )
    return None


def check_output_path(path: str, inputs: Iterable[str] = (), *, what: str = "output file") -> None:
    """Check that a file can be written (atomically) at `path`, before any work is done.

    Parameters
    ----------
    path : str
        The file to be written.
    inputs : iterable of str
        Files the run reads (corpus, ...): the output must not be one of them.
        Paths that do not exist are skipped.
    what : str
        What the file is, for the message (for example ``"MODEL_OUTPUT_FILE"``).

    Raises
    ------
    ConfigError
        One line: the name holds a NUL character or is too long, its folder is
        missing or not writable, the path is a folder, a special file or a
        read-only file (see :func:`replace_problem`), or it is one of `inputs`.
    """
    if "\x00" in path:
        raise ConfigError(f"{what} {path!r}: the name holds a NUL character")
    absolute = os.path.abspath(path)
    directory = os.path.dirname(absolute)
    too_long = _too_long(absolute, directory)
    if too_long:
        raise ConfigError(f"{what} {path!r}: {too_long}; choose a shorter name")
    if not os.path.isdir(directory):
        existing = directory  # the nearest part of the path that exists
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise ConfigError(f"{what} {path!r}: {existing!r} is a file, not a folder; choose another path")
        raise ConfigError(f"{what} {path!r}: folder {directory!r} does not exist; create it first")
    for source in inputs:
        if not source or not os.path.exists(source):
            continue
        if os.path.exists(absolute) and os.path.samefile(absolute, source):
            raise ConfigError(
                f"{what} {path!r}: it is {source!r}, which this run reads, and writing would replace it; "
                "choose another file"
            )
        if os.path.isdir(source) and _read_as_part_of(source, absolute):
            raise ConfigError(
                f"{what} {path!r}: it lies in the data folder {source!r} with a name the corpus reader reads, so "
                "writing it would change (or replace part of) the corpus; choose a name or folder outside it"
            )
    problem = replace_problem(absolute)
    if problem:
        raise ConfigError(f"{what} {path!r}: {problem}")
    _probe_folder(path, directory, what)


def _read_as_part_of(folder: str, absolute: str) -> bool:
    """Whether reading ``folder`` as a corpus would read the file at ``absolute``."""
    from symrnn.reading import FOLDER_DATA_SUFFIXES  # imported here: symrnn.reading depends on this module

    directory = os.path.dirname(absolute)
    inside = os.path.exists(directory) and os.path.samefile(directory, folder)
    return inside and os.path.splitext(absolute)[1].lower() in FOLDER_DATA_SUFFIXES


def _probe_folder(path: str, directory: str, what: str) -> None:
    """Create and remove a temporary file in `directory`: the only test that holds for root too."""
    try:
        handle, probe = tempfile.mkstemp(dir=directory, prefix=temporary_prefix(path), suffix=".tmp")
    except OSError as exc:
        raise ConfigError(
            f"{what} {path!r}: cannot write in folder {directory!r} ({exc.strerror or exc}); "
            "choose a writable folder"
        ) from None
    os.close(handle)
    try:
        os.unlink(probe)
    except OSError:  # pragma: no cover - the folder turned read-only meanwhile
        pass


def _too_long(absolute: str, directory: str) -> str | None:
    existing = directory
    while not os.path.isdir(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    name_max = _pathconf(existing, "PC_NAME_MAX", _DEFAULT_NAME_MAX)
    path_max = _pathconf(existing, "PC_PATH_MAX", _DEFAULT_PATH_MAX)
    for part in absolute.split(os.sep):
        if len(os.fsencode(part)) > name_max:
            return f"{os.strerror(errno.ENAMETOOLONG)}: {len(os.fsencode(part))} bytes in one name, the file system allows {name_max}"
    if len(os.fsencode(absolute)) >= path_max:
        return f"{os.strerror(errno.ENAMETOOLONG)}: the path has {len(os.fsencode(absolute))} bytes, the system allows {path_max - 1}"
    return None


def _pathconf(path: str, name: str, default: int) -> int:
    try:
        value = os.pathconf(path, name)
    except (OSError, ValueError, AttributeError):
        return default
    return value if value and value > 0 else default


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"
