"""Tests of symrnn.checkpoint: atomic, exact-path saving and strict loading."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symrnn import checkpoint as ckpt_module
from symrnn.checkpoint import (
    Checkpoint,
    load_checkpoint,
    read_settings_only,
    save_checkpoint,
    save_tutorial_model,
)
from symrnn.errors import CheckpointError

REAL_PART2_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "rnnlm-part2-trained-model-theano.npz"

VOCABULARY = ["<MASK/>", "UNKNOWN_TOKEN", "SENTENCE_START", "SENTENCE_END", "the", "café", "naïve", "日本語", "Ωmega", ""]
HIDDEN = 4
WORDS = len(VOCABULARY)


def _params(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "E": rng.uniform(-1, 1, (HIDDEN, WORDS)).astype(dtype),
        "gru0/U": rng.uniform(-1, 1, (3, HIDDEN, HIDDEN)).astype(dtype),
        "W_x_0": rng.uniform(-1, 1, (HIDDEN, HIDDEN)).astype(dtype),
        "c": np.zeros(WORDS, dtype=dtype),
    }


def _gru_arrays(hidden=HIDDEN, words=WORDS, dtype=np.float32, seed=1):
    rng = np.random.default_rng(seed)
    return {
        "E": rng.uniform(-1, 1, (hidden, words)).astype(dtype),
        "U": rng.uniform(-1, 1, (6, hidden, hidden)).astype(dtype),
        "W": rng.uniform(-1, 1, (6, hidden, hidden)).astype(dtype),
        "V": rng.uniform(-1, 1, (words, hidden)).astype(dtype),
        "b": np.zeros((6, hidden), dtype=dtype),
        "c": np.zeros(words, dtype=dtype),
    }


def _rnn_arrays(hidden=3, words=7, dtype=np.float32):
    rng = np.random.default_rng(2)
    return {
        "U": rng.uniform(-1, 1, (hidden, words)).astype(dtype),
        "V": rng.uniform(-1, 1, (words, hidden)).astype(dtype),
        "W": rng.uniform(-1, 1, (hidden, hidden)).astype(dtype),
    }


def _full_checkpoint(path, **overrides):
    kwargs = dict(
        vocabulary=VOCABULARY,
        settings={"hidden_dim": HIDDEN, "word_dim": WORDS, "learning_rate": 0.001, "name": "modèle", "layers": [1, 2]},
        optimizer_state={"E/cache": np.ones((HIDDEN, WORDS), np.float32), "step": np.int64(7)},
        training_state={
            "epoch": np.array(3, dtype=np.int64),
            "position": np.array(1234, dtype=np.int64),
            "rng_state": np.array([2**64 - 1, 0, 12345, 99], dtype=np.uint64),
        },
    )
    kwargs.update(overrides)
    return save_checkpoint(path, _params(), **kwargs)


def _write_savez(path, **arrays):
    """Write an .npz at exactly `path` the way a foreign tool would."""
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _assert_fails_and_unchanged(path, match=None, **load_kwargs):
    """Loading `path` raises a one-line CheckpointError and changes nothing."""
    path = Path(path)
    before_bytes = path.read_bytes() if path.is_file() else None
    before_listing = sorted(os.listdir(path.parent))
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path, **load_kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    if before_bytes is not None:
        assert path.read_bytes() == before_bytes
    assert sorted(os.listdir(path.parent)) == before_listing
    return message


# --------------------------------------------------------------------------
# Round trips and exact paths
# --------------------------------------------------------------------------


def test_a_full_checkpoint_round_trips_every_part(tmp_path):
    path = tmp_path / "model.npz"
    written = _full_checkpoint(path)
    assert written == str(path)

    loaded = load_checkpoint(path)
    assert isinstance(loaded, Checkpoint)
    assert loaded.layout == "symrnn"
    assert loaded.path == str(path)
    assert list(loaded.params) == list(_params())
    for name, array in _params().items():
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
    save_checkpoint(path, _params(np.float64))
    loaded = load_checkpoint(path, expected_dtype=np.float64)
    assert all(array.dtype == np.float64 for array in loaded.params.values())


def test_the_vocabulary_is_stored_as_a_unicode_array_and_nothing_is_pickled(tmp_path):
    path = tmp_path / "model.npz"
    _full_checkpoint(path)
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
    save_checkpoint(path, _params(), vocabulary=[])
    assert load_checkpoint(path).vocabulary == []


def test_numpy_scalars_and_tuples_in_settings_are_saved_as_json(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(path, _params(), settings={"hidden": np.int64(4), "lr": np.float32(0.5), "shape": (1, 2)})
    assert read_settings_only(path) == {"hidden": 4, "lr": 0.5, "shape": [1, 2]}


def test_exactly_the_given_path_is_written_even_with_a_dat_suffix(tmp_path):
    path = tmp_path / "weights.dat"
    assert save_checkpoint(path, _params()) == str(path)
    assert os.listdir(tmp_path) == ["weights.dat"]
    assert not (tmp_path / "weights.dat.npz").exists()
    assert load_checkpoint(path).layout == "symrnn"


def test_a_path_without_any_suffix_is_written_as_given(tmp_path):
    path = tmp_path / "model"
    save_checkpoint(str(path), _params())
    assert os.listdir(tmp_path) == ["model"]


def test_saving_again_replaces_the_previous_file(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(path, _params(seed=0))
    save_checkpoint(path, _params(seed=5))
    np.testing.assert_array_equal(load_checkpoint(path).params["E"], _params(seed=5)["E"])
    assert os.listdir(tmp_path) == ["model.npz"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_a_replaced_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(path, _params())
    os.chmod(path, 0o640)
    save_checkpoint(path, _params(seed=3))
    assert (os.stat(path).st_mode & 0o777) == 0o640


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_a_new_file_gets_the_usual_permissions_not_those_of_a_temporary_file(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(path, _params())
    umask = os.umask(0o022)
    os.umask(umask)
    assert (os.stat(path).st_mode & 0o777) == (0o666 & ~umask)


def test_saving_and_loading_print_nothing(tmp_path, capsys):
    path = tmp_path / "model.npz"
    _full_checkpoint(path)
    load_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "missing.npz")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# --------------------------------------------------------------------------
# Atomic writing
# --------------------------------------------------------------------------


def test_a_failure_mid_write_leaves_the_previous_file_byte_identical_and_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    _full_checkpoint(path)
    before = path.read_bytes()
    real_savez = np.savez

    def failing_savez(file, *args, **kwargs):
        file.write(b"PK\x03\x04partial")
        real_savez(io.BytesIO(), *args, **kwargs)
        file.write(b"more partial bytes")
        raise RuntimeError("simulated crash mid-write")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(RuntimeError, match="simulated crash"):
        save_checkpoint(path, _params(seed=9), vocabulary=["a"])
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]
    np.testing.assert_array_equal(load_checkpoint(path).params["E"], _params()["E"])


def test_a_disk_error_mid_write_is_a_checkpoint_error_and_changes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    _full_checkpoint(path)
    before = path.read_bytes()

    def full_disk(file, *args, **kwargs):
        file.write(b"PK\x03\x04")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(CheckpointError, match="No space left on device") as info:
        save_checkpoint(path, _params(seed=9))
    assert "\n" not in str(info.value)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]


def test_a_failed_rename_removes_the_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"

    def failing_replace(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(ckpt_module.os, "replace", failing_replace)
    with pytest.raises(CheckpointError, match="Permission denied"):
        save_checkpoint(path, _params())
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_the_temporary_file_lives_in_the_target_directory(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    seen = []
    real_replace = os.replace

    def spying_replace(src, dst):
        seen.append((os.path.dirname(os.path.abspath(src)), os.fspath(dst)))
        assert os.path.basename(src).endswith(".tmp")
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt_module.os, "replace", spying_replace)
    save_checkpoint(path, _params())
    assert seen == [(str(tmp_path), str(path))]


def test_a_missing_directory_is_an_error_and_is_not_created(tmp_path):
    path = tmp_path / "no" / "such" / "model.npz"
    with pytest.raises(CheckpointError, match="does not exist") as info:
        save_checkpoint(path, _params())
    assert "\n" not in str(info.value)
    assert not (tmp_path / "no").exists()
    with pytest.raises(CheckpointError, match="does not exist"):
        save_tutorial_model(path, **_gru_arrays())


def test_saving_onto_a_directory_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory"):
        save_checkpoint(tmp_path, _params())


# --------------------------------------------------------------------------
# What saving refuses
# --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_saving_non_finite_parameters_is_refused_and_writes_nothing(tmp_path, bad):
    params = _params()
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
        save_checkpoint(tmp_path / "model.npz", _params(), training_state={"rng": np.array([{"a": 1}], dtype=object)})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "bad_settings",
    [{"f": object()}, {1: "int key"}, {"nan": float("nan")}, ["not", "a", "dict"], {"nested": {"x": {1, 2}}}],
)
def test_saving_settings_that_are_not_a_json_object_is_a_type_error(tmp_path, bad_settings):
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "model.npz", _params(), settings=bad_settings)
    assert os.listdir(tmp_path) == []


def test_saving_a_vocabulary_with_non_strings_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match="not str"):
        save_checkpoint(tmp_path / "model.npz", _params(), vocabulary=["a", 3])


def test_saving_a_word_with_a_nul_character_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="NUL"):
        save_checkpoint(tmp_path / "model.npz", _params(), vocabulary=["a\x00"])


# --------------------------------------------------------------------------
# The tutorial layouts
# --------------------------------------------------------------------------


def test_a_tutorial_gru_file_written_by_plain_savez_loads(tmp_path):
    path = tmp_path / "GRU-tutorial.npz"
    arrays = _gru_arrays(hidden=5, words=11)
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
    arrays = _gru_arrays()
    assert save_tutorial_model(path, **arrays) == str(path)
    assert os.listdir(tmp_path) == ["trained.model"]
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(arrays)
    loaded = load_checkpoint(path, expected_shapes={k: v.shape for k, v in arrays.items()})
    assert loaded.layout == "tutorial-gru"
    for name, array in arrays.items():
        np.testing.assert_array_equal(loaded.params[name], array)


def test_save_tutorial_model_refuses_inconsistent_shapes_and_writes_nothing(tmp_path):
    arrays = _gru_arrays()
    arrays["V"] = arrays["V"][:, :-1]
    with pytest.raises(CheckpointError, match="'V'"):
        save_tutorial_model(tmp_path / "model.npz", **arrays)
    assert os.listdir(tmp_path) == []


def test_a_tutorial_rnn_file_loads_with_inferred_sizes(tmp_path):
    path = tmp_path / "rnn.npz"
    np.savez(path, **_rnn_arrays(hidden=3, words=7))
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
    arrays = {name: array.astype(">f4") for name, array in _rnn_arrays().items()}
    _write_savez(path, **arrays)
    loaded = load_checkpoint(path, expected_dtype=np.float32)
    for name, array in arrays.items():
        assert loaded.params[name].dtype.isnative
        np.testing.assert_array_equal(loaded.params[name], array)


# --------------------------------------------------------------------------
# Damaged and foreign files
# --------------------------------------------------------------------------


def test_a_missing_file_gives_a_clear_error(tmp_path):
    _assert_fails_and_unchanged(tmp_path / "nope.npz", match="does not exist")


def test_a_directory_gives_a_clear_error(tmp_path):
    (tmp_path / "dir.npz").mkdir()
    _assert_fails_and_unchanged(tmp_path / "dir.npz", match="is a directory")


def test_an_empty_file_gives_a_clear_error_and_changes_nothing(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    _assert_fails_and_unchanged(path, match="is empty")


def test_random_bytes_give_a_clear_error_and_change_nothing(tmp_path):
    path = tmp_path / "random.npz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    _assert_fails_and_unchanged(path, match="is not a model file")


def test_a_text_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello world\n")
    _assert_fails_and_unchanged(path, match="is not a model file")


def test_a_pickle_file_is_never_unpickled(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"E": [1.0, 2.0]}))
    _assert_fails_and_unchanged(path, match="pickle")


def test_a_single_npy_file_gives_a_clear_error_and_changes_nothing(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.ones((3, 3), np.float32))
    _assert_fails_and_unchanged(path, match=r"single \.npy array")


def test_a_pickled_object_array_gives_a_clear_error_and_changes_nothing(tmp_path):
    path = tmp_path / "objects.npz"
    arrays = _rnn_arrays()
    arrays["W"] = np.array([{"evil": 1}, None], dtype=object)
    np.savez(path, **arrays)
    _assert_fails_and_unchanged(path, match="holds pickled objects")


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.5, 0.7, 0.95, 0.999])
def test_a_truncated_file_gives_a_clear_error_and_changes_nothing(tmp_path, fraction):
    path = tmp_path / "model.npz"
    _full_checkpoint(path)
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * fraction))])
    _assert_fails_and_unchanged(path, match="truncated or corrupt")


def test_a_file_cut_after_its_last_byte_but_one_is_detected(tmp_path):
    path = tmp_path / "model.npz"
    _full_checkpoint(path)
    path.write_bytes(path.read_bytes()[:-1])
    _assert_fails_and_unchanged(path, match="truncated or corrupt")


@pytest.mark.parametrize("where", [0.2, 0.4, 0.6])
def test_corrupt_bytes_inside_a_file_give_a_clear_error_and_change_nothing(tmp_path, where):
    path = tmp_path / "model.npz"
    _full_checkpoint(path)
    data = bytearray(path.read_bytes())
    start = int(len(data) * where)
    for i in range(start, start + 16):
        data[i] ^= 0xA5
    path.write_bytes(bytes(data))
    _assert_fails_and_unchanged(path, match="truncated or corrupt")


def _rezip_with_edited_member(path, member, old, new):
    """Edit one member's bytes and re-zip, so the checksums are valid again."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    assert old in members[member]
    members[member] = members[member].replace(old, new, 1)
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)


