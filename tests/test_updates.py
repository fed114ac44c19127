"""The update rules (symrnn/updates.py) against NumPy update rules."""

from __future__ import annotations

import math

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from symrnn import updates as update_rules
from tests import numpy_reference as ref




# The rules are plain expressions: a quickly compiled Python-linker function runs them exactly.
QUICK = pytensor.compile.mode.Mode(linker="py", optimizer="fast_compile")


def shared_params():
    rng = np.random.default_rng(50)
    return [pytensor.shared(rng.normal(size=(2, 3)), name="p1"), pytensor.shared(rng.normal(size=4), name="p2")]


def gradient_sequence(steps=4):
    rng = np.random.default_rng(51)
    return [(rng.normal(size=(2, 3)) * (k + 1), rng.normal(size=4)) for k in range(steps)]


def compile_rule(rule, params, **kwargs):
    g1, g2 = pt.matrix("g1", dtype="float64"), pt.vector("g2", dtype="float64")
    updates = rule([g1, g2], params, **kwargs)
    return pytensor.function([g1, g2], [], updates=updates, mode=QUICK), updates


def test_sgd_rule_equals_numpy_sgd_over_several_steps():
    params = shared_params()
    expected = [p.get_value() for p in params]
    fn, updates = compile_rule(update_rules.sgd, params, learning_rate=0.1)
    assert update_rules.optimizer_state(updates, params) == {}
    for grads in gradient_sequence():
        fn(*grads)
        expected = [ref.sgd_step(p, g, 0.1) for p, g in zip(expected, grads)]
        for param, value in zip(params, expected):
            np.testing.assert_allclose(param.get_value(), value, rtol=1e-12)


@pytest.mark.parametrize("fused", [False, True])
def test_rmsprop_rule_equals_numpy_rmsprop_over_several_steps_with_named_caches(fused):
    params = shared_params()
    expected = [p.get_value() for p in params]
    caches = [np.zeros_like(v) for v in expected]
    fn, updates = compile_rule(update_rules.rmsprop, params, learning_rate=0.05, decay=0.8, fused=fused)
    state = update_rules.optimizer_state(updates, params)
    assert sorted(state) == ["p1/rmsprop_cache", "p2/rmsprop_cache"]
    for grads in gradient_sequence():
        fn(*grads)
        for i, g in enumerate(grads):
            expected[i], caches[i] = ref.rmsprop_step(expected[i], g, caches[i], 0.05, 0.8, 1e-6)
        for param, value in zip(params, expected):
            np.testing.assert_allclose(param.get_value(), value, rtol=1e-12)
        np.testing.assert_allclose(state["p1/rmsprop_cache"].get_value(), caches[0], rtol=1e-12)
        np.testing.assert_allclose(state["p2/rmsprop_cache"].get_value(), caches[1], rtol=1e-12)


def test_adam_rule_equals_numpy_adam_over_several_steps_with_named_moments_and_step():
    params = shared_params()
    expected = [p.get_value() for p in params]
    ms = [np.zeros_like(v) for v in expected]
    vs = [np.zeros_like(v) for v in expected]
    fn, updates = compile_rule(update_rules.adam, params, learning_rate=0.01)
    state = update_rules.optimizer_state(updates, params)
    assert sorted(state) == ["adam/step", "p1/adam_m", "p1/adam_v", "p2/adam_m", "p2/adam_v"]
    for t, grads in enumerate(gradient_sequence(), start=1):
        fn(*grads)
        for i, g in enumerate(grads):
            expected[i], ms[i], vs[i] = ref.adam_step(expected[i], g, ms[i], vs[i], t, 0.01)
        for param, value in zip(params, expected):
            np.testing.assert_allclose(param.get_value(), value, rtol=1e-12)
        assert state["adam/step"].get_value() == t
        np.testing.assert_allclose(state["p2/adam_m"].get_value(), ms[1], rtol=1e-12)
        np.testing.assert_allclose(state["p2/adam_v"].get_value(), vs[1], rtol=1e-12)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_by_global_norm_scales_all_gradients_together_like_numpy(max_norm, fused):
    g1, g2 = pt.matrix("g1", dtype="float64"), pt.vector("g2", dtype="float64")
    clipped, norm = update_rules.clip_by_global_norm([g1, g2], max_norm, fused=fused)
    fn = pytensor.function([g1, g2], [*clipped, norm], mode=QUICK)
    for grads in gradient_sequence(2):
        *got, got_norm = fn(*grads)
        expected, expected_norm = ref.clip_by_global_norm(list(grads), max_norm)
        np.testing.assert_allclose(got_norm, expected_norm, rtol=1e-12)
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=1e-12)
        new_norm = math.sqrt(sum(np.sum(a**2) for a in got))
        assert new_norm <= max_norm * (1 + 1e-12)
        if expected_norm <= max_norm:
            np.testing.assert_array_equal(got[0], grads[0])


