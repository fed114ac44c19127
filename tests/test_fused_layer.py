"""The fused layers' row blocks (symrnn.ops.fused_layer): a batch split across threads computes what one block does."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from symrnn.ops import fused_layer, kernels
from symrnn.ops.gru import FusedGRU
from symrnn.ops.lstm import FusedLSTM
from symrnn.ops.rnn import FusedRNN
from tests import fused_layer_checks as checks

OPS = {"gru": FusedGRU("hard_sigmoid"), "lstm": FusedLSTM("hard_sigmoid"), "rnn": FusedRNN()}


@pytest.fixture
def three_row_blocks(monkeypatch):
    """Every batch of 3 rows or more runs in 3 row blocks (one row each at least)."""
    monkeypatch.setattr(fused_layer, "_MIN_BLOCK_ROWS", 1)
    for op in (FusedGRU, FusedLSTM, FusedRNN):
        for layer in (op, op().grad_op().__class__):
            monkeypatch.setattr(layer, "row_block_work", 0)
            monkeypatch.setattr(layer, "row_block_layer_work", 0)
    monkeypatch.setattr(kernels, "thread_count", lambda: 3)


def test_row_blocks_give_each_thread_enough_rows_and_cover_the_batch_once(monkeypatch):
    monkeypatch.setattr(kernels, "thread_count", lambda: 2)
    rows = 2 * fused_layer._MIN_BLOCK_ROWS
    assert fused_layer.row_blocks(1) == [0, 1]
    assert fused_layer.row_blocks(rows - 1) == [0, rows - 1]
    assert fused_layer.row_blocks(rows) == [0, rows // 2, rows]
    assert fused_layer.row_blocks(65) == [0, 32, 65]
    monkeypatch.setattr(kernels, "thread_count", lambda: 1)
    assert fused_layer.row_blocks(64) == [0, 64]


def test_a_pass_splits_only_where_both_its_step_and_its_whole_work_are_large_enough(monkeypatch):
    monkeypatch.setattr(kernels, "thread_count", lambda: 2)
    layer = FusedGRU()  # a step of B rows: B * H * 3H multiply-adds
    monkeypatch.setattr(FusedGRU, "row_block_work", 64 * 4 * 12)
    monkeypatch.setattr(FusedGRU, "row_block_layer_work", 3 * 64 * 4 * 12)
    assert layer.row_bounds(3, 64, 4) == [0, 32, 64]
    assert layer.row_bounds(2, 64, 4) == [0, 64]  # the pass is too small
    assert layer.row_bounds(100, 63, 4) == [0, 63]  # a step is too small


def test_at_the_tutorial_s_sizes_training_splits_batch_64_of_the_gru_and_lstm_and_one_generated_token_does_not(
    monkeypatch,
):
    monkeypatch.setattr(kernels, "thread_count", lambda: 2)
    for op, blocks in ((FusedGRU(), 2), (FusedLSTM(), 2), (FusedRNN(), 1)):
        for layer in (op, op.grad_op()):
            assert len(layer.row_bounds(20, 64, 128)) == blocks + 1
            assert layer.row_bounds(1, 64, 128) == [0, 64]
    assert FusedLSTM().grad_op().row_bounds(8, 64, 128) == [0, 64]  # its backward pays later
    assert len(FusedRNN().row_bounds(50, 50, 512)) == 3  # large: the RNN splits too


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
@pytest.mark.parametrize("gate", ["hard_sigmoid", "sigmoid"])
def test_a_layer_in_row_blocks_equals_the_scan_graph_and_the_numpy_reference(cell, gate, three_row_blocks):
    checks.assert_fused_equals_scan_and_numpy(cell, gate)
    checks.assert_padding_carries_the_states(cell, gate)


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_float32_row_blocks_on_threads_give_the_one_block_results(cell, monkeypatch):
    op = OPS[cell]
    T, B, H = 6, 40, 8
    P, M, initial, W = checks.layer_inputs(cell, T, B, H, dtype="float32", seed=21, lengths=[6, 0, 3, 5] * 10)
    G = checks.cost_weights(cell, T, B, H, dtype="float32", seed=22)
    monkeypatch.setattr(kernels, "thread_count", lambda: 1)
    states, acts = op.forward(P, M, initial, W)
    want = op.grad_op().gradients(M, initial, W, states, acts, G)
    monkeypatch.setattr(kernels, "thread_count", lambda: 3)
    monkeypatch.setattr(fused_layer, "_MIN_BLOCK_ROWS", 4)
    for layer in (type(op), type(op.grad_op())):
        monkeypatch.setattr(layer, "row_block_work", 0)
        monkeypatch.setattr(layer, "row_block_layer_work", 0)
    assert op.row_bounds(T, B, H) == [0, 13, 26, 40]
    workers = []
    submit = kernels.worker_pool(2).submit

    def spy(fn, *args):
        def run(*inner):
            workers.append(threading.current_thread().name)
            return fn(*inner)
        return submit(run, *args)

    monkeypatch.setattr(kernels, "worker_pool", lambda count: type("Pool", (), {"submit": staticmethod(spy)}))
    out = {}
    op.perform(None, [P, M, *initial, W], [out.setdefault(i, [None]) for i in range(op.n_states + 1)])
    for got, expected in zip([out[i][0] for i in range(op.n_states + 1)], [*states, acts]):
        # BLAS may round a product of fewer rows differently: float32 rounding apart
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    got = op.grad_op().gradients(M, initial, W, states, acts, G)
    # two blocks of three on the pool in the forward pass, two in the backward pass
    assert len(workers) == 4 and all(name.startswith("symrnn-kernels") for name in workers)
    assert all(g.dtype == np.float32 for g in (got[0], *got[1], got[2]))
    for g, w in zip((got[0], *got[1], got[2]), (want[0], *want[1], want[2])):  # d_W_h: summed in another order too
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_the_lstm_and_rnn_backward_kernels_get_w_h_transposed_as_a_contiguous_copy_and_the_gru_w_h_itself():
    W_h = np.arange(4 * 16, dtype=np.float32).reshape(4, 16)
    for op in (FusedLSTM(), FusedRNN()):
        weights = op.grad_op().backward_weights(W_h[:, : 4 * op.blocks])
        assert weights.flags.c_contiguous and not np.shares_memory(weights, W_h)
        np.testing.assert_array_equal(weights, W_h[:, : 4 * op.blocks].T)
    assert FusedGRU().grad_op().backward_weights(W_h) is W_h