def test_a_header_claiming_a_huge_array_is_caught_before_any_allocation(tmp_path):
    path = tmp_path / "rnn.npz"
    np.savez(path, **_rnn_arrays())
    _rezip_with_edited_member(path, "W.npy", b"(3, 3)", b"(3, 99999999999)")
    _assert_fails_and_unchanged(path, match="truncated or corrupt")


def test_a_header_describing_fewer_bytes_than_the_member_holds_is_caught(tmp_path):
    path = tmp_path / "rnn.npz"
    np.savez(path, **_rnn_arrays())
    _rezip_with_edited_member(path, "W.npy", b"(3, 3)", b"(3, 2)")
    _assert_fails_and_unchanged(path, match="truncated or corrupt")


def test_a_non_array_member_is_not_a_model_file(tmp_path):
    path = tmp_path / "odd.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("U.npy", b"just text")
    _assert_fails_and_unchanged(path, match="not a numpy array")


# --------------------------------------------------------------------------
# Valid archives that are not valid models
# --------------------------------------------------------------------------


def test_wrong_shapes_versus_expected_shapes_name_the_parameter_and_both_shapes(tmp_path):
    path = tmp_path / "model.npz"
    _full_checkpoint(path)
    expected = {name: array.shape for name, array in _params().items()}
    expected["E"] = (HIDDEN, WORDS + 1)
    message = _assert_fails_and_unchanged(path, expected_shapes=expected)
    assert "'E'" in message
    assert str((HIDDEN, WORDS)) in message and str((HIDDEN, WORDS + 1)) in message


