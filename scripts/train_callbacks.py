"""What ``scripts/train.py`` does while the training loop runs: its callbacks, each one job.

The loop (:func:`symrnn.training.train` or :func:`symrnn.training.train_streams`)
calls each callback with a :class:`symrnn.training.Report` after every step
(``"step"``), every ``PRINT_EVERY`` examples (``"progress"``) and at each
epoch's end (``"epoch"``). In train.py's order:

* :class:`ProgressBar`: the terminal's bar (steps);
* :class:`Reporter`: the losses, the printed report and the samples (progress);
* :class:`LearningRate`: the one place the learning rate changes (ANNEAL: at
  a plateau of the validation loss, or every epoch);
* :class:`Checkpointer`: the model file, the loss curve, the metrics file and
  the best model (progress).
"""

from __future__ import annotations

import datetime
import math
import os
from typing import Callable

import numpy as np

try:
    from . import common
except ImportError:  # run as a file: python scripts/train.py
    import common

from symrnn.config import Settings
from symrnn.training import Report, anneal_learning_rate


def make_progress_bar(total: int, stream):
    """A tqdm bar (examples, examples/s, loss, tokens/s, ETA) on a terminal; None otherwise."""
    if not stream.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="ex", file=stream, dynamic_ncols=True, smoothing=0.05)


def loss_figures(loss: float, tokens: str) -> str:
    """``perplexity p`` and, for character models, ``b bits per character``, for report lines."""
    figures = f"perplexity {np.exp(loss):.1f}"
    if tokens == "char":
        figures += f", {loss / math.log(2):.3f} bits per character"
    return figures


class Console:
    """train.py's output: lines on stdout and warnings on stderr, around the progress bar."""

    def __init__(self, out):
        self.out = out
        self.progress_bar = None

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


class ProgressBar:
    """Moves the console's progress bar after every step."""

    def __init__(self, console: Console, examples_per_epoch: int, batch_size: int):
        self.console, self.examples_per_epoch, self.batch_size = console, examples_per_epoch, batch_size

    def __call__(self, report: Report):
        bar = self.console.progress_bar
        if report.kind != "step" or bar is None:
            return
        state = report.state
        done = state.epoch * self.examples_per_epoch + min(state.position * self.batch_size, self.examples_per_epoch)
        bar.n = min(done, bar.total)
        rate = state.tokens_seen / max(report.elapsed, 1e-9)
        bar.set_postfix(loss=f"{report.loss:.3f}", tokens_s=f"{rate:.0f}", refresh=False)
        bar.update(0)


class SideFile:
    """A file written beside the model (loss curve, metrics); a failure is one warning, never the end of the run."""

    def __init__(self, console: Console, what: str, write: Callable[..., str]):
        self.console, self.what, self.write_file = console, what, write
        self.failed = False

    def write(self, *args, **kwargs) -> str | None:
        try:
            return self.write_file(*args, **kwargs)
        except Exception as exc:  # matplotlib can fail in many ways; none may cost the run
            if not self.failed:
                self.console.warn(f"no {self.what}: {exc}; training goes on (this warning is not repeated)")
            self.failed = True
            return None


class Reporter:
    """Every PRINT_EVERY examples: training and validation losses, the report lines, samples.

    Attributes
    ----------
    latest : (training_loss, validation_loss or None) or None
        The last report's losses; None when its training loss was not finite.
    unusable_loss : float or None
        That non-finite loss (the model is then not saved).
    """

    def __init__(self, console: Console, settings: Settings, training_loss: Callable[[], float],
                 validation_loss: Callable[[], float | None], sample: Callable, last_good: Callable[[], str]):
        self.console, self.settings = console, settings
        self.training_loss, self.validation_loss, self.sample, self.last_good = training_loss, validation_loss, sample, last_good
        self.latest = None
        self.unusable_loss = None

    def __call__(self, report: Report):
        if report.kind != "progress":
            return
        s, state = self.settings, report.state
        train_loss = self.training_loss()
        if not np.isfinite(train_loss):
            self.latest, self.unusable_loss = None, train_loss
            self.console.say("", f"Loss: {train_loss:f} after {state.examples_seen} examples: the parameters no longer give "
                             f"finite losses, so this model is not saved ({self.last_good()})")
            return
        valid_loss = self.validation_loss()
        self.latest, self.unusable_loss = (train_loss, valid_loss), None
        state.history.append([state.examples_seen, train_loss, valid_loss, state.tokens_seen, state.seconds, state.learning_rate])
        lines = [
            "",
            f"{datetime.datetime.now().isoformat(timespec='seconds')} ({state.examples_seen})",
            "--------------------------------------------------",
            f"Epoch {state.epoch + 1}/{s.nepoch}, {report.elapsed:.0f} s, {state.tokens_seen / max(report.elapsed, 1e-9):.0f} "
            f"tokens/s, learning rate {state.learning_rate:g}",
            f"Loss: {train_loss:f}",
        ]
        if valid_loss is not None:
            lines.append(f"Validation loss: {valid_loss:f} ({loss_figures(valid_loss, s.tokens)})")
        if state.skipped_steps:
            lines.append(f"Skipped steps (non-finite loss or gradient): {state.skipped_steps}")
        self.console.say(*lines)
        rng = np.random.default_rng([s.seed, state.examples_seen])
        for sentence in self.sample(s.num_samples, rng):
            self.console.say(sentence)


class LearningRate:
    """The one place the learning rate changes: ANNEAL=plateau after a report, ANNEAL=exponential at an epoch's end."""

    def __init__(self, console: Console, settings: Settings, reporter: Reporter):
        self.console, self.settings, self.reporter = console, settings, reporter

    def __call__(self, report: Report):
        s, state = self.settings, report.state
        if report.kind == "epoch":
            new_rate = anneal_learning_rate(s.anneal, state.learning_rate, s.anneal_rate, [], end_of_epoch=True)
            if new_rate != state.learning_rate:
                self.console.say(f"Epoch {state.epoch} done; learning rate now {new_rate:g}")
        elif report.kind == "progress" and self.reporter.latest is not None and self.reporter.latest[1] is not None:
            losses = [entry[2] for entry in state.history if entry[2] is not None]
            new_rate = anneal_learning_rate(s.anneal, state.learning_rate, s.anneal_rate, losses, end_of_epoch=False)
        else:
            return
        state.learning_rate = new_rate


class Checkpointer:
    """After every usable report: save the model, draw the loss curve, write the metrics, keep the best model."""

    def __init__(self, console: Console, reporter: Reporter, save: Callable[..., str], best_path: str,
                 loss_curve: SideFile | None, metrics: SideFile):
        self.console, self.reporter, self.save = console, reporter, save
        self.best_path, self.loss_curve, self.metrics = best_path, loss_curve, metrics

    def __call__(self, report: Report):
        if report.kind != "progress" or self.reporter.latest is None:
            return
        state, valid_loss = report.state, self.reporter.latest[1]
        written = self.save()
        self.console.say(f"Saved model to {written}")
        if self.loss_curve is not None:
            curve = self.loss_curve.write(state.history, title=os.path.basename(written))
            if curve:
                self.console.say(f"Loss curve: {curve}")
        self.metrics.write(state.history)
        if valid_loss is not None and (state.best_validation is None or valid_loss < state.best_validation):
            state.best_validation = valid_loss
            self.console.say(f"Saved best model (validation loss {valid_loss:f}) to {self.save(self.best_path)}")
        self.console.say("")
