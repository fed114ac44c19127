"""Reading documents: a CSV file like the tutorial's, a text file, or a folder of them.

The tutorial's step 1: comment bodies of a CSV file (header skipped,
column 0), or the lines of a plain text file, or both from the files of a
folder. Only regular files are read, never more than a size limit, and a
file that is not UTF-8 text is refused with a :class:`symrnn.errors.DataError`
naming it. Tokenising is :mod:`symrnn.tokenize`'s job; the embedded corpus
used when no file is given is :mod:`symrnn.default_corpus`'s.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path

from symrnn.errors import DataError
from symrnn.files import FileTooLargeError, NotARegularFileError, read_regular_file

__all__ = [
    "DEFAULT_MAX_DATA_BYTES",
    "read_text_file",
    "read_csv_bodies",
    "read_text_documents",
    "read_documents",
]

logger = logging.getLogger(__name__)

#: Data files larger than this are refused unless a larger limit is given
#: (``MAX_DATA_MB`` in train.py).
DEFAULT_MAX_DATA_BYTES = 2048 * 2**20

#: The files of a data folder that are read as the corpus: those directly
#: inside it whose names end so (any letter case).
FOLDER_DATA_SUFFIXES = (".txt", ".csv")


class _NoTextError(DataError):
    """A readable file that holds no usable text (used to skip such files)."""


def read_text_file(path: Path, kind: str, max_bytes: int | None = None) -> str:
    """Read a whole file as UTF-8 text, raising DataError on bad input.

    Parameters
    ----------
    path : Path
        The file to read: a regular file (a named pipe, a device such as
        ``/dev/zero`` or a socket is refused before anything is read).
    kind : str
        What the file should be ("CSV file", "text file"), for messages.
    max_bytes : int or None, optional
        Refuse files larger than this (None: no limit).

    Returns
    -------
    str
        The decoded text (a UTF-8 byte order mark is removed).

    Raises
    ------
    DataError
        If the file is missing, not a regular file, over ``max_bytes``,
        binary or not UTF-8, or holds no text.
    """
    if not path.exists():
        raise DataError(f"data file {path} does not exist: check the path to the {kind}")
    if path.is_dir():
        raise DataError(f"data file {path} is a directory, not a {kind}: give the path to a file")
    try:
        raw = read_regular_file(path, max_bytes)
    except NotARegularFileError as exc:
        raise DataError(f"data file {path} is {exc.kind}, not a regular file: give the path to a {kind}") from None
    except FileTooLargeError as exc:
        raise DataError(
            f"data file {path} ({exc.size / 2**20:.1f} MB) takes the data read over the limit of"
            f" {exc.limit / 2**20:g} MB: raise MAX_DATA_MB (train.py) or --max-data-mb, or give less data"
        ) from None
    except OSError as exc:
        raise DataError(
            f"cannot read data file {path} ({exc.strerror or exc}): check its permissions"
        ) from None
    if not raw:
        raise _NoTextError(f"data file {path} is empty: give a {kind} that holds text")
    if b"\x00" in raw:
        raise DataError(
            f"data file {path} looks binary (it holds NUL bytes): give a UTF-8 {kind}"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"data file {path} is not valid UTF-8 (bad byte at offset {exc.start}):"
            f" convert it to UTF-8"
        ) from None
    if not text.strip():
        raise _NoTextError(f"data file {path} holds only whitespace: give a {kind} that holds text")
    return text


def read_csv_bodies(path: str | os.PathLike, max_bytes: int | None = DEFAULT_MAX_DATA_BYTES) -> list[str]:
    """Read the comment bodies of a CSV file (column 0, header row skipped).

    The file is parsed with ``csv.reader(f, skipinitialspace=True)`` as in the
    tutorial, so quoted fields may hold commas and line breaks. Rows whose
    body is empty (or blank lines) are skipped. A field may be as long as the
    file (the csv module's own limit of 128 KiB per field does not apply).

    Parameters
    ----------
    path : str or os.PathLike
        A UTF-8 CSV file whose first row is a header.
    max_bytes : int or None, optional
        Refuse files larger than this (default 2048 MiB; None: no limit).

    Returns
    -------
    list of str
        One string per non-empty body, in file order.

    Raises
    ------
    DataError
        If the file is missing, not a regular file, larger than
        ``max_bytes``, empty, binary, not UTF-8, malformed CSV, holds only a
        header, or has no non-empty body.
    """
    path = Path(path)
    text = read_text_file(path, "CSV file", max_bytes)
    rows = _parse_csv(text, path)
    rows = rows[1:]  # the header
    rows = [row for row in rows if row]  # blank lines
    if not rows:
        raise _NoTextError(
            f"CSV file {path} holds only a header row and no data rows: add comment rows"
        )
    bodies = [row[0] for row in rows if row[0].strip()]
    if not bodies:
        raise _NoTextError(
            f"CSV file {path} has an empty first column in every row: put the comment"
            f" text in column 0"
        )
    return bodies


def _parse_csv(text: str, path: Path) -> list[list[str]]:
    """Parse CSV text like ``csv.reader(f, skipinitialspace=True)``.

    The tutorial's lenient (non-strict) dialect is used, but a quoted field
    left open at the end of the file (which the lenient reader silently
    accepts, swallowing the rest of the file) is reported as malformed.

    The csv module refuses fields over ``csv.field_size_limit()`` (128 KiB by
    default), and that limit is process-wide state with no per-reader
    equivalent: it is raised to the length of this text (already bounded by
    the data size limit) only while this text is parsed, and put back in a
    ``finally``, so no other reader in the process sees a changed limit.
    """

    def parse(strict: bool) -> list[list[str]]:
        # Equivalent to open(path, newline="", encoding="utf-8"): no newline
        # translation, so quoted multi-line bodies keep their line breaks.
        reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True, strict=strict)
        try:
            return list(reader)
        except csv.Error as exc:
            raise _CsvError(str(exc), reader.line_num) from None

    previous_limit = csv.field_size_limit()
    csv.field_size_limit(max(previous_limit, len(text) + 1))
    try:
        try:
            return parse(strict=True)
        except _CsvError as exc:
            if "unexpected end of data" in exc.message:
                raise DataError(
                    f"CSV file {path} is malformed (a quoted field is never closed before"
                    f" the end of the file at line {exc.line_num}): fix the quoting"
                ) from None
        try:
            return parse(strict=False)
        except _CsvError as exc:
            raise DataError(
                f"CSV file {path} is malformed (line {exc.line_num}: {exc.message}): fix the file"
            ) from None
    finally:
        csv.field_size_limit(previous_limit)


class _CsvError(Exception):
    def __init__(self, message: str, line_num: int):
        super().__init__(message)
        self.message = message
        self.line_num = line_num


def read_text_documents(path: str | os.PathLike, max_bytes: int | None = DEFAULT_MAX_DATA_BYTES) -> list[str]:
    """Read a plain text file in which each non-empty line is one document.

    Parameters
    ----------
    path : str or os.PathLike
        A UTF-8 text file.
    max_bytes : int or None, optional
        Refuse files larger than this (default 2048 MiB; None: no limit).

    Returns
    -------
    list of str
        The stripped non-empty lines, in file order.

    Raises
    ------
    DataError
        If the file is missing, not a regular file, larger than
        ``max_bytes``, empty or whitespace only, binary, or not UTF-8.
    """
    path = Path(path)
    text = read_text_file(path, "text file", max_bytes)
    documents = [line.strip() for line in text.splitlines()]
    documents = [doc for doc in documents if doc]
    if not documents:  # pragma: no cover - caught by the whitespace check above
        raise _NoTextError(
            f"data file {path} holds no text: give a text file with one document per line"
        )
    return documents


def read_documents(path: str | os.PathLike, max_bytes: int | None = DEFAULT_MAX_DATA_BYTES) -> list[str]:
    """Read documents from a CSV file, a text file or a folder of them.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv`` file (any letter case; read with :func:`read_csv_bodies`),
        a folder (every ``*.txt`` and ``*.csv`` regular file directly inside
        it, in sorted name order; files without text are skipped with a
        warning), or any other regular file (read with
        :func:`read_text_documents`).
    max_bytes : int or None, optional
        Refuse more data than this, a folder's files together (default
        2048 MiB; None: no limit).

    Returns
    -------
    list of str
        The documents, in order.

    Raises
    ------
    DataError
        If the path is missing, a file is unreadable, not a regular file or
        over the size limit, or a folder holds no text file with text.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data path {path} does not exist: check INPUT_DATA_FILE or the path given")
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir()
            if p.is_file() and p.suffix.lower() in FOLDER_DATA_SUFFIXES
        )
        documents: list[str] = []
        remaining = max_bytes
        for file in files:
            try:
                documents.extend(_read_one(file, remaining))
            except _NoTextError as exc:
                logger.warning("skipping %s: %s", file, exc)
            if remaining is not None:
                remaining = max(remaining - file.stat().st_size, 0)
        if not documents:
            raise DataError(
                f"data folder {path} holds no .txt or .csv file with text:"
                f" add data files or give the path to one"
            )
        return documents
    return _read_one(path, max_bytes)


def _read_one(path: Path, max_bytes: int | None) -> list[str]:
    if path.suffix.lower() == ".csv":
        return read_csv_bodies(path, max_bytes)
    return read_text_documents(path, max_bytes)