def test_a_parameter_the_model_needs_but_the_file_lacks_is_an_error(tmp_path):
    path = tmp_path / "model.npz"
    _full_checkpoint(path)
    expected = {name: array.shape for name, array in _params().items()}
    expected["b"] = (6, HIDDEN)
    message = _assert_fails_and_unchanged(path, match="lacks parameter", expected_shapes=expected)
    assert "'b'" in message


def test_an_extra_parameter_the_model_does_not_have_is_an_error(tmp_path):
    path = tmp_path / "model.npz"
    _full_checkpoint(path)
    expected = {name: array.shape for name, array in _params().items()}
    del expected["c"]
    message = _assert_fails_and_unchanged(path, match="does not have", expected_shapes=expected)
    assert "'c'" in message


def test_the_wrong_dtype_versus_expected_dtype_is_an_error(tmp_path):
    path = tmp_path / "model.npz"
    _full_checkpoint(path)
    message = _assert_fails_and_unchanged(path, match="float64 was expected", expected_dtype=np.float64)
    assert "float32" in message


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float16, np.complex64, np.bool_])
def test_a_parameter_that_is_not_float32_or_float64_is_an_error(tmp_path, dtype):
    path = tmp_path / "rnn.npz"
    arrays = _rnn_arrays()
    arrays["W"] = arrays["W"].astype(dtype)
    np.savez(path, **arrays)
    _assert_fails_and_unchanged(path, match="float32 or float64")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_nan_or_infinite_parameter_gives_a_clear_error_and_changes_nothing(tmp_path, bad):
    path = tmp_path / "model.npz"
    arrays = _gru_arrays()
    arrays["V"][1, 2] = bad
    np.savez(path, **arrays)
    message = _assert_fails_and_unchanged(path, match="NaN or infinite")
    assert "'V'" in message


