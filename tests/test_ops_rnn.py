"""The fused tanh RNN layer (symrnn.ops.rnn) against the scan graph, float64 NumPy and finite differences."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.gradient import NullTypeGradError, verify_grad

from symrnn.ops.rnn import FusedRNN, FusedRNNGrad, fused_rnn
from tests.fused_layer_checks import (
    assert_a_fully_padded_float32_batch_keeps_its_initial_states,
    assert_float32_is_within_float32_rounding_of_the_float64_scan,
    assert_nan_reaches_the_states_and_gradients,
    assert_strided_inputs_give_the_results_of_contiguous_ones,
    PY_MODE,
    assert_float32_stays_float32,
    assert_fused_equals_scan_and_numpy,
    assert_padding_carries_the_states,
    assert_the_default_model_trains_with_the_fused_op,
    assert_the_generation_step_uses_the_fused_op,
    assert_windows_carry_the_states,
    layer_inputs,
)

# The RNN has no gates; recurrent_layer passes the model's gate and the RNN ignores it.
GATE = "sigmoid"


def test_fused_rnn_states_and_gradients_equal_the_scan_graph_and_the_numpy_reference():
    assert_fused_equals_scan_and_numpy("rnn", GATE)


def test_padded_steps_carry_the_state_and_pass_their_gradient_to_the_initial_state():
    assert_padding_carries_the_states("rnn", GATE)


def test_fused_rnn_gradients_agree_with_finite_differences_of_the_op():
    P, M, (h0,), W = layer_inputs("rnn", 4, 2, 3, seed=7, lengths=[4, 2])
    verify_grad(lambda P, h0, W: fused_rnn(P, M, h0, W), [P, h0, W], rng=np.random.default_rng(8), mode=PY_MODE)


def test_float32_in_gives_float32_states_and_gradients():
    assert_float32_stays_float32("rnn", GATE)


def test_three_windows_fed_each_others_final_states_equal_one_pass():
    assert_windows_carry_the_states("rnn", GATE)


def test_the_default_rnn_language_model_trains_with_the_fused_op_and_the_scan_graphs_loss_and_gradients():
    assert_the_default_model_trains_with_the_fused_op("rnn", GATE, FusedRNN)


def test_the_default_generation_step_runs_the_fused_op_and_equals_the_step_function():
    assert_the_generation_step_uses_the_fused_op("rnn", GATE, FusedRNN)


def test_zero_time_steps_give_empty_states_and_zero_gradients():
    P, M, (h0,), W = layer_inputs("rnn", 0, 2, 3)
    h0v, Wv = pt.matrix("h0"), pt.matrix("W")
    hs = fused_rnn(P, M, h0v, Wv)
    hs_val, d_h0, d_W = pytensor.function([h0v, Wv], [hs, *pt.grad(hs.sum(), [h0v, Wv])], mode=PY_MODE)(h0, W)
    assert hs_val.shape == (0, 2, 3)
    assert not d_h0.any() and not d_W.any()


def test_the_mask_has_no_gradient():
    P, M, (h0,), W = layer_inputs("rnn", 2, 2, 3)
    Mv = pt.matrix("M")
    with pytest.raises(NullTypeGradError):
        pt.grad(fused_rnn(P, Mv, h0, W).sum(), Mv)


def test_mixed_dtypes_and_wrong_inputs_are_rejected():
    P, M, (h0,), W = layer_inputs("rnn", 3, 2, 3)
    with pytest.raises(TypeError, match="one dtype"):
        fused_rnn(P, M, h0, W.astype("float32"))
    with pytest.raises(TypeError, match="h0"):
        FusedRNN()(P, M, W)
    with pytest.raises(TypeError, match="float32 or float64"):
        fused_rnn(P.astype("int32"), M, h0, W)


def test_mismatched_runtime_shapes_are_rejected():
    Pv, h0v, Wv = pt.tensor3("P"), pt.matrix("h0"), pt.matrix("W")
    P, M, (h0,), W = layer_inputs("rnn", 3, 2, 4)
    f = pytensor.function([Pv, h0v, Wv], fused_rnn(Pv, M, h0v, Wv), mode=PY_MODE)
    with pytest.raises(ValueError, match="fused RNN shapes disagree"):
        f(P, h0[:1], W)
    with pytest.raises(ValueError, match="fused RNN shapes disagree"):
        f(P, h0, W[:, :3])


def test_the_ops_have_no_parameters():
    assert FusedRNN() == FusedRNN() and FusedRNNGrad() == FusedRNNGrad()
    assert hash(FusedRNN()) == hash(FusedRNN())


def test_float32_states_and_gradients_are_within_float32_rounding_of_the_float64_scan_graph():
    assert_float32_is_within_float32_rounding_of_the_float64_scan("rnn", GATE)


def test_a_single_time_step_equals_the_scan_graph_and_the_numpy_reference():
    assert_fused_equals_scan_and_numpy("rnn", GATE, T=1)


def test_a_nan_in_the_weights_or_inputs_reaches_the_states_and_gradients():
    assert_nan_reaches_the_states_and_gradients("rnn", GATE)


def test_a_fully_padded_float32_batch_keeps_its_initial_state_and_passes_it_the_whole_gradient():
    assert_a_fully_padded_float32_batch_keeps_its_initial_states("rnn", GATE)


def test_strided_and_fortran_ordered_inputs_give_the_results_of_contiguous_ones():
    assert_strided_inputs_give_the_results_of_contiguous_ones(FusedRNN(), "rnn")
