"""Every bad input gets a one-line answer, exit status 2, and no file changes."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from symrnn.errors import DataError
from symrnn.corpus import load_corpus
from symrnn.reading import read_documents

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def workspace(tmp_path):
    """A folder with an existing model file that no failed run may touch."""
    model = tmp_path / "model.npz"
    np.savez(model, E=np.zeros((4, 5), np.float32), U=np.zeros((6, 4, 4), np.float32), W=np.zeros((6, 4, 4), np.float32),
             V=np.zeros((5, 4), np.float32), b=np.zeros((6, 4), np.float32), c=np.zeros(5, np.float32))
    return tmp_path, model, digest(model)


def run_script(name, args, env_extra, cwd):
    env = dict(os.environ, CACHE_DIR="off", **env_extra)
    return subprocess.run([sys.executable, str(SCRIPTS / name), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def assert_clean_failure(result, *words):
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


BAD_DATA = {
    "missing": None,
    "empty": b"",
    "binary": b"\x00\x01\x02\x03PK\x00\x00" * 50,
    "not_utf8": "caf\u00e9 na\u00efve text\n".encode("latin-1"),
    "csv_header_only": b"body\n",
    "csv_empty_bodies": b"body,score\n,1\n\"\",2\n",
    "csv_unclosed_quote": b"body\n\"this quote never closes\n",
    "whitespace_only": b"   \n\n\t\n",
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_a_bad_data_file_ends_train_py_with_one_line_and_status_2(workspace, case):
    folder, model, before = workspace
    suffix = ".csv" if case.startswith("csv") else ".txt"
    data = folder / f"data{suffix}"
    if BAD_DATA[case] is not None:
        data.write_bytes(BAD_DATA[case])
    result = run_script("train.py", [], {"INPUT_DATA_FILE": str(data), "MODEL_OUTPUT_FILE": str(model)}, folder)
    assert_clean_failure(result, str(data.name))
    assert digest(model) == before
    assert sorted(p.name for p in folder.iterdir()) == sorted({"model.npz", data.name} - ({data.name} if BAD_DATA[case] is None else set()))


def test_a_folder_without_text_is_refused(workspace):
    folder, model, before = workspace
    empty = folder / "texts"
    empty.mkdir()
    (empty / "image.png").write_bytes(b"\x89PNG")
    result = run_script("train.py", [], {"INPUT_DATA_FILE": str(empty), "MODEL_OUTPUT_FILE": str(model)}, folder)
    assert_clean_failure(result)
    assert digest(model) == before


@pytest.mark.parametrize(
    "variable, value",
    [("LEARNING_RATE", "fast"), ("HIDDEN_DIM", "-3"), ("NEPOCH", "0"), ("VOCABULARY_SIZE", "2"), ("DROPOUT", "1.5"),
     ("CELL", "transformer"), ("BATCH_SIZE", "1.5"), ("TEMPERATURE", "inf")],
)
def test_a_bad_setting_names_its_variable_and_changes_nothing(workspace, variable, value):
    folder, model, before = workspace
    result = run_script("train.py", [], {variable: value, "MODEL_OUTPUT_FILE": str(model)}, folder)
    assert_clean_failure(result, variable)
    assert digest(model) == before


CORRUPT_MODELS = {
    "random_bytes": lambda path, good: path.write_bytes(os.urandom(3000)),
    "truncated": lambda path, good: path.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2]),
    "unknown_layout": lambda path, good: np.savez(path, weights=np.zeros(3, np.float32)),
    "pickled": lambda path, good: np.savez(path, E=np.array([{"a": 1}], dtype=object)),
    "integer_weights": lambda path, good: np.savez(path, U=np.zeros((4, 5), np.int64), V=np.zeros((5, 4), np.int64), W=np.zeros((4, 4), np.int64)),
    "mismatched_shapes": lambda path, good: np.savez(path, U=np.zeros((4, 5), np.float32), V=np.zeros((6, 4), np.float32), W=np.zeros((4, 4), np.float32)),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_MODELS))
def test_a_broken_model_file_is_refused_by_generate_and_by_resume(workspace, case):
    folder, good, _ = workspace
    broken = folder / "broken.npz"
    CORRUPT_MODELS[case](broken, good)
    before = digest(broken)
    result = run_script("generate.py", [str(broken), "--num", "1"], {}, folder)
    assert_clean_failure(result, "broken.npz")
    result = run_script("train.py", [], {"RESUME": str(broken), "MODEL_OUTPUT_FILE": str(folder / "out.npz")}, folder)
    assert_clean_failure(result, "broken.npz")
    assert digest(broken) == before
    assert not (folder / "out.npz").exists()


def test_a_vocabulary_larger_than_the_corpus_is_not_an_error(tmp_path):
    data = tmp_path / "tiny.txt"
    data.write_text("the cat sat on the mat .\nthe dog sat .\n", encoding="utf-8")
    corpus = load_corpus(str(data), vocabulary_size=500)
    assert len(corpus.vocabulary) < 500
    assert corpus.vocabulary.requested_size == 500


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=400), suffix=st.sampled_from([".txt", ".csv"]))
def test_fuzzed_data_files_only_ever_load_or_raise_data_error(tmp_path, content, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(content)
    try:
        documents = read_documents(path)
    except DataError as exc:
        assert "\n" not in str(exc)
    else:
        assert all(isinstance(d, str) for d in documents)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_fuzzed_text_only_ever_gives_a_corpus_or_data_error(tmp_path, text):
    path = tmp_path / "fuzz.txt"
    path.write_text(text, encoding="utf-8")
    try:
        corpus = load_corpus(str(path), vocabulary_size=50)
    except DataError:
        return
    assert len(corpus.X) == len(corpus.Y) > 0
