"""The fused GRU layer (symrnn.ops.gru) against the plain scan graph, NumPy and finite differences.

MODE (C-VM linker) runs the fused Ops as the project does; PY_MODE (no C
thunks) runs the reference scan graphs and the smaller checks.
"""

from __future__ import annotations

import functools

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.gradient import NullTypeGradError, disconnected_type, verify_grad

from symrnn.ops.gru import FusedGRU, FusedGRUGrad, fused_gru
from tests.fused_layer_checks import (
    GATES,
    MODE,
    PY_MODE,
    assert_fused_equals_scan_and_numpy,
    assert_padding_carries_the_states,
    assert_the_default_model_trains_with_the_fused_op,
    assert_windows_carry_the_states,
)


# --------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------


def numpy_sig(v, gate):
    if gate == "hard_sigmoid":
        return np.clip(0.2 * v + 0.5, 0.0, 1.0)
    return 1.0 / (1.0 + np.exp(-v))


def numpy_gru(projected, mask, h0, W, gate):
    """Float64 NumPy GRU layer, written step by step from the equations."""
    projected, mask, h0, W = (np.asarray(x, dtype=np.float64) for x in (projected, mask, h0, W))
    T, B, _ = projected.shape
    H = W.shape[0]
    h = h0
    hs = np.empty((T, B, H))
    for t in range(T):
        a = projected[t]
        z = numpy_sig(a[:, :H] + h @ W[:, :H], gate)
        r = numpy_sig(a[:, H : 2 * H] + h @ W[:, H : 2 * H], gate)
        c = np.tanh(a[:, 2 * H :] + (r * h) @ W[:, 2 * H :])
        h_new = (1 - z) * c + z * h
        m = mask[t][:, None]
        h = m * h_new + (1 - m) * h
        hs[t] = h
    return hs


def symbolic_sig(v, gate):
    if gate == "hard_sigmoid":
        # NumPy scalars of v's dtype: a Python 0.2 would upcast float32 to float64
        return pt.clip(np.asarray(0.2, v.dtype) * v + np.asarray(0.5, v.dtype), 0, 1)
    return pt.sigmoid(v)


def scan_gru(projected, mask, h0, W, H, gate, mode=None):
    """The same GRU layer as a plain ``pytensor.scan`` graph (inner graph run under ``mode``, default PY_MODE)."""
    projected, mask, h0, W = (pt.as_tensor_variable(x) for x in (projected, mask, h0, W))

    def step(a, m, h, W):
        z = symbolic_sig(a[:, :H] + h @ W[:, :H], gate)
        r = symbolic_sig(a[:, H : 2 * H] + h @ W[:, H : 2 * H], gate)
        c = pt.tanh(a[:, 2 * H :] + (r * h) @ W[:, 2 * H :])
        h_new = (1 - z) * c + z * h
        mc = m[:, None]
        return mc * h_new + (1 - mc) * h

    return pytensor.scan(
        step,
        sequences=[projected, mask],
        outputs_info=[h0],
        non_sequences=[W],
        mode=PY_MODE if mode is None else mode,
        return_updates=False,
    )


def gru_inputs(T, B, H, dtype="float64", seed=0, lengths=None, scale=1.0):
    """Random GRU inputs; ``lengths`` (B,) gives a padding mask."""
    rng = np.random.default_rng(seed)
    projected = (rng.normal(size=(T, B, 3 * H)) * scale).astype(dtype)
    h0 = (rng.normal(size=(B, H)) * 0.5 * scale).astype(dtype)
    W = (rng.normal(size=(H, 3 * H)) * scale / np.sqrt(H)).astype(dtype)
    if lengths is None:
        mask = np.ones((T, B), dtype=dtype)
    else:
        mask = (np.arange(T)[:, None] < np.asarray(lengths)[None, :]).astype(dtype)
    return projected, mask, h0, W


