#!/usr/bin/env python
"""Train a recurrent language model, configured by environment variables.

    LEARNING_RATE=0.001 HIDDEN_DIM=128 python scripts/train.py

Settings are the WildML tutorial's variables (same names, same defaults) plus
symrnn's own; ``--help`` lists them all.
"""

from __future__ import annotations

import argparse
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
from symrnn.config import DEFAULT_INPUT_DATA_FILE, Settings, misspelt_settings
from symrnn.corpus import load_sentences
from symrnn.default_corpus import DEFAULT_CORPUS_NAME
from symrnn.errors import CheckpointError, ConfigError
from symrnn.paths import check_output_path
from symrnn.plotting import plot_available, write_loss_curve
from symrnn.sampling import generate
from symrnn.memory import available_memory_bytes, format_bytes, training_memory_bytes
from symrnn.training import Diverged, TrainingState, anneal_learning_rate, evaluate, train
from symrnn.vocab import Vocabulary, sentences_to_pairs, unknown_share, unknown_share_warning

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
    """The checkpoint's settings, but for the resumable ones (``Settings.resumable_names``) given in `environ`.

    MODEL_OUTPUT_FILE never comes from the checkpoint: a copied or downloaded
    checkpoint would otherwise write to a name from another machine or folder.
    """
    fields = {name: value for name, value in saved.items() if name in env_settings.as_dict()}
    fields["model_output_file"] = env_settings.model_output_file
    for name in Settings.resumable_names():
        if environ.get(name.upper(), "").strip():
            fields[name] = getattr(env_settings, name)
    try:
        return Settings(**fields)
    except (TypeError, ConfigError) as exc:
        raise CheckpointError(f"{env_settings.resume}: its saved settings are invalid ({exc})") from None


