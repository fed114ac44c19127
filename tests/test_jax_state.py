"""One optimizer state per model, whatever the backend.

Under JAX a training step is compiled once per padded batch shape; every one of
those functions must update the model's single optimizer state, so the JAX
backend trains exactly like the C backend through batches of several lengths,
and checkpoints (train.py) save and restore that one state.
"""

import importlib.util

import numpy as np
import pytest

from models.language_model import RNNLanguageModel
from symrnn.checkpoint import load_checkpoint, save_checkpoint
from tests.test_robustness import base_env, run_train
from tests.test_scripts import assert_one_line_error

needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is an optional extra: pip install .[gpu]")

V, D, H, B = 30, 6, 10, 4
LENGTHS = (5, 9, 13, 9, 5, 13)  # three padded lengths, each met twice
RTOL, ATOL = 1e-4, 1e-6


def batches():
    rng = np.random.default_rng(7)
    for steps in LENGTHS:
        ids = rng.integers(0, V, (steps, B)).astype("int32")
        targets = rng.integers(0, V, (steps, B)).astype("int32")
        mask = np.ones((steps, B), "float32")
        mask[steps // 2 :, 1] = 0  # a shorter sentence padded to the batch length
        yield ids, targets, mask


def trained(backend, optimizer):
    model = RNNLanguageModel(V, D, H, seed=5, backend=backend)
    step = model.compile_train(optimizer=optimizer)
    for ids, targets, mask in batches():
        assert step(ids, targets, mask, np.float32(0.01))[3] == 1
    return model, step


def assert_equal_arrays(actual: dict, expected: dict, what: str):
    assert actual.keys() == expected.keys(), what
    for name in expected:
        assert np.asarray(actual[name]).dtype == np.asarray(expected[name]).dtype, name
        np.testing.assert_allclose(actual[name], expected[name], rtol=RTOL, atol=ATOL, err_msg=f"{what} {name}")


def test_every_compiled_training_function_of_a_model_updates_its_one_optimizer_state():
    model = RNNLanguageModel(V, D, H, seed=5)
    state = model.optimizer_variables("rmsprop")
    first, second = model.compile_train(), model.compile_train(grad_clip=1.0)
    assert model.optimizer_state == state and all(model.optimizer_state[n] is v for n, v in state.items())
    ids, targets, mask = next(batches())
    first(ids, targets, mask, np.float32(0.01))
    after_one = {name: v.get_value() for name, v in state.items()}
    second(ids, targets, mask, np.float32(0.01))
    assert all(not np.array_equal(state[name].get_value(), after_one[name]) for name in state)


def test_load_state_restores_parameters_optimizer_state_and_dropout_generator_and_checks_first():
    model = RNNLanguageModel(V, D, H, seed=5, dropout=0.3)
    step = model.compile_train(optimizer="adam")
    saved = model.state()
    ids, targets, mask = next(batches())
    first_loss = step(ids, targets, mask, np.float32(0.01))[0]
    changed = model.state()
    bad = {**saved, "optimizer_state": {**saved["optimizer_state"], "adam/step": np.zeros(2, "float32")}}
    with pytest.raises(ValueError, match="adam/step"):
        model.load_state(bad)
    assert_equal_arrays(model.state()["params"], changed["params"], "untouched")
    with pytest.raises(ValueError, match="unknown optimizer state"):
        model.load_state({**saved, "optimizer_state": {**saved["optimizer_state"], "x/rmsprop_cache": np.zeros(1)}})
    model.load_state(saved)
    assert model.state()["dropout_rng"] == saved["dropout_rng"]
    assert step(ids, targets, mask, np.float32(0.01))[0] == first_loss  # same dropout masks, same values
    assert_equal_arrays(model.state()["optimizer_state"], changed["optimizer_state"], "optimizer state")


@needs_jax
@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_the_jax_backend_trains_through_several_padded_lengths_like_the_c_backend(optimizer):
    (on_c, _), (jax_model, jax_step) = trained("c", optimizer), trained("jax", optimizer)
    assert len(jax_step.functions) == 3  # one compiled function per padded length
    expected, actual = on_c.state(), jax_model.state()
    assert_equal_arrays(actual["params"], expected["params"], "parameter")
    assert_equal_arrays(actual["optimizer_state"], expected["optimizer_state"], "optimizer state")
    if optimizer == "adam":
        assert actual["optimizer_state"]["adam/step"] == len(LENGTHS)


@needs_jax
def test_the_jax_backend_rejects_dropout_with_a_clear_error():
    with pytest.raises(ValueError, match="dropout needs the c or numba backend"):
        RNNLanguageModel(V, D, H, backend="jax", dropout=0.2)


# ------------------------------------------------------------------ train.py

# BATCH_SIZE=4 batches group sentences of similar lengths (5 to 14 ids), so
# BUCKET_WIDTH=5 pads them to three lengths: 5, 10 and 15.
TRAIN_SETTINGS = dict(BATCH_SIZE=4, BUCKET_WIDTH=5, MAX_SENTENCES=48, NEPOCH=2, PRINT_EVERY=100000, NUM_SAMPLES=0)


def assert_equal_checkpoints(actual_path, expected_path):
    expected, actual = load_checkpoint(expected_path), load_checkpoint(actual_path)
    assert_equal_arrays(actual.params, expected.params, "parameter")
    assert_equal_arrays(actual.optimizer_state, expected.optimizer_state, "optimizer state")


@needs_jax
@pytest.mark.parametrize("optimizer", ["rmsprop", pytest.param("adam", marks=pytest.mark.slow)])
def test_train_py_under_jax_saves_the_parameters_and_optimizer_state_of_the_c_backend(tmp_path, optimizer):
    paths = {}
    for backend in ("c", "jax"):
        paths[backend] = tmp_path / f"{backend}.npz"
        env = base_env(tmp_path, BACKEND=backend, OPTIMIZER=optimizer, MODEL_OUTPUT_FILE=paths[backend], **TRAIN_SETTINGS)
        result = run_train(env, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
    assert_equal_checkpoints(paths["jax"], paths["c"])


@needs_jax
def test_train_py_with_dropout_under_jax_exits_2_naming_dropout_and_leaves_the_model_file_untouched(tmp_path):
    model_file = tmp_path / "model.npz"
    model_file.write_bytes(b"an earlier model")
    env = base_env(tmp_path, BACKEND="jax", DROPOUT="0.2", MODEL_OUTPUT_FILE=model_file, VOCABULARY_SIZE=10)
    assert_one_line_error(run_train(env, tmp_path), "DROPOUT=0.2", "jax")
    assert model_file.read_bytes() == b"an earlier model"


def test_resuming_a_checkpoint_that_lacks_an_optimizer_state_array_exits_2_and_leaves_it_untouched(tmp_path):
    model_file = tmp_path / "model.npz"
    env = base_env(tmp_path, MODEL_OUTPUT_FILE=model_file, VOCABULARY_SIZE=10, NEPOCH=1, MAX_SENTENCES=8,
                   PRINT_EVERY=100000, NUM_SAMPLES=0)
    assert run_train(env, tmp_path).returncode == 0
    saved = load_checkpoint(model_file)
    partial = dict(saved.optimizer_state)
    del partial["output/W/rmsprop_cache"]
    save_checkpoint(model_file, saved.params, vocabulary=saved.vocabulary, settings=saved.settings,
                    optimizer_state=partial, training_state=saved.training_state)
    before = model_file.read_bytes()
    result = run_train(dict(env, RESUME=str(model_file)), tmp_path)
    assert_one_line_error(result, str(model_file), "output/W/rmsprop_cache", "cannot resume")
    assert model_file.read_bytes() == before


@pytest.mark.slow  # four runs of train.py, about 30 s
@needs_jax
def test_an_interrupted_and_resumed_jax_run_ends_like_an_uninterrupted_one(tmp_path):
    settings = dict(TRAIN_SETTINGS, BACKEND="jax")
    whole = tmp_path / "whole.npz"
    result = run_train(base_env(tmp_path, MODEL_OUTPUT_FILE=whole, **settings), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    parted = tmp_path / "parted.npz"
    env = base_env(tmp_path, MODEL_OUTPUT_FILE=parted, **settings)
    # Stopped after its first step, then after about a second more, then run to the end.
    outputs = []
    for time_limit in ("0.001", "1", "0"):
        env["TIME_LIMIT"] = time_limit
        result = run_train(env, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        outputs.append(result.stdout)
        env["RESUME"] = str(parted)
    assert "Time limit of 0.001 s reached after 4 examples" in outputs[0]
    assert all("Resuming" in output for output in outputs[1:]) and "Training done" in outputs[2]
    assert_equal_checkpoints(parted, whole)
