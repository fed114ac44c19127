"""The vocabulary: special tokens, :class:`Vocabulary`, token counts, training pairs, unknown share.

The tutorial's steps 4 and 5 (after reading and tokenising, :mod:`symrnn.corpus`):
build the vocabulary ``["<MASK/>", "UNKNOWN_TOKEN"]`` followed by the
``vocabulary_size - 2`` most frequent tokens in ascending count order
(:meth:`Vocabulary.build`), encode every sentence and make the input/target
pairs ``X = ids[:-1]``, ``Y = ids[1:]`` (:func:`sentences_to_pairs`).
NumPy only.
"""

from __future__ import annotations

import collections
import logging
from typing import Iterable, Sequence

import numpy as np

from symrnn.errors import DataError

__all__ = [
    "SENTENCE_START",
    "SENTENCE_END",
    "UNKNOWN_TOKEN",
    "MASK_TOKEN",
    "END_OF_LINE",
    "Vocabulary",
    "check_vocabulary_size",
    "count_tokens",
    "least_frequent_word",
    "sentences_to_pairs",
    "unknown_share",
    "unknown_share_warning",
    "UNKNOWN_SHARE_WARNING",
]

logger = logging.getLogger(__name__)

SENTENCE_START = "SENTENCE_START"
SENTENCE_END = "SENTENCE_END"
UNKNOWN_TOKEN = "UNKNOWN_TOKEN"
MASK_TOKEN = "<MASK/>"
#: The token a newline becomes in whitespace-tokenised streams (Penn Treebank's, Wikitext's).
END_OF_LINE = "<eos>"


class Vocabulary:
    """Mapping between tokens and integer ids.

    Index 0 is ``MASK_TOKEN`` (padding), followed by ``UNKNOWN_TOKEN`` and
    the kept tokens in ascending order of corpus frequency (so
    ``SENTENCE_START``/``SENTENCE_END``, the most frequent tokens of a word
    corpus, come last). Build one with :meth:`build` from tokenised sentences,
    or give the constructor a saved word list (e.g. a model file's).

    Parameters
    ----------
    index_to_word : sequence of str
        Token of each id.
    requested_size : int or None, optional
        The vocabulary size asked for (default: ``len(index_to_word)``).

    Attributes
    ----------
    index_to_word : list of str
        Token of each id.
    word_to_index : dict of str to int
        Id of each token.
    requested_size : int
        The vocabulary size asked for (may exceed ``len(self)`` when the
        corpus has fewer distinct tokens).

    Raises
    ------
    DataError
        If the tokens are not unique strings, index 0 is not ``MASK_TOKEN``,
        or ``UNKNOWN_TOKEN``, ``SENTENCE_START`` or ``SENTENCE_END`` is
        missing.
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
        size = check_vocabulary_size(vocabulary_size)
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


def check_vocabulary_size(vocabulary_size) -> int:
    """`vocabulary_size` as an int, checked before any work is done.

    Raises
    ------
    DataError
        If it is not an integer of at least 4 (mask, unknown and the two
        sentence markers).
    """
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
    """The scripts' warning when a corpus has too many unknown tokens, else None.

    A vocabulary of the most frequent words leaves the rarer ones unknown on
    its own corpus too (17% of the embedded corpus's tokens at 2,000 words),
    so the share is compared with the one the model was trained with:
    a warning when it is more than :data:`UNKNOWN_SHARE_WARNING` above
    `trained_share`, or above :data:`UNKNOWN_SHARE_WARNING` itself when
    `trained_share` is not known (the tutorial's files, older checkpoints).

    Returns
    -------
    str or None
        One line without a prefix (the scripts print it as ``evaluate.py:
        warning: ...``), or None.
    """
    limit = UNKNOWN_SHARE_WARNING + (trained_share or 0.0)
    if share <= limit:
        return None
    trained = f", against {trained_share:.1%} in the corpus it was trained on" if trained_share is not None else ""
    return (
        f"{share:.1%} of the tokens are not in the model's vocabulary (UNKNOWN_TOKEN){trained}: is this the"
        " corpus the model was trained on? (check --data, INPUT_DATA_FILE, TOKENS and the model file)"
    )

