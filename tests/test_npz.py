"""Tests of symrnn.npz: atomic, exact-path writing and hardened reading of .npz model files."""

from __future__ import annotations

import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from symrnn.errors import CheckpointError
from symrnn.npz import read_npz, write_npz
from tests.model_files import assert_fails_and_unchanged, full_checkpoint, rnn_arrays


def assert_read_fails_and_unchanged(path, match=None):
    """Reading `path` with read_npz raises a one-line CheckpointError and changes nothing."""
    return assert_fails_and_unchanged(path, match, load=read_npz)


# --------------------------------------------------------------------------
# Atomic writing
# --------------------------------------------------------------------------

ARRAYS = {"param/E": np.arange(6, dtype=np.float32).reshape(2, 3), "vocabulary": np.array(["a", "é"])}
OTHER_ARRAYS = {"param/E": np.ones((2, 3), np.float32)}


def test_write_npz_writes_exactly_the_given_path_and_read_npz_reads_every_member_back(tmp_path):
    path = tmp_path / "weights.dat"
    write_npz(str(path), ARRAYS)
    assert os.listdir(tmp_path) == ["weights.dat"]
    members = read_npz(path)
    assert list(members) == list(ARRAYS)
    for name, array in ARRAYS.items():
        assert members[name].dtype == array.dtype
        np.testing.assert_array_equal(members[name], array)


def test_a_failure_mid_write_leaves_the_previous_file_byte_identical_and_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    write_npz(str(path), ARRAYS)
    before = path.read_bytes()
    real_savez = np.savez

    def failing_savez(file, *args, **kwargs):
        file.write(b"PK\x03\x04partial")
        real_savez(io.BytesIO(), *args, **kwargs)
        file.write(b"more partial bytes")
        raise RuntimeError("simulated crash mid-write")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_npz(str(path), OTHER_ARRAYS)
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]
    np.testing.assert_array_equal(read_npz(path)["param/E"], ARRAYS["param/E"])


def test_a_disk_error_mid_write_is_a_checkpoint_error_and_changes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    write_npz(str(path), ARRAYS)
    before = path.read_bytes()

    def full_disk(file, *args, **kwargs):
        file.write(b"PK\x03\x04")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(CheckpointError, match="No space left on device") as info:
        write_npz(str(path), OTHER_ARRAYS)
    assert "\n" not in str(info.value)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]


def test_a_failed_rename_removes_the_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"

    def failing_replace(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(CheckpointError, match="Permission denied"):
        write_npz(str(path), ARRAYS)
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

    monkeypatch.setattr(os, "replace", spying_replace)
    write_npz(str(path), ARRAYS)
    assert seen == [(str(tmp_path), str(path))]


def test_a_missing_directory_is_an_error_and_is_not_created(tmp_path):
    path = tmp_path / "no" / "such" / "model.npz"
    with pytest.raises(CheckpointError, match="does not exist") as info:
        write_npz(str(path), ARRAYS)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "no").exists()


def test_saving_onto_a_directory_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory"):
        write_npz(str(tmp_path), ARRAYS)


# --------------------------------------------------------------------------
# Damaged and foreign files
# --------------------------------------------------------------------------


def test_a_missing_file_gives_a_clear_error(tmp_path):
    assert_read_fails_and_unchanged(tmp_path / "nope.npz", match="does not exist")


def test_a_directory_gives_a_clear_error(tmp_path):
    (tmp_path / "dir.npz").mkdir()
    assert_read_fails_and_unchanged(tmp_path / "dir.npz", match="is a directory")


def test_an_empty_file_gives_a_clear_error_and_changes_nothing(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    assert_read_fails_and_unchanged(path, match="is empty")


def test_random_bytes_give_a_clear_error_and_change_nothing(tmp_path):
    path = tmp_path / "random.npz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    assert_read_fails_and_unchanged(path, match="is not a model file")


def test_a_text_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello world\n")
    assert_read_fails_and_unchanged(path, match="is not a model file")


def test_a_pickle_file_is_never_unpickled(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"E": [1.0, 2.0]}))
    assert_read_fails_and_unchanged(path, match="pickle")


def test_a_single_npy_file_gives_a_clear_error_and_changes_nothing(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.ones((3, 3), np.float32))
    assert_read_fails_and_unchanged(path, match=r"single \.npy array")


def test_a_pickled_object_array_gives_a_clear_error_and_changes_nothing(tmp_path):
    path = tmp_path / "objects.npz"
    arrays = rnn_arrays()
    arrays["W"] = np.array([{"evil": 1}, None], dtype=object)
    np.savez(path, **arrays)
    assert_read_fails_and_unchanged(path, match="holds pickled objects")


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.5, 0.7, 0.95, 0.999])
def test_a_truncated_file_gives_a_clear_error_and_changes_nothing(tmp_path, fraction):
    path = tmp_path / "model.npz"
    full_checkpoint(path)
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * fraction))])
    assert_read_fails_and_unchanged(path, match="truncated or corrupt")


def test_a_file_cut_after_its_last_byte_but_one_is_detected(tmp_path):
    path = tmp_path / "model.npz"
    full_checkpoint(path)
    path.write_bytes(path.read_bytes()[:-1])
    assert_read_fails_and_unchanged(path, match="truncated or corrupt")


@pytest.mark.parametrize("where", [0.2, 0.4, 0.6])
def test_corrupt_bytes_inside_a_file_give_a_clear_error_and_change_nothing(tmp_path, where):
    path = tmp_path / "model.npz"
    full_checkpoint(path)
    data = bytearray(path.read_bytes())
    start = int(len(data) * where)
    for i in range(start, start + 16):
        data[i] ^= 0xA5
    path.write_bytes(bytes(data))
    assert_read_fails_and_unchanged(path, match="truncated or corrupt")


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
    np.savez(path, **rnn_arrays())
    _rezip_with_edited_member(path, "W.npy", b"(3, 3)", b"(3, 99999999999)")
    assert_read_fails_and_unchanged(path, match="truncated or corrupt")


def test_a_header_describing_fewer_bytes_than_the_member_holds_is_caught(tmp_path):
    path = tmp_path / "rnn.npz"
    np.savez(path, **rnn_arrays())
    _rezip_with_edited_member(path, "W.npy", b"(3, 3)", b"(3, 2)")
    assert_read_fails_and_unchanged(path, match="truncated or corrupt")


def test_a_non_array_member_is_not_a_model_file(tmp_path):
    path = tmp_path / "odd.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("U.npy", b"just text")
    assert_read_fails_and_unchanged(path, match="not a numpy array")
