"""Nothing unbounded is read and nothing read is trusted blindly.

Named pipes and devices as data or model files, data over the size limit,
decompression bombs, settings whose memory cannot exist, CSV fields over the
csv module's default limit, damaged or foreign token caches, corpora that do
not fit the model's vocabulary; and the atomic writer the cache uses.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import threading
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from symrnn import files
from symrnn.checkpoint import load_checkpoint, save_checkpoint
from symrnn.config import Settings
from symrnn.corpus import load_corpus
from symrnn.errors import CheckpointError, ConfigError
from symrnn.memory import available_memory_bytes, parameter_count, training_memory_bytes
from symrnn.network import parameter_shapes

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
TEXT_A = "the cat sat on the mat.\nthe dog sat on the log.\na cat and a dog met on the mat.\n"
TEXT_B = "quantum chromodynamics describes gluons\nleptons ignore colour charge entirely\n"  # no word of TEXT_A


def run_script(name, args, env_extra, cwd, timeout=120):
    env = dict(os.environ, CACHE_DIR="off", **env_extra)
    return subprocess.run([sys.executable, str(SCRIPTS / name), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def assert_clean_failure(result, *words):
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def listing(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "special" for p in folder.iterdir()}


def finishes(call, seconds=20):
    """Run ``call`` in a thread; the exception it raised, failing if it blocks (a pipe read hangs)."""
    outcome = {}

    def target():
        try:
            outcome["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the read blocked"
    return outcome.get("error")


@pytest.fixture()
def fifo(tmp_path):
    path = tmp_path / "pipe.csv"
    os.mkfifo(path)
    return path


@pytest.fixture()
def model_file(tmp_path):
    """A small symrnn checkpoint with the vocabulary of TEXT_A, and its digest."""
    data = tmp_path / "a.txt"
    data.write_text(TEXT_A, encoding="utf-8")
    vocabulary = load_corpus(data, vocabulary_size=15).vocabulary
    rng = np.random.default_rng(0)
    shapes = parameter_shapes(len(vocabulary), 4, 5, 1, "gru")
    params = {name: rng.normal(0, 0.1, shape).astype(np.float32) for name, shape in shapes.items()}
    settings = {**Settings().as_dict(), "word_dim": len(vocabulary), "embedding_dim": 4, "hidden_dim": 5, "num_layers": 1,
                "cell": "gru", "gate": "hard_sigmoid", "input_data_file": str(data)}
    path = save_checkpoint(tmp_path / "model.npz", params, vocabulary=vocabulary.index_to_word, settings=settings)
    return Path(path), data


# --------------------------------------------------------------------------
# Pipes, devices and sockets are refused at once (case 11/12)
# --------------------------------------------------------------------------



def test_a_named_pipe_as_model_file_is_refused_without_blocking(fifo):
    error = finishes(lambda: load_checkpoint(fifo))
    assert isinstance(error, CheckpointError) and "named pipe" in str(error), error


def test_a_socket_is_not_a_regular_file(tmp_path):
    import socket

    path = tmp_path / "s.txt"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        with pytest.raises(files.NotARegularFileError, match="socket"):
            files.read_regular_file(path)
    finally:
        server.close()


def test_open_regular_file_refuses_a_pipe_swapped_in_after_the_stat_check(tmp_path, monkeypatch):
    """The race: a regular file at stat time, a pipe at open time. O_NONBLOCK + fstat refuse it."""
    path = tmp_path / "data.txt"
    os.mkfifo(path)
    real_stat = os.stat
    regular = real_stat(__file__)
    monkeypatch.setattr(files.os, "stat", lambda p, *a, **k: regular if os.fspath(p) == str(path) else real_stat(p, *a, **k))
    error = finishes(lambda: files.open_regular_file(path))
    assert isinstance(error, files.NotARegularFileError), error


def test_train_py_refuses_dev_zero_and_a_pipe_with_one_line(tmp_path, fifo):
    for data in ("/dev/zero", str(fifo)):
        result = run_script("train.py", [], {"INPUT_DATA_FILE": data, "MODEL_OUTPUT_FILE": str(tmp_path / "m.npz")},
                            tmp_path, timeout=60)
        assert_clean_failure(result, data, "not a regular file")
    assert not (tmp_path / "m.npz").exists()


def test_evaluate_py_refuses_a_pipe_as_model_file_with_one_line(tmp_path, fifo):
    result = run_script("evaluate.py", [str(fifo)], {}, tmp_path, timeout=60)
    assert_clean_failure(result, "named pipe")


# --------------------------------------------------------------------------
# The data size limit (case 11)
# --------------------------------------------------------------------------



def test_read_regular_file_never_returns_more_than_the_limit_even_from_a_growing_file(tmp_path, monkeypatch):
    path = tmp_path / "growing.txt"
    path.write_bytes(b"x" * 50)
    real_fstat = os.fstat
    monkeypatch.setattr(files.os, "fstat", lambda fd: os.stat_result((stat.S_IFREG | 0o644, *real_fstat(fd)[1:6], 10, *real_fstat(fd)[7:])))
    with pytest.raises(files.FileTooLargeError):
        files.read_regular_file(path, max_bytes=20)


def test_train_py_refuses_data_over_max_data_mb_and_a_bad_max_data_mb(tmp_path):
    data = tmp_path / "big.txt"
    data.write_bytes(b"a short line of text.\n" * 60_000)  # 1.3 MB
    before = listing(tmp_path)
    result = run_script("train.py", [], {"INPUT_DATA_FILE": str(data), "MAX_DATA_MB": "1"}, tmp_path, timeout=60)
    assert_clean_failure(result, "MAX_DATA_MB", "big.txt")
    result = run_script("train.py", [], {"INPUT_DATA_FILE": str(data), "MAX_DATA_MB": "0"}, tmp_path, timeout=60)
    assert_clean_failure(result, "MAX_DATA_MB")
    assert listing(tmp_path) == before


# --------------------------------------------------------------------------
# Decompression bombs (case 10)
# --------------------------------------------------------------------------


def write_zeros_member(archive: zipfile.ZipFile, name: str, n_floats: int) -> None:
    """A deflated .npy member of ``n_floats`` float32 zeros, streamed 1 MiB at a time."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros(0, np.float32))
    header["shape"] = (n_floats,)
    with archive.open(name, "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(member, header)
        chunk = bytes(2**20)
        left = n_floats * 4
        while left:
            member.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))


