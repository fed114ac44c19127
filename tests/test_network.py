"""The network's graph (symrnn/network.py) against float64 NumPy references and finite differences.

Every cell, both recurrence implementations (``scan``, the fused GRU) and both
output layers (``reference``, ``fused``): the loss and the gradients of every
parameter on padded batches, padding that never matters, and the fused
implementation's limits.
"""

from __future__ import annotations

import functools

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from symrnn import losses
from symrnn.backend import compile_mode
from symrnn.network import dropout, initial_values, parameter_shapes, stacked_states
from tests.model_cases import (
    D_SMALL, H_SMALL, LENGTHS, NUMPY_GATES, V_SMALL, GateRecorder, finite_difference_gradients, padded_batch,
    reference_loss, small_values,
)


GRAD_CONFIGS = [
    ("gru", 2, "hard_sigmoid", "scan", "reference"),
    ("gru", 2, "hard_sigmoid", "fused", "fused"),
    ("lstm", 2, "sigmoid", "scan", "fused"),
    ("rnn", 1, "sigmoid", "scan", "reference"),
]


def shared_params(values):
    return {name: pytensor.shared(np.asarray(value), name=name) for name, value in values.items()}


def network_loss(params, ids, targets, mask, num_layers, cell, gate, recurrence="auto", output_layer="auto",
                 truncate_gradient=-1):
    hidden, _ = stacked_states(params, ids, mask, num_layers, cell, gate, truncate_gradient=truncate_gradient,
                               recurrence=recurrence)
    return losses.masked_nll(hidden, params["output/W"], params["output/b"], targets, mask, output_layer)


@functools.lru_cache(maxsize=None)
def grad_case(cell, num_layers, gate, recurrence, output_layer):
    """The parameters (by name), their values and a compiled ``f(ids, targets, mask) -> [loss, n_tokens, *grads]``."""
    values = small_values(cell, num_layers, seed=10 + num_layers)
    params = shared_params(values)
    ids, targets, mask = pt.imatrix("ids"), pt.imatrix("targets"), pt.matrix("mask", dtype="float64")
    total, count = network_loss(params, ids, targets, mask, num_layers, cell, gate, recurrence, output_layer)
    grads = pytensor.grad(total, list(params.values()))
    return params, values, pytensor.function([ids, targets, mask], [total, count, *grads], mode=compile_mode("c"))


def named_grads(params, outputs):
    return dict(zip(params, outputs[2:]))


