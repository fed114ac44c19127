"""A file cache of tokenised sentences, so that a second start skips tokenising.

NLTK takes about 10 s to tokenise the embedded corpus, minutes for the
tutorial's reddit CSV. :func:`tokenize_with_cache` keeps the sentences of
:func:`symrnn.tokenize.tokenize_corpus` in a file named after a hash of
everything they depend on (the documents, the tokenising options, the symrnn
and nltk versions). The file is written atomically and checked when read
(its stored key, a checksum, the shape of its sentences, a size bound), and
an unusable file is ignored with a logged warning: a cache can never stand in
for the corpus or turn into advice about the data.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
from pathlib import Path
from typing import Sequence

import nltk

from symrnn.files import FileTooLargeError, NotARegularFileError, atomic_write, read_regular_file
from symrnn.tokenize import check_tokenizing_options, tokenize_corpus
from symrnn.vocab import SENTENCE_END, SENTENCE_START

__all__ = ["tokenize_with_cache"]

logger = logging.getLogger(__name__)

_CACHE_FORMAT = "symrnn-tokens-2"

#: A cache holds at most this many bytes per character of its documents (plus
#: :data:`_CACHE_SLACK_BYTES`). The worst real case is far below: a
#: one-character sentence such as ``"."`` costs about 40 bytes of JSON
#: (``["SENTENCE_START", ".", "SENTENCE_END"], ``), an astral character about
#: 16 (``"\ud83d\ude00", ``); ordinary text 2 to 3. A larger file is damaged
#: and is not read at all.
_CACHE_BYTES_PER_CHARACTER = 64
_CACHE_SLACK_BYTES = 2**20


def _symrnn_version() -> str:
    try:
        return importlib.metadata.version("symrnn")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _token_cache_key(documents: Sequence[str], min_chars: int, tokens: str) -> str:
    """Hash of everything the tokenised sentences depend on (hex, 64 digits)."""
    digest = hashlib.sha256()
    for part in (_CACHE_FORMAT, _symrnn_version(), nltk.__version__, tokens, str(min_chars), *documents):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def _largest_cache_bytes(documents: Sequence[str]) -> int:
    """The most bytes a cache of `documents` can hold (see :data:`_CACHE_BYTES_PER_CHARACTER`)."""
    characters = sum(len(document) + 1 for document in documents)
    return _CACHE_BYTES_PER_CHARACTER * characters + _CACHE_SLACK_BYTES


def _read_token_cache(cache_path: Path, key: str, max_bytes: int) -> tuple[list[list[str]] | None, bool]:
    """The sentences of a cache file, or None (logging why) when it is absent or unusable.

    The file is one JSON header line (format, the full key, the number of
    sentences and the SHA-256 of the rest), then the sentences as JSON; a
    file over `max_bytes` is not read.

    Returns
    -------
    sentences : list of list of str or None
    writable : bool
        False when something other than a regular file is at the path, so
        writing a new cache there would fail too.
    """
    try:
        raw = read_regular_file(cache_path, max_bytes)
    except FileNotFoundError:
        return None, True
    except NotARegularFileError as exc:
        logger.warning("ignoring the token cache %s (it is %s, not a regular file: remove it to use the cache):"
                       " tokenising without the cache", cache_path, exc.kind)
        return None, False
    except FileTooLargeError as exc:
        logger.warning("ignoring the token cache %s (it holds %.1f MB, more than a cache of these documents can"
                       " (%.1f MB): the file is damaged): tokenising again and rewriting it",
                       cache_path, exc.size / 2**20, exc.limit / 2**20)
        return None, True
    except OSError as exc:
        logger.warning("ignoring the token cache %s (%s): tokenising again", cache_path, exc.strerror or exc)
        return None, True
    sentences, problem = _parse_token_cache(raw, key)
    if problem:
        logger.warning("ignoring the token cache %s (%s): tokenising again and rewriting it", cache_path, problem)
    return sentences, True


def _parse_token_cache(raw: bytes, key: str) -> tuple[list[list[str]] | None, str | None]:
    """The sentences of a cache file's bytes and None, or None and what is wrong with them."""
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


def tokenize_with_cache(
    documents: Sequence[str],
    tokens: str = "word",
    min_sent_characters: int = 0,
    cache_dir: str | os.PathLike | None = None,
) -> list[list[str]]:
    """:func:`symrnn.tokenize.tokenize_corpus`, reusing (and filling) a cache file in `cache_dir`.

    Parameters
    ----------
    documents : sequence of str
    tokens : {"word", "char"}, optional
    min_sent_characters : int, optional
    cache_dir : str or os.PathLike or None, optional
        Folder of the cache files (created when missing); None tokenises
        without a cache. A cache file is ``tokens-<hash>.json``; an unusable
        one is ignored with a warning and rewritten, and a failed write only
        warns.

    Returns
    -------
    list of list of str
        The sentences, as :func:`symrnn.tokenize.tokenize_corpus` gives them.

    Raises
    ------
    DataError
        If an option is invalid.
    """
    min_chars = check_tokenizing_options(tokens, min_sent_characters)
    if cache_dir is None:
        return tokenize_corpus(documents, tokens, min_chars)
    key = _token_cache_key(documents, min_chars, tokens)
    cache_path = Path(cache_dir) / f"tokens-{key[:32]}.json"
    cached, writable = _read_token_cache(cache_path, key, _largest_cache_bytes(documents))
    if cached is not None:
        return cached
    sentences = tokenize_corpus(documents, tokens, min_chars)
    if writable:
        _write_token_cache(cache_path, key, sentences)
    return sentences