@functools.lru_cache(maxsize=None)
def compiled_pair(gate, dtype, H):
    """Compiled (fused, scan) functions returning hs and the gradients of sum(hs * R)."""
    P = pt.tensor3("P", dtype=dtype)
    M = pt.matrix("M", dtype=dtype)
    h0 = pt.matrix("h0", dtype=dtype)
    W = pt.matrix("W", dtype=dtype)
    R = pt.tensor3("R", dtype=dtype)
    fns = []
    for hs, mode in ((fused_gru(P, M, h0, W, gate=gate), MODE), (scan_gru(P, M, h0, W, H, gate), PY_MODE)):
        cost = pt.sum(hs * R)
        grads = pt.grad(cost, [P, h0, W])
        fns.append(pytensor.function([P, M, h0, W, R], [hs, *grads], mode=mode))
    return tuple(fns)


# --------------------------------------------------------------------------
# GRU forward
# --------------------------------------------------------------------------


@pytest.mark.parametrize("gate", GATES)
def test_fused_gru_forward_equals_numpy_and_the_scan_graph_in_float64(gate):
    T, B, H = 7, 4, 5
    P, M, h0, W = gru_inputs(T, B, H, lengths=[7, 3, 1, 5], seed=1)
    R = np.random.default_rng(2).normal(size=(T, B, H))
    fused, scan = compiled_pair(gate, "float64", H)
    hs_fused = fused(P, M, h0, W, R)[0]
    hs_scan = scan(P, M, h0, W, R)[0]
    np.testing.assert_allclose(hs_fused, numpy_gru(P, M, h0, W, gate), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hs_fused, hs_scan, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("gate", GATES)
def test_padded_steps_keep_the_previous_state(gate):
    T, B, H = 6, 3, 4
    lengths = [6, 2, 4]
    P, M, h0, W = gru_inputs(T, B, H, lengths=lengths, seed=3)
    f = pytensor.function([], fused_gru(P, M, h0, W, gate=gate), mode=PY_MODE)
    hs = f()
    for j, L in enumerate(lengths):
        for t in range(L, T):
            np.testing.assert_array_equal(hs[t, j], hs[L - 1, j])
    # an unpadded run over the real tokens gives the same states
    j = 1
    hs_j = pytensor.function([], fused_gru(P[:2, j : j + 1], M[:2, j : j + 1], h0[j : j + 1], W, gate=gate), mode=PY_MODE)()
    np.testing.assert_allclose(hs[:2, j : j + 1], hs_j, rtol=1e-12)


def test_a_fully_padded_sequence_keeps_h0():
    P, M, h0, W = gru_inputs(3, 2, 4, lengths=[3, 0], seed=4)
    hs = pytensor.function([], fused_gru(P, M, h0, W), mode=PY_MODE)()
    np.testing.assert_array_equal(hs[:, 1], np.broadcast_to(h0[1], (3, 4)))


# --------------------------------------------------------------------------
# GRU gradients
# --------------------------------------------------------------------------


@pytest.mark.parametrize("gate", GATES)
def test_fused_gru_gradients_equal_the_scan_graph_gradients_in_float64(gate):
    T, B, H = 7, 4, 5
    P, M, h0, W = gru_inputs(T, B, H, lengths=[7, 3, 1, 5], seed=5)
    R = np.random.default_rng(6).normal(size=(T, B, H))
    fused, scan = compiled_pair(gate, "float64", H)
    got = fused(P, M, h0, W, R)
    want = scan(P, M, h0, W, R)
    for name, g, w in zip(["hs", "d_projected", "d_h0", "d_W_h"], got, want):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12, err_msg=name)
    # padded steps pass no gradient into their projections
    assert not np.any(got[1][3:, 1])
    assert not np.any(got[1][1:, 2])


@pytest.mark.parametrize("gate", GATES)
def test_fused_gru_gradients_agree_with_finite_differences(gate):
    T, B, H = 4, 2, 3
    # small weights and projections keep 0.2 v + 0.5 well inside (0, 1)
    P, M, h0, W = gru_inputs(T, B, H, lengths=[4, 3], seed=7, scale=0.5)
    assert np.all(np.abs(P) < 2.0)

    def fun(P, h0, W):
        return fused_gru(P, M, h0, W, gate=gate)

    verify_grad(fun, [P, h0, W], rng=np.random.default_rng(8), mode=PY_MODE)


@pytest.mark.parametrize("gate", GATES)
def test_fused_gru_gradients_with_respect_to_h0_projected_and_W_h_equal_finite_differences_of_the_numpy_reference(gate):
    assert_fused_equals_scan_and_numpy("gru", gate)