@pytest.mark.parametrize("config", GRAD_CONFIGS, ids=["-".join(map(str, c)) for c in GRAD_CONFIGS])
def test_gradients_of_the_loss_for_all_parameters_match_finite_differences_of_the_numpy_reference(config):
    cell, num_layers, gate = config[:3]
    params, values, fn = grad_case(*config)
    ids, targets, mask = padded_batch(seed=21)
    recorder = GateRecorder(NUMPY_GATES[gate])
    expected_loss = reference_loss(values, ids, targets, mask, cell, recorder, num_layers)
    if gate == "hard_sigmoid":
        assert recorder.distance_to_kinks() > 0.05
    outputs = fn(ids, targets, mask)
    np.testing.assert_allclose(outputs[0], expected_loss, rtol=1e-10)
    expected = finite_difference_gradients(
        lambda p: reference_loss(p, ids, targets, mask, cell, NUMPY_GATES[gate], num_layers), values
    )
    got = named_grads(params, outputs)
    assert set(got) == set(values)
    for name in values:
        assert got[name].shape == values[name].shape
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("config", GRAD_CONFIGS, ids=["-".join(map(str, c)) for c in GRAD_CONFIGS])
def test_padding_never_changes_the_loss_nor_the_gradients(config):
    _, _, fn = grad_case(*config)
    ids, targets, mask = padded_batch(seed=22)
    junk_ids, junk_targets, _ = padded_batch(seed=23)
    pad = mask == 0
    first = fn(ids, targets, mask)
    second = fn(np.where(pad, junk_ids, ids), np.where(pad, junk_targets, targets), mask)
    for a, b in zip(first, second):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    # And a sentence's gradient does not depend on how much padding follows it.
    n = LENGTHS[0]
    alone = fn(ids[:n, :1], targets[:n, :1], np.ones((n, 1)))
    ids3 = np.vstack([ids[:n, :1], junk_ids[:3, :1]])
    targets3 = np.vstack([targets[:n, :1], junk_targets[:3, :1]])
    mask3 = np.vstack([np.ones((n, 1)), np.zeros((3, 1))])
    extended = fn(ids3, targets3, mask3)
    for a, b in zip(alone, extended):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_the_scan_and_fused_gru_recurrences_and_both_output_layers_agree():
    _, values, scan_fn = grad_case("gru", 2, "hard_sigmoid", "scan", "reference")
    _, values2, fused_fn = grad_case("gru", 2, "hard_sigmoid", "fused", "fused")
    assert all(np.array_equal(values[k], values2[k]) for k in values)
    for seed in (30, 31):
        ids, targets, mask = padded_batch(seed)
        for a, b in zip(scan_fn(ids, targets, mask), fused_fn(ids, targets, mask)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


def test_the_fused_recurrence_refuses_truncated_gradients():
    inputs = pt.imatrix(), pt.imatrix(), pt.matrix(dtype="float64")
    with pytest.raises(ValueError, match="fused"):
        network_loss(shared_params(small_values("lstm", 1, seed=0)), *inputs, 1, "lstm", "sigmoid", recurrence="fused",
                     truncate_gradient=3)
    with pytest.raises(ValueError, match="fused"):
        network_loss(shared_params(small_values("gru", 1, seed=0)), *inputs, 1, "gru", "sigmoid", recurrence="fused",
                     truncate_gradient=3)


@pytest.mark.parametrize("cell,blocks", [("gru", 3), ("lstm", 4), ("rnn", 1)])
def test_parameter_shapes_name_every_layer_with_the_cells_gate_blocks(cell, blocks):
    shapes = parameter_shapes(V_SMALL, D_SMALL, H_SMALL, 2, cell)
    assert list(shapes) == ["embedding", "layer0/W_x", "layer0/W_h", "layer0/b", "layer1/W_x", "layer1/W_h", "layer1/b",
                            "output/W", "output/b"]
    assert shapes["embedding"] == (V_SMALL, D_SMALL)
    assert shapes["layer0/W_x"] == (D_SMALL, blocks * H_SMALL) and shapes["layer1/W_x"] == (H_SMALL, blocks * H_SMALL)
    assert shapes["layer1/W_h"] == (H_SMALL, blocks * H_SMALL) and shapes["layer1/b"] == (blocks * H_SMALL,)
    assert shapes["output/W"] == (H_SMALL, V_SMALL) and shapes["output/b"] == (V_SMALL,)


def test_initial_values_have_zero_biases_and_uniform_weights_within_the_documented_bounds():
    word_dim, hidden = 50, 16
    values = initial_values(parameter_shapes(word_dim, 8, hidden, 2, "gru"), np.random.default_rng(0))
    again = initial_values(parameter_shapes(word_dim, 8, hidden, 2, "gru"), np.random.default_rng(0))
    for name, value in values.items():
        np.testing.assert_array_equal(value, again[name])  # seeded
        if name.endswith("/b"):
            assert not value.any(), name
            continue
        bound = np.sqrt(1 / (word_dim if name == "embedding" else hidden))
        assert np.abs(value).max() <= bound, name
        assert np.abs(value).max() > 0.8 * bound, name


def test_dropout_zeroes_units_at_the_rate_scales_the_rest_and_returns_the_generators_next_state():
    x = pt.matrix("x", dtype="float32")
    rng = pytensor.shared(np.random.default_rng(3))
    dropped, next_rng = dropout(x, 0.25, rng)
    assert dropped.dtype == "float32"
    draw = pytensor.function([x], dropped, updates={rng: next_rng}, mode=compile_mode("c"))
    ones = np.ones((200, 50), dtype=np.float32)
    first, second = draw(ones), draw(ones)
    assert set(np.unique(first)) == {0.0, np.float32(1 / 0.75)}
    assert abs(np.mean(first == 0) - 0.25) < 0.02
    assert not np.array_equal(first, second)  # the generator moved on

