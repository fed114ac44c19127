"""The tutorial's own scripts as clients of symrnn, with only their imports changed.

The calls follow the part-4 ``train.py`` and notebook in their order (our own
code, not theirs): ``load_data``, ``GRUTheano(VOCABULARY_SIZE, hidden_dim=...,
bptt_truncate=-1)``, one timed ``sgd_step``, a callback that computes the loss
on the first 10,000 sentences, generates 10 sentences and saves the
parameters, ``train_with_sgd(..., nepoch=1, decay=0.9, ...)`` per epoch, then
``load_model_parameters_theano`` and 100 generated sentences. Then the
pretrained part-4 file: its vocabulary is rebuilt from the CSV in the
original's order, and ``scripts/generate.py`` runs on a file of its layout.
"""

from __future__ import annotations

import csv
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from models.gru import GRUTheano  # was: from gru_theano import GRUTheano
from symrnn.reading import read_csv_bodies
from models.tutorial import (  # was: from utils import *
    generate_sentences,
    load_data,
    load_model_parameters_theano,
    save_model_parameters_theano,
    train_with_sgd,
)
from tests.test_tokenize import nltk_with_punkt_tab, original_tokenized_sentences  # noqa: F401
from tests.test_vocab import original_vocabulary

REPO = Path(__file__).resolve().parents[1]
GENERATE = str(REPO / "scripts" / "generate.py")
MARKERS = {"SENTENCE_START", "SENTENCE_END", "UNKNOWN_TOKEN", "<MASK/>"}
WORDS = "the cat dog bird sees eats likes a small big red green runs sleeps".split()


def write_csv(path: Path, bodies) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["body", "score"])
        for i, body in enumerate(bodies):
            writer.writerow([body, i])
    return path


def small_comments(n=60):
    """Comments of one to three sentences over a few words (multi-line bodies included)."""
    rng = random.Random(3)
    comments = []
    for _ in range(n):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))).capitalize() + rng.choice(".!?")
                     for _ in range(rng.randint(1, 3))]
        comments.append(rng.choice([" ", "\n"]).join(sentences))
    return comments


def many_word_comments(n_words=9000):
    """Comments over ``n_words`` distinct words whose counts tie a lot (1 to 4)."""
    rng = random.Random(5)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = sorted({"".join(rng.choice(letters) for _ in range(7)) for _ in range(n_words)})
    bag = [w for w in words for _ in range(rng.randint(1, 4))]
    rng.shuffle(bag)
    return [" ".join(bag[i:i + 9]) + ". " + " ".join(bag[i + 9:i + 15]) + "!" for i in range(0, len(bag), 15)]