@pytest.mark.parametrize("gate", GATES)
def test_a_fully_padded_sequence_passes_its_state_gradient_straight_to_h0(gate):
    assert_padding_carries_the_states("gru", gate)


@pytest.mark.parametrize("gate", GATES)
def test_three_windows_fed_each_others_final_states_equal_one_pass(gate):
    assert_windows_carry_the_states("gru", gate)


def test_the_default_gru_language_model_trains_with_the_fused_op_and_the_scan_graphs_loss_and_gradients():
    assert_the_default_model_trains_with_the_fused_op("gru", "hard_sigmoid", FusedGRU)


def test_hard_sigmoid_gradient_follows_pytensors_clip_convention():
    # PyTensor's clip gradient is 1 on the closed interval [lo, hi], 0 outside.
    u = pt.dvector("u")
    clip_grad = pytensor.function([u], pt.grad(pt.clip(u, 0, 1).sum(), u), mode=PY_MODE)
    np.testing.assert_array_equal(clip_grad(np.array([-0.1, 0.0, 0.5, 1.0, 1.1])), [0, 1, 1, 1, 0])
    # The fused GRU's z-gate derivative with h0 = 0, W_h = 0 (so v = a_z):
    # 0.2 * 2.5 + 0.5 == 1 and 0.2 * -2.5 + 0.5 == 0 exactly in float64.
    a_z = np.array([-3.0, -2.5, 0.0, 2.5, 3.0])
    u = 0.2 * a_z + 0.5
    assert u[1] == 0.0 and u[3] == 1.0 and u[0] < 0 and u[4] > 1
    B, H = len(a_z), 1
    P = np.zeros((1, B, 3), dtype="float64")
    P[0, :, 0] = a_z
    P[0, :, 2] = 0.3  # candidate c = tanh(0.3) != h0 = 0, so dL/dz != 0
    Pv = pt.tensor3("P")
    hs = fused_gru(Pv, np.ones((1, B)), np.zeros((B, H)), np.zeros((H, 3 * H)))
    d_P = pytensor.function([Pv], pt.grad(hs.sum(), Pv), mode=PY_MODE)(P)
    dz = d_P[0, :, 0]
    expected = 0.2 * np.array([0, 1, 1, 1, 0]) * (0.0 - np.tanh(0.3))
    np.testing.assert_allclose(dz, expected, rtol=1e-12, atol=0)


def test_gradient_with_respect_to_only_W_h_works():
    T, B, H = 5, 3, 4
    P, M, h0, W = gru_inputs(T, B, H, lengths=[5, 2, 4], seed=9)
    R = np.random.default_rng(10).normal(size=(T, B, H))
    Wv = pt.matrix("W", dtype="float64")
    hs = fused_gru(P, M, h0, Wv)
    f = pytensor.function([Wv], pt.grad(pt.sum(hs * R), Wv), mode=PY_MODE)
    _, scan = compiled_pair("hard_sigmoid", "float64", H)
    np.testing.assert_allclose(f(W), scan(P, M, h0, W, R)[3], rtol=1e-9, atol=1e-12)


def test_gradient_of_a_cost_on_the_last_state_only():
    T, B, H = 5, 2, 3
    P, M, h0, W = gru_inputs(T, B, H, seed=11)
    Pv, h0v = pt.tensor3("P"), pt.matrix("h0")
    cost = fused_gru(Pv, M, h0v, W)[-1].sum()
    fused = pytensor.function([Pv, h0v], pt.grad(cost, [Pv, h0v]), mode=PY_MODE)
    cost_scan = scan_gru(Pv, M, h0v, W, H, "hard_sigmoid")[-1].sum()
    scan = pytensor.function([Pv, h0v], pt.grad(cost_scan, [Pv, h0v]), mode=PY_MODE)
    for g, w in zip(fused(P, h0), scan(P, h0)):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)


