#!/usr/bin/env python
"""Train a recurrent language model, configured by environment variables.

    LEARNING_RATE=0.001 HIDDEN_DIM=128 python scripts/train.py

Settings are the WildML tutorial's variables (same names, same defaults) plus
symrnn's own; ``--help`` lists them all.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import signal
import sys
import time
from pathlib import Path

try:
    from . import common
except ImportError:  # run as a file: python scripts/train.py
    import common

import numpy as np

from symrnn.batching import split_train_validation
from symrnn.checkpoint import load_checkpoint, save_checkpoint
from symrnn.config import DEFAULT_INPUT_DATA_FILE, Settings
from symrnn.errors import CheckpointError, ConfigError
from symrnn.plotting import plot_available, write_loss_curve
from symrnn.sampling import generate
from symrnn.text import DEFAULT_CORPUS_NAME, Vocabulary, load_corpus, sentences_to_pairs
from symrnn.training import Diverged, TrainingState, anneal_learning_rate, evaluate, train

# Settings a resumed run may change; every other one comes from the checkpoint.
RESUME_OVERRIDABLE = (
    "nepoch", "print_every", "model_output_file", "resume", "num_samples", "temperature", "backend", "device", "cache_dir",
    "input_data_file", "time_limit", "blas_threads",
)
EVALUATION_SENTENCES = 10000  # the tutorial's loss report uses the first 10,000 training sentences


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train a recurrent language model (the WildML tutorial's GRU by default). "
        "All settings are environment variables:",
        epilog="\n".join(Settings.help_lines()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser.parse_args(argv)


def settings_for_resume(env_settings: Settings, saved: dict, environ) -> Settings:
    fields = {name: value for name, value in saved.items() if name in env_settings.as_dict()}
    for name in RESUME_OVERRIDABLE:
        if environ.get(name.upper(), "").strip():
            fields[name] = getattr(env_settings, name)
    try:
        return Settings(**fields)
    except (TypeError, ConfigError) as exc:
        raise CheckpointError(f"{env_settings.resume}: its saved settings are invalid ({exc})") from None


def resolve_corpus_path(settings: Settings) -> str | None:
    """INPUT_DATA_FILE, else the tutorial's default file if present, else None (embedded corpus)."""
    if settings.input_data_file:
        return settings.input_data_file
    return DEFAULT_INPUT_DATA_FILE if Path(DEFAULT_INPUT_DATA_FILE).exists() else None


def rng_state_json(state: dict) -> str:
    """The dropout generator's state in ``model.state()``, as saved in checkpoints."""
    return json.dumps(state["dropout_rng"])


def restore_rng_state(text: str) -> dict:
    """The saved dropout generator state, for ``model.load_state``."""
    return json.loads(text)


def make_progress_bar(total: int, stream):
    """A tqdm bar (examples, examples/s, loss, tokens/s, ETA) on a terminal; None otherwise."""
    if not stream.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="ex", file=stream, dynamic_ncols=True, smoothing=0.05)


