"""Truncated backpropagation through time, for batches shorter than, as long as and
longer than the truncation.

The reference is scan's meaning of ``truncate_gradient=k`` written in float64
NumPy: the gradient reaches only the last ``k`` steps, so the states entering
that window and everything before it are constants. Its gradients are taken by
finite differences of a loss in which the steps before the window run on
frozen copies of the inputs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from pytensor.graph.traversal import apply_ancestors
from pytensor.scan.op import Scan

from symrnn.backend import compile_mode
from symrnn.checkpoint import load_checkpoint
from symrnn.recurrence import recurrent_layer
from tests import numpy_reference as ref

REPO = Path(__file__).resolve().parents[1]
K = 3
LENGTHS = (1, K - 1, K, K + 1, 2 * K + 1)  # below, at and above the truncation
BATCH, HIDDEN = 2, 3
GATE = "sigmoid"  # smooth, so finite differences hold everywhere


def gate_blocks(cell: str) -> int:
    return {"rnn": 1, "gru": 3, "lstm": 4}[cell]


def numpy_window_cost(cell, live, frozen, mask, weights, k):
    """Sum of ``weights[t] * h_t`` over the last ``k`` steps; earlier steps run on ``frozen``."""
    step, _ = ref.NUMPY_CELLS[cell]
    T = len(mask)
    start = max(T - k, 0)
    states = list((frozen if start > 0 else live)["initial"])
    cost = 0.0
    for t in range(T):
        values = frozen if t < start else live
        args = (values["projected"][t], *states, values["W_h"])
        new = step(*args) if cell == "rnn" else step(*args, gate=ref.sigmoid)
        m = mask[t][:, None]
        states = [m * n + (1 - m) * o for n, o in zip(new, states)]
        if t >= start:
            cost += np.sum(weights[t] * states[0])
    return cost


@pytest.fixture(scope="module", params=["rnn", "gru", "lstm"])
def truncated_layer(request):
    """A compiled truncated ``scan`` layer: (cost over every step, gradients)."""
    cell = request.param
    n_states = ref.NUMPY_CELLS[cell][1]
    projected = pt.tensor3("projected", dtype="float64")
    mask = pt.matrix("mask", dtype="float64")
    weights = pt.tensor3("weights", dtype="float64")
    W_h = pt.matrix("W_h", dtype="float64")
    initial = [pt.matrix(f"initial{i}", dtype="float64") for i in range(n_states)]
    states = recurrent_layer(cell, projected, mask, initial, W_h, gate=GATE, truncate_gradient=K, implementation="auto")
    cost = pt.sum(weights * states[0])  # every step's output: the early ones must pass no gradient
    fn = pytensor.function([projected, mask, weights, W_h, *initial], [cost, *pytensor.grad(cost, [projected, W_h, *initial])],
                           mode=compile_mode("c"))
    return cell, n_states, fn


def case(cell, n_states, length, seed):
    rng = np.random.default_rng(seed)
    kH = gate_blocks(cell) * HIDDEN
    mask = np.ones((length, BATCH))
    mask[length // 2 + 1:, 1] = 0.0  # the second row is padded at the end
    return {
        "projected": rng.normal(0, 0.7, (length, BATCH, kH)),
        "W_h": rng.normal(0, 0.5, (HIDDEN, kH)),
        "initial": [rng.normal(0, 0.5, (BATCH, HIDDEN)) for _ in range(n_states)],
    }, mask, rng.normal(size=(length, BATCH, HIDDEN))


@pytest.mark.parametrize("length", LENGTHS)
def test_truncated_scan_gradients_equal_the_numpy_window_reference_for_every_batch_length(truncated_layer, length):
    cell, n_states, fn = truncated_layer
    live, mask, weights = case(cell, n_states, length, seed=length)
    frozen = {"projected": live["projected"].copy(), "W_h": live["W_h"].copy(), "initial": [s.copy() for s in live["initial"]]}
    _, d_projected, d_W_h, *d_initial = fn(live["projected"], mask, weights, live["W_h"], *live["initial"])
    cost = lambda: numpy_window_cost(cell, live, frozen, mask, weights, K)
    np.testing.assert_allclose(d_projected, ref.numerical_gradient(cost, live["projected"]), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(d_W_h, ref.numerical_gradient(cost, live["W_h"]), rtol=1e-6, atol=1e-8)
    for got, state in zip(d_initial, live["initial"]):
        np.testing.assert_allclose(got, ref.numerical_gradient(cost, state), rtol=1e-6, atol=1e-8)
    before_window = max(length - K, 0)
    assert not np.any(d_projected[:before_window])
    assert np.any(d_projected[before_window:])


def test_truncated_scan_keeps_the_forward_values_of_full_backpropagation(truncated_layer):
    cell, n_states, fn = truncated_layer
    live, mask, weights = case(cell, n_states, 2 * K + 1, seed=1)
    full = numpy_window_cost(cell, live, live, mask, weights, k=10**6)
    np.testing.assert_allclose(fn(live["projected"], mask, weights, live["W_h"], *live["initial"])[0], full, rtol=1e-12)


def test_the_fused_gru_refuses_truncation_so_auto_takes_scan():
    x = pt.tensor3(dtype="float64")
    m = pt.matrix(dtype="float64")
    h, W = pt.matrix(dtype="float64"), pt.matrix(dtype="float64")
    with pytest.raises(ValueError, match="fused"):
        recurrent_layer("gru", x, m, [h], W, truncate_gradient=K, implementation="fused")
    (auto,) = recurrent_layer("gru", x, m, [h], W, truncate_gradient=K, implementation="auto")
    assert any(isinstance(node.op, Scan) for node in apply_ancestors([auto]))


# --------------------------------------------------------------------------
# The tutorial's part 2 RNNTheano with its default bptt_truncate=4
# --------------------------------------------------------------------------


def part2_window_loss(U, V, W, frozen, x, y, k):
    """Part 2's loss; the recurrence before the last ``k`` steps runs on ``frozen`` (U, W)."""
    start = max(len(x) - k, 0)
    s = np.zeros(W.shape[0])
    loss = 0.0
    for t, word in enumerate(x):
        U_t, W_t = (frozen[0], frozen[1]) if t < start else (U, W)
        s = np.tanh(U_t[:, word] + W_t @ s)
        loss -= np.log(ref.softmax(V @ s)[y[t]])
    return loss