def test_pullback_accepts_a_missing_or_disconnected_gradient_of_either_output():
    P, M, h0, W = gru_inputs(3, 2, 4, seed=16)
    Pv = pt.tensor3("P")
    hs, acts = FusedGRU()(Pv, M, h0, W)
    node = hs.owner
    G = pt.tensor3("G")
    for missing in (None, disconnected_type()):
        d_P = node.op.L_op(node.inputs, node.outputs, [G, missing])[0]
        assert isinstance(d_P.owner.op, FusedGRUGrad)
    # no gradient reaching hs (only acts is disconnected too): zero gradients
    d_P = node.op.L_op(node.inputs, node.outputs, [disconnected_type(), None])[0]
    np.testing.assert_array_equal(pytensor.function([Pv], d_P, mode=PY_MODE)(P), 0)
    # a cost on the (non-differentiable) activations output is refused
    with pytest.raises(NullTypeGradError):
        pt.grad(acts.sum(), Pv)


def test_the_mask_has_no_gradient():
    P, M, h0, W = gru_inputs(2, 2, 3)
    Mv = pt.matrix("M")
    with pytest.raises(NullTypeGradError):
        pt.grad(fused_gru(P, Mv, h0, W).sum(), Mv)


@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("T,B", [(1, 3), (4, 1), (1, 1)])
def test_single_step_and_single_sequence(gate, T, B):
    H = 3
    P, M, h0, W = gru_inputs(T, B, H, seed=12)
    R = np.random.default_rng(13).normal(size=(T, B, H))
    fused, scan = compiled_pair(gate, "float64", H)
    for name, g, w in zip(["hs", "d_projected", "d_h0", "d_W_h"], fused(P, M, h0, W, R), scan(P, M, h0, W, R)):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12, err_msg=name)


def test_zero_time_steps_give_empty_states_and_zero_weight_gradient():
    P, M, h0, W = gru_inputs(0, 2, 3)
    h0v, Wv = pt.matrix("h0"), pt.matrix("W")
    hs = fused_gru(P, M, h0v, Wv)
    f = pytensor.function([h0v, Wv], [hs, *pt.grad(hs.sum(), [h0v, Wv])], mode=PY_MODE)
    hs_val, d_h0, d_W = f(h0, W)
    assert hs_val.shape == (0, 2, 3)
    assert not d_h0.any() and not d_W.any()


@pytest.mark.parametrize("gate", GATES)
def test_float32_in_gives_float32_out_and_float32_gradients(gate):
    T, B, H = 6, 3, 5
    P, M, h0, W = gru_inputs(T, B, H, dtype="float32", lengths=[6, 4, 2], seed=14)
    R = np.random.default_rng(15).normal(size=(T, B, H)).astype("float32")
    Pv = pt.tensor3("P", dtype="float32")
    Mv = pt.matrix("M", dtype="float32")
    h0v = pt.matrix("h0", dtype="float32")
    Wv = pt.matrix("W", dtype="float32")
    hs = fused_gru(Pv, Mv, h0v, Wv, gate=gate)
    grads = pt.grad(pt.sum(hs * R), [Pv, h0v, Wv])
    assert hs.dtype == "float32"
    assert all(g.dtype == "float32" for g in grads)
    outs = pytensor.function([Pv, Mv, h0v, Wv], [hs, *grads], mode=MODE)(P, M, h0, W)
    assert all(o.dtype == np.float32 for o in outs)
    fused64, _ = compiled_pair(gate, "float64", H)
    want = fused64(*(x.astype("float64") for x in (P, M, h0, W, R)))
    for o, w in zip(outs, want):
        np.testing.assert_allclose(o, w, rtol=1e-4, atol=1e-5)


def test_a_float32_mask_is_cast_to_the_float64_layer():
    P, M, h0, W = gru_inputs(3, 2, 3, lengths=[3, 1])
    hs = fused_gru(P, M.astype("float32"), h0, W)
    assert hs.dtype == "float64"
    got = pytensor.function([], hs, mode=PY_MODE)()
    np.testing.assert_allclose(got, numpy_gru(P, M, h0, W, "hard_sigmoid"), rtol=1e-12)


def test_mixed_float_dtypes_are_rejected():
    P, M, h0, W = gru_inputs(3, 2, 3)
    with pytest.raises(TypeError, match="one dtype"):
        fused_gru(P, M, h0.astype("float32"), W)
    with pytest.raises(TypeError, match="one dtype"):
        FusedGRU()(P, M.astype("float32"), h0, W)
    with pytest.raises(ValueError, match="gate"):
        FusedGRU("relu")