def test_the_part4_train_script_and_notebook_run_against_symrnn_with_only_their_imports_changed(tmp_path, capsys):
    data = write_csv(tmp_path / "reddit-comments-2015.csv", small_comments())
    VOCABULARY_SIZE, HIDDEN_DIM, LEARNING_RATE, NEPOCH, PRINT_EVERY = 21, 8, 0.01, 3, 60
    MODEL_OUTPUT_FILE = str(tmp_path / "GRU-2026-01-01-00-00-21-8-8.dat")
    np.random.seed(10)

    # train.py
    x_train, y_train, word_to_index, index_to_word = load_data(str(data), VOCABULARY_SIZE)
    model = GRUTheano(VOCABULARY_SIZE, hidden_dim=HIDDEN_DIM, bptt_truncate=-1)
    t1 = time.time()
    model.sgd_step(x_train[10], y_train[10], LEARNING_RATE)
    t2 = time.time()
    print("SGD Step time: %f milliseconds" % ((t2 - t1) * 1000.0))

    losses = [model.calculate_loss(x_train[:10000], y_train[:10000])]
    saved = {}

    def sgd_callback(model, num_examples_seen):
        loss = model.calculate_loss(x_train[:10000], y_train[:10000])
        losses.append(loss)
        print("Loss: %f" % loss)
        generate_sentences(model, 10, index_to_word, word_to_index)
        save_model_parameters_theano(model, MODEL_OUTPUT_FILE)
        saved.update({name: getattr(model, name).get_value() for name in ("E", "U", "W", "V", "b", "c")})

    for epoch in range(NEPOCH):
        train_with_sgd(model, x_train, y_train, learning_rate=LEARNING_RATE, nepoch=1, decay=0.9,
                       callback_every=PRINT_EVERY, callback=sgd_callback)

    # The notebook, with the file just written
    loaded = load_model_parameters_theano(MODEL_OUTPUT_FILE)
    generate_sentences(loaded, 100, index_to_word, word_to_index)

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Reading CSV file..."
    assert lines[1] == "Parsed %d sentences." % len(x_train)
    assert lines[2].startswith("Found ") and lines[2].endswith(" unique words tokens.")
    assert lines[3] == "Using vocabulary size 21."
    assert lines[4].startswith("The least frequent word in our vocabulary is '")
    assert lines[5].startswith("SGD Step time: ") and lines[5].endswith(" milliseconds")
    # Every word of the corpus is in the vocabulary: UNKNOWN_TOKEN, which
    # generation rejects, is never a target.
    assert len(x_train) > PRINT_EVERY and len(index_to_word) == VOCABULARY_SIZE

    callbacks = NEPOCH * (len(x_train) // PRINT_EVERY)
    assert len(losses) == 1 + callbacks and all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert sum(line.startswith("Loss: ") for line in lines) == callbacks
    sentences = [line for line in lines[6:] if not line.startswith("Loss: ")]
    assert len(sentences) == 10 * callbacks + 100
    # As in the original, only UNKNOWN_TOKEN is rejected: a barely trained
    # model may still sample <MASK/>, a word of its vocabulary.
    vocabulary = set(index_to_word) - {"SENTENCE_START", "SENTENCE_END", "UNKNOWN_TOKEN"}
    for sentence in sentences:
        assert sentence and set(sentence.split()) <= vocabulary

    assert Path(MODEL_OUTPUT_FILE).is_file() and not Path(MODEL_OUTPUT_FILE + ".npz").exists()
    for name, value in saved.items():  # the values at the last callback
        np.testing.assert_array_equal(getattr(loaded, name).get_value(), value)
    assert loaded.calculate_loss(x_train[:10000], y_train[:10000]) == pytest.approx(losses[-1], rel=1e-6)


@pytest.fixture(scope="module")
def pretrained_csv(tmp_path_factory):
    """A CSV with over 8,000 distinct words, as the pretrained model's corpus."""
    return write_csv(tmp_path_factory.mktemp("pretrained") / "reddit-comments-2015.csv", many_word_comments())


def test_load_data_rebuilds_the_pretrained_models_8000_word_vocabulary_in_the_originals_order(pretrained_csv, nltk_with_punkt_tab, capsys):
    _, _, word_to_index, index_to_word = load_data(str(pretrained_csv), 8000)
    sentences = original_tokenized_sentences(read_csv_bodies(pretrained_csv))
    expected, unique, (word, count) = original_vocabulary(sentences, 8000)
    assert unique > 8000
    assert index_to_word == expected
    assert word_to_index == {w: i for i, w in enumerate(expected)}
    assert capsys.readouterr().out.splitlines()[1:] == [
        "Parsed %d sentences." % len(sentences),
        "Found %d unique words tokens." % unique,
        "Using vocabulary size 8000.",
        "The least frequent word in our vocabulary is '%s' and appeared %d times." % (word, count),
    ]


def write_part4_file(path, word_to_index, hidden=128):
    """Random values in the pretrained part-4 layout; the bias makes sentences end soon."""
    rng = np.random.default_rng(0)
    vocabulary_size = len(word_to_index)
    values = {
        "E": rng.uniform(-0.1, 0.1, (hidden, vocabulary_size)), "U": rng.uniform(-0.1, 0.1, (6, hidden, hidden)),
        "W": rng.uniform(-0.1, 0.1, (6, hidden, hidden)), "V": rng.uniform(-0.1, 0.1, (vocabulary_size, hidden)),
        "b": np.zeros((6, hidden)), "c": np.zeros(vocabulary_size),
    }
    values["c"][word_to_index["SENTENCE_END"]] = 8.0
    np.savez(path, **{name: value.astype(np.float32) for name, value in values.items()})
    return path


def test_generate_script_prints_sentences_from_a_file_of_the_pretrained_layout_with_8000_words(pretrained_csv, tmp_path, capsys):
    _, _, word_to_index, index_to_word = load_data(str(pretrained_csv), 8000)
    capsys.readouterr()
    model = write_part4_file(tmp_path / "pretrained.npz", word_to_index)
    result = subprocess.run(
        [sys.executable, GENERATE, str(model), "--data", str(pretrained_csv), "--vocabulary-size", "8000",
         "--num", "5", "--seed", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    vocabulary = set(index_to_word) - MARKERS
    for line in lines:
        assert line and set(line.split()) <= vocabulary
