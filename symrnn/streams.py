"""Continuous text as parallel streams cut into windows (char-rnn's batching). NumPy only.

The whole text is one sequence of token ids. :func:`parallel_streams` cuts it
into ``B`` streams of equal length ``L`` (the remainder that fills no stream
is dropped, as char-rnn does), one row each; :func:`stream_windows` steps over
them in windows of ``S`` tokens, time-major like every symrnn batch::

    streams (B, L):  window k:  x = streams[:, kS : kS+S].T        (T, B), T <= S
                                y = streams[:, kS+1 : kS+S+1].T    (T, B)

There are ``ceil((L - 1) / S)`` windows; the last one is shorter when
``S`` does not divide ``L - 1`` (kept, not dropped). Column ``b`` of window
``k + 1`` continues column ``b`` of window ``k``, so a model can carry each
stream's final state of one window into the next.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np

from symrnn.errors import DataError

__all__ = ["Window", "count_windows", "hold_out_tail", "parallel_streams", "stream_windows"]


class Window(NamedTuple):
    """One window of every stream.

    Attributes
    ----------
    x : numpy.ndarray of int32, shape (T, B)
        Input ids.
    y : numpy.ndarray of int32, shape (T, B)
        Target ids, each input's next token.
    mask : numpy.ndarray of float32, shape (T, B)
        All ones (windows hold no padding); the model functions take a mask.
    index : int
        Position of this window in the epoch, from 0.
    """

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    index: int


def parallel_streams(ids: np.ndarray, batch_size: int) -> np.ndarray:
    """Cut a token stream into ``batch_size`` parallel streams of equal length.

    Parameters
    ----------
    ids : array_like of int, shape (N,)
    batch_size : int
        Number of streams B.

    Returns
    -------
    numpy.ndarray of int32, shape (B, N // B)
        Row ``b`` is ``ids[b * L : (b + 1) * L]``; the last ``N % B`` ids are dropped.

    Raises
    ------
    DataError
        When a stream would hold fewer than 2 tokens (no input/target pair).
    ValueError
        For a ``batch_size`` below 1 or ids that are not one-dimensional.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be one-dimensional, not of shape {ids.shape}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    length = ids.shape[0] // batch_size
    if length < 2:
        raise DataError(
            f"the text has {ids.shape[0]} tokens, too few for {batch_size} parallel streams of at least 2 tokens:"
            " lower BATCH_SIZE or give more text"
        )
    return np.ascontiguousarray(ids[: batch_size * length].reshape(batch_size, length), dtype=np.int32)


def count_windows(stream_length: int, seq_length: int) -> int:
    """Windows of an epoch: ``ceil((stream_length - 1) / seq_length)``."""
    if seq_length < 1:
        raise ValueError(f"seq_length must be a positive integer, got {seq_length}")
    return -(-(int(stream_length) - 1) // int(seq_length))


def stream_windows(streams: np.ndarray, seq_length: int, start: int = 0) -> Iterator[Window]:
    """The windows of one epoch over parallel streams, from window ``start`` on.

    Parameters
    ----------
    streams : numpy.ndarray of int, shape (B, L), from :func:`parallel_streams`
    seq_length : int
        Window length S.
    start : int, optional
        First window to yield (a resumed epoch skips those done).

    Yields
    ------
    Window
        ``x``, ``y`` of shape (T, B) with T = S except perhaps in the last window.
    """
    n_windows = count_windows(streams.shape[1], seq_length)
    for index in range(start, n_windows):
        begin = index * seq_length
        end = min(begin + seq_length, streams.shape[1] - 1)
        x = np.ascontiguousarray(streams[:, begin:end].T, dtype=np.int32)
        y = np.ascontiguousarray(streams[:, begin + 1 : end + 1].T, dtype=np.int32)
        yield Window(x, y, np.ones(x.shape, dtype=np.float32), index)


def hold_out_tail(ids: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Split a token stream into its head (training) and its last ``fraction`` (validation).

    Parameters
    ----------
    ids : numpy.ndarray, shape (N,)
    fraction : float in [0, 1)

    Returns
    -------
    head : numpy.ndarray, shape (N - n,)
    tail : numpy.ndarray, shape (n,), ``n = round(N * fraction)`` (empty for 0)
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), not {fraction!r}")
    n_tail = int(round(len(ids) * fraction))
    return ids[: len(ids) - n_tail], ids[len(ids) - n_tail :]
