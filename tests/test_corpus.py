"""Tests of symrnn.corpus: the stages composed, on files and on the embedded corpus."""

import socket

import pytest

from symrnn import corpus as corpus_module
from symrnn.default_corpus import DEFAULT_CORPUS_NAME, default_corpus_documents
from symrnn.errors import DataError
from symrnn.vocab import MASK_TOKEN, SENTENCE_END, SENTENCE_START, UNKNOWN_TOKEN
from tests.test_bounded_inputs import TEXT_A, TEXT_B, model_file, run_script  # noqa: F401 - model_file is a fixture
from tests.test_tokenize import no_network

S, E = SENTENCE_START, SENTENCE_END


@pytest.fixture(scope="module")
def default_corpus():
    """The default corpus, loaded once per module with the network blocked."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "socket", no_network)
        mp.setattr(socket, "create_connection", no_network)
        mp.setattr(socket, "getaddrinfo", no_network)
        documents = default_corpus_documents()
        corpus = corpus_module.load_corpus(None, vocabulary_size=2000)
    return documents, corpus



# ---------------------------------------------------------------------------
# The embedded corpus
# ---------------------------------------------------------------------------


def test_default_corpus_loads_without_network_and_gives_over_ten_thousand_sentences(default_corpus):
    documents, corpus = default_corpus
    assert len(documents) > 10_000
    assert len(corpus.sentences) > 10_000
    assert corpus.source == DEFAULT_CORPUS_NAME
    assert len(corpus.vocabulary) == 2000
    assert len(corpus.X) == len(corpus.Y) == len(corpus.sentences)
    assert all(doc and doc == " ".join(doc.split()) for doc in documents)


def test_default_corpus_puts_the_sentence_markers_last(default_corpus):
    _, corpus = default_corpus
    assert set(corpus.vocabulary.index_to_word[-2:]) == {S, E}



# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def test_load_corpus_reads_a_csv_file_end_to_end(tmp_path):
    path = tmp_path / "reddit.csv"
    path.write_text(
        'body\n"The cat sat. The dog ran, fast!"\n"See http://x.org. The end."\n',
        encoding="utf-8",
    )
    corpus = corpus_module.load_corpus(path, vocabulary_size=6)
    assert corpus.source == str(path)
    assert corpus.sentences == [
        [S, "the", "cat", "sat", ".", E],
        [S, "the", "dog", "ran", ",", "fast", "!", E],
        [S, "the", "end", ".", E],
    ]
    # Counts: START 3, END 3, the 3, . 2, others 1; keep 4 by (count, word) desc.
    assert corpus.vocabulary.index_to_word == [MASK_TOKEN, UNKNOWN_TOKEN, ".", "the", S, E]
    assert corpus.X[0].tolist() == [4, 3, 1, 1, 2]
    assert corpus.Y[0].tolist() == [3, 1, 1, 2, 5]
    assert corpus.n_tokens == 5 + 7 + 4


def test_load_corpus_builds_character_tokens(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("Ab\nba\n", encoding="utf-8")
    corpus = corpus_module.load_corpus(path, vocabulary_size=10, tokens="char")
    assert corpus.sentences == [[S, "A", "b", E], [S, "b", "a", E]]
    assert set(corpus.vocabulary.index_to_word) == {MASK_TOKEN, UNKNOWN_TOKEN, S, E, "A", "a", "b"}


def test_load_corpus_raises_data_error_when_no_sentence_survives(tmp_path):
    path = tmp_path / "links.txt"
    path.write_text("http://a.example\nsee https://b.example\n", encoding="utf-8")
    with pytest.raises(DataError, match="no sentence"):
        corpus_module.load_corpus(path)


def test_load_corpus_rejects_an_unknown_token_kind(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("Hello there.\n", encoding="utf-8")
    with pytest.raises(DataError, match="tokens"):
        corpus_module.load_corpus(path, tokens="byte")



def test_load_sentences_gives_the_sentences_load_corpus_builds_on(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("The cat sat. The dog ran.\nA bird sang.\n", encoding="utf-8")
    sentences = corpus_module.load_sentences(path)
    assert sentences == corpus_module.load_corpus(path, vocabulary_size=6).sentences
    assert sentences[0] == [S, "the", "cat", "sat", ".", E] and len(sentences) == 3


def test_load_sentences_checks_its_options_before_reading(tmp_path):
    missing = tmp_path / "missing.txt"
    with pytest.raises(DataError, match="tokens"):
        corpus_module.load_sentences(missing, tokens="byte")
    with pytest.raises(DataError, match="min_sent_characters"):
        corpus_module.load_sentences(missing, min_sent_characters=-1)
    with pytest.raises(DataError, match="vocabulary_size"):
        corpus_module.load_corpus(missing, vocabulary_size=3)

# ---------------------------------------------------------------------------
# The scripts run each stage once
# ---------------------------------------------------------------------------


def test_train_py_with_max_sentences_builds_the_vocabulary_once_and_evaluate_py_builds_none(tmp_path, model_file):
    data = tmp_path / "few.txt"
    data.write_text(TEXT_A, encoding="utf-8")
    small = {"HIDDEN_DIM": "4", "EMBEDDING_DIM": "4", "NUM_SAMPLES": "0", "NEPOCH": "1", "MAX_SENTENCES": "2",
             "INPUT_DATA_FILE": str(data), "MODEL_OUTPUT_FILE": str(tmp_path / "m.npz")}
    trained = run_script("train.py", [], small, tmp_path, timeout=300)
    assert trained.returncode == 0, trained.stderr
    assert trained.stderr.count("distinct tokens") == 1, trained.stderr
    # The model's vocabulary is larger than this corpus's distinct tokens: nothing is built from it.
    model, _ = model_file
    other = tmp_path / "b.txt"
    other.write_text(TEXT_B, encoding="utf-8")
    evaluated = run_script("evaluate.py", [str(model), "--data", str(other)], {}, tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "distinct tokens" not in evaluated.stderr
