"""The Numba sampler (symrnn.ops.sampling_kernels) against float64 inverse-CDF sampling, at every row length."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from symrnn.ops import kernels, sampling_kernels
from symrnn.ops.sampling_kernels import BLOCK, sample_rows, sample_rows_in_blocks


def _float64_inverse_cdf(logits, inverse_temperature, uniforms):
    z = logits.astype(np.float64) * inverse_temperature
    p = np.exp(z - z.max(axis=1, keepdims=True))
    cdf = np.cumsum(p, axis=1)
    return (cdf <= uniforms[:, None] * cdf[:, -1:]).sum(axis=1)


def _sample(logits, inverse_temperature, uniforms):
    out = np.full(len(logits), -1, dtype=np.int32)
    sample_rows(np.ascontiguousarray(logits), np.float32(inverse_temperature), uniforms, out)
    return out


@pytest.mark.parametrize("V", [1, 7, 8, 9, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5, 8000])
def test_every_row_length_draws_what_float64_inverse_cdf_draws(V):
    rng = np.random.default_rng(V)
    logits = (rng.normal(size=(400, V)) * 3).astype(np.float32)
    uniforms = rng.random(400)
    uniforms[:2] = [0.0, np.nextafter(1.0, 0.0)]
    got = _sample(logits, 0.8, uniforms)
    want = np.minimum(_float64_inverse_cdf(logits, 0.8, uniforms), V - 1)
    # float32 exponentials may move a draw lying within about 1e-6 of a boundary to its neighbour.
    assert np.mean(got == want) > 0.995
    assert np.all(np.abs(got - want) <= 1)
    assert np.all((got >= 0) & (got < V))


def test_a_draw_at_the_top_of_the_range_takes_the_last_token_with_weight_never_one_without():
    V = 3 * BLOCK + 5
    logits = np.full((2, V), -np.inf, dtype=np.float32)
    logits[0, [3, BLOCK + 2]] = 0.0  # the last token with weight lies in the second block
    logits[1, V - 1] = 5.0
    got = _sample(logits, 1.0, np.array([np.nextafter(1.0, 0.0)] * 2))
    np.testing.assert_array_equal(got, [BLOCK + 2, V - 1])


def test_tokens_of_probability_zero_are_never_drawn():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2000, 200)).astype(np.float32)
    logits[:, ::3] = -np.inf
    got = _sample(logits, 1.0, rng.random(2000))
    assert not np.any(got % 3 == 0)


def test_a_large_batch_draws_in_row_blocks_on_the_kernels_threads_the_tokens_of_one_block(monkeypatch):
    rng = np.random.default_rng(5)
    B, V = 37, 8000
    logits = (rng.normal(size=(B, V)) * 2).astype(np.float32)
    uniforms = rng.random(B)
    want = _sample(logits, 1.3, uniforms)
    assert B * V >= sampling_kernels.PARALLEL_LOGITS
    monkeypatch.setattr(kernels, "thread_count", lambda: 3)
    threads = []
    real_sample_rows = sampling_kernels.sample_rows

    def spy(block, *args):
        threads.append((threading.current_thread().name, len(block)))
        return real_sample_rows(block, *args)

    monkeypatch.setattr(sampling_kernels, "sample_rows", spy)
    got = np.full(B, -1, dtype=np.int32)
    sample_rows_in_blocks(logits, np.float32(1.3), uniforms, got)
    np.testing.assert_array_equal(got, want)
    assert sorted(rows for _, rows in threads) == [12, 12, 13]
    assert sum(name.startswith("symrnn-kernels") for name, _ in threads) == 2


def test_a_small_batch_draws_in_one_block_on_the_calling_thread(monkeypatch):
    monkeypatch.setattr(kernels, "thread_count", lambda: 2)
    calls = []
    monkeypatch.setattr(sampling_kernels, "sample_rows", lambda block, *args: calls.append(len(block)))
    sample_rows_in_blocks(np.zeros((4, 100), np.float32), np.float32(1), np.zeros(4), np.zeros(4, np.int32))
    assert calls == [4]
