"""Every backend and implementation computes the same losses and updates as the plain reference graph."""

import importlib.util

import numpy as np
import pytest

from models.language_model import RNNLanguageModel

V, D, H = 60, 8, 12


def batch(seed=0, steps=9, size=4):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, (steps, size)).astype("int32")
    targets = rng.integers(0, V, (steps, size)).astype("int32")
    mask = np.ones((steps, size), "float32")
    mask[6:, 1] = 0
    mask[3:, 2] = 0
    return ids, targets, mask


def run_steps(model, n=3):
    step = model.compile_train()
    outputs = [step(*batch(i), np.float32(0.01)) for i in range(n)]
    return [float(o[0]) for o in outputs], {k: np.asarray(v) for k, v in model.get_values().items()}


def reference(cell="gru"):
    return RNNLanguageModel(V, D, H, cell=cell, seed=4, implementation="scan", loss_implementation="reference")


def test_the_fused_gru_and_fused_loss_train_exactly_like_the_plain_scan_graph():
    ref_losses, ref_values = run_steps(reference())
    fast = RNNLanguageModel(V, D, H, seed=4, implementation="fused", loss_implementation="fused")
    losses, values = run_steps(fast)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for name in ref_values:
        np.testing.assert_allclose(values[name], ref_values[name], rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.slow  # Numba compiles for about a minute
@pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba is not installed")
def test_the_numba_backend_trains_like_the_cpu_backend():
    ref_losses, ref_values = run_steps(reference("lstm"))
    losses, values = run_steps(RNNLanguageModel(V, D, H, cell="lstm", seed=4, backend="numba"))
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for name in ref_values:
        np.testing.assert_allclose(values[name], ref_values[name], rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is an optional extra: pip install .[gpu]")
def test_the_jax_backend_trains_like_the_cpu_backend_and_keeps_float32():
    ref_losses, ref_values = run_steps(reference())
    model = RNNLanguageModel(V, D, H, seed=4, backend="jax")
    losses, values = run_steps(model)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    for name in ref_values:
        assert values[name].dtype == np.float32, name
        np.testing.assert_allclose(values[name], ref_values[name], rtol=1e-3, atol=1e-5, err_msg=name)
    logits, *_ = model.compile_step()(np.array([1, 2], "int32"), *model.initial_state_values(2))
    assert np.asarray(logits).shape == (2, V)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is an optional extra: pip install .[gpu]")
def test_generation_under_the_jax_backend_restarts_slots_and_samples_what_the_cpu_backend_samples():
    from symrnn.sampling import generate

    def sentences(model):
        step = model.compile_step()
        # Rejecting id 7 makes slots restart, which writes rows of the logits and states.
        result = generate(step, model.initial_state_values, 12, 1, 2, np.random.default_rng(3),
                          reject_ids=[7], min_length=2, max_length=12, batch_size=4)
        return result

    cpu = sentences(RNNLanguageModel(V, D, H, seed=4))
    jax_model = RNNLanguageModel(V, D, H, seed=4, backend="jax")
    on_jax = sentences(jax_model)
    assert cpu.attempts > 4, "no slot restarted: the test would not exercise the restarts"
    assert len(on_jax.sentences) == 12
    assert on_jax.sentences == cpu.sentences
    assert on_jax.attempts == cpu.attempts
    # The parameters stay on the device between calls, and come back as NumPy arrays.
    assert not isinstance(jax_model.params["output/W"].container.storage[0], np.ndarray)
    assert all(isinstance(v, np.ndarray) for v in jax_model.get_values().values())


def test_the_generation_step_of_a_cpu_gru_runs_the_fused_op_and_equals_the_plain_step():
    from symrnn.ops.gru import FusedGRU

    fast = RNNLanguageModel(V, D, H, num_layers=2, seed=4)
    plain = RNNLanguageModel(V, D, H, num_layers=2, seed=4, implementation="scan")
    fast_step, plain_step = fast.compile_step(), plain.compile_step()
    assert any(isinstance(n.op, FusedGRU) for n in fast_step.maker.fgraph.toposort())
    assert not any(isinstance(n.op, FusedGRU) for n in plain_step.maker.fgraph.toposort())
    rng = np.random.default_rng(6)
    states = [rng.normal(size=(3, H)).astype("float32") for _ in range(2)]
    ids = np.array([1, 5, 7], dtype="int32")
    for got, want in zip(fast_step(ids, *states), plain_step(ids, *states)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
