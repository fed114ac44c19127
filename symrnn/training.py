"""The training loops: batches in, parameter updates out, callbacks in between.

The loops know nothing of the model: they call a compiled step function
``step(ids, targets, mask, learning_rate) -> (loss_sum, n_tokens, grad_norm,
applied)`` (see :meth:`models.language_model.RNNLanguageModel.compile_train`)
and report through callbacks. :func:`train` runs sentences (shuffled, padded
batches from zero states); :func:`train_streams` runs continuous text
(:mod:`symrnn.streams`) with a step that also takes and returns the states
carried from one window to the next. A loop's whole position is a
:class:`TrainingState` (plus, for streams, the carried states), which a
checkpoint saves, so an interrupted run resumes exactly where it stopped.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

from symrnn.batching import iterate_minibatches
from symrnn.errors import SymrnnError
from symrnn.streams import stream_windows

__all__ = [
    "Diverged",
    "Report",
    "TrainingState",
    "anneal_learning_rate",
    "evaluate",
    "evaluate_streams",
    "train",
    "train_streams",
]

log = logging.getLogger(__name__)


class Diverged(SymrnnError):
    """Too many consecutive steps had a non-finite loss or gradient."""


@dataclass
class TrainingState:
    """Where a run is; everything needed to continue it exactly.

    Attributes
    ----------
    epoch : int
        Epochs finished.
    position : int
        Batches (stream windows) finished in the current epoch.
    examples_seen, tokens_seen : int
        Examples are sentences, or in stream training one window of one stream.
    learning_rate : float
        Current (possibly annealed) learning rate.
    shuffle_state : dict or None
        The shuffling generator's state at the start of the current epoch (None: seeded anew).
    skipped_steps : int
        Steps skipped for a non-finite loss or gradient.
    consecutive_faults : int
    history : list of [examples_seen, training per-word loss, validation per-word loss or None,
        tokens_seen, seconds, learning_rate] (older checkpoints hold the first three only)
    best_validation : float or None
    seconds : float
        Seconds spent in the training loops, over every resumed part of the run.
    """

    epoch: int = 0
    position: int = 0
    examples_seen: int = 0
    tokens_seen: int = 0
    learning_rate: float = 0.001
    shuffle_state: dict | None = None
    skipped_steps: int = 0
    consecutive_faults: int = 0
    history: list = field(default_factory=list)
    best_validation: float | None = None
    seconds: float = 0.0

    def to_json(self) -> str:
        """JSON text (for a checkpoint's training state)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "TrainingState":
        """Inverse of :meth:`to_json`."""
        return cls(**json.loads(text))


@dataclass
class Report:
    """What a callback receives.

    Attributes
    ----------
    state : TrainingState
    kind : ``"progress"`` (every ``report_every`` examples), ``"epoch"`` (end of
        an epoch) or ``"step"`` (after every step; for progress bars)
    elapsed : float
        Seconds since this call of :func:`train` began.
    loss : float
        Per-word training loss of the last step.
    tokens : int
        Real tokens in the last step.
    """

    state: TrainingState
    kind: str
    elapsed: float
    loss: float
    tokens: int


def evaluate(loss_fn: Callable, X: Sequence, Y: Sequence, batch_size: int = 64) -> tuple[float, int]:
    """Summed loss and token count of sentences, in length-sorted batches.

    Parameters
    ----------
    loss_fn : callable ``f(ids (T,B), targets (T,B), mask (T,B)) -> (loss_sum, n_tokens)``
    X, Y : sequences of ndarray (n_i,) int32
    batch_size : int

    Returns
    -------
    total_loss : float
    n_tokens : int
    """
    total, count = 0.0, 0
    for batch in iterate_minibatches(X, Y, batch_size, None, shuffle=False, bucket=True):
        loss_sum, n_tokens = loss_fn(batch.x, batch.y, batch.mask)
        total += float(loss_sum)
        count += int(n_tokens)
    return total, count


def evaluate_streams(loss_fn: Callable, streams: np.ndarray, seq_length: int, initial_states: Sequence[np.ndarray]) -> tuple[float, int]:
    """Summed loss and token count of parallel streams, the states carried across windows.

    Parameters
    ----------
    loss_fn : callable ``f(ids (T,B), targets (T,B), mask (T,B), *states) -> (loss_sum, n_tokens, *final_states)``
    streams : ndarray (B, L) int, from :func:`symrnn.streams.parallel_streams`
    seq_length : int
    initial_states : sequence of ndarray (B, H), usually zeros

    Returns
    -------
    total_loss : float
    n_tokens : int
    """
    total, count, states = 0.0, 0, list(initial_states)
    for window in stream_windows(streams, seq_length):
        loss_sum, n_tokens, *states = loss_fn(window.x, window.y, window.mask, *states)
        total += float(loss_sum)
        count += int(n_tokens)
    return total, count


def anneal_learning_rate(schedule: str, learning_rate: float, rate: float, validation_losses: Sequence[float], end_of_epoch: bool) -> float:
    """The next learning rate under a schedule.

    Parameters
    ----------
    schedule : ``"none"``, ``"plateau"`` (multiply by ``rate`` when the latest
        validation loss is above the one before, as the tutorial's part 2 loop
        halved it) or ``"exponential"`` (multiply by ``rate`` every epoch)
    learning_rate : float
    rate : float in (0, 1)
    validation_losses : sequence of float, oldest first
    end_of_epoch : bool
        Whether this is an epoch's end (exponential) or an evaluation (plateau).

    Returns
    -------
    float
    """
    if schedule == "exponential" and end_of_epoch:
        return learning_rate * rate
    if schedule == "plateau" and not end_of_epoch and len(validation_losses) >= 2:
        if validation_losses[-1] > validation_losses[-2]:
            return learning_rate * rate
    return learning_rate


def train(
    step: Callable,
    X: Sequence,
    Y: Sequence,
    *,
    epochs: int,
    batch_size: int,
    report_every: int,
    seed: int,
    state: TrainingState | None = None,
    learning_rate: float = 0.001,
    callbacks: Sequence[Callable[[Report], None]] = (),
    should_stop: Callable[[], bool] = lambda: False,
    bucket_width: int | None = None,
    max_consecutive_faults: int = 20,
) -> tuple[TrainingState, bool]:
    """Run (or continue) training.

    Each epoch visits every sentence once in an order drawn from a generator
    seeded with ``seed``; with ``batch_size == 1`` that order is a plain
    permutation, one update per sentence, as in the tutorial. Larger batches
    group sentences of similar length (bucketing) to waste little on padding.

    Parameters
    ----------
    step : callable
        ``step(ids, targets, mask, learning_rate) -> (loss_sum, n_tokens, grad_norm, applied)``.
    X, Y : sequences of ndarray (n_i,) int32
        Inputs and next-word targets of each sentence.
    epochs : int
        Epochs to reach (counting those already in ``state``).
    batch_size, report_every, seed : int
    state : TrainingState, optional
        Continue from here (a resumed run); modified in place.
    learning_rate : float
        Initial learning rate (ignored when ``state`` is given).
    callbacks : sequence of callables receiving a :class:`Report`
    should_stop : callable
        Polled after every step; when it returns True the loop ends early
        (the state then points at the next batch to run).
    bucket_width : int, optional
        Pad batch lengths to a multiple of this (static shapes for JAX).
    max_consecutive_faults : int
        Consecutive skipped steps tolerated before :class:`Diverged`.

    Returns
    -------
    state : TrainingState
    completed : bool
        False when ``should_stop`` ended the run early.

    Raises
    ------
    Diverged
        After ``max_consecutive_faults`` consecutive non-finite steps.
    """
    if state is None:
        state = TrainingState(learning_rate=float(learning_rate))
    rng = np.random.default_rng(seed)
    steps = _StepRecorder(state, callbacks, max_consecutive_faults)

    while state.epoch < epochs:
        if state.shuffle_state is None:
            state.shuffle_state = copy.deepcopy(rng.bit_generator.state)
        else:
            rng.bit_generator.state = copy.deepcopy(state.shuffle_state)
        batches = iterate_minibatches(
            X, Y, batch_size, rng, shuffle=True, bucket=batch_size > 1, bucket_width=bucket_width
        )
        for index, batch in enumerate(batches):
            if index < state.position:
                continue
            loss_sum, n_tokens, _, applied = step(batch.x, batch.y, batch.mask, np.float32(state.learning_rate))
            state.position = index + 1
            steps.record(loss_sum, n_tokens, applied, len(batch.indices), report_every)
            if should_stop():
                return state, False
        state.epoch += 1
        state.position = 0
        # Where the next epoch's shuffle starts: a run resumed from a checkpoint
        # saved at an epoch's end then draws the order an uninterrupted run would.
        state.shuffle_state = copy.deepcopy(rng.bit_generator.state)
        steps.emit("epoch")
    return state, True


def train_streams(
    step: Callable,
    streams: np.ndarray,
    *,
    seq_length: int,
    epochs: int,
    report_every: int,
    carried_states: list,
    state: TrainingState | None = None,
    learning_rate: float = 0.001,
    callbacks: Sequence[Callable[[Report], None]] = (),
    should_stop: Callable[[], bool] = lambda: False,
    max_consecutive_faults: int = 20,
) -> tuple[TrainingState, bool]:
    """Run (or continue) stream training: windows in order, each stream's state carried to its next window.

    Every epoch walks the windows of :func:`symrnn.streams.stream_windows`
    in order, starting every stream from zero states; the final states of a
    window are the initial states of the next (the gradient stops there:
    truncated backpropagation at window edges). A step skipped for a
    non-finite loss or gradient passes zero states on.

    Parameters
    ----------
    step : callable
        ``step(ids, targets, mask, learning_rate, *states) -> (loss_sum, n_tokens, grad_norm, applied, *final_states)``
        (``compile_train(carry_state=True)``).
    streams : ndarray (B, L) int, from :func:`symrnn.streams.parallel_streams`
    seq_length : int
        Window length S.
    epochs, report_every : int
        As :func:`train`; one example is one window of one stream.
    carried_states : list of ndarray (B, H)
        The states entering window ``state.position`` (a resumed run's saved
        ones; any values at an epoch's start, where they are zeroed); replaced
        in place after every step, so a checkpoint saved from a callback or
        after the loop holds the states the next window needs.
    state, learning_rate, callbacks, should_stop, max_consecutive_faults
        As :func:`train`.

    Returns
    -------
    state : TrainingState
    completed : bool

    Raises
    ------
    Diverged
        After ``max_consecutive_faults`` consecutive non-finite steps.
    """
    if state is None:
        state = TrainingState(learning_rate=float(learning_rate))
    steps = _StepRecorder(state, callbacks, max_consecutive_faults)
    while state.epoch < epochs:
        if state.position == 0:
            carried_states[:] = [np.zeros_like(s) for s in carried_states]
        for window in stream_windows(streams, seq_length, state.position):
            loss_sum, n_tokens, _, applied, *final_states = step(
                window.x, window.y, window.mask, np.float32(state.learning_rate), *carried_states
            )
            carried_states[:] = [np.asarray(s) if applied else np.zeros_like(s) for s in final_states]
            state.position = window.index + 1
            steps.record(loss_sum, n_tokens, applied, window.x.shape[1], report_every)
            if should_stop():
                return state, False
        state.epoch += 1
        state.position = 0
        steps.emit("epoch")
    return state, True


class _StepRecorder:
    """What both loops do after a step: count it, watch for faults, time it and call the callbacks."""

    def __init__(self, state: TrainingState, callbacks, max_consecutive_faults: int):
        self.state, self.callbacks, self.max_consecutive_faults = state, callbacks, max_consecutive_faults
        self.started, self.seconds_before = time.perf_counter(), state.seconds
        self.last_loss, self.last_tokens = math.nan, 0

    def emit(self, kind: str) -> None:
        elapsed = time.perf_counter() - self.started
        self.state.seconds = self.seconds_before + elapsed
        report = Report(self.state, kind, elapsed, self.last_loss, self.last_tokens)
        for callback in self.callbacks:
            callback(report)

    def record(self, loss_sum, n_tokens, applied, examples: int, report_every: int) -> None:
        """Count a step of `examples` examples; raise :class:`Diverged` after too many faults in a row."""
        state = self.state
        self.last_tokens = int(n_tokens)
        if not applied:
            state.skipped_steps += 1
            state.consecutive_faults += 1
            log.warning("skipped a step with a non-finite loss or gradient (%d in a row)", state.consecutive_faults)
            if state.consecutive_faults >= self.max_consecutive_faults:
                raise Diverged(
                    f"training diverged: {state.consecutive_faults} steps in a row had a non-finite loss or "
                    "gradient; lower LEARNING_RATE or set GRAD_CLIP"
                )
        else:
            state.consecutive_faults = 0
            self.last_loss = float(loss_sum) / max(self.last_tokens, 1)
        before = state.examples_seen // report_every
        state.examples_seen += examples
        state.tokens_seen += self.last_tokens
        self.emit("step")
        if state.examples_seen // report_every > before:
            self.emit("progress")
