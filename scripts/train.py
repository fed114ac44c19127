#!/usr/bin/env python
"""Train a recurrent language model, configured by environment variables.

    LEARNING_RATE=0.001 HIDDEN_DIM=128 python scripts/train.py

Settings are the WildML tutorial's variables (same names, same defaults) plus
symrnn's own; ``--help`` lists them all. ``SEQUENCE=sentence`` (the default)
trains one sentence per sequence from a zero state, as the tutorial;
``SEQUENCE=stream`` trains on the text as parallel streams with the state
carried from window to window, as char-rnn. This file sets a run up and
ends it; what happens during training is :mod:`train_callbacks`.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import sys
import time
from pathlib import Path

try:
    from . import common
    from . import train_callbacks as callbacks
    from .train_data import TrainingData, resolve_corpus_path
except ImportError:  # run as a file: python scripts/train.py
    import common
    import train_callbacks as callbacks
    from train_data import TrainingData, resolve_corpus_path

import numpy as np

from symrnn.checkpoint import load_checkpoint, save_checkpoint
from symrnn.config import Settings, misspelt_settings
from symrnn.errors import CheckpointError, ConfigError
from symrnn.memory import available_memory_bytes, format_bytes, training_memory_bytes
from symrnn.metrics import write_metrics
from symrnn.paths import check_output_path
from symrnn.plotting import plot_available, write_loss_curve
from symrnn.sampling import detokenize, generate, generate_text, stream_start_id
from symrnn.streams import parallel_streams
from symrnn.training import Diverged, TrainingState, evaluate, evaluate_streams, train, train_streams

EVALUATION_SENTENCES = 10000  # the tutorial's loss report uses the first 10,000 training sentences
STREAM_STATE = "stream_state/{}"  # the carried states in a checkpoint's training state, in initial_state_values order


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train a recurrent language model (the WildML tutorial's GRU by default). "
        "All settings are environment variables:",
        epilog="\n".join(Settings.help_lines()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser.parse_args(argv)


def beside(path: str, suffix: str) -> str:
    """A file beside the model: ``m.npz`` -> ``m<suffix>`` (``.loss.png``, ``.metrics.csv``)."""
    return str(Path(path).with_suffix("")) + suffix


class Run:
    """One training run: its settings, data, model and files; set up here, driven by :meth:`train`."""

    def __init__(self, settings: Settings, environ):
        self.settings = settings
        self.console = callbacks.Console(sys.stdout)
        self.checkpoint = None
        if settings.resume:
            self.checkpoint = load_checkpoint(settings.resume)
            if self.checkpoint.layout != "symrnn" or "state_json" not in self.checkpoint.training_state:
                raise CheckpointError(f"{settings.resume}: not a checkpoint written by train.py, so it cannot be resumed")
            resumed = settings.resumed_from(self.checkpoint.settings, environ)
            for warning in settings.ignored_on_resume(resumed, environ):
                common.warn(warning)
            self.settings = settings = resumed
        self.streaming = settings.sequence == "stream"
        # A resumed run writes to the file it resumed, unless MODEL_OUTPUT_FILE names another.
        self.output_path = settings.model_output_file or settings.resume or self._new_default_name()
        self.saved_path = None  # the model file this run has written, once it has
        self.carried_states = []  # stream mode: the states entering the next window
        self.check_outputs()
        self.loss_curve = callbacks.SideFile(
            self.console, "loss curve", lambda history, title: write_loss_curve(self.plot_path, history, title=title))
        self.metrics_file = callbacks.SideFile(self.console, "metrics file", lambda history: write_metrics(self.metrics_path, history))

    def say(self, *lines):
        self.console.say(*lines)

    def _new_default_name(self) -> str:
        """A default model name no existing file has (such a file belongs to another run)."""
        for _ in range(10):
            name = self.settings.output_path()
            if not os.path.lexists(name):
                return name
        raise ConfigError(f"cannot find a free default model file name (tried names like {name}); set MODEL_OUTPUT_FILE")

    def input_paths(self) -> list[str]:
        s = self.settings
        return [path for path in (resolve_corpus_path(s), s.validation_file, s.test_file) if path]

    def check_outputs(self):
        """Refuse, before any work, every file this run could not write or must not replace."""
        s, inputs = self.settings, self.input_paths()
        what = "MODEL_OUTPUT_FILE" if s.model_output_file else "RESUME" if s.resume else "default model file"
        check_output_path(self.output_path, inputs, what=what)
        p = Path(self.output_path)
        self.best_path = str(p.with_name(f"{p.stem}.best{p.suffix or '.npz'}"))
        self.plot_path = beside(self.output_path, ".loss.png")
        self.metrics_path = beside(self.output_path, ".metrics.csv")
        if s.validation_fraction or s.validation_file:
            check_output_path(self.best_path, inputs, what=f"best-model file of {what}")
        if plot_available():
            check_output_path(self.plot_path, inputs, what=f"loss-curve image of {what}")
        check_output_path(self.metrics_path, inputs, what=f"metrics file of {what}")
        for variable, path in (("VALIDATION_FILE", s.validation_file), ("TEST_FILE", s.test_file)):
            if path and not os.path.exists(path):
                raise ConfigError(f"{variable}={path}: no such file")

    # ------------------------------------------------------------------ data
    def load_data(self):
        self.data = TrainingData(self.settings, self.checkpoint, self.console)

    # ------------------------------------------------------------------ model
    def build_model(self):
        from models.language_model import RNNLanguageModel

        s = self.settings
        initial = self.checkpoint.params if self.checkpoint is not None else None
        if s.dropout and s.backend_name == "jax":
            raise ConfigError(f"DROPOUT={s.dropout:g}: the jax backend cannot draw dropout masks; use DROPOUT=0 or BACKEND=cpu")
        self.model = RNNLanguageModel(
            len(self.data.vocabulary), s.embedding_dim, s.hidden_dim, num_layers=s.num_layers, cell=s.cell, gate=s.gate,
            dtype=s.floatx, seed=s.seed, truncate_gradient=s.bptt_truncate, dropout=s.dropout,
            backend=s.backend_name, initial_values=initial, tie_weights=bool(s.tie_weights),
        )
        started = time.perf_counter()
        rule_options = {"decay": s.decay} if s.optimizer == "rmsprop" else {}  # DECAY is RMSprop's setting
        self.train_step = self.model.compile_train(optimizer=s.optimizer, grad_clip=s.grad_clip or None,
                                                   carry_state=self.streaming, **rule_options)
        self.say(f"Compiled the training function in {time.perf_counter() - started:.1f} s")
        self.state = None
        if self.streaming:
            self.carried_states = self.model.initial_state_values(s.batch_size)
        if self.checkpoint is not None:
            self._restore_from_checkpoint()

    @functools.cached_property
    def loss_fn(self):
        """The compiled loss, at its first use (the first report), so that it does not delay the first step."""
        return self.model.compile_loss(carry_state=self.streaming)

    @functools.cached_property
    def step_fn(self):
        """The compiled one-step function for samples, at its first use."""
        return self.model.compile_step()

    def _restore_from_checkpoint(self):
        train_state = self.checkpoint.training_state
        saved = {"params": self.checkpoint.params, "optimizer_state": self.checkpoint.optimizer_state}
        if "dropout_rng_json" in train_state:
            saved["dropout_rng"] = json.loads(str(train_state["dropout_rng_json"]))
        try:
            self.model.load_state(saved)
        except ValueError as exc:
            raise CheckpointError(f"{self.settings.resume}: {exc}; cannot resume") from None
        self.state = TrainingState.from_json(str(train_state["state_json"]))
        if self.streaming and self.state.position:
            for i, expected in enumerate(self.carried_states):
                value = train_state.get(STREAM_STATE.format(i))
                if value is None or value.shape != expected.shape:
                    raise CheckpointError(f"{self.settings.resume}: its carried state {STREAM_STATE.format(i)} is missing "
                                          f"or not of shape {expected.shape}; cannot resume")
                self.carried_states[i] = value.astype(expected.dtype)
        self.say(f"Resuming {self.settings.resume}: epoch {self.state.epoch}, batch {self.state.position}, {self.state.examples_seen} examples seen")

    @property
    def bucket_width(self):
        """BUCKET_WIDTH, or 16 under JAX (one compiled function per padded length), else none."""
        return self.settings.bucket_width or (16 if self.settings.backend_name == "jax" else None)

    def first_batch(self):
        """A training batch ``(ids, targets, mask, *states)`` for timing a step."""
        from symrnn.batching import bucket_length, pad_batch
        from symrnn.streams import stream_windows

        if self.streaming:
            window = next(stream_windows(self.data.streams, self.settings.seq_length))
            return (window.x, window.y, window.mask), self.model.initial_state_values(self.settings.batch_size)
        index = min(10, len(self.data.X_train) - 1)
        batch_size = min(self.settings.batch_size, len(self.data.X_train))
        chosen = [self.data.X_train[(index + i) % len(self.data.X_train)] for i in range(batch_size)]
        targets = [self.data.Y_train[(index + i) % len(self.data.Y_train)] for i in range(batch_size)]
        length = bucket_length(max(len(s) for s in chosen), self.bucket_width)
        x, mask = pad_batch(chosen, length)
        y, _ = pad_batch(targets, length)
        return (x, y, mask.astype(self.settings.floatx)), []

    def time_one_step(self):
        """The tutorial's 'SGD Step time', measured without changing the run (values restored).

        The second of two calls is timed: the first loads the softmax kernel
        (Numba) or, under JAX, compiles the step for that batch shape (reported).
        """
        snapshot = self.model.state()
        (x, y, mask), states = self.first_batch()
        learning_rate = np.float32(self.settings.learning_rate)
        started = time.perf_counter()
        self.train_step(x, y, mask, learning_rate, *states)  # first call: JAX compiles, Numba loads its kernel
        if self.model.static_shapes:
            self.say(f"Compiled the training step for batches of shape {x.shape} in {time.perf_counter() - started:.1f} s "
                     "(once per padded shape; reused from JAX's cache in later runs)")
        started = time.perf_counter()
        self.train_step(x, y, mask, learning_rate, *states)
        elapsed = time.perf_counter() - started
        self.model.load_state(snapshot)
        self.say(f"SGD Step time: {elapsed * 1000:f} milliseconds (batch of {x.shape[1]})")

    # ------------------------------------------------------------ evaluating
    def per_token_loss(self, data) -> float:
        """Loss in nats per token: sentences ``(X, Y)``, or a token id stream (streams of BATCH_SIZE, state carried)."""
        if self.streaming:
            streams = data if data.ndim == 2 else parallel_streams(data, max(1, min(self.settings.batch_size, len(data) // 2)))
            total, count = evaluate_streams(self.loss_fn, streams, self.settings.seq_length,
                                            self.model.initial_state_values(streams.shape[0]))
        else:
            total, count = evaluate(self.loss_fn, *data, batch_size=64)
        return total / max(count, 1)

    def training_loss(self) -> float:
        if self.streaming:
            return self.per_token_loss(self.data.training_head)
        return self.per_token_loss((self.data.X_train[:EVALUATION_SENTENCES], self.data.Y_train[:EVALUATION_SENTENCES]))

    def validation_loss(self) -> float | None:
        return self.per_token_loss(self.data.validation) if self.data.has_data(self.data.validation) else None

    def sample(self, n: int, rng) -> list[str]:
        """``n`` generated sentences; for a stream model one continuous text of ``n`` lines' worth."""
        v = self.data.vocabulary
        chars = self.settings.tokens == "char"
        if self.streaming:
            if n == 0:
                return []
            ids = generate_text(
                self.step_fn, self.model.initial_state_values(1), [stream_start_id(v, self.settings.tokens)],
                n * (60 if chars else 12), rng, temperature=self.settings.temperature,
                banned_ids=[v.mask_index, v.unknown_index, v.start_index],
            )
            return [detokenize(v.decode(ids), self.settings.tokens)]
        result = generate(
            self.step_fn, self.model.initial_state_values, n, v.start_index, v.end_index, rng,
            temperature=self.settings.temperature, reject_ids=[v.unknown_index, v.mask_index, v.start_index],
            min_length=3 if chars else 5, max_length=400 if chars else 100,
        )
        return [("" if chars else " ").join(v.decode(sentence)) for sentence in result.sentences]

    # -------------------------------------------------------------- saving
    def save(self, path=None) -> str:
        model, state = self.model, self.state
        settings = {**self.settings.as_dict(), **model.architecture()}
        model_state = model.state()
        training_state = {
            "state_json": np.array(state.to_json()), "dropout_rng_json": np.array(json.dumps(model_state["dropout_rng"])),
            "unknown_share": np.array(self.data.trained_unknown_share),
        }
        training_state.update({STREAM_STATE.format(i): np.asarray(s) for i, s in enumerate(self.carried_states)})
        written = save_checkpoint(
            path or self.output_path, model_state["params"], vocabulary=self.data.vocabulary.index_to_word, settings=settings,
            optimizer_state=model_state["optimizer_state"], training_state=training_state,
        )
        if path is None:
            self.saved_path = written
        return written

    def _last_good(self) -> str:
        """Which file holds this run's last model with finite losses, for messages."""
        last = self.saved_path or self.settings.resume
        return f"the last good model is {last}" if last else "this run saved no model"

    # -------------------------------------------------------------- training
    def make_callbacks(self) -> list:
        console, s = self.console, self.settings
        self.reporter = callbacks.Reporter(console, s, self.training_loss, self.validation_loss, self.sample, self._last_good)
        return [
            self._remember,
            callbacks.ProgressBar(console, self.data.examples_per_epoch, s.batch_size),
            self.reporter,
            callbacks.LearningRate(console, s, self.reporter),
            callbacks.Checkpointer(console, self.reporter, self.save, self.best_path,
                                   self.loss_curve if plot_available() else None, self.metrics_file),
        ]

    def run_loop(self, callback_list, should_stop):
        s = self.settings
        common_options = dict(epochs=s.nepoch, report_every=s.print_every, state=self.state, learning_rate=s.learning_rate,
                              callbacks=callback_list, should_stop=should_stop)
        if self.streaming:
            return train_streams(self.train_step, self.data.streams, seq_length=s.seq_length,
                                 carried_states=self.carried_states, **common_options)
        return train(self.train_step, self.data.X_train, self.data.Y_train, batch_size=s.batch_size, seed=s.seed,
                     bucket_width=self.bucket_width, **common_options)

    def train(self):
        stop = {"signal": None}

        def request_stop(signum, frame):
            if stop["signal"] is not None:  # a second Ctrl-C: stop at once
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            stop["signal"] = signum
            if signum == signal.SIGHUP and self.console.progress_bar is not None:
                self.console.progress_bar.disable = True  # its terminal is gone

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        callback_list = self.make_callbacks()
        self.console.progress_bar = callbacks.make_progress_bar(self.settings.nepoch * self.data.examples_per_epoch, sys.stderr)
        self.say("Training (Ctrl-C, SIGTERM or closing the terminal saves the model and stops; RESUME=<model file> continues)")
        deadline = time.monotonic() + self.settings.time_limit if self.settings.time_limit else None
        out_of_time = lambda: deadline is not None and time.monotonic() > deadline
        try:
            try:
                self.state, completed = self.run_loop(callback_list, lambda: stop["signal"] is not None or out_of_time())
            except Diverged as exc:
                print(f"train.py: error: {exc}. {self._last_good().capitalize()}.", file=sys.stderr, flush=True)
                return 3
            if self.console.progress_bar is not None:
                self.console.progress_bar.close()
                self.console.progress_bar = None
            # Signals stay handled until the end, so a late Ctrl-C cannot cut the final save short.
            return self.finish(completed, stop["signal"])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.console.progress_bar is not None:
                self.console.progress_bar.close()

    def finish(self, completed: bool, signum) -> int:
        """Save, report, and give the exit status (0, 3 for a model whose loss is not finite,
        or 128 + the signal that stopped the run)."""
        if self.reporter.unusable_loss is not None:
            print(f"train.py: error: training diverged: the per-word loss became {self.reporter.unusable_loss:f}; lower "
                  f"LEARNING_RATE or set GRAD_CLIP. The model is not saved: {self._last_good()}.", file=sys.stderr, flush=True)
            return 3
        written = self.save()
        tokens = self.settings.tokens
        if self.data.has_data(self.data.validation):
            loss = self.validation_loss()
            self.say(f"Final validation loss: {loss:f} ({callbacks.loss_figures(loss, tokens)})")
        if self.data.held_out is not None:
            loss = self.per_token_loss(self.data.held_out)
            self.say(f"Final held-out loss (VALIDATION_FRACTION): {loss:f} ({callbacks.loss_figures(loss, tokens)})")
        if completed:
            lines = [f"Training done: {self.state.epoch} epochs, {self.state.examples_seen} examples. Saved model to {written}"]
            status = 0
        elif signum is None:
            lines = [f"Time limit of {self.settings.time_limit:g} s reached after {self.state.examples_seen} examples. Saved model to {written}",
                     f"Continue with: RESUME={written} python scripts/train.py"]
            status = 0
        else:
            lines = [f"Stopped by {signal.Signals(signum).name}; saved model to {written}", f"Resume with: RESUME={written} python scripts/train.py"]
            status = 128 + signum
        self.say(*lines)
        if self.data.test is not None and status == 0:
            loss = self.per_token_loss(self.data.test)
            self.say(f"Test loss: {loss:f} ({callbacks.loss_figures(loss, tokens)})")
        return status

    def _remember(self, report):
        self.state = report.state