def test_an_update_rule_given_a_state_updates_those_variables_and_creates_none():
    param = pytensor.shared(np.ones(3), name="p")
    state = update_rules.initial_state("adam", [param])
    assert sorted(state) == ["adam/step", "p/adam_m", "p/adam_v"]
    grad = pt.vector("g", dtype="float64")
    first = update_rules.adam([grad], [param], 0.1, state=state)
    second = update_rules.adam([2 * grad], [param], 0.1, state=state)
    assert update_rules.optimizer_state(first, [param]) == update_rules.optimizer_state(second, [param]) == dict(state)
    for updates in (first, second):
        pytensor.function([grad], [], updates=updates, mode="FAST_COMPILE")(np.ones(3))
    assert state["adam/step"].get_value() == 2
    with pytest.raises(ValueError, match="rmsprop_cache"):
        update_rules.rmsprop([grad], [param], 0.1, state=state)


@pytest.mark.parametrize("rule, options", [(update_rules.sgd, {}), (update_rules.rmsprop, {}),
                                           (update_rules.rmsprop, {"fused": True}), (update_rules.adam, {})])
def test_every_rule_leaves_parameters_and_state_unchanged_where_apply_if_is_false(rule, options):
    params = shared_params()
    before = [p.get_value() for p in params]
    apply = pt.scalar("apply", dtype="bool")
    g1, g2 = pt.matrix("g1", dtype="float64"), pt.vector("g2", dtype="float64")
    updates = rule([g1, g2], params, 0.1, apply_if=apply, **options)
    state = update_rules.optimizer_state(updates, params)
    fn = pytensor.function([g1, g2, apply], [], updates=updates, mode=QUICK)
    state_before = {k: v.get_value() for k, v in state.items()}
    fn(*gradient_sequence(1)[0], False)
    for param, value in zip(params, before):
        np.testing.assert_array_equal(param.get_value(), value)
    for name, var in state.items():
        np.testing.assert_array_equal(var.get_value(), state_before[name])
    fn(*gradient_sequence(1)[0], True)
    assert not np.array_equal(params[0].get_value(), before[0])


def test_the_fused_rmsprop_step_keeps_float32_and_propagates_a_nan_gradient():
    from symrnn.ops.update_steps import rmsprop_step

    rng = np.random.default_rng(52)
    p, c = rng.normal(size=(7, 33)).astype(np.float32), rng.uniform(0, 1, size=(7, 33)).astype(np.float32)
    g = rng.normal(size=(33, 7)).astype(np.float32).T  # not C-contiguous
    g[3, 4] = np.nan
    P, C, G = pt.matrix(dtype="float32"), pt.matrix(dtype="float32"), pt.matrix(dtype="float32")
    f32 = lambda v: pt.constant(np.float32(v))  # noqa: E731
    new_p, new_c = rmsprop_step(P, C, G, f32(0.01), f32(0.9), f32(1e-6))
    got_p, got_c = pytensor.function([P, C, G], [new_p, new_c], mode=QUICK)(p, c, g)
    assert got_p.dtype == got_c.dtype == np.float32
    want_p, want_c = ref.rmsprop_step(p.astype(np.float64), g.astype(np.float64), c.astype(np.float64), 0.01, 0.9, 1e-6)
    finite = np.isfinite(g)
    np.testing.assert_allclose(got_p[finite], want_p[finite], rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(got_c[finite], want_c[finite], rtol=2e-6)
    assert np.isnan(got_p[3, 4]) and np.isnan(got_c[3, 4])


def test_the_fused_squared_norm_accumulates_float32_in_float64_and_propagates_nan():
    from symrnn.ops.update_steps import squared_norm

    x = pt.tensor3(dtype="float32")
    fn = pytensor.function([x], squared_norm(x), mode=QUICK)
    values = np.random.default_rng(53).normal(size=(4, 5, 300)).astype(np.float32)[:, :, ::3]
    got = fn(values)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, np.sum(values.astype(np.float64) ** 2), rtol=1e-12)
    values[1, 2, 3] = np.nan
    assert np.isnan(fn(values))


def test_the_fused_rmsprop_step_refuses_mismatched_shapes_and_dtypes():
    from symrnn.ops.update_steps import rmsprop_step

    P, G = pt.matrix(dtype="float32"), pt.matrix(dtype="float64")
    with pytest.raises(TypeError, match="one dtype"):
        rmsprop_step(P, P, G, 0.1, 0.9, 1e-6)
    P64 = pt.matrix(dtype="float64")
    new_p, _ = rmsprop_step(P64, P64, G, 0.1, 0.9, 1e-6)
    with pytest.raises(ValueError, match="must have one shape"):
        pytensor.function([P64, G], new_p, mode=QUICK)(np.zeros((2, 3)), np.zeros((3, 2)))
