"""Tests of symrnn.checkpoint: the symrnn checkpoint saved at exactly its path and loaded strictly."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symrnn.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from symrnn.errors import CheckpointError
from symrnn.legacy import save_tutorial_model
from tests.model_files import (
    HIDDEN,
    VOCABULARY,
    WORDS,
    assert_fails_and_unchanged,
    full_checkpoint,
    gru_arrays,
    sample_params,
    write_savez,
)


# --------------------------------------------------------------------------
# Round trips and exact paths
# --------------------------------------------------------------------------


def test_a_full_checkpoint_round_trips_every_part(tmp_path):
    path = tmp_path / "model.npz"
    written = full_checkpoint(path)
    assert written == str(path)

    loaded = load_checkpoint(path)
    assert isinstance(loaded, Checkpoint)
    assert loaded.layout == "symrnn"
    assert loaded.path == str(path)
    assert list(loaded.params) == list(sample_params())
    for name, array in sample_params().items():
        assert loaded.params[name].dtype == np.float32
        np.testing.assert_array_equal(loaded.params[name], array)
    assert loaded.vocabulary == VOCABULARY
    assert all(type(word) is str for word in loaded.vocabulary)
    assert loaded.settings == {
        "hidden_dim": HIDDEN, "word_dim": WORDS, "learning_rate": 0.001, "name": "modèle", "layers": [1, 2],
    }
    np.testing.assert_array_equal(loaded.optimizer_state["E/cache"], np.ones((HIDDEN, WORDS), np.float32))
    assert loaded.optimizer_state["step"] == 7
    assert loaded.training_state["epoch"] == 3
    assert loaded.training_state["position"] == 1234
    assert loaded.training_state["rng_state"].dtype == np.uint64
    assert loaded.training_state["rng_state"].tolist() == [2**64 - 1, 0, 12345, 99]


def test_float64_parameters_stay_float64(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(path, sample_params(np.float64))
    loaded = load_checkpoint(path, expected_dtype=np.float64)
    assert all(array.dtype == np.float64 for array in loaded.params.values())


def test_the_vocabulary_is_stored_as_a_unicode_array_and_nothing_is_pickled(tmp_path):
    path = tmp_path / "model.npz"
    full_checkpoint(path)
    with np.load(path, allow_pickle=False) as npz:
        assert npz["vocabulary"].dtype.kind == "U"
        assert npz["vocabulary"].ndim == 1
        assert npz["settings_json"].dtype.kind == "U"
        assert npz["settings_json"].ndim == 0
        assert npz["symrnn_format"].dtype == np.int64
        assert int(npz["symrnn_format"]) == 1
        assert {"param/E", "param/gru0/U", "opt/E/cache", "train/epoch"} <= set(npz.files)


def test_a_checkpoint_without_optional_parts_loads_with_empty_defaults(tmp_path):
    path = tmp_path / "bare.npz"
    save_checkpoint(path, {"E": np.ones((2, 3), np.float32)})
    loaded = load_checkpoint(path)
    assert loaded.vocabulary is None
    assert loaded.settings == {}
    assert loaded.optimizer_state == {}
    assert loaded.training_state == {}


def test_an_empty_vocabulary_round_trips_as_an_empty_list(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(path, sample_params(), vocabulary=[])
    assert load_checkpoint(path).vocabulary == []


def test_numpy_scalars_and_tuples_in_settings_are_saved_as_json(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(path, sample_params(), settings={"hidden": np.int64(4), "lr": np.float32(0.5), "shape": (1, 2)})
    assert load_checkpoint(path).settings == {"hidden": 4, "lr": 0.5, "shape": [1, 2]}


def test_exactly_the_given_path_is_written_even_with_a_dat_suffix(tmp_path):
    path = tmp_path / "weights.dat"
    assert save_checkpoint(path, sample_params()) == str(path)
    assert os.listdir(tmp_path) == ["weights.dat"]
    assert not (tmp_path / "weights.dat.npz").exists()
    assert load_checkpoint(path).layout == "symrnn"


def test_a_path_without_any_suffix_is_written_as_given(tmp_path):
    path = tmp_path / "model"
    save_checkpoint(str(path), sample_params())
    assert os.listdir(tmp_path) == ["model"]


def test_saving_again_replaces_the_previous_file(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(path, sample_params(seed=0))
    save_checkpoint(path, sample_params(seed=5))
    np.testing.assert_array_equal(load_checkpoint(path).params["E"], sample_params(seed=5)["E"])
    assert os.listdir(tmp_path) == ["model.npz"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_a_replaced_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(path, sample_params())
    os.chmod(path, 0o640)
    save_checkpoint(path, sample_params(seed=3))
    assert (os.stat(path).st_mode & 0o777) == 0o640


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_a_new_file_gets_the_usual_permissions_not_those_of_a_temporary_file(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(path, sample_params())
    umask = os.umask(0o022)
    os.umask(umask)
    assert (os.stat(path).st_mode & 0o777) == (0o666 & ~umask)


def test_saving_and_loading_print_nothing(tmp_path, capsys):
    path = tmp_path / "model.npz"
    full_checkpoint(path)
    load_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "missing.npz")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# --------------------------------------------------------------------------
# What saving refuses
# --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_saving_non_finite_parameters_is_refused_and_writes_nothing(tmp_path, bad):
    params = sample_params()
    params["E"][0, 0] = bad
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        save_checkpoint(tmp_path / "model.npz", params)
    assert os.listdir(tmp_path) == []


def test_saving_integer_parameters_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="float32 or float64"):
        save_checkpoint(tmp_path / "model.npz", {"E": np.ones((2, 2), dtype=np.int32)})
    assert os.listdir(tmp_path) == []


def test_saving_no_parameters_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no parameters"):
        save_checkpoint(tmp_path / "model.npz", {})


@pytest.mark.parametrize("name", ["", "/E", "E/", "a//b", "a b", "../x", "E\n", "é"])
def test_saving_invalid_names_is_refused(tmp_path, name):
    with pytest.raises(CheckpointError, match="invalid parameter name"):
        save_checkpoint(tmp_path / "model.npz", {name: np.ones(2, np.float32)})
    assert os.listdir(tmp_path) == []


def test_saving_object_arrays_in_training_state_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match="nothing is pickled"):
        save_checkpoint(tmp_path / "model.npz", sample_params(), training_state={"rng": np.array([{"a": 1}], dtype=object)})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "bad_settings",
    [{"f": object()}, {1: "int key"}, {"nan": float("nan")}, ["not", "a", "dict"], {"nested": {"x": {1, 2}}}],
)
def test_saving_settings_that_are_not_a_json_object_is_a_type_error(tmp_path, bad_settings):
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "model.npz", sample_params(), settings=bad_settings)
    assert os.listdir(tmp_path) == []


def test_saving_a_vocabulary_with_non_strings_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match="not str"):
        save_checkpoint(tmp_path / "model.npz", sample_params(), vocabulary=["a", 3])


def test_saving_a_word_with_a_nul_character_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="NUL"):
        save_checkpoint(tmp_path / "model.npz", sample_params(), vocabulary=["a\x00"])


# --------------------------------------------------------------------------
# Valid archives that are not valid models
# --------------------------------------------------------------------------


def test_wrong_shapes_versus_expected_shapes_name_the_parameter_and_both_shapes(tmp_path):
    path = tmp_path / "model.npz"
    full_checkpoint(path)
    expected = {name: array.shape for name, array in sample_params().items()}
    expected["E"] = (HIDDEN, WORDS + 1)
    message = assert_fails_and_unchanged(path, expected_shapes=expected)
    assert "'E'" in message
    assert str((HIDDEN, WORDS)) in message and str((HIDDEN, WORDS + 1)) in message


def test_a_parameter_the_model_needs_but_the_file_lacks_is_an_error(tmp_path):
    path = tmp_path / "model.npz"
    full_checkpoint(path)
    expected = {name: array.shape for name, array in sample_params().items()}
    expected["b"] = (6, HIDDEN)
    message = assert_fails_and_unchanged(path, match="lacks parameter", expected_shapes=expected)
    assert "'b'" in message


def test_an_extra_parameter_the_model_does_not_have_is_an_error(tmp_path):
    path = tmp_path / "model.npz"
    full_checkpoint(path)
    expected = {name: array.shape for name, array in sample_params().items()}
    del expected["c"]
    message = assert_fails_and_unchanged(path, match="does not have", expected_shapes=expected)
    assert "'c'" in message


def test_the_wrong_dtype_versus_expected_dtype_is_an_error(tmp_path):
    path = tmp_path / "model.npz"
    full_checkpoint(path)
    message = assert_fails_and_unchanged(path, match="float64 was expected", expected_dtype=np.float64)
    assert "float32" in message


def test_a_nan_parameter_in_a_symrnn_checkpoint_is_an_error(tmp_path):
    path = tmp_path / "model.npz"
    full_checkpoint(path)
    with np.load(path) as npz:
        members = {name: npz[name] for name in npz.files}
    members["param/E"] = members["param/E"].copy()
    members["param/E"][0, 0] = np.nan
    write_savez(path, **members)
    assert_fails_and_unchanged(path, match="NaN or infinite")


def test_an_unknown_layout_lists_the_keys(tmp_path):
    path = tmp_path / "model.npz"
    np.savez(path, alpha=np.ones(2), beta=np.zeros(3))
    message = assert_fails_and_unchanged(path, match="unknown layout: keys")
    assert "['alpha', 'beta']" in message


def test_an_empty_archive_has_an_unknown_layout(tmp_path):
    path = tmp_path / "model.npz"
    np.savez(path)
    assert_fails_and_unchanged(path, match="unknown layout: keys \\[\\]")


def rewrite_members(path, **changes):
    with np.load(path) as npz:
        members = {name: npz[name] for name in npz.files}
    for name, value in changes.items():
        name = name.replace("__", "/")
        if value is None:
            members.pop(name, None)
        else:
            members[name] = value
    write_savez(path, **members)


@pytest.mark.parametrize(
    "settings_json, match",
    [
        (np.array("{not json"), "not valid JSON"),
        (np.array("[1, 2]"), "not a JSON object"),
        (np.array('{"lr": NaN}'), "not valid JSON"),
        (np.array(["{}"]), "invalid settings_json"),
        (np.array(b"{}"), "invalid settings_json"),
        (None, "lacks its settings_json"),
    ],
)
def test_bad_settings_json_gives_a_clear_error_and_changes_nothing(tmp_path, settings_json, match):
    path = tmp_path / "model.npz"
    full_checkpoint(path)
    rewrite_members(path, settings_json=settings_json)
    assert_fails_and_unchanged(path, match=match)


@pytest.mark.parametrize("version", [0, 2, 99])
def test_an_unsupported_format_version_gives_a_clear_error(tmp_path, version):
    path = tmp_path / "model.npz"
    full_checkpoint(path)
    rewrite_members(path, symrnn_format=np.array(version, dtype=np.int64))
    assert_fails_and_unchanged(path, match=f"format version {version}")


def test_a_non_integer_format_member_is_an_error(tmp_path):
    path = tmp_path / "model.npz"
    full_checkpoint(path)
    rewrite_members(path, symrnn_format=np.array(1.0))
    assert_fails_and_unchanged(path, match="invalid symrnn_format")


@pytest.mark.parametrize(
    "vocabulary", [np.arange(3), np.array([["a", "b"]]), np.array("word"), np.array([b"a", b"b"])]
)
def test_a_vocabulary_that_is_not_a_1d_unicode_array_is_an_error(tmp_path, vocabulary):
    path = tmp_path / "model.npz"
    full_checkpoint(path)
    rewrite_members(path, vocabulary=vocabulary)
    assert_fails_and_unchanged(path, match="invalid vocabulary")


def test_an_unexpected_member_in_a_symrnn_checkpoint_is_an_error(tmp_path):
    path = tmp_path / "model.npz"
    full_checkpoint(path)
    rewrite_members(path, stray=np.ones(2))
    assert_fails_and_unchanged(path, match="unexpected member 'stray'")


def test_a_symrnn_checkpoint_without_parameters_is_an_error(tmp_path):
    path = tmp_path / "model.npz"
    full_checkpoint(path)
    rewrite_members(path, **{f"param__{name}": None for name in sample_params()})
    assert_fails_and_unchanged(path, match="holds no parameters")


def test_a_symrnn_checkpoint_without_its_format_member_is_an_unknown_layout(tmp_path):
    path = tmp_path / "model.npz"
    full_checkpoint(path)
    rewrite_members(path, symrnn_format=None)
    assert_fails_and_unchanged(path, match="unknown layout: keys .*symrnn_format")


def test_the_settings_are_those_saved_or_those_inferred_from_a_tutorial_file(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(path, sample_params(), settings={"hidden_dim": 4})
    assert load_checkpoint(path).settings == {"hidden_dim": 4}
    gru = tmp_path / "gru.npz"
    save_tutorial_model(gru, **gru_arrays(hidden=3, words=9))
    assert load_checkpoint(gru).settings == {"word_dim": 9, "hidden_dim": 3, "embedding_dim": 3}
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "missing.npz")


# --------------------------------------------------------------------------
# Fuzzing: damaged files only ever raise CheckpointError
# --------------------------------------------------------------------------


def _valid_bytes(layout):
    buffer = io.BytesIO()
    if layout == "symrnn":
        arrays = {
            "param/E": np.ones((2, 3), np.float32),
            "param/gru0/U": np.full((2, 2), 0.5),
            "opt/E/cache": np.zeros((2, 3), np.float32),
            "train/epoch": np.array(2, np.int64),
            "vocabulary": np.array(["a", "é", "<MASK/>"]),
            "settings_json": np.array('{"hidden_dim": 2}'),
            "symrnn_format": np.array(1, np.int64),
        }
    else:
        arrays = gru_arrays(hidden=2, words=3)
    np.savez(buffer, **arrays)
    return buffer.getvalue()


VALID_BYTES = {layout: _valid_bytes(layout) for layout in ("symrnn", "tutorial-gru")}


def _load_only_checkpoint_error(path, data):
    path.write_bytes(data)
    try:
        loaded = load_checkpoint(path)
    except CheckpointError as exc:
        assert "\n" not in str(exc)
        assert str(path) in str(exc)
    else:
        assert loaded.layout in ("symrnn", "tutorial-gru", "tutorial-rnn")
        assert loaded.params
    assert path.read_bytes() == data


_FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes_only_ever_raise_checkpoint_error(tmp_path, data):
    _load_only_checkpoint_error(tmp_path / "fuzz.npz", data)


@_FUZZ
@given(data=st.data(), layout=st.sampled_from(sorted(VALID_BYTES)))
def test_mutated_or_truncated_checkpoints_only_ever_raise_checkpoint_error(tmp_path, data, layout):
    original = VALID_BYTES[layout]
    mutated = bytearray(original)
    edits = data.draw(
        st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(0, 255)), max_size=4), label="edits"
    )
    for position, value in edits:
        mutated[position] = value
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(original))), label="cut")
    if cut is not None:
        mutated = mutated[:cut]
    _load_only_checkpoint_error(tmp_path / "fuzz.npz", bytes(mutated))
