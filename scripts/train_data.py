"""The data of one training run: the corpus read, its vocabulary, the training and evaluation sets.

:class:`TrainingData` reads the corpus (``INPUT_DATA_FILE``, the tutorial's
file or the embedded corpus) as sentences or, with ``SEQUENCE=stream``, as one
token stream in parallel streams; takes the vocabulary from a resumed
checkpoint or builds it; holds out the validation part; reads
``VALIDATION_FILE`` and ``TEST_FILE``; and prints what the tutorial printed
while doing so.
"""

from __future__ import annotations

from pathlib import Path

from symrnn.batching import split_train_validation
from symrnn.config import DEFAULT_INPUT_DATA_FILE, Settings
from symrnn.corpus import load_sentences, load_token_stream
from symrnn.default_corpus import DEFAULT_CORPUS_NAME
from symrnn.errors import ConfigError
from symrnn.streams import count_windows, hold_out_tail, parallel_streams
from symrnn.vocab import Vocabulary, sentences_to_pairs, unknown_share, unknown_share_warning

EVALUATION_TOKENS = 100000  # stream mode's training loss: the first 100,000 training tokens


def resolve_corpus_path(settings: Settings) -> str | None:
    """INPUT_DATA_FILE, else the tutorial's default file if present, else None (embedded corpus)."""
    if settings.input_data_file:
        return settings.input_data_file
    return DEFAULT_INPUT_DATA_FILE if Path(DEFAULT_INPUT_DATA_FILE).exists() else None


