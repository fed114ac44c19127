"""scripts/train.py and scripts/evaluate.py with SEQUENCE=stream, TEST_FILE, TIE_WEIGHTS and the metrics file."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from symrnn.checkpoint import load_checkpoint
from tests.test_robustness import REPO, assert_same_parameters_and_optimizer_state, base_env, run_train, write_corpus
from tests.test_scripts import assert_one_line_error, run_all

EVALUATE = str(REPO / "scripts" / "evaluate.py")
TRAIN = str(REPO / "scripts" / "train.py")

STREAM = dict(SEQUENCE="stream", TOKENS="char", CELL="lstm", BATCH_SIZE=4, SEQ_LENGTH=10, HIDDEN_DIM=8, EMBEDDING_DIM=8,
              VOCABULARY_SIZE=40, BLAS_THREADS=1)


@pytest.fixture(scope="module")
def stream_run(tmp_path_factory):
    """One stream run with tied weights, a validation tail and a test file, then evaluate.py on its model."""
    folder = tmp_path_factory.mktemp("stream")
    write_corpus(folder / "test.txt", n=40, seed=9)
    env = base_env(folder, **STREAM, TIE_WEIGHTS=1, NEPOCH=1, PRINT_EVERY=200, VALIDATION_FRACTION=0.05,
                   TEST_FILE=folder / "test.txt", MODEL_OUTPUT_FILE=folder / "m.npz")
    trained = run_train({**env, "NUM_SAMPLES": "2"}, folder)
    evaluated = subprocess.run([sys.executable, EVALUATE, str(folder / "m.npz"), "--data", str(folder / "test.txt")],
                               cwd=folder, capture_output=True, text=True, timeout=300)
    return folder, trained, evaluated


def test_a_stream_runs_reports_show_one_continuous_sample_and_generate_continues_text_without_a_prime(stream_run):
    folder, trained, _ = stream_run
    assert trained.returncode == 0, trained.stdout + trained.stderr
    report = trained.stdout.split("Loss: ")[1]
    sample = report.split("\n", 2)[2].split("Saved model to")[0]
    assert len(sample.rstrip("\n")) >= 60 and "SENTENCE" not in sample  # 2 x 60 characters, the markers never drawn
    generated = subprocess.run([sys.executable, str(REPO / "scripts" / "generate.py"), str(folder / "m.npz"),
                                "--length", "80", "--seed", "3"], cwd=folder, capture_output=True, text=True, timeout=300)
    assert generated.returncode == 0, generated.stderr
    assert len(generated.stdout.rstrip("\n")) >= 40 and "SENTENCE" not in generated.stdout


def test_a_stream_run_with_a_test_file_ends_with_the_test_loss_in_nats_perplexity_and_bits(stream_run):
    folder, trained, _ = stream_run
    assert trained.returncode == 0, trained.stdout + trained.stderr
    last = trained.stdout.strip().splitlines()[-1]
    assert last.startswith("Test loss: ") and "perplexity" in last and "bits per character" in last, last
    loss = float(last.split()[2])
    perplexity = float(last.split("perplexity ")[1].split(",")[0])
    assert np.isfinite(loss) and perplexity == pytest.approx(np.exp(loss), rel=0.01)
    assert "Validation loss: " in trained.stdout


def test_evaluate_py_on_a_stream_model_gives_train_pys_test_loss(stream_run):
    folder, trained, evaluated = stream_run
    assert evaluated.returncode == 0, evaluated.stderr
    test_loss = float(trained.stdout.strip().splitlines()[-1].split()[2])
    loss = float(next(l for l in evaluated.stdout.splitlines() if l.startswith("per-word loss: ")).split()[-1])
    assert loss == pytest.approx(test_loss, abs=2e-6)
    assert "bits per character: " in evaluated.stdout


def test_a_tied_model_saves_the_shared_matrix_once(stream_run):
    folder, trained, _ = stream_run
    checkpoint = load_checkpoint(str(folder / "m.npz"))
    assert "output/W" not in checkpoint.params and "embedding" in checkpoint.params
    assert checkpoint.settings["tie_weights"] == 1 and checkpoint.settings["sequence"] == "stream"
    states = sorted(k for k in checkpoint.training_state if k.startswith("stream_state/"))
    assert states == [f"stream_state/{i}" for i in range(4)]  # two LSTM layers: h and c each
    assert all(checkpoint.training_state[k].shape == (4, 8) for k in states)


def test_the_metrics_file_has_a_header_and_one_row_per_report(stream_run):
    folder, trained, _ = stream_run
    rows = list(csv.reader((folder / "m.metrics.csv").open(encoding="utf-8")))
    assert rows[0] == ["examples", "tokens", "seconds", "training_loss", "validation_loss", "learning_rate"]
    reported = [float(l.split()[1]) for l in trained.stdout.splitlines() if l.startswith("Loss: ")]
    assert len(reported) >= 1 and len(rows) == 1 + len(reported)
    assert [float(r[3]) for r in rows[1:]] == pytest.approx(reported, abs=1e-6)
    assert all(r[4] and float(r[5]) == pytest.approx(0.001) for r in rows[1:])


BAD_SETTINGS = [
    ("SEQUENCE", {"SEQUENCE": "window"}),
    ("SEQ_LENGTH", {"SEQ_LENGTH": "0"}),
    ("SEQ_LENGTH", {"SEQ_LENGTH": "ten"}),
    ("TIE_WEIGHTS", {"TIE_WEIGHTS": "2"}),
    ("TIE_WEIGHTS", {"TIE_WEIGHTS": "1", "EMBEDDING_DIM": "6", "HIDDEN_DIM": "12"}),
    ("VALIDATION_FILE", {"VALIDATION_FILE": "nowhere.txt"}),
    ("TEST_FILE", {"TEST_FILE": "nowhere.txt"}),
    ("TOKENS", {"TOKENS": "bytes"}),
]


def test_every_new_settings_bad_value_is_one_line_naming_it_exit_2_and_the_model_untouched(tmp_path):
    commands = {}
    for number, (variable, values) in enumerate(BAD_SETTINGS):
        folder = tmp_path / str(number)
        folder.mkdir()
        (folder / "m.npz").write_bytes(b"an earlier model")
        commands[number] = ([sys.executable, TRAIN], base_env(folder, MODEL_OUTPUT_FILE=folder / "m.npz", **values), folder)
    results = run_all(commands)
    for number, (variable, values) in enumerate(BAD_SETTINGS):
        assert_one_line_error(results[number], variable)
        assert (tmp_path / str(number) / "m.npz").read_bytes() == b"an earlier model"


def stopped_position(path) -> int:
    return json.loads(str(load_checkpoint(str(path)).training_state["state_json"]))["position"]


@pytest.mark.slow
def test_a_stream_run_resumed_mid_epoch_ends_with_the_parameters_of_an_uninterrupted_one(tmp_path):
    settings = dict(STREAM, NEPOCH=3, PRINT_EVERY=300, DROPOUT=0.2, VALIDATION_FRACTION=0.1)
    whole = tmp_path / "whole.npz"
    result = run_train(base_env(tmp_path, MODEL_OUTPUT_FILE=whole, **settings), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    parted = tmp_path / "parted.npz"
    env = base_env(tmp_path, MODEL_OUTPUT_FILE=parted, TIME_LIMIT=0.8, **settings)
    positions = []
    for part in range(40):
        result = run_train(env, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        if "Training done" in result.stdout:
            break
        assert "Time limit of 0.8 s reached" in result.stdout
        positions.append(stopped_position(parted))
        env["RESUME"] = str(parted)
    assert "Training done" in result.stdout
    assert any(positions), "no part stopped mid-epoch; make the epochs longer"

    assert_same_parameters_and_optimizer_state(whole, parted)
