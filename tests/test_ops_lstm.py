"""The fused LSTM layer (symrnn.ops.lstm) against the scan graph, float64 NumPy and finite differences."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.gradient import NullTypeGradError, verify_grad

from symrnn.ops.lstm import FusedLSTM, FusedLSTMGrad, fused_lstm
from tests.fused_layer_checks import (
    assert_a_fully_padded_float32_batch_keeps_its_initial_states,
    assert_float32_is_within_float32_rounding_of_the_float64_scan,
    assert_nan_reaches_the_states_and_gradients,
    assert_strided_inputs_give_the_results_of_contiguous_ones,
    GATES,
    PY_MODE,
    assert_float32_stays_float32,
    assert_fused_equals_scan_and_numpy,
    assert_padding_carries_the_states,
    assert_the_default_model_trains_with_the_fused_op,
    assert_the_generation_step_uses_the_fused_op,
    assert_windows_carry_the_states,
    layer_inputs,
    numpy_layer,
)


@pytest.mark.parametrize("gate", GATES)
def test_fused_lstm_states_and_gradients_equal_the_scan_graph_and_the_numpy_reference(gate):
    assert_fused_equals_scan_and_numpy("lstm", gate)


@pytest.mark.parametrize("gate", GATES)
def test_padded_steps_carry_both_states_and_pass_their_gradient_to_the_initial_states(gate):
    assert_padding_carries_the_states("lstm", gate)


@pytest.mark.parametrize("gate", GATES)
def test_fused_lstm_gradients_agree_with_finite_differences_of_the_op(gate):
    # small inputs keep 0.2 v + 0.5 inside (0, 1), away from the hard sigmoid's kinks
    P, M, (h0, c0), W = layer_inputs("lstm", 4, 2, 3, seed=7, lengths=[4, 3], scale=0.3)

    def both_states(P, h0, c0, W):
        hs, cs = fused_lstm(P, M, h0, c0, W, gate=gate)
        return hs + 2 * cs

    verify_grad(both_states, [P, h0, c0, W], rng=np.random.default_rng(8), mode=PY_MODE)


def test_a_cost_on_the_cell_states_alone_reaches_h0_c0_and_the_weights():
    P, M, (h0, c0), W = layer_inputs("lstm", 5, 3, 4, seed=9, lengths=[5, 2, 4], scale=0.5)
    Pv, h0v, c0v, Wv = pt.tensor3("P"), pt.matrix("h0"), pt.matrix("c0"), pt.matrix("W")
    _, cs = fused_lstm(Pv, M, h0v, c0v, Wv)
    grads = pytensor.function([Pv, h0v, c0v, Wv], pt.grad(cs[-1].sum(), [Pv, h0v, c0v, Wv]), mode=PY_MODE)(P, h0, c0, W)
    eps = 1e-6
    for x, g in zip([P, h0, c0, W], grads):
        i = np.unravel_index(np.argmax(np.abs(g)), g.shape)
        old = x[i]
        x[i] = old + eps
        up = numpy_layer("lstm", P, M, [h0, c0], W, "sigmoid")[1][-1].sum()
        x[i] = old - eps
        down = numpy_layer("lstm", P, M, [h0, c0], W, "sigmoid")[1][-1].sum()
        x[i] = old
        assert g[i] != 0
        np.testing.assert_allclose(g[i], (up - down) / (2 * eps), rtol=1e-6)


@pytest.mark.parametrize("gate", GATES)
def test_float32_in_gives_float32_states_and_gradients(gate):
    assert_float32_stays_float32("lstm", gate)


@pytest.mark.parametrize("gate", GATES)
def test_three_windows_fed_each_others_final_states_equal_one_pass(gate):
    assert_windows_carry_the_states("lstm", gate)


def test_the_default_lstm_language_model_trains_with_the_fused_op_and_the_scan_graphs_loss_and_gradients():
    assert_the_default_model_trains_with_the_fused_op("lstm", "sigmoid", FusedLSTM)


def test_the_default_generation_step_runs_the_fused_op_and_equals_the_step_function():
    assert_the_generation_step_uses_the_fused_op("lstm", "sigmoid", FusedLSTM)


def test_zero_time_steps_give_empty_states_and_zero_gradients():
    P, M, (h0, c0), W = layer_inputs("lstm", 0, 2, 3)
    h0v, c0v, Wv = pt.matrix("h0"), pt.matrix("c0"), pt.matrix("W")
    hs, cs = fused_lstm(P, M, h0v, c0v, Wv)
    outs = pytensor.function([h0v, c0v, Wv], [hs, cs, *pt.grad(hs.sum() + cs.sum(), [h0v, c0v, Wv])], mode=PY_MODE)(
        h0, c0, W
    )
    assert outs[0].shape == outs[1].shape == (0, 2, 3)
    assert not any(g.any() for g in outs[2:])


def test_the_mask_has_no_gradient_and_the_activations_are_not_differentiable():
    P, M, (h0, c0), W = layer_inputs("lstm", 2, 2, 3)
    Mv, Pv = pt.matrix("M"), pt.tensor3("P")
    with pytest.raises(NullTypeGradError):
        pt.grad(fused_lstm(P, Mv, h0, c0, W)[0].sum(), Mv)
    acts = FusedLSTM()(Pv, M, h0, c0, W)[2]
    with pytest.raises(NullTypeGradError):
        pt.grad(acts.sum(), Pv)


def test_mixed_dtypes_wrong_inputs_and_unknown_gates_are_rejected():
    P, M, (h0, c0), W = layer_inputs("lstm", 3, 2, 3)
    with pytest.raises(TypeError, match="one dtype"):
        fused_lstm(P, M, h0, c0.astype("float32"), W)
    with pytest.raises(TypeError, match="c0"):
        FusedLSTM()(P, M, h0, W)
    with pytest.raises(TypeError, match="3-dimensional"):
        fused_lstm(P[0], M, h0, c0, W)
    with pytest.raises(ValueError, match="gate"):
        FusedLSTM("relu")


def test_mismatched_runtime_shapes_are_rejected():
    Pv, h0v, c0v, Wv = pt.tensor3("P"), pt.matrix("h0"), pt.matrix("c0"), pt.matrix("W")
    P, M, (h0, c0), W = layer_inputs("lstm", 3, 2, 4)
    f = pytensor.function([Pv, h0v, c0v, Wv], fused_lstm(Pv, M, h0v, c0v, Wv), mode=PY_MODE)
    with pytest.raises(ValueError, match="fused LSTM shapes disagree"):
        f(P, h0, c0[:, :3], W)
    with pytest.raises(ValueError, match="fused LSTM shapes disagree"):
        f(P[:, :, :-4], h0, c0, W[:, :-4])


def test_the_shapes_of_the_states_are_known_without_running_the_layer():
    Pv, Mv, h0v, c0v, Wv = pt.tensor3("P"), pt.matrix("M"), pt.matrix("h0"), pt.matrix("c0"), pt.matrix("W")
    hs, cs = fused_lstm(Pv, Mv, h0v, c0v, Wv)
    f = pytensor.function([Pv, Mv, h0v, c0v, Wv], [hs.shape, cs.shape], on_unused_input="ignore")
    assert not any(isinstance(n.op, FusedLSTM) for n in f.maker.fgraph.apply_nodes)
    P, M, (h0, c0), W = layer_inputs("lstm", 3, 2, 4)
    assert [tuple(s) for s in f(P, M, h0, c0, W)] == [(3, 2, 4), (3, 2, 4)]


def test_ops_compare_equal_by_gate():
    assert FusedLSTM() == FusedLSTM("sigmoid") != FusedLSTM("hard_sigmoid")
    assert FusedLSTMGrad("hard_sigmoid") == FusedLSTMGrad("hard_sigmoid")
    assert hash(FusedLSTM()) == hash(FusedLSTM("sigmoid"))


@pytest.mark.parametrize("gate", GATES)
def test_float32_states_and_gradients_are_within_float32_rounding_of_the_float64_scan_graph(gate):
    assert_float32_is_within_float32_rounding_of_the_float64_scan("lstm", gate)


@pytest.mark.parametrize("gate", GATES)
def test_a_single_time_step_equals_the_scan_graph_and_the_numpy_reference(gate):
    assert_fused_equals_scan_and_numpy("lstm", gate, T=1)


@pytest.mark.parametrize("gate", GATES)
def test_a_nan_in_the_weights_or_inputs_reaches_the_states_and_gradients(gate):
    assert_nan_reaches_the_states_and_gradients("lstm", gate)


@pytest.mark.parametrize("gate", GATES)
def test_a_fully_padded_float32_batch_keeps_its_initial_states_and_passes_them_the_whole_gradient(gate):
    assert_a_fully_padded_float32_batch_keeps_its_initial_states("lstm", gate)


@pytest.mark.parametrize("gate", GATES)
def test_strided_and_fortran_ordered_inputs_give_the_results_of_contiguous_ones(gate):
    assert_strided_inputs_give_the_results_of_contiguous_ones(FusedLSTM(gate), "lstm")
