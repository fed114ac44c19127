"""Padding and bucketing of encoded sentences into minibatches.

Batches are time-major: arrays of shape (T, B), T time steps by B sentences,
because ``scan`` iterates over axis 0. Padding uses id 0 (``MASK_TOKEN``) and
a float32 mask that is 1.0 on real tokens and 0.0 on padding.

Bucketing (the default of :func:`iterate_minibatches`) groups sentences of
similar length so that little padding is wasted: the shuffled sentences are
cut into pools of ``batch_size * pool_factor``, each pool is sorted by length
and cut into batches, and the batch order is shuffled. With ``bucket_width``
set, every batch's T is rounded up to a multiple of it, so that a compiled
function (e.g. on JAX) sees only a few distinct shapes.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple, Sequence

import numpy as np

__all__ = ["Batch", "pad_batch", "bucket_length", "iterate_minibatches", "split_train_validation"]


class Batch(NamedTuple):
    """One minibatch.

    Attributes
    ----------
    x : numpy.ndarray of int32, shape (T, B)
        Input ids, padded with 0.
    y : numpy.ndarray of int32, shape (T, B)
        Target ids, padded with 0.
    mask : numpy.ndarray of float32, shape (T, B)
        1.0 where ``x``/``y`` hold real tokens, 0.0 on padding.
    indices : numpy.ndarray of int64, shape (B,)
        Position of each column's sentence in the ``X``/``Y`` lists.
    """

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    indices: np.ndarray


def pad_batch(
    sequences: Sequence[Sequence[int]], length: int | None = None, dtype="int32"
) -> tuple[np.ndarray, np.ndarray]:
    """Pad sequences of ids into a time-major array and its mask.

    Parameters
    ----------
    sequences : sequence of array_like of int
        B sequences; sequence j has length L_j.
    length : int, optional
        Number of time steps T; default: the longest L_j.
    dtype : str or numpy.dtype, optional
        dtype of the ids array (default int32).

    Returns
    -------
    ids : numpy.ndarray of `dtype`, shape (T, B)
        ``ids[t, j]`` is token t of sequence j, 0 (the mask id) for t >= L_j.
    mask : numpy.ndarray of float32, shape (T, B)
        1.0 for t < L_j, else 0.0.

    Raises
    ------
    ValueError
        If ``sequences`` is empty, a sequence is not one-dimensional, or a
        sequence is longer than ``length``.
    """
    arrays = [np.asarray(s) for s in sequences]
    if not arrays:
        raise ValueError("pad_batch needs at least one sequence")
    for j, a in enumerate(arrays):
        if a.ndim != 1:
            raise ValueError(f"sequence {j} has shape {a.shape}; sequences must be one-dimensional")
    lengths = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    longest = int(lengths.max())
    if length is None:
        length = longest
    elif longest > length:
        raise ValueError(
            f"sequence {int(lengths.argmax())} has {longest} tokens, more than length={length}"
        )
    ids = np.zeros((length, len(arrays)), dtype=dtype)
    for j, a in enumerate(arrays):
        ids[: a.shape[0], j] = a
    mask = (np.arange(length)[:, None] < lengths[None, :]).astype(np.float32)
    return ids, mask


def bucket_length(n: int, bucket_width: int | None) -> int:
    """Round a length up to a multiple of ``bucket_width``.

    Parameters
    ----------
    n : int
        A length (>= 0).
    bucket_width : int or None
        The multiple; None leaves ``n`` unchanged.

    Returns
    -------
    int
        The smallest multiple of ``bucket_width`` that is >= ``n``.

    Raises
    ------
    ValueError
        If ``bucket_width`` is not positive or ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"length must be >= 0, got {n}")
    if bucket_width is None:
        return int(n)
    if bucket_width < 1:
        raise ValueError(f"bucket_width must be a positive integer, got {bucket_width}")
    return int(-(-n // bucket_width) * bucket_width)


def iterate_minibatches(
    X: Sequence[np.ndarray],
    Y: Sequence[np.ndarray],
    batch_size: int,
    rng=None,
    *,
    shuffle: bool = True,
    bucket: bool = True,
    bucket_width: int | None = None,
    pool_factor: int = 50,
) -> Iterator[Batch]:
    """Yield one epoch of padded minibatches; every sentence appears once.

    Parameters
    ----------
    X, Y : sequence of numpy.ndarray of int
        N input and N target sequences; ``X[i]`` and ``Y[i]`` have the same
        length L_i.
    batch_size : int
        Sentences per batch B (the last batch of an epoch may hold fewer).
    rng : numpy.random.Generator or numpy.random.RandomState or int or None
        Source of the shuffling; an int or None seeds ``default_rng``.
    shuffle : bool, optional
        Shuffle sentences (and, with bucketing, the batch order). With
        ``bucket=False`` the sentence order is ``rng.permutation(N)``, so
        ``batch_size=1`` reproduces the tutorial's per-sentence order.
    bucket : bool, optional
        Group sentences of similar length: cut the (shuffled) order into
        pools of ``batch_size * pool_factor``, sort each pool by length, cut
        it into batches, then shuffle the batch order.
    bucket_width : int, optional
        Pad every batch's T up to a multiple of this.
    pool_factor : int, optional
        Pool size in batches (default 50).

    Returns
    -------
    iterator of Batch
        ``x``, ``y`` int32 and ``mask`` float32 of shape (T, B), ``indices``
        of shape (B,). Arguments are checked and the order is drawn from
        ``rng`` when this function is called; batches are padded lazily.

    Raises
    ------
    ValueError
        On an empty corpus, mismatched ``X``/``Y``, or a non-positive
        ``batch_size``, ``pool_factor`` or ``bucket_width``.
    """
    n = len(X)
    if n != len(Y):
        raise ValueError(f"X holds {n} sequences but Y holds {len(Y)}")
    if n == 0:
        raise ValueError("no sequences to batch")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    if int(pool_factor) != pool_factor or pool_factor < 1:
        raise ValueError(f"pool_factor must be a positive integer, got {pool_factor}")
    if bucket_width is not None and bucket_width < 1:
        raise ValueError(f"bucket_width must be a positive integer, got {bucket_width}")
    batch_size = int(batch_size)
    lengths = np.fromiter((len(x) for x in X), dtype=np.int64, count=n)
    for i, (x, y) in enumerate(zip(X, Y)):
        if len(y) != lengths[i]:
            raise ValueError(f"X[{i}] has {lengths[i]} tokens but Y[{i}] has {len(y)}")
    if shuffle and not hasattr(rng, "permutation"):
        rng = np.random.default_rng(rng)

    order = rng.permutation(n) if shuffle else np.arange(n)
    if bucket:
        pool_size = batch_size * int(pool_factor)
        batches = []
        for start in range(0, n, pool_size):
            pool = order[start : start + pool_size]
            pool = pool[np.argsort(lengths[pool], kind="stable")]
            batches.extend(pool[i : i + batch_size] for i in range(0, len(pool), batch_size))
        if shuffle:
            batches = [batches[k] for k in rng.permutation(len(batches))]
    else:
        batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]

    # Arguments are checked and the order drawn when called; batches are
    # padded lazily as the generator is consumed.
    return _generate(X, Y, lengths, batches, bucket_width)


def _generate(X, Y, lengths, batches, bucket_width) -> Iterator[Batch]:
    for indices in batches:
        indices = np.asarray(indices, dtype=np.int64)
        T = bucket_length(int(lengths[indices].max()), bucket_width)
        x, mask = pad_batch([X[i] for i in indices], T, dtype=np.int32)
        y, _ = pad_batch([Y[i] for i in indices], T, dtype=np.int32)
        yield Batch(x, y, mask, indices)


def split_train_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint, seeded split of ``n`` sentence indices.

    Parameters
    ----------
    n : int
        Number of sentences.
    fraction : float in [0, 1)
        Share held out for validation (at least one sentence when > 0).
    seed : int

    Returns
    -------
    train, validation : ndarray of int, sorted
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), not {fraction!r}")
    order = np.random.default_rng([seed, 1]).permutation(n)
    n_valid = int(round(n * fraction))
    if fraction > 0 and n_valid == 0 and n > 1:
        n_valid = 1
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])
