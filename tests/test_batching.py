"""Tests of symrnn.batching: padding, bucketing and minibatch iteration."""

import numpy as np
import pytest

from symrnn.batching import (
    Batch,
    bucket_length,
    iterate_minibatches,
    pad_batch,
)


def _corpus(n=257, seed=0, max_len=40):
    """N ragged int32 (X, Y) pairs of random lengths; X[i] is filled with i."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_len + 1, size=n)
    X = [np.full(L, i + 1, dtype=np.int32) for i, L in enumerate(lengths)]
    Y = [np.arange(1, L + 1, dtype=np.int32) for L in lengths]
    return X, Y


# ---------------------------------------------------------------------------
# pad_batch
# ---------------------------------------------------------------------------


def test_pad_batch_is_time_major_pads_with_zero_and_masks_only_real_tokens():
    ids, mask = pad_batch([[5, 6, 7], [8], [9, 10]])
    assert ids.shape == mask.shape == (3, 3)
    assert ids.dtype == np.int32 and mask.dtype == np.float32
    np.testing.assert_array_equal(ids, [[5, 8, 9], [6, 0, 10], [7, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 1], [1, 0, 0]])


def test_pad_batch_pads_to_a_given_length_and_dtype():
    ids, mask = pad_batch([np.array([1, 2], dtype=np.int64)], length=4, dtype="int64")
    assert ids.dtype == np.int64
    np.testing.assert_array_equal(ids[:, 0], [1, 2, 0, 0])
    np.testing.assert_array_equal(mask[:, 0], [1, 1, 0, 0])


def test_pad_batch_rejects_a_sequence_longer_than_length_and_an_empty_list():
    with pytest.raises(ValueError, match="more than length"):
        pad_batch([[1, 2, 3]], length=2)
    with pytest.raises(ValueError, match="at least one"):
        pad_batch([])
    with pytest.raises(ValueError, match="one-dimensional"):
        pad_batch([np.zeros((2, 2), dtype=np.int32)])


# ---------------------------------------------------------------------------
# bucket_length
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, width, expected",
    [(1, 8, 8), (8, 8, 8), (9, 8, 16), (0, 8, 0), (13, 1, 13), (13, None, 13)],
)
def test_bucket_length_rounds_up_to_a_multiple_of_the_width(n, width, expected):
    assert bucket_length(n, width) == expected


def test_bucket_length_rejects_a_non_positive_width():
    with pytest.raises(ValueError):
        bucket_length(5, 0)


# ---------------------------------------------------------------------------
# iterate_minibatches
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("bucket", [True, False])
@pytest.mark.parametrize("shuffle", [True, False])
def test_iterate_minibatches_covers_every_sentence_exactly_once_per_epoch(bucket, shuffle):
    X, Y = _corpus()
    seen = []
    for batch in iterate_minibatches(
        X, Y, 16, np.random.default_rng(1), shuffle=shuffle, bucket=bucket, pool_factor=4
    ):
        assert isinstance(batch, Batch)
        assert batch.x.dtype == batch.y.dtype == np.int32
        assert batch.mask.dtype == np.float32
        assert batch.x.shape == batch.y.shape == batch.mask.shape
        assert batch.x.shape[1] == len(batch.indices) <= 16
        seen.extend(batch.indices.tolist())
    assert sorted(seen) == list(range(len(X)))


def test_iterate_minibatches_columns_hold_the_right_sentences_and_masks():
    X, Y = _corpus()
    for batch in iterate_minibatches(X, Y, 10, np.random.default_rng(2)):
        for j, i in enumerate(batch.indices):
            L = len(X[i])
            np.testing.assert_array_equal(batch.x[:L, j], X[i])
            np.testing.assert_array_equal(batch.y[:L, j], Y[i])
            assert (batch.x[L:, j] == 0).all() and (batch.y[L:, j] == 0).all()
            assert batch.mask[:L, j].sum() == L and batch.mask[L:, j].sum() == 0
        assert batch.x.shape[0] == max(len(X[i]) for i in batch.indices)


def test_iterate_minibatches_pads_every_batch_to_a_multiple_of_bucket_width():
    X, Y = _corpus()
    total = 0
    for batch in iterate_minibatches(X, Y, 8, np.random.default_rng(3), bucket_width=8):
        T = batch.x.shape[0]
        assert T % 8 == 0
        assert T - 8 < max(len(X[i]) for i in batch.indices) <= T
        total += int(np.count_nonzero(batch.mask))
    assert total == sum(len(x) for x in X)


def test_iterate_minibatches_with_batch_size_one_follows_the_rng_permutation():
    X, Y = _corpus(n=50)
    order = [
        int(b.indices[0])
        for b in iterate_minibatches(X, Y, 1, np.random.default_rng(7), bucket=False)
    ]
    np.testing.assert_array_equal(order, np.random.default_rng(7).permutation(len(X)))
    # The same holds for a legacy RandomState.
    order = [
        int(b.indices[0])
        for b in iterate_minibatches(X, Y, 1, np.random.RandomState(7), bucket=False)
    ]
    np.testing.assert_array_equal(order, np.random.RandomState(7).permutation(len(X)))


def test_iterate_minibatches_bucketing_wastes_less_padding_than_random_batches():
    X, Y = _corpus(n=1000)

    def padded(bucket):
        return sum(
            b.mask.size
            for b in iterate_minibatches(X, Y, 20, np.random.default_rng(4), bucket=bucket)
        )

    assert padded(True) < 0.75 * padded(False)


def test_iterate_minibatches_is_reproducible_for_a_seed_and_varies_between_seeds():
    X, Y = _corpus()

    def orders(seed):
        return [
            b.indices.tolist()
            for b in iterate_minibatches(X, Y, 16, np.random.default_rng(seed), pool_factor=2)
        ]

    assert orders(5) == orders(5)
    assert orders(5) != orders(6)


def test_iterate_minibatches_without_shuffle_keeps_the_order_and_needs_no_rng():
    X, Y = _corpus(n=30)
    batches = list(iterate_minibatches(X, Y, 7, None, shuffle=False, bucket=False))
    assert [b.indices.tolist() for b in batches] == [
        list(range(s, min(s + 7, 30))) for s in range(0, 30, 7)
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(batch_size=0),
        dict(batch_size=2.5),
        dict(batch_size=4, pool_factor=0),
        dict(batch_size=4, bucket_width=0),
    ],
)
def test_iterate_minibatches_rejects_invalid_settings_when_called(kwargs):
    X, Y = _corpus(n=10)
    with pytest.raises(ValueError):
        iterate_minibatches(X, Y, rng=np.random.default_rng(0), **kwargs)


def test_iterate_minibatches_rejects_mismatched_or_empty_data():
    X, Y = _corpus(n=10)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        iterate_minibatches(X, Y[:-1], 4, rng)
    with pytest.raises(ValueError):
        iterate_minibatches(X, [y[:-1] for y in Y], 4, rng)
    with pytest.raises(ValueError):
        iterate_minibatches([], [], 4, rng)
