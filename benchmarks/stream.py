"""The stream section: char-rnn style training of an LSTM, symrnn against PyTorch's ``nn.LSTM``.

As torch-rnn's README tabulates it: an LSTM language model over characters
trained on one text cut into ``STREAM_BATCH`` parallel streams and windows of
``STREAM_SEQ`` characters (:mod:`symrnn.streams`, ``SEQUENCE=stream``), each
layer's final states carried into the next window, for 1/2/3 layers of
128/256/512 units. Both sides have the same function and parameters: symrnn's
LSTM with logistic-sigmoid gates is ``nn.LSTM`` with symrnn's blocks
reordered and the hidden-to-hidden biases held at zero
(:class:`benchmarks.torch_models.NativeLanguageModel`). The embedding has
``STREAM_EMBEDDING`` = 64 units at every size (torch-rnn's default
``wordvec_size``), the vocabulary is the embedded corpus's characters (98).

A training step is forward, backward and the update on both sides: symrnn's
``compile_train(carry_state=True)`` with RMSprop and global-norm clipping,
and on the PyTorch side the same rule written out
(:func:`benchmarks.peers.rmsprop_step`), the carried states detached at the
window edge (the gradient stops there, as in symrnn). The loss is symrnn's,
the sum over the window's ``STREAM_BATCH * STREAM_SEQ`` characters, on both
sides, so the clipping limit applies to that sum's gradient.

:func:`train_steps` runs one side over a list of windows and returns its
losses, gradient norms and step times; the benchmark's check compares both
sides' per-step losses over the first ``CHECK_STEPS`` windows.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.peers import SymrnnSide, TorchSide, rmsprop_step
from benchmarks.workload import layer_count

#: torch-rnn's benchmark settings, and the training rule of symrnn's stream tutorial run.
STREAM_BATCH = 50
STREAM_SEQ = 50
STREAM_EMBEDDING = 64
STREAM_LAYERS = (1, 2, 3)
STREAM_HIDDEN = (128, 256, 512)
CELL, GATE = "lstm", "sigmoid"
LEARNING_RATE = 2e-3
DECAY = 0.95
EPSILON = 1e-6
GRAD_CLIP = 5.0
#: The step-by-step check: 2 layers of 128, the first 20 windows.
CHECK_LAYERS, CHECK_HIDDEN, CHECK_STEPS = 2, 128, 20
CHECK_RTOL = 1e-4

#: Per configuration: untimed warm-up steps, then timed steps (the figure is their median: on a
#: shared machine single steps of either side take seconds now and then, when a thread waits for a core).
STREAM_PLANS = {
    "full": dict(configs=[(l, h) for l in STREAM_LAYERS for h in STREAM_HIDDEN], warmup=2, steps=5),
    "quick": dict(configs=[(1, 128), (2, 128), (1, 256)], warmup=2, steps=3),
}


def character_ids(text: str) -> tuple[np.ndarray, str]:
    """The text as ids of its sorted distinct characters.

    Returns
    -------
    ids : ndarray (len(text),) int32
    alphabet : str, character ``i`` has id ``i``
    """
    alphabet = "".join(sorted(set(text)))
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    table = np.frombuffer(alphabet.encode("utf-32-le"), dtype=np.uint32)
    return np.searchsorted(table, codes).astype(np.int32), alphabet


def window_arrays(ids: np.ndarray, n_windows: int, batch: int = STREAM_BATCH, seq: int = STREAM_SEQ) -> dict:
    """The first ``n_windows`` windows of ``ids`` cut into ``batch`` streams, as symrnn's stream training has them.

    Returns
    -------
    dict of arrays ``stream_<i>_{x,y,mask}`` (T, B), for :func:`benchmarks.workload.load_batches` (prefix ``stream``)
    """
    from symrnn.streams import parallel_streams, stream_windows

    arrays = {}
    for window in stream_windows(parallel_streams(ids, batch), seq):
        if window.index == n_windows:
            break
        i = window.index
        arrays[f"stream_{i}_x"], arrays[f"stream_{i}_y"], arrays[f"stream_{i}_mask"] = window.x, window.y, window.mask
    if len(arrays) < 3 * n_windows:
        raise ValueError(f"{len(ids)} ids hold fewer than {n_windows} windows of {batch} x {seq}")
    return arrays


def initial_values(vocabulary: int, hidden: int, layers: int, seed: int, embedding: int = STREAM_EMBEDDING,
                   dtype: str = "float32") -> dict:
    """symrnn's seeded initial values of the stream model (an LSTM), by parameter name, as ``dtype``."""
    from symrnn import network

    shapes = network.parameter_shapes(vocabulary, embedding, hidden, layers, CELL)
    return {k: v.astype(dtype) for k, v in network.initial_values(shapes, np.random.default_rng(seed)).items()}