class TrainingData:
    """The corpus of a run, read at construction (see the module docstring).

    Attributes
    ----------
    vocabulary : symrnn.vocab.Vocabulary
    trained_unknown_share : float
        The share of unknown tokens the model is trained with (a resumed
        checkpoint's, where it holds one).
    examples_per_epoch : int
        Sentences, or stream windows times streams.
    X_train, Y_train, X_valid, Y_valid : lists of int arrays (sentence mode)
    streams, training_head : int arrays (B, L) (stream mode)
    held_out_data, validation, held_out, test
        The held-out part of the corpus, the validation set (held-out part or
        ``VALIDATION_FILE``), the held-out part when a validation file is also
        given, and ``TEST_FILE``'s data (or None).
    """

    def __init__(self, settings: Settings, checkpoint, console):
        """Read everything; ``checkpoint`` is the resumed one (or None), ``console`` prints (``say``, ``warn``)."""
        from models.tutorial import reading_line

        self.settings, self.checkpoint, self.console = settings, checkpoint, console
        self.streaming = settings.sequence == "stream"
        s = settings
        path = resolve_corpus_path(s)
        self.console.say(reading_line(path))
        self.read_options = dict(min_sent_characters=s.min_sent_characters, cache_dir=s.token_cache_dir(str(Path.home())),
                                 max_data_bytes=s.max_data_mb * 2**20)
        if self.streaming:
            self._load_stream(path)
        else:
            self._load_sentences(path)
        self.validation, self.held_out = self.held_out_data, None
        if s.validation_file:
            self.validation = self._evaluation_data(s.validation_file, "VALIDATION_FILE")
            self.held_out = self.held_out_data if self.has_data(self.held_out_data) else None
        self.test = self._evaluation_data(s.test_file, "TEST_FILE") if s.test_file else None

    def _use_vocabulary(self, tokens_for_vocabulary, sentences_for_share):
        """The checkpoint's vocabulary or a new one; the unknown share checked against the checkpoint's."""
        s = self.settings
        if self.checkpoint is not None and self.checkpoint.vocabulary is not None:
            self.vocabulary = Vocabulary(self.checkpoint.vocabulary)
        else:
            self.vocabulary = Vocabulary.build(tokens_for_vocabulary, s.vocabulary_size)
        share = unknown_share(sentences_for_share, self.vocabulary)
        # The share the model was trained with, kept in its checkpoints so that a
        # resumed run or evaluate.py can tell a corpus that does not fit it.
        self.trained_unknown_share = share
        if self.checkpoint is not None:  # the resumed vocabulary may not fit this corpus
            saved = self.checkpoint.training_state.get("unknown_share")
            if saved is not None:
                self.trained_unknown_share = float(saved)
            self.console.say(f"Tokens not in the model's vocabulary (UNKNOWN_TOKEN): {share:.1%}")
            warning = unknown_share_warning(share, None if saved is None else float(saved))
            if warning:
                self.console.warn(warning)

    def _vocabulary_line(self, path) -> str:
        s = self.settings
        return (f"Corpus {path or DEFAULT_CORPUS_NAME}: vocabulary of {len(self.vocabulary)} words"
                + (f" (asked for {s.vocabulary_size}: the corpus has fewer distinct words)"
                   if len(self.vocabulary) < s.vocabulary_size else ""))

    def _load_sentences(self, path):
        from models.tutorial import statistics_lines

        s = self.settings
        sentences = load_sentences(path, tokens=s.tokens, **self.read_options)
        if s.max_sentences:
            sentences = sentences[: s.max_sentences]
        self._use_vocabulary(sentences, sentences)
        X, Y = sentences_to_pairs(sentences, self.vocabulary)
        train_idx, valid_idx = split_train_validation(len(X), s.validation_fraction, s.seed)
        self.X_train, self.Y_train = [X[i] for i in train_idx], [Y[i] for i in train_idx]
        self.X_valid, self.Y_valid = [X[i] for i in valid_idx], [Y[i] for i in valid_idx]
        self.held_out_data = (self.X_valid, self.Y_valid)
        if not self.X_train:
            raise ConfigError("VALIDATION_FRACTION leaves no training sentences; lower it")
        self.examples_per_epoch = len(self.X_train)
        tokens = sum(len(y) for y in self.Y_train)
        self.console.say(
            *statistics_lines(sentences, self.vocabulary, s.vocabulary_size), self._vocabulary_line(path),
            f"Training on {len(self.X_train)} sentences ({tokens} tokens), validating on {len(valid_idx)}",
        )

    def _load_stream(self, path):
        s = self.settings
        tokens = load_token_stream(path, tokens=s.tokens, **self.read_options)
        self._use_vocabulary([tokens], [tokens])
        train_ids, self.held_out_data = hold_out_tail(self.vocabulary.encode(tokens), s.validation_fraction)
        self.streams = parallel_streams(train_ids, s.batch_size)
        self.training_head = parallel_streams(train_ids[: EVALUATION_TOKENS + s.batch_size], s.batch_size)
        self.examples_per_epoch = count_windows(self.streams.shape[1], s.seq_length) * s.batch_size
        self.console.say(
            f"Parsed {len(tokens)} tokens ({s.tokens}).", self._vocabulary_line(path),
            f"Training on {s.batch_size} streams of {self.streams.shape[1]} tokens "
            f"({count_windows(self.streams.shape[1], s.seq_length)} windows of up to {s.seq_length}), "
            f"validating on {len(self.held_out_data)} tokens",
        )

    def _evaluation_data(self, path: str, variable: str):
        """A separate evaluation text (VALIDATION_FILE, TEST_FILE) with the training vocabulary."""
        s = self.settings
        if self.streaming:
            tokens = load_token_stream(path, tokens=s.tokens, **self.read_options)
            ids = self.vocabulary.encode(tokens)
            self.console.say(f"{variable} {path}: {len(ids)} tokens, {unknown_share([tokens], self.vocabulary):.1%} not in the vocabulary")
            return ids
        sentences = load_sentences(path, tokens=s.tokens, **self.read_options)
        self.console.say(f"{variable} {path}: {len(sentences)} sentences, "
                 f"{unknown_share(sentences, self.vocabulary):.1%} of the tokens not in the vocabulary")
        return sentences_to_pairs(sentences, self.vocabulary)

    def has_data(self, data) -> bool:
        """Whether an evaluation set holds anything to evaluate (stream mode: at least one target)."""
        return len(data) > 1 if self.streaming else bool(data[0])