def test_mismatched_runtime_shapes_are_rejected():
    Pv, Mv, h0v, Wv = pt.tensor3("P"), pt.matrix("M"), pt.matrix("h0"), pt.matrix("W")
    f = pytensor.function([Pv, Mv, h0v, Wv], fused_gru(Pv, Mv, h0v, Wv), mode=PY_MODE)
    P, M, h0, W = gru_inputs(3, 2, 4)
    with pytest.raises(ValueError, match="shapes disagree"):
        f(P, M, h0[:, :3], W)
    with pytest.raises(ValueError, match="shapes disagree"):
        f(P[:, :, :-1], M, h0, W)


def test_the_shape_of_the_states_is_known_without_running_the_layer():
    Pv, Mv, h0v, Wv = pt.tensor3("P"), pt.matrix("M"), pt.matrix("h0"), pt.matrix("W")
    f = pytensor.function([Pv, Mv, h0v, Wv], fused_gru(Pv, Mv, h0v, Wv).shape, mode=MODE, on_unused_input="ignore")
    assert not any(isinstance(n.op, FusedGRU) for n in f.maker.fgraph.apply_nodes)
    P, M, h0, W = gru_inputs(3, 2, 4)
    assert tuple(f(P, M, h0, W)) == (3, 2, 4)


def test_ops_compare_equal_by_gate():
    assert FusedGRU("sigmoid") == FusedGRU("sigmoid")
    assert FusedGRU("sigmoid") != FusedGRU("hard_sigmoid")
    assert FusedGRUGrad("sigmoid") == FusedGRUGrad("sigmoid")
    assert hash(FusedGRU()) == hash(FusedGRU("hard_sigmoid"))


# --------------------------------------------------------------------------
# The Numba kernels' float32 arithmetic, strides, padding and NaN
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def compiled_fused(gate, dtype):
    """Compiled fused layer: ``f(P, M, h0, W, R) -> [hs, d_P, d_h0, d_W]`` of the cost ``sum(hs * R)``."""
    P, R = pt.tensor3("P", dtype=dtype), pt.tensor3("R", dtype=dtype)
    M, h0, W = (pt.matrix(name, dtype=dtype) for name in ("M", "h0", "W"))
    hs = fused_gru(P, M, h0, W, gate=gate)
    return pytensor.function([P, M, h0, W, R], [hs, *pt.grad(pt.sum(hs * R), [P, h0, W])], mode=MODE)


def float64_references(gate, P, M, h0, W, R):
    """hs of the float64 NumPy layer and the gradients of the float64 scan graph, from float32 inputs."""
    P, M, h0, W, R = (x.astype("float64") for x in (P, M, h0, W, R))
    _, scan = compiled_pair(gate, "float64", W.shape[0])
    return [numpy_gru(P, M, h0, W, gate), *scan(P, M, h0, W, R)[1:]]


@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("T,B", [(1, 1), (1, 12), (6, 3), (5, 12)])
def test_float32_states_and_gradients_equal_the_float64_references_within_float32_rounding(gate, T, B):
    # B = 12 takes the matrix-matrix products, B <= 8 one matrix-vector product per row
    H = 5
    lengths = None if T == 1 else [T - i % 3 for i in range(B)]
    P, M, h0, W = gru_inputs(T, B, H, dtype="float32", lengths=lengths, seed=30 + T + B)
    R = np.random.default_rng(31).normal(size=(T, B, H)).astype("float32")
    got = compiled_fused(gate, "float32")(P, M, h0, W, R)
    want = float64_references(gate, P, M, h0, W, R)
    for name, g, w in zip(["hs", "d_projected", "d_h0", "d_W_h"], got, want):
        assert g.dtype == np.float32, name
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=name)


def nan_patterns(values):
    return [np.isnan(v) for v in values]