class SymrnnStreamSide:
    """symrnn's stream model: ``compile_train(carry_state=True)``, the states carried as ``train_streams`` carries them."""

    name = "symrnn"

    def __init__(self, values, backend="c"):
        from models.language_model import RNNLanguageModel

        vocabulary, embedding = values["embedding"].shape
        hidden = values["layer0/W_h"].shape[0]
        self.model = RNNLanguageModel(vocabulary, embedding, hidden, num_layers=layer_count(values), cell=CELL,
                                      gate=GATE, dtype=str(values["embedding"].dtype), backend=backend,
                                      initial_values=values)
        self.learning_rate = np.asarray(LEARNING_RATE, dtype=self.model.dtype)
        self._train = None
        self.states = []

    def compile_train(self):
        self._train = self.model.compile_train(optimizer="rmsprop", grad_clip=GRAD_CLIP, carry_state=True,
                                               decay=DECAY, epsilon=EPSILON)

    def reset_states(self, batch):
        self.states = self.model.initial_state_values(batch)

    def train_step(self, x, y, mask):
        """One window: loss and gradient norm (before clipping); the final states become the next window's."""
        loss, _, norm, applied, *final = self._train(x, y, mask, self.learning_rate, *self.states)
        # As symrnn.training.train_streams: a skipped step passes zero states on.
        self.states = [np.asarray(s) if applied else np.zeros_like(s) for s in final]
        return float(loss), float(norm)

    libraries = staticmethod(SymrnnSide.libraries)


class TorchStreamSide:
    """``nn.LSTM`` with symrnn's parameters, trained with symrnn's rule; states detached at window edges."""

    name = "pytorch"

    def __init__(self, values):
        import torch

        from benchmarks.torch_models import NativeLanguageModel

        self.torch = torch
        self.model = NativeLanguageModel(values, CELL)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.caches = [torch.zeros_like(p) for p in self.params]
        self.states = []

    def compile_train(self):
        """Nothing to compile."""

    def reset_states(self, batch):
        self.states = self.model.initial_states(batch, "cpu")

    def train_step(self, x, y, mask):
        """As :meth:`SymrnnStreamSide.train_step` (``mask`` is all ones in a stream window: unused)."""
        torch = self.torch
        ids, targets = (torch.from_numpy(np.ascontiguousarray(a)).long() for a in (x, y))
        loss, final = self.model.stream_loss(ids, targets, self.states)
        loss_value, norm_value, applied = rmsprop_step(loss, self.params, self.caches, LEARNING_RATE, DECAY, EPSILON,
                                                       GRAD_CLIP)
        self.states = [s.detach() if applied else torch.zeros_like(s) for s in final]
        return loss_value, norm_value

    libraries = TorchSide.libraries


def train_steps(side, windows) -> dict:
    """Train ``side`` over ``windows`` in order from zero states, one step each.

    Parameters
    ----------
    side : :class:`SymrnnStreamSide` or :class:`TorchStreamSide`, compiled
    windows : list of (x, y, mask), each (T, B), consecutive windows of the same streams

    Returns
    -------
    dict with lists ``loss`` (summed over the window), ``grad_norm`` (before clipping) and ``step_s``, one per window
    """
    side.reset_states(windows[0][0].shape[1])
    figures = {"loss": [], "grad_norm": [], "step_s": []}
    for x, y, mask in windows:
        start = time.perf_counter()
        loss, norm = side.train_step(x, y, mask)
        figures["step_s"].append(time.perf_counter() - start)
        figures["loss"].append(loss)
        figures["grad_norm"].append(norm)
    return figures


def relative_differences(a, b) -> np.ndarray:
    """``|a - b| / max(|a|, |b|)`` element by element."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-30)