def test_a_nan_parameter_in_a_symrnn_checkpoint_is_an_error(tmp_path):
    path = tmp_path / "model.npz"
    _full_checkpoint(path)
    with np.load(path) as npz:
        members = {name: npz[name] for name in npz.files}
    members["param/E"] = members["param/E"].copy()
    members["param/E"][0, 0] = np.nan
    _write_savez(path, **members)
    _assert_fails_and_unchanged(path, match="NaN or infinite")


def test_a_tutorial_gru_file_missing_a_key_gives_a_clear_error(tmp_path):
    path = tmp_path / "model.npz"
    arrays = _gru_arrays()
    del arrays["c"]
    np.savez(path, **arrays)
    message = _assert_fails_and_unchanged(path, match="unknown layout: keys")
    assert "missing ['c']" in message


def test_a_tutorial_gru_file_with_an_extra_key_gives_a_clear_error(tmp_path):
    path = tmp_path / "model.npz"
    np.savez(path, extra=np.ones(2, np.float32), **_gru_arrays())
    message = _assert_fails_and_unchanged(path, match="unknown layout: keys")
    assert "extra ['extra']" in message


def test_an_unknown_layout_lists_the_keys(tmp_path):
    path = tmp_path / "model.npz"
    np.savez(path, alpha=np.ones(2), beta=np.zeros(3))
    message = _assert_fails_and_unchanged(path, match="unknown layout: keys")
    assert "['alpha', 'beta']" in message


