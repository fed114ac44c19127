"""The Numba kernels (symrnn.ops.kernels): the vectorised exp, and the softmax kernel on one thread and on row blocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numba
import numpy as np
import pytest

from symrnn.ops import kernels
from symrnn.ops.background_compile import compile_in_background

ROOT = Path(__file__).resolve().parent.parent


def test_the_exp_kernel_is_within_two_float32_ulps_of_exp_on_the_whole_useful_range():
    x = np.linspace(-87.0, 0.0, 200_001).astype(np.float32)
    got = x.copy()
    kernels.exp_shifted_inplace(got, np.float32(0.0), np.empty(len(x), dtype=np.int32))
    want = np.exp(x.astype(np.float64))
    assert np.max(np.abs(got - want) / want) < 2.5e-7
    shifted = np.array([3.0, 2.0, -200.0], dtype=np.float32)
    kernels.exp_shifted_inplace(shifted, np.float32(3.0), np.empty(3, dtype=np.int32))
    np.testing.assert_allclose(shifted[:2], [1.0, np.exp(-1.0)], rtol=2e-7)
    assert shifted[2] == 0.0  # below the range: exactly zero, never inf or nan


def reference(logits, bias, targets, weights):
    """Float64 NumPy: the weighted loss, its gradient with respect to the logits, and the column sums."""
    z = logits.astype(np.float64) + bias
    lse = np.log(np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1)) + z.max(axis=1)
    rows = np.arange(len(z))
    d = np.exp(z - lse[:, None])
    d[rows, targets] -= 1
    d *= weights[:, None]
    return float(np.dot(weights, lse - z[rows, targets])), d, d.sum(axis=0)


def random_batch(N, V, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(N, V)).astype(np.float32) * 3
    bias = rng.normal(size=V).astype(np.float32)
    targets = rng.integers(0, V, size=N).astype(np.int32)
    weights = rng.uniform(0.5, 1.0, size=N).astype(np.float32)
    weights[[1, N - 2]] = 0
    return logits, bias, targets, weights


@pytest.mark.parametrize("n_threads", [1, 2, 3, 40])
def test_row_blocks_on_several_threads_equal_the_float64_reference_and_the_one_thread_result(n_threads):
    logits, bias, targets, weights = random_batch(37, 300)
    loss, d_logits, d_bias = reference(logits, bias, targets, weights)
    one = logits.copy()
    one_loss, one_bias = kernels.softmax_cross_entropy_inplace(one, bias, targets, weights, 1)
    got = logits.copy()
    got_loss, got_bias = kernels.softmax_cross_entropy_inplace(got, bias, targets, weights, n_threads)
    assert got.dtype == np.float32 and got_bias.dtype == np.float32
    np.testing.assert_allclose(got_loss, loss, rtol=1e-6)
    np.testing.assert_allclose(got, d_logits, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got_bias, d_bias, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(got, one)  # rows are independent of the blocks they fall in
    np.testing.assert_allclose(got_bias, one_bias, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_loss, one_loss, rtol=1e-12)
    assert np.all(got[[1, 35]] == 0)  # weight 0: no gradient


def test_the_kernel_runs_its_other_row_blocks_on_its_own_worker_threads():
    logits, bias, targets, weights = random_batch(64, 50, seed=3)
    kernels.softmax_cross_entropy_inplace(logits, bias, targets, weights, 4)
    workers = [t for t in threading.enumerate() if t.name.startswith("symrnn-kernels_")]
    assert len(workers) >= 3  # one per block but the caller's (a pool made for more blocks earlier is kept)


def test_a_non_finite_logit_in_any_row_block_makes_the_loss_nan():
    logits, bias, targets, weights = random_batch(30, 40, seed=4)
    logits[25, (targets[25] + 1) % 40] = np.nan  # a row of the last block
    loss, _ = kernels.softmax_cross_entropy_inplace(logits, bias, targets, weights, 3)
    assert np.isnan(loss)


def test_starting_the_compilation_in_the_background_compiles_the_kernel_for_those_targets():
    kernels.start_compiling_softmax(np.int16)  # a dtype no other test uses
    for thread in threading.enumerate():
        if thread.name == "symrnn-compile":
            thread.join()
    assert any(signature[2].dtype == numba.int16 for signature in kernels.softmax_cross_entropy_rows.signatures)
    logits, bias, targets, weights = random_batch(5, 20, seed=6)
    loss, _, _ = reference(logits, bias, targets, weights)
    got, _ = kernels.softmax_cross_entropy_inplace(logits, bias, targets.astype(np.int16), weights)
    np.testing.assert_allclose(got, loss, rtol=1e-6)


@pytest.mark.parametrize(
    "row",
    [[-3.0, -1.5, -7.0, -0.25], [0.0, -0.0, 0.0, -0.0], [-80.0, 80.0, 3.0, 79.5], [1.0, 2.0, 3.0, 4.0], [-0.0, -5.0, -1e-30, -2.0]],
    ids=["all negative", "signed zeros", "far apart", "maximum last", "maximum tiny negative"],
)
def test_the_kernel_s_row_maximum_keeps_the_exponentials_exact_for_any_signs(row):
    assert kernels._max_of(np.array(row, np.float32), np.empty(1, np.int32)) == max(row)
    logits = np.array([row] * 3, dtype=np.float32)
    bias, targets, weights = np.zeros(4, np.float32), np.array([0, 1, 3], np.int32), np.ones(3, np.float32)
    loss, d_logits, _ = reference(logits, bias, targets, weights)
    got_loss, _ = kernels.softmax_cross_entropy_inplace(logits, bias, targets, weights)
    np.testing.assert_allclose(got_loss, loss, rtol=1e-6)
    np.testing.assert_allclose(logits, d_logits, rtol=1e-5, atol=1e-7)


def test_a_background_compilation_runs_once_per_key():
    calls = []
    for _ in range(3):
        compile_in_background(("test", "once"), lambda: calls.append(1))
    for thread in threading.enumerate():
        if thread.name == "symrnn-compile":
            thread.join()
    assert calls == [1]


@pytest.mark.parametrize("cell, module, op", [("gru", "gru_kernels", "fused_gru"), ("lstm", "lstm_kernels", "fused_lstm"),
                                              ("rnn", "rnn_kernels", "fused_rnn")])
def test_building_a_fused_layer_graph_compiles_its_forward_and_backward_kernels_in_the_background(tmp_path, cell, module, op):
    states = "[h0, h0]" if cell == "lstm" else "[h0]"
    code = (
        "import json, threading\n"
        "import pytensor.tensor as pt\n"
        f"from symrnn.ops import {cell}, {module}\n"
        "projected, mask, h0, W_h = pt.tensor3(dtype='float32'), pt.matrix(dtype='float32'), pt.matrix(dtype='float32'), "
        "pt.matrix(dtype='float32')\n"
        f"getattr({cell}, '{op}')(projected, mask, *{states}, W_h)\n"
        "[t.join() for t in threading.enumerate() if t.name == 'symrnn-compile']\n"
        f"print(json.dumps([len(getattr({module}, '{cell}_' + name).signatures) for name in ('forward', 'backward')]))\n"
    )
    (tmp_path / "probe.py").write_text(code)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, str(tmp_path / "probe.py")], capture_output=True, text=True, env=env, check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == [1, 1]