class Run:
    """One training run: the model, its data and how it reports and saves."""

    def __init__(self, settings: Settings, environ):
        self.settings = settings
        self.out = sys.stdout
        self.checkpoint = None
        if settings.resume:
            self.checkpoint = load_checkpoint(settings.resume)
            if self.checkpoint.layout != "symrnn" or "state_json" not in self.checkpoint.training_state:
                raise CheckpointError(f"{settings.resume}: not a checkpoint written by train.py, so it cannot be resumed")
            self.settings = settings = settings_for_resume(settings, self.checkpoint.settings, environ)
        self.output_path = settings.output_path() if (settings.model_output_file or not settings.resume) else settings.resume
        self.best_path = self._beside(self.output_path, "best")
        self.plot_path = str(Path(self.output_path).with_suffix("")) + ".loss.png"
        self.progress_bar = None

    @staticmethod
    def _beside(path: str, tag: str) -> str:
        p = Path(path)
        return str(p.with_name(f"{p.stem}.{tag}{p.suffix or '.npz'}"))

    def say(self, *lines):
        if self.progress_bar is not None:
            self.progress_bar.clear()
        for line in lines:
            print(line, file=self.out)
        self.out.flush()
        if self.progress_bar is not None:
            self.progress_bar.refresh()

    # ------------------------------------------------------------------ setup
    def load_data(self):
        s = self.settings
        path = resolve_corpus_path(s)
        self.say(f"Reading corpus: {path or DEFAULT_CORPUS_NAME + ' (embedded default corpus)'}")
        corpus = load_corpus(
            path, vocabulary_size=s.vocabulary_size, min_sent_characters=s.min_sent_characters, tokens=s.tokens,
            cache_dir=s.token_cache_dir(str(Path.home())),
        )
        sentences = corpus.sentences[: s.max_sentences] if s.max_sentences else corpus.sentences
        if self.checkpoint is not None and self.checkpoint.vocabulary is not None:
            self.vocabulary = Vocabulary.from_words(self.checkpoint.vocabulary)
        elif s.max_sentences:
            self.vocabulary = Vocabulary.build(sentences, s.vocabulary_size)
        else:
            self.vocabulary = corpus.vocabulary
        X, Y = sentences_to_pairs(sentences, self.vocabulary)
        train_idx, valid_idx = split_train_validation(len(X), s.validation_fraction, s.seed)
        self.X_train, self.Y_train = [X[i] for i in train_idx], [Y[i] for i in train_idx]
        self.X_valid, self.Y_valid = [X[i] for i in valid_idx], [Y[i] for i in valid_idx]
        if not self.X_train:
            raise ConfigError("VALIDATION_FRACTION leaves no training sentences; lower it")
        tokens = sum(len(y) for y in self.Y_train)
        self.say(
            f"Parsed {len(X)} sentences; vocabulary of {len(self.vocabulary)} words"
            + (f" (asked for {s.vocabulary_size}: the corpus has fewer distinct words)" if len(self.vocabulary) < s.vocabulary_size else ""),
            f"Training on {len(self.X_train)} sentences ({tokens} tokens), validating on {len(self.X_valid)}",
        )

    def build_model(self):
        from models.language_model import RNNLanguageModel

        s = self.settings
        initial = self.checkpoint.params if self.checkpoint is not None else None
        if s.dropout and s.backend_name == "jax":
            raise ConfigError(f"DROPOUT={s.dropout:g}: the jax backend cannot draw dropout masks; use DROPOUT=0 or BACKEND=cpu")
        self.model = RNNLanguageModel(
            len(self.vocabulary), s.embedding_dim, s.hidden_dim, num_layers=s.num_layers, cell=s.cell, gate=s.gate,
            dtype=s.floatx, seed=s.seed, truncate_gradient=s.bptt_truncate, dropout=s.dropout,
            backend=s.backend_name, initial_values=initial,
        )
        started = time.perf_counter()
        self.train_step = self.model.compile_train(optimizer=s.optimizer, grad_clip=s.grad_clip or None, decay=s.decay)
        self.loss_fn = self.model.compile_loss()
        self.step_fn = self.model.compile_step()
        self.say(f"Compiled training, evaluation and generation functions in {time.perf_counter() - started:.1f} s")
        self.state = None
        if self.checkpoint is not None:
            self._restore_from_checkpoint()

    def _restore_from_checkpoint(self):
        train_state = self.checkpoint.training_state
        saved = {"params": self.checkpoint.params, "optimizer_state": self.checkpoint.optimizer_state}
        if "dropout_rng_json" in train_state:
            saved["dropout_rng"] = restore_rng_state(str(train_state["dropout_rng_json"]))
        try:
            self.model.load_state(saved)
        except ValueError as exc:
            raise CheckpointError(f"{self.settings.resume}: {exc}; cannot resume") from None
        self.state = TrainingState.from_json(str(train_state["state_json"]))
        self.say(f"Resuming {self.settings.resume}: epoch {self.state.epoch}, batch {self.state.position}, {self.state.examples_seen} examples seen")

    @property
    def bucket_width(self):
        """BUCKET_WIDTH, or 16 under JAX (one compiled function per padded length), else none."""
        return self.settings.bucket_width or (16 if self.settings.backend_name == "jax" else None)

    def time_one_step(self):
        """The tutorial's 'SGD Step time', measured without changing the run (values restored).

        The second of two calls is timed: the first loads the softmax kernel
        (Numba) or, under JAX, compiles the step for that batch shape (reported).
        """
        snapshot = self.model.state()
        index = min(10, len(self.X_train) - 1)
        from symrnn.batching import bucket_length, pad_batch

        batch_size = min(self.settings.batch_size, len(self.X_train))
        chosen = [self.X_train[(index + i) % len(self.X_train)] for i in range(batch_size)]
        targets = [self.Y_train[(index + i) % len(self.Y_train)] for i in range(batch_size)]
        length = bucket_length(max(len(s) for s in chosen), self.bucket_width)
        x, mask = pad_batch(chosen, length)
        y, _ = pad_batch(targets, length)
        mask = mask.astype(self.settings.floatx)
        learning_rate = np.float32(self.settings.learning_rate)
        started = time.perf_counter()
        self.train_step(x, y, mask, learning_rate)  # first call: JAX compiles, Numba loads its kernel
        if self.model.static_shapes:
            self.say(f"Compiled the training step for batches of shape {x.shape} in {time.perf_counter() - started:.1f} s "
                     "(once per padded shape; reused from JAX's cache in later runs)")
        started = time.perf_counter()
        self.train_step(x, y, mask, learning_rate)
        elapsed = time.perf_counter() - started
        self.model.load_state(snapshot)
        self.say(f"SGD Step time: {elapsed * 1000:f} milliseconds (batch of {batch_size})")

    # -------------------------------------------------------------- reporting
    def save(self, path=None) -> str:
        model, state = self.model, self.state
        settings = {**self.settings.as_dict(), **model.settings()}
        model_state = model.state()
        written = save_checkpoint(
            path or self.output_path,
            model_state["params"],
            vocabulary=self.vocabulary.index_to_word,
            settings=settings,
            optimizer_state=model_state["optimizer_state"],
            training_state={"state_json": np.array(state.to_json()), "dropout_rng_json": np.array(rng_state_json(model_state))},
        )
        return written

    def per_word_loss(self, X, Y) -> float:
        total, count = evaluate(self.loss_fn, X, Y, batch_size=64)
        return total / max(count, 1)

    def sample(self, n: int, rng) -> list[str]:
        v = self.vocabulary
        result = generate(
            self.step_fn, self.model.initial_state_values, n, v.start_index, v.end_index, rng,
            temperature=self.settings.temperature, reject_ids=[v.unknown_index, v.mask_index, v.start_index],
            min_length=5 if self.settings.tokens == "word" else 3, max_length=100 if self.settings.tokens == "word" else 400,
        )
        joiner = " " if self.settings.tokens == "word" else ""
        return [joiner.join(v.decode(sentence)) for sentence in result.sentences]

    def on_report(self, report):
        if report.kind == "step":
            self.update_progress_bar(report)
        elif report.kind == "progress":
            self.progress_report(report)
        elif report.kind == "epoch":
            s = self.settings
            new_rate = anneal_learning_rate(s.anneal, report.state.learning_rate, s.anneal_rate, [], end_of_epoch=True)
            if new_rate != report.state.learning_rate:
                report.state.learning_rate = new_rate
                self.say(f"Epoch {report.state.epoch} done; learning rate now {new_rate:g}")

    def update_progress_bar(self, report):
        if self.progress_bar is None:
            return
        state = report.state
        done = state.epoch * len(self.X_train) + min(state.position * self.settings.batch_size, len(self.X_train))
        self.progress_bar.n = min(done, self.progress_bar.total)
        rate = state.tokens_seen / max(report.elapsed, 1e-9)
        self.progress_bar.set_postfix(loss=f"{report.loss:.3f}", tokens_s=f"{rate:.0f}", refresh=False)
        self.progress_bar.update(0)

    def progress_report(self, report):
        s, state = self.settings, report.state
        train_loss = self.per_word_loss(self.X_train[:EVALUATION_SENTENCES], self.Y_train[:EVALUATION_SENTENCES])
        valid_loss = self.per_word_loss(self.X_valid, self.Y_valid) if self.X_valid else None
        state.history.append([state.examples_seen, train_loss, valid_loss])
        lines = [
            "",
            f"{datetime.datetime.now().isoformat(timespec='seconds')} ({state.examples_seen})",
            "--------------------------------------------------",
            f"Epoch {state.epoch + 1}/{s.nepoch}, {report.elapsed:.0f} s, {state.tokens_seen / max(report.elapsed, 1e-9):.0f} tokens/s, learning rate {state.learning_rate:g}",
            f"Loss: {train_loss:f}",
        ]
        if valid_loss is not None:
            lines.append(f"Validation loss: {valid_loss:f} (perplexity {np.exp(valid_loss):.1f})")
        if state.skipped_steps:
            lines.append(f"Skipped steps (non-finite loss or gradient): {state.skipped_steps}")
        self.say(*lines)
        rng = np.random.default_rng([s.seed, state.examples_seen])
        for sentence in self.sample(s.num_samples, rng):
            self.say(sentence)
        if valid_loss is not None:
            losses = [entry[2] for entry in state.history if entry[2] is not None]
            state.learning_rate = anneal_learning_rate(s.anneal, state.learning_rate, s.anneal_rate, losses, end_of_epoch=False)
        written = self.save()
        self.say(f"Saved model to {written}")
        if plot_available():
            self.say(f"Loss curve: {write_loss_curve(self.plot_path, state.history, title=Path(written).name)}")
        if valid_loss is not None and (state.best_validation is None or valid_loss < state.best_validation):
            state.best_validation = valid_loss
            self.say(f"Saved best model (validation loss {valid_loss:f}) to {self.save(self.best_path)}")
        self.say("")

    # -------------------------------------------------------------- training
    def train(self):
        stop = {"signal": None}

        def request_stop(signum, frame):
            if stop["signal"] is not None:  # a second Ctrl-C: stop at once
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            stop["signal"] = signum

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        self.progress_bar = make_progress_bar(self.settings.nepoch * len(self.X_train), sys.stderr)
        self.say(f"Training (Ctrl-C saves the model and stops; RESUME=<model file> continues)")
        deadline = time.monotonic() + self.settings.time_limit if self.settings.time_limit else None
        out_of_time = lambda: deadline is not None and time.monotonic() > deadline
        try:
            try:
                self.state, completed = train(
                    self.train_step, self.X_train, self.Y_train, epochs=self.settings.nepoch,
                    batch_size=self.settings.batch_size, report_every=self.settings.print_every, seed=self.settings.seed,
                    state=self.state, learning_rate=self.settings.learning_rate, callbacks=[self._remember, self.on_report],
                    should_stop=lambda: stop["signal"] is not None or out_of_time(),
                    bucket_width=self.bucket_width,
                )
            except Diverged as exc:
                last = self.output_path if Path(self.output_path).exists() else "not saved yet"
                self.say(f"train.py: {exc}. The last good model is {last}.")
                return 3
            if self.progress_bar is not None:
                self.progress_bar.close()
                self.progress_bar = None
            # Signals stay handled until the end, so a late Ctrl-C cannot cut the final save short.
            return self.finish(completed, stop["signal"])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.progress_bar is not None:
                self.progress_bar.close()

    def finish(self, completed: bool, signum) -> int:
        """Save, report, and give the exit status (0, or 128 + the signal that stopped the run)."""
        written = self.save()
        if self.X_valid:
            loss = self.per_word_loss(self.X_valid, self.Y_valid)
            self.say(f"Final validation loss: {loss:f} (perplexity {np.exp(loss):.1f})")
        if completed:
            self.say(f"Training done: {self.state.epoch} epochs, {self.state.examples_seen} examples. Saved model to {written}")
            return 0
        if signum is None:
            self.say(f"Time limit of {self.settings.time_limit:g} s reached after {self.state.examples_seen} examples. Saved model to {written}",
                     f"Continue with: RESUME={written} python scripts/train.py")
            return 0
        self.say(f"Stopped by {signal.Signals(signum).name}; saved model to {written}", f"Resume with: RESUME={written} python scripts/train.py")
        return 128 + signum

    def _remember(self, report):
        self.state = report.state


def main(argv=None) -> int:
    parse_arguments(sys.argv[1:] if argv is None else argv)
    common.setup_logging()
    settings = Settings.from_environ(os.environ)
    common.keep_freed_memory_for_reuse()
    common.limit_blas_threads(settings.blas_threads)
    run = Run(settings, os.environ)
    run.say("symrnn train.py settings:", *("  " + line for line in run.settings.describe()))
    run.say(f"Model file: {run.output_path}")
    run.load_data()
    run.build_model()
    if run.state is None:
        run.state = TrainingState(learning_rate=run.settings.learning_rate)
    run.time_one_step()
    return run.train()


def entry_point():
    """Console command installed by setup.py."""
    common.run(main)


if __name__ == "__main__":
    entry_point()
