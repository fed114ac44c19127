"""Runs you can trust: interrupt and resume, hard kills, diverging steps."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from symrnn.checkpoint import load_checkpoint
from symrnn.errors import SymrnnError
from symrnn.training import Diverged, TrainingState, train

REPO = Path(__file__).resolve().parents[1]
TRAIN = str(REPO / "scripts" / "train.py")

WORDS = "the cat dog bird sees eats likes a small big red green runs sleeps quickly slowly".split()


def write_corpus(path: Path, n: int = 300, seed: int = 0) -> Path:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        length = rng.randint(3, 12)
        lines.append(" ".join(rng.choice(WORDS) for _ in range(length)) + " .")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def base_env(tmp_path: Path, **extra) -> dict:
    env = dict(os.environ)
    env.update(
        INPUT_DATA_FILE=str(write_corpus(tmp_path / "corpus.txt")),
        HIDDEN_DIM="12",
        EMBEDDING_DIM="6",
        VOCABULARY_SIZE="30",
        NUM_SAMPLES="1",
        SEED="3",
        CACHE_DIR="off",
        PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_train(env, cwd, timeout=300):
    return subprocess.run([sys.executable, TRAIN], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def start_and_wait_for_training(env, cwd):
    process = subprocess.Popen(
        [sys.executable, TRAIN], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("Training ("):
            return process, lines
    process.wait()
    raise AssertionError("train.py ended before training started:\n" + "".join(lines))


def test_an_interrupted_and_resumed_run_ends_with_the_same_parameters_as_an_uninterrupted_one(tmp_path):
    settings = dict(BATCH_SIZE=1, NEPOCH=8, PRINT_EVERY=100000, DROPOUT=0.2, VALIDATION_FRACTION=0.1)
    whole = tmp_path / "whole.npz"
    process, _ = start_and_wait_for_training(base_env(tmp_path, MODEL_OUTPUT_FILE=whole, **settings), tmp_path)
    started = time.monotonic()
    output = process.communicate(timeout=300)[0]
    training_seconds = time.monotonic() - started
    assert process.returncode == 0, output

    parted = tmp_path / "parted.npz"
    env = base_env(tmp_path, MODEL_OUTPUT_FILE=parted, **settings)
    interruptions = 0
    for signum, status in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        if interruptions:
            env["RESUME"] = str(parted)
        process, _ = start_and_wait_for_training(env, tmp_path)
        # Within the first half of the training time the uninterrupted run took.
        time.sleep(random.uniform(0.15, 0.45) * training_seconds)
        process.send_signal(signum)
        output = process.communicate(timeout=120)[0]
        if "Training done" in output:  # finished before the signal landed: nothing to resume
            break
        assert process.returncode == status, output
        assert "Resume with: RESUME=" in output
        interruptions += 1
    env["RESUME"] = str(parted)
    result = run_train(env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert interruptions >= 1, "the run was never interrupted; make it longer"

    assert_same_parameters_and_optimizer_state(whole, parted)


def assert_same_parameters_and_optimizer_state(expected_path, actual_path):
    """The two checkpoints hold the same parameters and optimizer state (to 1e-6 relative)."""
    expected, actual = load_checkpoint(expected_path), load_checkpoint(actual_path)
    assert expected.params.keys() == actual.params.keys()
    for name in expected.params:
        np.testing.assert_allclose(actual.params[name], expected.params[name], rtol=1e-6, atol=1e-7, err_msg=name)
    for name in expected.optimizer_state:
        np.testing.assert_allclose(actual.optimizer_state[name], expected.optimizer_state[name], rtol=1e-6, atol=1e-7)


def test_hard_kills_at_random_moments_never_leave_a_broken_model_file(tmp_path):
    env = base_env(
        tmp_path, BATCH_SIZE=1, NEPOCH=50, PRINT_EVERY=20, VALIDATION_FRACTION=0.1, MODEL_OUTPUT_FILE=tmp_path / "m.npz"
    )
    rng = random.Random(1)
    kills, loaded = 0, 0
    for attempt in range(4):
        process, _ = start_and_wait_for_training(env, tmp_path)
        time.sleep(rng.uniform(0.2, 2.0))
        process.kill()
        process.communicate(timeout=60)
        kills += 1
        for path in (tmp_path / "m.npz", tmp_path / "m.best.npz"):
            if path.exists():
                load_checkpoint(path)  # raises if the file is partial or corrupt
                loaded += 1
        if (tmp_path / "m.npz").exists():
            env["RESUME"] = str(tmp_path / "m.npz")
    assert kills == 4
    assert loaded >= 1, "no checkpoint was ever written; kill later or save more often"


def test_a_step_with_a_non_finite_loss_is_skipped_and_repeated_faults_stop_the_run():
    X = [np.array([1, 2, 3], dtype=np.int32)] * 8
    Y = [np.array([2, 3, 1], dtype=np.int32)] * 8
    calls = []

    def failing_step(ids, targets, mask, learning_rate):
        calls.append(1)
        return np.float32(np.nan), np.float32(mask.sum()), np.float32(np.nan), np.int8(0)

    with pytest.raises(Diverged, match="non-finite"):
        train(failing_step, X, Y, epochs=5, batch_size=1, report_every=100, seed=0, max_consecutive_faults=5)
    assert len(calls) == 5
    assert issubclass(Diverged, SymrnnError)


def test_an_occasional_fault_is_counted_and_training_goes_on():
    X = [np.array([1, 2, 3], dtype=np.int32)] * 6
    Y = [np.array([2, 3, 1], dtype=np.int32)] * 6
    outcomes = iter([0, 1, 1, 0, 1, 1] * 3)

    def step(ids, targets, mask, learning_rate):
        applied = next(outcomes)
        loss = np.float32(1.0) if applied else np.float32(np.inf)
        return loss, np.float32(mask.sum()), np.float32(1.0), np.int8(applied)

    state, completed = train(step, X, Y, epochs=3, batch_size=1, report_every=100, seed=0)
    assert completed and state.epoch == 3
    assert state.skipped_steps == 6
    assert state.consecutive_faults == 0


def test_training_state_survives_a_json_round_trip():
    state = TrainingState(epoch=2, position=5, examples_seen=77, learning_rate=0.5, history=[[1, 2.0, None]])
    rng = np.random.default_rng(0)
    state.shuffle_state = rng.bit_generator.state
    assert TrainingState.from_json(state.to_json()) == state


def _recording_step(seen):
    def step(ids, targets, mask, learning_rate):
        seen.append(ids[0].tolist())
        return np.float32(1.0), np.float32(mask.sum()), np.float32(1.0), np.int8(1)

    return step


def test_a_run_resumed_at_an_epochs_end_visits_the_batches_an_uninterrupted_run_would():
    X = [np.array([i + 1, 0, 0][: 1 + i % 3], dtype=np.int32) for i in range(12)]
    Y = [x.copy() for x in X]
    straight = []
    train(_recording_step(straight), X, Y, epochs=3, batch_size=2, report_every=100, seed=4)
    first, then = [], []
    state, completed = train(_recording_step(first), X, Y, epochs=1, batch_size=2, report_every=100, seed=4)
    assert completed and state.epoch == 1 and state.position == 0
    resumed = TrainingState.from_json(state.to_json())
    train(_recording_step(then), X, Y, epochs=3, batch_size=2, report_every=100, seed=4, state=resumed)
    assert first + then == straight
    # The epochs really differ in order, so the comparison above is not trivially true.
    per_epoch = len(straight) // 3
    assert straight[:per_epoch] != straight[per_epoch : 2 * per_epoch]
