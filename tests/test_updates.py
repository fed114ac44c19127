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


def test_rmsprop_rule_equals_numpy_rmsprop_over_several_steps_with_named_caches():
    params = shared_params()
    expected = [p.get_value() for p in params]
    caches = [np.zeros_like(v) for v in expected]
    fn, updates = compile_rule(update_rules.rmsprop, params, learning_rate=0.05, decay=0.8)
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


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_by_global_norm_scales_all_gradients_together_like_numpy(max_norm):
    g1, g2 = pt.matrix("g1", dtype="float64"), pt.vector("g2", dtype="float64")
    clipped, norm = update_rules.clip_by_global_norm([g1, g2], max_norm)
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
