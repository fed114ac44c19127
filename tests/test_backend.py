"""The backends (symrnn/backend.py): every backend and implementation computes the same losses and
updates as the plain reference graph; per-shape compilation, device-resident values and JAX's
reduction dtypes."""

import importlib.util

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import Mode

from models.language_model import RNNLanguageModel
from symrnn import backend

needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is an optional extra: pip install .[gpu]")

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
    return RNNLanguageModel(V, D, H, cell=cell, seed=4, recurrence="scan", output_layer="reference")


def test_the_fused_gru_and_fused_loss_train_exactly_like_the_plain_scan_graph():
    ref_losses, ref_values = run_steps(reference())
    fast = RNNLanguageModel(V, D, H, seed=4, recurrence="fused", output_layer="fused")
    losses, values = run_steps(fast)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for name in ref_values:
        np.testing.assert_allclose(values[name], ref_values[name], rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_c_backend_trains_exactly_like_pytensors_all_c_virtual_machine(cell):
    all_c = RNNLanguageModel(V, D, H, cell=cell, seed=4)
    all_c.mode = Mode(linker="cvm", optimizer="fast_run").excluding("local_dot22_to_dot22scalar")
    ref_losses, ref_values = run_steps(all_c)
    losses, values = run_steps(RNNLanguageModel(V, D, H, cell=cell, seed=4))
    np.testing.assert_array_equal(losses, ref_losses)
    for name in ref_values:
        np.testing.assert_array_equal(values[name], ref_values[name], err_msg=name)


def test_the_c_backend_compiles_c_code_for_elementwise_loops_and_reductions_only():
    step = RNNLanguageModel(V, D, H, seed=4).compile_train()
    kinds = {(type(node.op).__name__, hasattr(thunk, "cthunk")) for node, thunk in zip(step.vm.nodes, step.vm.thunks)}
    with_c = {name for name, is_c in kinds if is_c}
    assert with_c and with_c <= {"Elemwise", "Sum"}
    assert {"Reshape", "AdvancedSubtensor1"} <= {name for name, is_c in kinds if not is_c}


@pytest.mark.slow  # Numba compiles for about a minute
@pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba is not installed")
def test_the_numba_backend_trains_like_the_c_backend():
    ref_losses, ref_values = run_steps(reference("lstm"))
    losses, values = run_steps(RNNLanguageModel(V, D, H, cell="lstm", seed=4, backend="numba"))
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for name in ref_values:
        np.testing.assert_allclose(values[name], ref_values[name], rtol=1e-4, atol=1e-6, err_msg=name)


@needs_jax
def test_the_jax_backend_trains_like_the_c_backend_and_keeps_float32():
    ref_losses, ref_values = run_steps(reference())
    model = RNNLanguageModel(V, D, H, seed=4, backend="jax")
    losses, values = run_steps(model)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    for name in ref_values:
        assert values[name].dtype == np.float32, name
        np.testing.assert_allclose(values[name], ref_values[name], rtol=1e-3, atol=1e-5, err_msg=name)
    logits, *_ = model.compile_step()(np.array([1, 2], "int32"), *model.initial_state_values(2))
    assert np.asarray(logits).shape == (2, V)


@needs_jax
def test_generation_under_the_jax_backend_restarts_slots_and_samples_what_the_c_backend_samples():
    from symrnn.sampling import generate

    def sentences(model):
        step = model.compile_step()
        # Rejecting id 7 makes slots restart, which writes rows of the logits and states.
        result = generate(step, model.initial_state_values, 12, 1, 2, np.random.default_rng(3),
                          reject_ids=[7], min_length=2, max_length=12, batch_size=4)
        return result

    on_c = sentences(RNNLanguageModel(V, D, H, seed=4))
    jax_model = RNNLanguageModel(V, D, H, seed=4, backend="jax")
    on_jax = sentences(jax_model)
    assert on_c.attempts > 4, "no slot restarted: the test would not exercise the restarts"
    assert len(on_jax.sentences) == 12
    assert on_jax.sentences == on_c.sentences
    assert on_jax.attempts == on_c.attempts
    # The parameters stay on the device between calls, and come back as NumPy arrays.
    assert not isinstance(jax_model.params["output/W"].container.storage[0], np.ndarray)
    assert all(isinstance(v, np.ndarray) for v in jax_model.get_values().values())


def test_the_generation_step_of_a_gru_under_the_c_backend_runs_the_fused_op_and_equals_the_plain_step():
    from symrnn.ops.gru import FusedGRU

    fast = RNNLanguageModel(V, D, H, num_layers=2, seed=4)
    plain = RNNLanguageModel(V, D, H, num_layers=2, seed=4, recurrence="scan")
    fast_step, plain_step = fast.compile_step(), plain.compile_step()
    assert any(isinstance(n.op, FusedGRU) for n in fast_step.maker.fgraph.toposort())
    assert not any(isinstance(n.op, FusedGRU) for n in plain_step.maker.fgraph.toposort())
    rng = np.random.default_rng(6)
    states = [rng.normal(size=(3, H)).astype("float32") for _ in range(2)]
    ids = np.array([1, 5, 7], dtype="int32")
    for got, want in zip(fast_step(ids, *states), plain_step(ids, *states)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ the module's pieces


def test_an_unknown_backend_name_is_refused_naming_the_backends():
    for call in (backend.compile_mode, backend.uses_fused_ops, backend.needs_static_shapes):
        with pytest.raises(ValueError, match="'c', 'numba', 'jax'"):
            call("cpu")
    with pytest.raises(ValueError, match="backend must be one of"):
        RNNLanguageModel(V, D, H, backend="cpu")


def test_compile_per_shape_builds_one_function_for_any_shape_or_one_per_shape_where_shapes_must_be_static():
    built = []

    def build(shape):
        built.append(shape)
        return lambda ids, scale: np.sum(ids) * scale

    plain = backend.compile_per_shape("c", build)
    assert built == [(None, None)] and plain(np.ones((2, 3)), 2) == 12
    per_shape = backend.compile_per_shape("jax", build)
    assert isinstance(per_shape, backend.PerShapeFunction)
    for steps in (2, 5, 2, 5, 3):
        assert per_shape(np.ones((steps, 3)), 1) == 3 * steps
    assert built == [(None, None), (2, 3), (5, 3), (3, 3)]
    assert sorted(per_shape.functions) == [(2, 3), (3, 3), (5, 3)]


def test_outside_jax_the_step_and_the_values_are_left_as_they_are():
    ids = pt.ivector("ids")
    step = pytensor.function([ids], ids * 2)
    assert backend.with_states_on_device("c", step) is step
    variable = pytensor.shared(np.ones(3))
    value = variable.container.storage[0]
    backend.keep_values_on_device("numba", [variable])
    assert variable.container.storage[0] is value


@needs_jax
def test_under_jax_values_go_to_the_device_and_the_step_takes_states_as_it_returned_them():
    variable = pytensor.shared(np.arange(3.0), name="v")
    backend.keep_values_on_device("jax", [variable])
    assert not isinstance(variable.container.storage[0], np.ndarray)
    np.testing.assert_array_equal(variable.get_value(), np.arange(3.0))
    ids, state = pt.ivector("ids"), pt.matrix("state", dtype="float64")
    compiled = pytensor.function([ids, state], [state + ids[:, None] + variable], mode=backend.compile_mode("jax"))
    step = backend.with_states_on_device("jax", compiled)
    (first,) = step([1, 2], np.zeros((2, 3)))
    (second,) = step(np.array([1, 2], dtype=np.int64), first)  # ids cast to int32, the state passed through
    assert not isinstance(first, np.ndarray)
    np.testing.assert_array_equal(np.asarray(second), 2 * (np.array([[1.0], [2.0]]) + np.arange(3.0)))


@needs_jax
def test_jax_float32_sums_keep_their_dtype_and_pytensors_own_jax_mode_is_left_unchanged():
    from pytensor.link.jax.dispatch import jax_funcify
    from pytensor.tensor.elemwise import CAReduce

    translation = jax_funcify.dispatch(CAReduce)
    x = pt.matrix("x", dtype="float32")
    assert x.sum().owner.op.acc_dtype == "float64"  # the case PyTensor's JAX translation gets wrong
    total = pytensor.function([x], [x.sum(), x.sum(axis=0)], mode=backend.compile_mode("jax"))
    values = np.full((3, 4), 0.1, dtype=np.float32)
    whole, columns = total(values)
    assert np.asarray(whole).dtype == np.float32 and np.asarray(columns).dtype == np.float32
    np.testing.assert_allclose(whole, np.sum(values, dtype=np.float64), rtol=1e-6)
    assert jax_funcify.dispatch(CAReduce) is translation  # no process-wide patch


@pytest.mark.parametrize("shape", [(40,), (3, 4), ()])
def test_the_c_backend_sums_squares_of_vectors_matrices_and_scalars_as_numpy_does(shape):
    # PyTensor fuses sum(sqr(x)) into one reduction whose Python perform skips
    # squaring the first value; the c backend must keep its C code.
    x = pt.tensor(dtype="float32", shape=(None,) * len(shape))
    sum_of_squares = pytensor.function([x], pt.sum(pt.sqr(x)), mode=backend.compile_mode("c"))
    norm = pytensor.function([x], pt.sqrt(pt.sum(pt.sqr(x)) + pt.sum(pt.sqr(2 * x))), mode=backend.compile_mode("c"))
    values = np.random.default_rng(9).normal(size=shape).astype(np.float32) + 3
    squares = float(np.sum(values.astype(np.float64) ** 2))
    np.testing.assert_allclose(sum_of_squares(values), squares, rtol=1e-6)
    np.testing.assert_allclose(norm(values), np.sqrt(5 * squares), rtol=1e-6)