def memory_settings(settings: Settings, vocabulary_size: int, max_length: int) -> str:
    """The settings that size the model's memory, for messages."""
    return (f"VOCABULARY_SIZE={settings.vocabulary_size} ({vocabulary_size} words), EMBEDDING_DIM={settings.embedding_dim}, "
            f"HIDDEN_DIM={settings.hidden_dim}, NUM_LAYERS={settings.num_layers}, BATCH_SIZE={settings.batch_size}, "
            f"longest sentence {max_length} tokens")


def build_within_memory(run: Run) -> None:
    """Build the model and time a step, refusing settings whose memory the machine does not have (one line, exit 2)."""
    from symrnn.batching import bucket_length

    s = run.settings
    if s.sequence == "stream":
        max_length = s.seq_length
    else:
        max_length = bucket_length(max(len(x) for x in run.data.X_train + run.data.X_valid), run.bucket_width)
    needed = training_memory_bytes(len(run.data.vocabulary), s.embedding_dim, s.hidden_dim, s.num_layers, s.cell, s.batch_size,
                                   max_length, optimizer=s.optimizer, dtype=s.floatx)
    available = available_memory_bytes()
    what = memory_settings(s, len(run.data.vocabulary), max_length)
    if available is not None and needed > available:
        raise ConfigError(f"these settings need at least {format_bytes(needed)} of memory but {format_bytes(available)} "
                          f"are available ({what}): lower them")
    try:
        run.build_model()
        if run.state is None:
            run.state = TrainingState(learning_rate=s.learning_rate)
        run.time_one_step()
    except MemoryError:
        raise ConfigError(f"out of memory building the model ({what}): lower these settings") from None


def main(argv=None) -> int:
    parse_arguments(sys.argv[1:] if argv is None else argv)
    settings = Settings.from_environ(os.environ)
    common.configure_process(blas_threads=settings.blas_threads, backend=settings.backend_name)
    for variable, nearest in misspelt_settings(os.environ):
        common.warn(f"{variable} is not a setting and is ignored; did you mean {nearest}?")
    run = Run(settings, os.environ)
    run.say("symrnn train.py settings:", *("  " + line for line in run.settings.describe()))
    replaces = os.path.exists(run.output_path) and run.output_path != run.settings.resume
    run.say(f"Model file: {run.output_path}" + (" (replaces the existing file)" if replaces else ""))
    blas_note = common.process.blas_kernel_warning()
    if blas_note:
        run.say(f"Note: {blas_note}")
    run.load_data()
    build_within_memory(run)
    return run.train()


def entry_point():
    """Console command installed by setup.py."""
    common.run(main)


if __name__ == "__main__":
    entry_point()