@pytest.fixture(scope="module")
def rnn_theano():
    from models.rnn import RNNTheano

    np.random.seed(3)
    return RNNTheano(12, hidden_dim=4, bptt_truncate=4, dtype="float64")


@pytest.mark.parametrize("length", (1, 3, 4, 5, 9))
def test_rnn_theano_bptt_truncate_4_equals_the_part_2_window_reference(rnn_theano, length):
    rng = np.random.default_rng(length)
    ids = rng.integers(0, 12, length + 1).astype(np.int32)
    x, y = ids[:-1], ids[1:]
    U, V, W = (p.get_value().copy() for p in rnn_theano.params)
    frozen = (U.copy(), W.copy())
    dU, dV, dW = rnn_theano.bptt(x, y)
    loss = lambda: part2_window_loss(U, V, W, frozen, x, y, 4)
    np.testing.assert_allclose(dU, ref.numerical_gradient(loss, U), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dW, ref.numerical_gradient(loss, W), rtol=1e-6, atol=1e-8)
    full = lambda: part2_window_loss(U, V, W, (U, W), x, y, 4)  # V lies outside the recurrence
    np.testing.assert_allclose(dV, ref.numerical_gradient(full, V), rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------
# The tutorial's part 4 GRUTheano
# --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("length", (1, 2, 3, 5))
def test_gru_theano_bptt_truncate_2_equals_the_window_reference_for_every_length(length):
    from models.gru import GRUTheano

    np.random.seed(4)
    model = GRUTheano(10, hidden_dim=3, bptt_truncate=2, dtype="float64")
    rng = np.random.default_rng(length)
    values = {p.name: rng.uniform(-0.5, 0.5, p.get_value().shape) for p in model.params}
    for p in model.params:
        p.set_value(values[p.name])
    names = ("E", "U", "W", "V", "b", "c")
    frozen = [values[n].copy() for n in names]
    ids = rng.integers(0, 10, length + 1).astype(np.int32)
    x, y = ids[:-1], ids[1:]
    got = dict(zip(["E", "U", "W", "b", "V", "c"], model.bptt(x, y)))
    work = {n: values[n] for n in names}
    window = lambda: ref.tutorial_gru_window_loss([work[n] for n in names], frozen, x, y, 2)
    for name in ("E", "U", "W", "b"):
        np.testing.assert_allclose(got[name], ref.numerical_gradient(window, work[name]), rtol=1e-5, atol=1e-8, err_msg=name)


# --------------------------------------------------------------------------
# train.py with the tutorial's part 2 setting
# --------------------------------------------------------------------------


def test_train_py_with_bptt_truncate_4_and_batch_size_1_trains_short_and_long_sentences_and_saves(tmp_path):
    data = tmp_path / "two.csv"
    data.write_text('body\n"Hi there."\n"This much longer sentence has many more words than four, so its '
                    'gradient really is truncated."\n', encoding="utf-8")
    model = tmp_path / "model.npz"
    env = dict(os.environ, CACHE_DIR="off", INPUT_DATA_FILE=str(data), MODEL_OUTPUT_FILE=str(model), BPTT_TRUNCATE="4",
               BATCH_SIZE="1", NEPOCH="2", VOCABULARY_SIZE="30", HIDDEN_DIM="8", EMBEDDING_DIM="4", NUM_SAMPLES="0")
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "train.py")], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    checkpoint = load_checkpoint(model)
    assert checkpoint.settings["bptt_truncate"] == 4
    assert all(np.all(np.isfinite(v)) for v in checkpoint.params.values())