def test_an_empty_archive_has_an_unknown_layout(tmp_path):
    path = tmp_path / "model.npz"
    np.savez(path)
    _assert_fails_and_unchanged(path, match="unknown layout: keys \\[\\]")


@pytest.mark.parametrize(
    "name, shape",
    [("U", (6, 4, 5)), ("W", (5, 4, 4)), ("V", (WORDS, 5)), ("b", (4,)), ("c", (WORDS + 1,))],
)
def test_inconsistent_tutorial_gru_shapes_give_a_clear_error(tmp_path, name, shape):
    path = tmp_path / "model.npz"
    arrays = _gru_arrays()
    arrays[name] = np.zeros(shape, np.float32)
    np.savez(path, **arrays)
    message = _assert_fails_and_unchanged(path, match="tutorial GRU layout")
    assert repr(name) in message and str(shape) in message


def test_a_one_dimensional_tutorial_embedding_is_an_error(tmp_path):
    path = tmp_path / "model.npz"
    arrays = _gru_arrays()
    arrays["E"] = np.zeros(5, np.float32)
    np.savez(path, **arrays)
    _assert_fails_and_unchanged(path, match="'E'")


@pytest.mark.parametrize("name, shape", [("V", (7, 4)), ("W", (3, 4)), ("U", (3, 7, 1))])
def test_inconsistent_tutorial_rnn_shapes_give_a_clear_error(tmp_path, name, shape):
    path = tmp_path / "rnn.npz"
    arrays = _rnn_arrays(hidden=3, words=7)
    arrays[name] = np.zeros(shape, np.float32)
    np.savez(path, **arrays)
    message = _assert_fails_and_unchanged(path, match="tutorial RNN layout")
    assert repr(name) in message