@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("where", ["projected", "W_h"])
def test_a_nan_in_the_inputs_reaches_the_states_and_gradients_the_float64_references_give_nan(gate, where):
    # training skips a step whose loss is NaN: no fast-math flag may drop a NaN or make one up
    T, B, H = 5, 12, 5
    P, M, h0, W = gru_inputs(T, B, H, dtype="float32", lengths=[5, 4, 3] * 4, seed=33)
    if where == "projected":
        P[2, 1, 7] = np.nan  # the reset gate of sequence 1 at step 2: the other sequences stay finite
    else:
        W[3, 2 * H + 1] = np.nan  # a candidate weight: every state turns NaN from step 1 on
    R = np.random.default_rng(34).normal(size=(T, B, H)).astype("float32")
    got = nan_patterns(compiled_fused(gate, "float32")(P, M, h0, W, R))
    want = nan_patterns(float64_references(gate, P, M, h0, W, R))
    for name, g, w in zip(["hs", "d_projected", "d_h0", "d_W_h"], got, want):
        np.testing.assert_array_equal(g, w, err_msg=name)
    hs_nan = got[0]
    if where == "projected":
        assert hs_nan[2:, 1].any() and not np.delete(hs_nan, 1, axis=1).any()
    else:
        assert hs_nan[1:].all() and got[3].all()


@pytest.mark.parametrize("gate", GATES)
def test_transposed_sliced_and_read_only_inputs_give_the_results_of_contiguous_ones(gate):
    T, B, H = 4, 3, 5
    P, M, h0, W = gru_inputs(T, B, H, dtype="float32", lengths=[4, 2, 3], seed=35)
    R = np.random.default_rng(36).normal(size=(T, B, H)).astype("float32")
    want = compiled_fused(gate, "float32")(P, M, h0, W, R)
    # the graph hands the Ops views: projected (B, T, 3H) transposed, W_h every other column of a wider
    # matrix, h0 and the mask transposed; the cost weights R are a read-only constant
    P_bt, M_bt, h0_t = (pt.tensor3("P_bt", dtype="float32"), pt.matrix("M_bt", dtype="float32"),
                        pt.matrix("h0_t", dtype="float32"))  # fmt: skip
    W_wide = pt.matrix("W_wide", dtype="float32")
    hs = fused_gru(P_bt.dimshuffle(1, 0, 2), M_bt.T, h0_t.T, W_wide[:, ::2], gate=gate)
    read_only_R = R.copy()
    read_only_R.flags.writeable = False
    grads = pt.grad(pt.sum(hs * pt.constant(read_only_R)), [P_bt, h0_t, W_wide])
    f = pytensor.function([P_bt, M_bt, h0_t, W_wide], [hs, *grads], mode=MODE)
    W_wide_value = np.zeros((H, 6 * H), dtype="float32")
    W_wide_value[:, ::2] = W
    inputs = [np.ascontiguousarray(x) for x in (P.transpose(1, 0, 2), M.T, h0.T)]
    got_hs, d_P_bt, d_h0_t, d_W_wide = f(*inputs, W_wide_value)
    np.testing.assert_array_equal(got_hs, want[0])
    np.testing.assert_array_equal(d_P_bt.transpose(1, 0, 2), want[1])
    np.testing.assert_array_equal(d_h0_t.T, want[2])
    np.testing.assert_array_equal(d_W_wide[:, ::2], want[3])
    assert not d_W_wide[:, 1::2].any()


@pytest.mark.parametrize("gate", GATES)
def test_fully_padded_float32_sequences_keep_h0_and_pass_their_state_gradient_straight_to_it(gate):
    T, B, H = 4, 12, 5
    lengths = [0, 3, 0, 4] * 3
    P, M, h0, W = gru_inputs(T, B, H, dtype="float32", lengths=lengths, seed=37)
    R = np.random.default_rng(38).normal(size=(T, B, H)).astype("float32")
    hs, d_P, d_h0, d_W = compiled_fused(gate, "float32")(P, M, h0, W, R)
    padded = [j for j, L in enumerate(lengths) if L == 0]
    np.testing.assert_array_equal(hs[:, padded], np.broadcast_to(h0[padded], (T, len(padded), H)))
    np.testing.assert_allclose(d_h0[padded], R[:, padded].astype("float64").sum(axis=0), rtol=1e-6, atol=1e-6)
    assert not d_P[:, padded].any()
    # a batch with no token at all: no weight gradient either
    _, d_P, d_h0, d_W = compiled_fused(gate, "float32")(P, np.zeros_like(M), h0, W, R)
    assert not d_P.any() and not d_W.any()
    np.testing.assert_allclose(d_h0, R.astype("float64").sum(axis=0), rtol=1e-6, atol=1e-6)