def test_a_small_npz_with_a_huge_deflated_member_is_refused_before_inflating(tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in ("U.npy", "V.npy"):
            archive.writestr(name, b"")
        write_zeros_member(archive, "W.npy", 50 * 2**20)  # 200 MiB of zeros
    assert path.stat().st_size < 2**20
    with pytest.raises(CheckpointError, match="decompression bomb"):
        load_checkpoint(path)


def test_many_members_each_under_the_allowance_are_refused_together(tmp_path):
    path = tmp_path / "spread.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for i in range(3):
            write_zeros_member(archive, f"m{i}.npy", 6 * 2**20)  # 24 MiB each
    with pytest.raises(CheckpointError, match="inflate to"):
        load_checkpoint(path)


def test_an_ordinary_compressed_model_file_still_loads(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "part2.npz"
    np.savez_compressed(path, U=rng.normal(size=(4, 9)).astype(np.float32), V=rng.normal(size=(9, 4)).astype(np.float32),
                        W=np.zeros((4, 4), np.float32))
    assert load_checkpoint(path).layout == "tutorial-rnn"


def test_a_parameter_of_the_wrong_declared_shape_is_refused_by_its_header(tmp_path):
    path = tmp_path / "part2.npz"
    np.savez(path, U=np.zeros((4, 9), np.float32), V=np.zeros((9, 4), np.float32), W=np.zeros((4, 4), np.float32))
    with pytest.raises(CheckpointError, match=r"'U' has shape \(4, 9\) but \(4, 10\)"):
        load_checkpoint(path, expected_shapes={"U": (4, 10), "V": (10, 4), "W": (4, 4)})


def test_evaluate_py_refuses_a_bomb_with_one_line_and_leaves_it(tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        write_zeros_member(archive, "E.npy", 50 * 2**20)
    before = listing(tmp_path)
    assert_clean_failure(run_script("evaluate.py", [str(path)], {}, tmp_path), "decompression bomb")
    assert listing(tmp_path) == before


# --------------------------------------------------------------------------
# Memory that cannot exist (case 12)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cell,layers", [("gru", 2), ("lstm", 1), ("rnn", 3)])
def test_parameter_count_equals_the_models_parameter_shapes(cell, layers):
    shapes = parameter_shapes(50, 7, 9, layers, cell)
    assert parameter_count(50, 7, 9, layers, cell) == sum(int(np.prod(s)) for s in shapes.values())


def test_the_memory_estimate_covers_parameters_optimizer_state_and_the_logits():
    args = dict(vocabulary_size=8000, embedding_dim=48, hidden_dim=128, num_layers=2, cell="gru", batch_size=64, max_length=60)
    estimate = training_memory_bytes(**args)
    parameters = parameter_count(8000, 48, 128, 2, "gru")
    assert estimate >= 4 * (4 * parameters + 2 * 64 * 60 * 8000)  # params, grads, updates, RMSprop cache; logits + gradient
    assert training_memory_bytes(**args, optimizer="adam") - estimate == 4 * parameters
    assert training_memory_bytes(**args, dtype="float64") == 2 * estimate
    assert training_memory_bytes(**{**args, "hidden_dim": 100_000}) > 100 * 2**30


def test_available_memory_is_known_and_positive_here():
    available = available_memory_bytes()
    assert available is not None and available > 0


def fake_run(**settings):
    return types.SimpleNamespace(
        settings=Settings(**settings), data=types.SimpleNamespace(X_train=[np.zeros(12)], X_valid=[], vocabulary=list(range(40))),
        bucket_width=None, state=None, build_model=None, time_one_step=lambda: None,
    )


def test_train_py_refuses_settings_needing_more_memory_than_available_before_building(monkeypatch):
    from scripts import train as train_script

    built = []
    run = fake_run(hidden_dim=1000)
    run.build_model = lambda: built.append(1)
    monkeypatch.setattr(train_script, "available_memory_bytes", lambda: 2**20)
    with pytest.raises(ConfigError, match="HIDDEN_DIM=1000") as info:
        train_script.build_within_memory(run)
    assert "\n" not in str(info.value) and not built


def test_a_memory_error_while_building_becomes_the_same_one_line_error(monkeypatch):
    from scripts import train as train_script

    def build():
        raise MemoryError

    run = fake_run(embedding_dim=7)
    run.build_model = build
    monkeypatch.setattr(train_script, "available_memory_bytes", lambda: None)
    with pytest.raises(ConfigError, match="out of memory .*EMBEDDING_DIM=7"):
        train_script.build_within_memory(run)


def test_train_py_with_hidden_dim_100000_ends_with_one_line_naming_it(tmp_path):
    data = tmp_path / "a.txt"
    data.write_text(TEXT_A, encoding="utf-8")
    before = listing(tmp_path)
    result = run_script("train.py", [], {"INPUT_DATA_FILE": str(data), "HIDDEN_DIM": "100000", "VOCABULARY_SIZE": "10"}, tmp_path)
    assert_clean_failure(result, "HIDDEN_DIM=100000", "memory")
    assert listing(tmp_path) == before


# --------------------------------------------------------------------------
# CSV fields over the csv module's default limit (case 14)
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# atomic_write
# --------------------------------------------------------------------------


def test_atomic_write_writes_the_content_with_the_usual_mode_for_a_new_file(tmp_path):
    umask = os.umask(0o027)
    try:
        files.atomic_write(tmp_path / "new.bin", lambda handle: handle.write(b"content"))
    finally:
        os.umask(umask)
    assert (tmp_path / "new.bin").read_bytes() == b"content"
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o640


def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "old.bin"
    path.write_bytes(b"old")
    path.chmod(0o600)
    files.atomic_write(path, lambda handle: handle.write(b"new"))
    assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("failure", [ValueError, KeyboardInterrupt])
def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary_file(tmp_path, failure):
    path = tmp_path / "old.bin"
    path.write_bytes(b"old")

    def write(handle):
        handle.write(b"half")
        raise failure

    with pytest.raises(failure):
        files.atomic_write(path, write)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["old.bin"]


# --------------------------------------------------------------------------
# A corpus that does not fit the model's vocabulary (case 8)
# --------------------------------------------------------------------------


def test_resuming_on_the_training_corpus_with_a_small_vocabulary_does_not_warn(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text(TEXT_A, encoding="utf-8")
    model = tmp_path / "m.npz"
    small = {"HIDDEN_DIM": "6", "EMBEDDING_DIM": "4", "NUM_SAMPLES": "0", "NEPOCH": "1", "MODEL_OUTPUT_FILE": str(model),
             "INPUT_DATA_FILE": str(a), "VOCABULARY_SIZE": "6"}
    first = run_script("train.py", [], small, tmp_path, timeout=300)
    assert first.returncode == 0, first.stderr
    with np.load(model) as saved:
        trained_share = float(saved["train/unknown_share"])
    assert trained_share > 0.2  # the vocabulary is far smaller than the corpus's words
    resumed = run_script("train.py", [], {**small, "NEPOCH": "2", "RESUME": str(model)}, tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"(UNKNOWN_TOKEN): {trained_share:.1%}" in resumed.stdout
    assert "warning:" not in resumed.stderr
    evaluated = run_script("evaluate.py", [str(model), "--data", str(a)], {}, tmp_path)
    assert evaluated.returncode == 0 and "warning:" not in evaluated.stderr


def test_evaluate_py_on_another_corpus_prints_the_share_and_warns(tmp_path, model_file):
    model, _ = model_file
    other = tmp_path / "b.txt"
    other.write_text(TEXT_B, encoding="utf-8")
    result = run_script("evaluate.py", [str(model), "--data", str(other)], {}, tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("evaluate.py: warning:")]
    assert len(warnings) == 1 and "100.0% of the tokens are not in the model's vocabulary" in warnings[0]
    assert "tokens not in the model's vocabulary (UNKNOWN_TOKEN): 100.0%" in result.stdout
    same = run_script("evaluate.py", [str(model), "--data", str(model_file[1])], {}, tmp_path)
    assert same.returncode == 0 and "warning:" not in same.stderr
    assert "(UNKNOWN_TOKEN): 0.0%" in same.stdout


def test_resuming_on_another_corpus_prints_the_share_and_warns(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(TEXT_A, encoding="utf-8")
    b.write_text(TEXT_B, encoding="utf-8")
    model = tmp_path / "m.npz"
    small = {"HIDDEN_DIM": "6", "EMBEDDING_DIM": "4", "NUM_SAMPLES": "0", "NEPOCH": "1", "MODEL_OUTPUT_FILE": str(model)}
    first = run_script("train.py", [], {**small, "INPUT_DATA_FILE": str(a)}, tmp_path, timeout=300)
    assert first.returncode == 0, first.stderr
    resumed = run_script("train.py", [], {**small, "NEPOCH": "2", "RESUME": str(model), "INPUT_DATA_FILE": str(b)}, tmp_path,
                         timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "(UNKNOWN_TOKEN): 100.0%" in resumed.stdout
    assert sum(line.startswith("train.py: warning: 100.0% of the tokens") for line in resumed.stderr.splitlines()) == 1