def ignored_on_resume(env_settings: Settings, resumed: Settings, environ) -> list[str]:
    """One warning per setting given in `environ` that the resumed checkpoint overrides."""
    warnings = []
    for name, value in resumed.as_dict().items():
        given = getattr(env_settings, name)
        if name not in Settings.resumable_names() and environ.get(name.upper(), "").strip() and given != value:
            warnings.append(f"{name.upper()}={given} is ignored: a resumed run keeps its checkpoint's value, {value}")
    return warnings


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
            resumed = settings_for_resume(settings, self.checkpoint.settings, environ)
            for warning in ignored_on_resume(settings, resumed, environ):
                common.warn(warning)
            self.settings = settings = resumed
        # A resumed run writes to the file it resumed, unless MODEL_OUTPUT_FILE names another.
        self.output_path = settings.model_output_file or settings.resume or self._new_default_name()
        self.saved_path = None  # the model file this run has written, once it has
        self.unusable_loss = None  # the last report's loss when it was not finite
        self.plot_failed = False
        self.progress_bar = None
        self.check_outputs()

    def _new_default_name(self) -> str:
        """A default model name no existing file has (such a file belongs to another run)."""
        for _ in range(10):
            name = self.settings.output_path()
            if not os.path.lexists(name):
                return name
        raise ConfigError(f"cannot find a free default model file name (tried names like {name}); set MODEL_OUTPUT_FILE")

    def check_outputs(self):
        """Refuse, before any work, every file this run could not write or must not replace."""
        s = self.settings
        inputs = [path for path in (resolve_corpus_path(s),) if path]
        what = "MODEL_OUTPUT_FILE" if s.model_output_file else "RESUME" if s.resume else "default model file"
        check_output_path(self.output_path, inputs, what=what)
        self.best_path = self._beside(self.output_path, "best")
        self.plot_path = str(Path(self.output_path).with_suffix("")) + ".loss.png"
        if s.validation_fraction:
            check_output_path(self.best_path, inputs, what=f"best-model file of {what}")
        if plot_available():
            check_output_path(self.plot_path, inputs, what=f"loss-curve image of {what}")

    @staticmethod
    def _beside(path: str, tag: str) -> str:
        p = Path(path)
        return str(p.with_name(f"{p.stem}.{tag}{p.suffix or '.npz'}"))

    def say(self, *lines):
        if self.progress_bar is not None:
            self.progress_bar.clear()
        try:
            for line in lines:
                print(line, file=self.out)
            self.out.flush()
        except OSError:  # the terminal is gone (SIGHUP): go on to save, silently
            self.out = open(os.devnull, "w")
        if self.progress_bar is not None:
            self.progress_bar.refresh()

    def warn(self, message: str):
        if self.progress_bar is not None:
            self.progress_bar.clear()
        common.warn(message)
        if self.progress_bar is not None:
            self.progress_bar.refresh()

    # ------------------------------------------------------------------ setup
    def load_data(self):
        from models.tutorial import reading_line, statistics_lines

        s = self.settings
        path = resolve_corpus_path(s)
        self.say(reading_line(path))
        sentences = load_sentences(
            path, tokens=s.tokens, min_sent_characters=s.min_sent_characters,
            cache_dir=s.token_cache_dir(str(Path.home())), max_data_bytes=s.max_data_mb * 2**20,
        )
        if s.max_sentences:
            sentences = sentences[: s.max_sentences]
        if self.checkpoint is not None and self.checkpoint.vocabulary is not None:
            self.vocabulary = Vocabulary(self.checkpoint.vocabulary)
        else:
            self.vocabulary = Vocabulary.build(sentences, s.vocabulary_size)
        X, Y = sentences_to_pairs(sentences, self.vocabulary)
        share = unknown_share(sentences, self.vocabulary)
        # The share the model was trained with, kept in its checkpoints so that a
        # resumed run or evaluate.py can tell a corpus that does not fit it.
        self.trained_unknown_share = share
        if self.checkpoint is not None:  # the resumed vocabulary may not fit this corpus
            saved = self.checkpoint.training_state.get("unknown_share")
            if saved is not None:
                self.trained_unknown_share = float(saved)
            self.say(f"Tokens not in the model's vocabulary (UNKNOWN_TOKEN): {share:.1%}")
            warning = unknown_share_warning(share, None if saved is None else float(saved))
            if warning:
                self.warn(warning)
        train_idx, valid_idx = split_train_validation(len(X), s.validation_fraction, s.seed)
        self.X_train, self.Y_train = [X[i] for i in train_idx], [Y[i] for i in train_idx]
        self.X_valid, self.Y_valid = [X[i] for i in valid_idx], [Y[i] for i in valid_idx]
        if not self.X_train:
            raise ConfigError("VALIDATION_FRACTION leaves no training sentences; lower it")
        tokens = sum(len(y) for y in self.Y_train)
        self.say(
            *statistics_lines(sentences, self.vocabulary, s.vocabulary_size),
            f"Corpus {path or DEFAULT_CORPUS_NAME}: vocabulary of {len(self.vocabulary)} words"
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
        rule_options = {"decay": s.decay} if s.optimizer == "rmsprop" else {}  # DECAY is RMSprop's setting
        self.train_step = self.model.compile_train(optimizer=s.optimizer, grad_clip=s.grad_clip or None, **rule_options)
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
            training_state={
                "state_json": np.array(state.to_json()), "dropout_rng_json": np.array(rng_state_json(model_state)),
                "unknown_share": np.array(self.trained_unknown_share),
            },
        )
        if path is None:
            self.saved_path = written
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
        if not np.isfinite(train_loss):
            self.unusable_loss = train_loss
            self.say("", f"Loss: {train_loss:f} after {state.examples_seen} examples: the parameters no longer give finite "
                     f"losses, so this model is not saved ({self._last_good()})")
            return
        self.unusable_loss = None
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
            self.write_plot(state.history, title=Path(written).name)
        if valid_loss is not None and (state.best_validation is None or valid_loss < state.best_validation):
            state.best_validation = valid_loss
            self.say(f"Saved best model (validation loss {valid_loss:f}) to {self.save(self.best_path)}")
        self.say("")

    def write_plot(self, history, title: str):
        """Draw the loss curve; a side product, so a failure is one warning, not the end of the run."""
        try:
            self.say(f"Loss curve: {write_loss_curve(self.plot_path, history, title=title)}")
        except Exception as exc:  # matplotlib can fail in many ways; none may cost the run
            if not self.plot_failed:
                self.warn(f"no loss curve: {exc}; training goes on (this warning is not repeated)")
            self.plot_failed = True

    # -------------------------------------------------------------- training
    def train(self):
        stop = {"signal": None}

        def request_stop(signum, frame):
            if stop["signal"] is not None:  # a second Ctrl-C: stop at once
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            stop["signal"] = signum
            if signum == signal.SIGHUP and self.progress_bar is not None:
                self.progress_bar.disable = True  # its terminal is gone

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        self.progress_bar = make_progress_bar(self.settings.nepoch * len(self.X_train), sys.stderr)
        self.say("Training (Ctrl-C, SIGTERM or closing the terminal saves the model and stops; RESUME=<model file> continues)")
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
                print(f"train.py: error: {exc}. {self._last_good().capitalize()}.", file=sys.stderr, flush=True)
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

    def _last_good(self) -> str:
        """Which file holds this run's last model with finite losses, for messages."""
        last = self.saved_path or self.settings.resume
        return f"the last good model is {last}" if last else "this run saved no model"

    def finish(self, completed: bool, signum) -> int:
        """Save, report, and give the exit status (0, 3 for a model whose loss is not finite,
        or 128 + the signal that stopped the run)."""
        if self.unusable_loss is not None:
            print(f"train.py: error: training diverged: the per-word loss became {self.unusable_loss:f}; lower "
                  f"LEARNING_RATE or set GRAD_CLIP. The model is not saved: {self._last_good()}.", file=sys.stderr, flush=True)
            return 3
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


def memory_settings(settings: Settings, vocabulary_size: int, max_length: int) -> str:
    """The settings that size the model's memory, for messages."""
    return (f"VOCABULARY_SIZE={settings.vocabulary_size} ({vocabulary_size} words), EMBEDDING_DIM={settings.embedding_dim}, "
            f"HIDDEN_DIM={settings.hidden_dim}, NUM_LAYERS={settings.num_layers}, BATCH_SIZE={settings.batch_size}, "
            f"longest sentence {max_length} tokens")


def build_within_memory(run: Run) -> None:
    """Build the model and time a step, refusing settings whose memory the machine does not have (one line, exit 2)."""
    from symrnn.batching import bucket_length

    s = run.settings
    max_length = bucket_length(max(len(x) for x in run.X_train + run.X_valid), run.bucket_width)
    needed = training_memory_bytes(len(run.vocabulary), s.embedding_dim, s.hidden_dim, s.num_layers, s.cell, s.batch_size,
                                   max_length, optimizer=s.optimizer, dtype=s.floatx)
    available = available_memory_bytes()
    what = memory_settings(s, len(run.vocabulary), max_length)
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
    run.load_data()
    build_within_memory(run)
    return run.train()


def entry_point():
    """Console command installed by setup.py."""
    common.run(main)


if __name__ == "__main__":
    entry_point()
