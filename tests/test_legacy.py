"""Tests of symrnn.legacy: the tutorial's part 4 GRU and part 2 RNN files, read, written and converted."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from symrnn.checkpoint import load_checkpoint
from symrnn.errors import CheckpointError
from symrnn.legacy import closest_layout_hint, library_model, part2_to_library, save_tutorial_model, tutorial_to_library
from tests.model_files import WORDS, assert_fails_and_unchanged, gru_arrays, rnn_arrays, write_savez

REAL_PART2_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "rnnlm-part2-trained-model-theano.npz"


# --------------------------------------------------------------------------
# Reading and writing the tutorial layouts
# --------------------------------------------------------------------------


def test_a_tutorial_gru_file_written_by_plain_savez_loads(tmp_path):
    path = tmp_path / "GRU-tutorial.npz"
    arrays = gru_arrays(hidden=5, words=11)
    np.savez(path, **arrays)
    loaded = load_checkpoint(path)
    assert loaded.layout == "tutorial-gru"
    assert loaded.vocabulary is None
    assert loaded.settings == {"word_dim": 11, "hidden_dim": 5, "embedding_dim": 5}
    assert loaded.optimizer_state == {} and loaded.training_state == {}
    assert list(loaded.params) == ["E", "U", "W", "V", "b", "c"]
    for name, array in arrays.items():
        assert loaded.params[name].dtype == np.float32
        np.testing.assert_array_equal(loaded.params[name], array)


def test_save_tutorial_model_writes_the_plain_part4_layout_at_exactly_the_path(tmp_path):
    path = tmp_path / "trained.model"
    arrays = gru_arrays()
    assert save_tutorial_model(path, **arrays) == str(path)
    assert os.listdir(tmp_path) == ["trained.model"]
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(arrays)
    loaded = load_checkpoint(path, expected_shapes={k: v.shape for k, v in arrays.items()})
    assert loaded.layout == "tutorial-gru"
    for name, array in arrays.items():
        np.testing.assert_array_equal(loaded.params[name], array)


def test_save_tutorial_model_refuses_inconsistent_shapes_and_writes_nothing(tmp_path):
    arrays = gru_arrays()
    arrays["V"] = arrays["V"][:, :-1]
    with pytest.raises(CheckpointError, match="'V'"):
        save_tutorial_model(tmp_path / "model.npz", **arrays)
    assert os.listdir(tmp_path) == []


def test_a_tutorial_rnn_file_loads_with_inferred_sizes(tmp_path):
    path = tmp_path / "rnn.npz"
    np.savez(path, **rnn_arrays(hidden=3, words=7))
    loaded = load_checkpoint(path)
    assert loaded.layout == "tutorial-rnn"
    assert loaded.settings == {"word_dim": 7, "hidden_dim": 3}
    assert loaded.vocabulary is None


def test_the_real_part2_model_file_loads_as_a_tutorial_rnn():
    if not REAL_PART2_FILE.is_file():
        pytest.skip("../shared/data not present (user machine)")
    before = REAL_PART2_FILE.read_bytes()
    loaded = load_checkpoint(
        REAL_PART2_FILE,
        expected_shapes={"U": (50, 8000), "V": (8000, 50), "W": (50, 50)},
        expected_dtype=np.float32,
    )
    assert loaded.layout == "tutorial-rnn"
    assert loaded.params["U"].shape == (50, 8000)
    assert loaded.params["V"].shape == (8000, 50)
    assert loaded.params["W"].shape == (50, 50)
    assert all(array.dtype == np.float32 for array in loaded.params.values())
    assert loaded.settings == {"word_dim": 8000, "hidden_dim": 50}
    assert REAL_PART2_FILE.read_bytes() == before


def test_big_endian_parameters_load_in_native_byte_order(tmp_path):
    path = tmp_path / "rnn.npz"
    arrays = {name: array.astype(">f4") for name, array in rnn_arrays().items()}
    write_savez(path, **arrays)
    loaded = load_checkpoint(path, expected_dtype=np.float32)
    for name, array in arrays.items():
        assert loaded.params[name].dtype.isnative
        np.testing.assert_array_equal(loaded.params[name], array)


def test_save_tutorial_model_into_a_missing_directory_is_an_error_and_creates_nothing(tmp_path):
    path = tmp_path / "no" / "such" / "model.npz"
    with pytest.raises(CheckpointError, match="does not exist"):
        save_tutorial_model(path, **gru_arrays())
    assert not (tmp_path / "no").exists()


# --------------------------------------------------------------------------
# Tutorial files that are not valid models
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float16, np.complex64, np.bool_])
def test_a_parameter_that_is_not_float32_or_float64_is_an_error(tmp_path, dtype):
    path = tmp_path / "rnn.npz"
    arrays = rnn_arrays()
    arrays["W"] = arrays["W"].astype(dtype)
    np.savez(path, **arrays)
    assert_fails_and_unchanged(path, match="float32 or float64")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_nan_or_infinite_parameter_gives_a_clear_error_and_changes_nothing(tmp_path, bad):
    path = tmp_path / "model.npz"
    arrays = gru_arrays()
    arrays["V"][1, 2] = bad
    np.savez(path, **arrays)
    message = assert_fails_and_unchanged(path, match="NaN or infinite")
    assert "'V'" in message


def test_a_tutorial_gru_file_missing_a_key_gives_a_clear_error(tmp_path):
    path = tmp_path / "model.npz"
    arrays = gru_arrays()
    del arrays["c"]
    np.savez(path, **arrays)
    message = assert_fails_and_unchanged(path, match="unknown layout: keys")
    assert "missing ['c']" in message


def test_a_tutorial_gru_file_with_an_extra_key_gives_a_clear_error(tmp_path):
    path = tmp_path / "model.npz"
    np.savez(path, extra=np.ones(2, np.float32), **gru_arrays())
    message = assert_fails_and_unchanged(path, match="unknown layout: keys")
    assert "extra ['extra']" in message



def test_a_tutorial_rnn_file_with_an_extra_key_is_named_closest_to_the_rnn_layout(tmp_path):
    path = tmp_path / "rnn.npz"
    np.savez(path, extra=np.ones(2, np.float32), **rnn_arrays())
    message = assert_fails_and_unchanged(path, match="unknown layout: keys")
    assert "closest: tutorial RNN layout, extra ['extra']" in message

@pytest.mark.parametrize(
    "name, shape",
    [("U", (6, 4, 5)), ("W", (5, 4, 4)), ("V", (WORDS, 5)), ("b", (4,)), ("c", (WORDS + 1,))],
)
def test_inconsistent_tutorial_gru_shapes_give_a_clear_error(tmp_path, name, shape):
    path = tmp_path / "model.npz"
    arrays = gru_arrays()
    arrays[name] = np.zeros(shape, np.float32)
    np.savez(path, **arrays)
    message = assert_fails_and_unchanged(path, match="tutorial GRU layout")
    assert repr(name) in message and str(shape) in message


def test_a_one_dimensional_tutorial_embedding_is_an_error(tmp_path):
    path = tmp_path / "model.npz"
    arrays = gru_arrays()
    arrays["E"] = np.zeros(5, np.float32)
    np.savez(path, **arrays)
    assert_fails_and_unchanged(path, match="'E'")


@pytest.mark.parametrize("name, shape", [("V", (7, 4)), ("W", (3, 4)), ("U", (3, 7, 1))])
def test_inconsistent_tutorial_rnn_shapes_give_a_clear_error(tmp_path, name, shape):
    path = tmp_path / "rnn.npz"
    arrays = rnn_arrays(hidden=3, words=7)
    arrays[name] = np.zeros(shape, np.float32)
    np.savez(path, **arrays)
    message = assert_fails_and_unchanged(path, match="tutorial RNN layout")
    assert repr(name) in message


def test_closest_layout_hint_names_the_nearer_layout_what_is_missing_and_extra_or_nothing_when_too_far():
    assert closest_layout_hint({"E", "U", "W", "V", "b"}) == " (closest: tutorial GRU layout, missing ['c'])"
    assert closest_layout_hint({"U", "V", "W", "x"}) == " (closest: tutorial RNN layout, extra ['x'])"
    assert closest_layout_hint({"U", "V"}) == " (closest: tutorial RNN layout, missing ['W'])"
    assert closest_layout_hint({"U", "alpha"}) == ""


# --------------------------------------------------------------------------
# Converting to symrnn's parameter names
# --------------------------------------------------------------------------


def test_a_part4_file_is_a_two_layer_hard_sigmoid_gru_with_the_converted_values():
    arrays = gru_arrays(hidden=3, words=8)
    architecture, values = library_model("tutorial-gru", arrays)
    assert architecture == dict(word_dim=8, embedding_dim=3, hidden_dim=3, num_layers=2, cell="gru", gate="hard_sigmoid")
    expected = tutorial_to_library(**arrays)
    assert list(values) == list(expected)
    for name in expected:
        np.testing.assert_array_equal(values[name], expected[name])


def test_the_part2_conversion_gives_the_part2_step_and_output_as_a_one_layer_rnn():
    arrays = {name: array.astype(np.float64) for name, array in rnn_arrays(hidden=3, words=7).items()}
    architecture, values = library_model("tutorial-rnn", arrays)
    assert architecture == dict(word_dim=7, embedding_dim=3, hidden_dim=3, num_layers=1, cell="rnn", gate="hard_sigmoid")
    assert list(values) == list(part2_to_library(**arrays))
    U, V, W = arrays["U"], arrays["V"], arrays["W"]
    tutorial_state = library_state = np.array([0.3, -0.2, 0.1])
    for word in (4, 0, 6):
        # The tutorial: s_t = tanh(U[:, x_t] + W s_{t-1}), o_t = V s_t (before the softmax).
        tutorial_state = np.tanh(U[:, word] + W @ tutorial_state)
        # symrnn's rnn layer: h_t = tanh(embedding[x_t] W_x + h_{t-1} W_h + b), logits = h_t output/W + output/b.
        library_state = np.tanh(values["embedding"][word] @ values["layer0/W_x"] + library_state @ values["layer0/W_h"]
                                + values["layer0/b"])
        np.testing.assert_allclose(library_state, tutorial_state, rtol=1e-12)
        np.testing.assert_allclose(library_state @ values["output/W"] + values["output/b"], V @ tutorial_state, rtol=1e-12)
    assert all(value.dtype == np.float64 and value.flags.c_contiguous for value in values.values())


def test_library_model_refuses_a_layout_that_is_not_the_tutorials():
    with pytest.raises(ValueError, match="symrnn"):
        library_model("symrnn", {})
