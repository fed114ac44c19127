"""Values, sentences and helpers shared by the model tests (test_gru_theano, test_network, test_language_model).

Tutorial-layout parameters (every entry random, small enough that hard_sigmoid's
inputs stay far from its kinks), padded batches for the small library models,
and central finite differences of the float64 NumPy references.
"""

from __future__ import annotations

import numpy as np

from symrnn.network import parameter_shapes
from tests import numpy_reference as ref

WORD_DIM = 30
HIDDEN = 6
TUTORIAL_NAMES = ("E", "U", "W", "V", "b", "c")
#: The order of ``bptt``'s gradients in the tutorial: [dE, dU, dW, db, dV, dc].
TUTORIAL_BPTT_ORDER = ("E", "U", "W", "b", "V", "c")
NUMPY_GATES = {"hard_sigmoid": ref.hard_sigmoid, "sigmoid": ref.sigmoid}

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


class GateRecorder:
    """A NumPy gate that remembers its inputs, to check hard_sigmoid's kinks are far."""

    def __init__(self, fn=ref.hard_sigmoid):
        self.fn = fn
        self.inputs = []

    def __call__(self, v):
        self.inputs.append(np.ravel(v).copy())
        return self.fn(v)

    def distance_to_kinks(self) -> float:
        """Smallest distance of any gate input to +-2.5, where clip(0.2 v + 0.5, 0, 1) bends."""
        values = np.concatenate(self.inputs)
        return float(np.min(np.abs(np.abs(values) - 2.5)))


def random_tutorial_params(seed, word_dim=WORD_DIM, hidden=HIDDEN, scale=0.5, embedding=None):
    """Tutorial-layout parameters with every entry random (b and c too), small enough
    that hard_sigmoid's inputs stay far from its kinks."""
    rng = np.random.default_rng(seed)
    dim = embedding or hidden
    params = {
        "E": rng.uniform(-scale, scale, (dim, word_dim)),
        "U": rng.uniform(-scale, scale, (3 if embedding else 6, hidden, hidden)),
        "W": rng.uniform(-scale, scale, (6, hidden, hidden)),
        "V": rng.uniform(-3 * scale, 3 * scale, (word_dim, hidden)),
        "b": rng.uniform(-scale, scale, (6, hidden)),
        "c": rng.uniform(-scale, scale, word_dim),
    }
    if embedding:
        params["U_in"] = rng.uniform(-scale, scale, (3, hidden, embedding))
    return params


def tutorial_args(params):
    return [params[name] for name in TUTORIAL_NAMES]


def tutorial_loss(params, x, y):
    return ref.tutorial_gru_loss(tutorial_args(params), x, y, U_in=params.get("U_in"))


def assert_tutorial_gates_far_from_kinks(params, sentences, margin=0.05):
    recorder = GateRecorder()
    for x, _ in sentences:
        ref.tutorial_gru_forward(*tutorial_args(params), x, U_in=params.get("U_in"), gate=recorder)
    assert recorder.distance_to_kinks() > margin


def finite_difference_gradients(loss, params, names=None, eps=1e-6):
    """Central differences of ``loss(params)`` with respect to ``params[name]`` for each name."""
    work = {name: np.array(value, dtype=np.float64) for name, value in params.items()}
    return {
        name: ref.numerical_gradient(lambda: loss(work), work[name], eps=eps)
        for name in (names or list(work))
    }


def set_tutorial_values(model, params):
    """Give a GRUTheano these parameter values and fresh (zero) RMSprop caches."""
    for name, value in params.items():
        getattr(model, name).set_value(np.array(value, dtype=model.dtype))
    for cache in model.optimizer_state.values():
        cache.set_value(np.zeros_like(cache.get_value()))


def tutorial_values(model):
    return {p.name: p.get_value() for p in model.params}


def bptt_by_name(model, x, y):
    """``model.bptt`` keyed by parameter name, whichever of the two orders it returns
    (the order itself is pinned by its own test)."""
    grads = model.bptt(x, y)
    names = [p.name for p in model.params]
    if model.U_in is None and grads[3].shape == model.b.get_value().shape:
        names = list(TUTORIAL_BPTT_ORDER)
    return dict(zip(names, grads))


def make_sentences(seed, lengths, word_dim=WORD_DIM):
    rng = np.random.default_rng(seed)
    out = []
    for n in lengths:
        ids = rng.integers(0, word_dim, n + 1).astype(np.int32)
        out.append((ids[:-1], ids[1:]))
    return out


def reset_library(model, values):
    model.set_values(values)
    for state in model.optimizer_state.values():
        state.set_value(np.zeros_like(state.get_value()))


def column(a):
    return np.asarray(a, dtype=np.int32)[:, None]


# Tutorial-layout values and sentences shared by the GRUTheano tests.
PARAMS = random_tutorial_params(1)
SENTENCES = make_sentences(2, [6, 2, 4, 7, 3])
ONE_WORD = (np.array([5], dtype=np.int32), np.array([9], dtype=np.int32))
# A word id repeated in a sentence (its embedding gradient sums over both uses).
SENTENCES[0] = (np.array([3, 3, 7, 3, 9, 3], dtype=np.int32), np.array([3, 7, 3, 9, 3, 12], dtype=np.int32))

V_SMALL, D_SMALL, H_SMALL = 7, 3, 3
LENGTHS = [5, 2, 4, 1]  # sentences of different lengths in one padded batch


def padded_batch(seed, lengths=LENGTHS, word_dim=V_SMALL):
    """ids, targets (T, B) int32 with random junk in the padding, and the mask (T, B) float64."""
    rng = np.random.default_rng(seed)
    T, B = max(lengths), len(lengths)
    ids = rng.integers(0, word_dim, (T, B)).astype(np.int32)
    targets = rng.integers(0, word_dim, (T, B)).astype(np.int32)
    mask = (np.arange(T)[:, None] < np.asarray(lengths)[None, :]).astype(np.float64)
    return ids, targets, mask


def small_values(cell, num_layers, seed, scale=0.4):
    """Random values (biases included) for a small library model."""
    rng = np.random.default_rng(seed)
    shapes = parameter_shapes(V_SMALL, D_SMALL, H_SMALL, num_layers, cell)
    return {name: rng.uniform(-scale, scale, shape) * (3 if name == "output/W" else 1) for name, shape in shapes.items()}


def reference_loss(values, ids, targets, mask, cell, gate, num_layers):
    logits = ref.library_forward(values, ids, mask, cell, gate, num_layers)
    return ref.masked_nll(logits, targets, mask)