def _rewrite_members(path, **changes):
    with np.load(path) as npz:
        members = {name: npz[name] for name in npz.files}
    for name, value in changes.items():
        name = name.replace("__", "/")
        if value is None:
            members.pop(name, None)
        else:
            members[name] = value
    _write_savez(path, **members)


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
    _full_checkpoint(path)
    _rewrite_members(path, settings_json=settings_json)
    _assert_fails_and_unchanged(path, match=match)


@pytest.mark.parametrize("version", [0, 2, 99])
def test_an_unsupported_format_version_gives_a_clear_error(tmp_path, version):
    path = tmp_path / "model.npz"
    _full_checkpoint(path)
    _rewrite_members(path, symrnn_format=np.array(version, dtype=np.int64))
    _assert_fails_and_unchanged(path, match=f"format version {version}")


def test_a_non_integer_format_member_is_an_error(tmp_path):
    path = tmp_path / "model.npz"
    _full_checkpoint(path)
    _rewrite_members(path, symrnn_format=np.array(1.0))
    _assert_fails_and_unchanged(path, match="invalid symrnn_format")


@pytest.mark.parametrize(
    "vocabulary", [np.arange(3), np.array([["a", "b"]]), np.array("word"), np.array([b"a", b"b"])]
)
def test_a_vocabulary_that_is_not_a_1d_unicode_array_is_an_error(tmp_path, vocabulary):
    path = tmp_path / "model.npz"
    _full_checkpoint(path)
    _rewrite_members(path, vocabulary=vocabulary)
    _assert_fails_and_unchanged(path, match="invalid vocabulary")


def test_an_unexpected_member_in_a_symrnn_checkpoint_is_an_error(tmp_path):
    path = tmp_path / "model.npz"
    _full_checkpoint(path)
    _rewrite_members(path, stray=np.ones(2))
    _assert_fails_and_unchanged(path, match="unexpected member 'stray'")


def test_a_symrnn_checkpoint_without_parameters_is_an_error(tmp_path):
    path = tmp_path / "model.npz"
    _full_checkpoint(path)
    _rewrite_members(path, **{f"param__{name}": None for name in _params()})
    _assert_fails_and_unchanged(path, match="holds no parameters")


def test_a_symrnn_checkpoint_without_its_format_member_is_an_unknown_layout(tmp_path):
    path = tmp_path / "model.npz"
    _full_checkpoint(path)
    _rewrite_members(path, symrnn_format=None)
    _assert_fails_and_unchanged(path, match="unknown layout: keys .*symrnn_format")


def test_read_settings_only_returns_saved_or_inferred_settings(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(path, _params(), settings={"hidden_dim": 4})
    assert read_settings_only(path) == {"hidden_dim": 4}
    gru = tmp_path / "gru.npz"
    save_tutorial_model(gru, **_gru_arrays(hidden=3, words=9))
    assert read_settings_only(gru) == {"word_dim": 9, "hidden_dim": 3, "embedding_dim": 3}
    with pytest.raises(CheckpointError):
        read_settings_only(tmp_path / "missing.npz")


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
        arrays = _gru_arrays(hidden=2, words=3)
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
