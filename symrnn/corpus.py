"""The tutorial's data pipeline (its ``load_data``), stage by stage.

1. read documents: :func:`symrnn.reading.read_documents` (a CSV file like the
   tutorial's, a text file or a folder), or
   :func:`symrnn.default_corpus.default_corpus_documents` when no file is given;
2. tokenise them into marked sentences: :func:`symrnn.tokenize.tokenize_corpus`,
   through the file cache of :func:`symrnn.token_cache.tokenize_with_cache`;
3. build the vocabulary: :meth:`symrnn.vocab.Vocabulary.build`;
4. make the input/target pairs: :func:`symrnn.vocab.sentences_to_pairs`.

:func:`load_sentences` runs stages 1 and 2 (what a caller with a vocabulary of
its own, such as a saved model's, needs); :func:`load_corpus` runs all four.
:func:`load_token_stream` is stage 1 and 2 for continuous text
(``SEQUENCE=stream``): the whole text as one token list.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from symrnn.default_corpus import DEFAULT_CORPUS_NAME, default_corpus_documents
from symrnn.errors import DataError
from symrnn.reading import DEFAULT_MAX_DATA_BYTES, read_documents, read_text_file
from symrnn.token_cache import tokenize_with_cache
from symrnn.tokenize import check_tokenizing_options, sentence_stream_tokens, text_stream_tokens, tokenize_corpus
from symrnn.vocab import Vocabulary, check_vocabulary_size, sentences_to_pairs

__all__ = ["Corpus", "load_corpus", "load_sentences", "load_token_stream", "read_stream_text"]


@functools.lru_cache(maxsize=4)
def _default_sentences_cached(min_sent_characters: int, tokens: str) -> tuple[tuple[str, ...], ...]:
    sentences = tokenize_corpus(default_corpus_documents(), tokens, min_sent_characters)
    return tuple(tuple(s) for s in sentences)


def load_sentences(
    path: str | os.PathLike | None = None,
    tokens: str = "word",
    min_sent_characters: int = 0,
    cache_dir: str | os.PathLike | None = None,
    max_data_bytes: int | None = DEFAULT_MAX_DATA_BYTES,
) -> list[list[str]]:
    """Read and tokenise a corpus (stages 1 and 2).

    Parameters
    ----------
    path : str or os.PathLike or None, optional
        Data file or folder (see :func:`symrnn.reading.read_documents`); None
        uses the embedded default corpus, whose sentences are kept in the
        process once tokenised.
    tokens : {"word", "char", "whitespace"}, optional
        Word tokens (one list per kept sentence), character or whitespace
        tokens (one list per document).
    min_sent_characters : int, optional
        Minimum sentence length in characters (word tokens only; default 0).
    cache_dir : str or os.PathLike or None, optional
        Folder of the token cache (:func:`symrnn.token_cache.tokenize_with_cache`),
        so a second start skips tokenising; None: no cache.
    max_data_bytes : int or None, optional
        Refuse data files larger than this, a folder's files together
        (default 2048 MiB; None: no limit).

    Returns
    -------
    list of list of str
        N >= 1 sentences, each ``[SENTENCE_START, *tokens, SENTENCE_END]``.

    Raises
    ------
    DataError
        If an option is invalid (checked before anything is read), the data
        cannot be read, or no sentence survives tokenising and filtering.
    """
    min_chars = check_tokenizing_options(tokens, min_sent_characters)
    if path is None:
        source = DEFAULT_CORPUS_NAME
        if cache_dir is None:
            sentences = [list(s) for s in _default_sentences_cached(min_chars, tokens)]
        else:
            sentences = tokenize_with_cache(default_corpus_documents(), tokens, min_chars, cache_dir)
    else:
        source = os.fspath(path)
        sentences = tokenize_with_cache(read_documents(path, max_data_bytes), tokens, min_chars, cache_dir)
    if not sentences:
        raise DataError(
            f"no sentence of {source} survives tokenising (min_sent_characters"
            f" {min_chars}, sentences with 'http' dropped): lower MIN_SENT_CHARACTERS or"
            f" give more text"
        )
    return sentences


def read_stream_text(path: str | os.PathLike | None, max_data_bytes: int | None = DEFAULT_MAX_DATA_BYTES) -> str:
    """The text of a corpus as one string, for stream training.

    A plain text file is taken whole, as it is (blank lines, indentation and
    newlines kept); a CSV file's bodies, a folder's documents and the embedded
    corpus's documents are joined by newlines, with a final newline.

    Raises
    ------
    DataError
        As :func:`symrnn.reading.read_documents`.
    """
    if path is None:
        return "\n".join(default_corpus_documents()) + "\n"
    file = Path(path)
    if file.exists() and not file.is_dir() and file.suffix.lower() != ".csv":
        return read_text_file(file, "text file", max_data_bytes)
    return "\n".join(read_documents(path, max_data_bytes)) + "\n"


def load_token_stream(
    path: str | os.PathLike | None = None,
    tokens: str = "char",
    min_sent_characters: int = 0,
    cache_dir: str | os.PathLike | None = None,
    max_data_bytes: int | None = DEFAULT_MAX_DATA_BYTES,
) -> list[str]:
    """Read a corpus as one stream of tokens (stages 1 and 2 for ``SEQUENCE=stream``).

    Parameters
    ----------
    path : str or os.PathLike or None, optional
        Data file or folder; None: the embedded default corpus.
    tokens : {"char", "word", "whitespace"}, optional
        ``"char"``: every character of :func:`read_stream_text`, newlines
        included; ``"whitespace"``: its whitespace-separated tokens, a newline
        as ``<eos>`` (:func:`symrnn.tokenize.text_stream_tokens`);
        ``"word"``: the tutorial's sentences (:func:`load_sentences`), each
        one's words followed by ``SENTENCE_END``.
    min_sent_characters, cache_dir, max_data_bytes
        As for :func:`load_sentences` (``min_sent_characters`` and the cache
        serve word tokens only).

    Returns
    -------
    list of str, at least one token

    Raises
    ------
    DataError
        If an option is invalid, the data cannot be read or holds no token.
    """
    min_chars = check_tokenizing_options(tokens, min_sent_characters)
    if tokens == "word":
        stream = sentence_stream_tokens(load_sentences(path, "word", min_chars, cache_dir, max_data_bytes))
    else:
        stream = text_stream_tokens(read_stream_text(path, max_data_bytes), tokens)
    if not stream:
        raise DataError(f"{DEFAULT_CORPUS_NAME if path is None else os.fspath(path)} holds no token: give more text")
    return stream


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


def load_corpus(
    path: str | os.PathLike | None = None,
    vocabulary_size: int = 2000,
    min_sent_characters: int = 0,
    tokens: str = "word",
    cache_dir: str | os.PathLike | None = None,
    max_data_bytes: int | None = DEFAULT_MAX_DATA_BYTES,
) -> Corpus:
    """All four stages: :func:`load_sentences`, then the vocabulary of its sentences and their pairs.

    For callers that want everything built from one corpus (the tutorial's
    ``load_data``); a caller with a vocabulary of its own uses
    :func:`load_sentences` and :func:`symrnn.vocab.sentences_to_pairs`.

    Parameters
    ----------
    path, min_sent_characters, tokens, cache_dir, max_data_bytes
        As for :func:`load_sentences`.
    vocabulary_size : int, optional
        Vocabulary size including mask and unknown tokens (default 2000).

    Returns
    -------
    Corpus

    Raises
    ------
    DataError
        If a setting is invalid (checked before anything is read), the data
        cannot be read, or no sentence survives tokenising and filtering.
    """
    check_vocabulary_size(vocabulary_size)
    sentences = load_sentences(path, tokens, min_sent_characters, cache_dir, max_data_bytes)
    vocabulary = Vocabulary.build(sentences, vocabulary_size)
    X, Y = sentences_to_pairs(sentences, vocabulary)
    source = DEFAULT_CORPUS_NAME if path is None else os.fspath(path)
    return Corpus(sentences=sentences, vocabulary=vocabulary, X=X, Y=Y, source=source)
