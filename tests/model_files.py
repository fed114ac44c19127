"""Model files for the tests of symrnn.npz, symrnn.legacy and symrnn.checkpoint, and the check that a bad one fails cleanly."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from symrnn.checkpoint import load_checkpoint, save_checkpoint
from symrnn.errors import CheckpointError

VOCABULARY = ["<MASK/>", "UNKNOWN_TOKEN", "SENTENCE_START", "SENTENCE_END", "the", "café", "naïve", "日本語", "Ωmega", ""]
HIDDEN = 4
WORDS = len(VOCABULARY)


def sample_params(dtype=np.float32, seed=0):
    """symrnn-named parameters of a small model (not a real architecture)."""
    rng = np.random.default_rng(seed)
    return {
        "E": rng.uniform(-1, 1, (HIDDEN, WORDS)).astype(dtype),
        "gru0/U": rng.uniform(-1, 1, (3, HIDDEN, HIDDEN)).astype(dtype),
        "W_x_0": rng.uniform(-1, 1, (HIDDEN, HIDDEN)).astype(dtype),
        "c": np.zeros(WORDS, dtype=dtype),
    }


def gru_arrays(hidden=HIDDEN, words=WORDS, dtype=np.float32, seed=1):
    """The tutorial's part 4 GRU arrays E, U, W, V, b, c."""
    rng = np.random.default_rng(seed)
    return {
        "E": rng.uniform(-1, 1, (hidden, words)).astype(dtype),
        "U": rng.uniform(-1, 1, (6, hidden, hidden)).astype(dtype),
        "W": rng.uniform(-1, 1, (6, hidden, hidden)).astype(dtype),
        "V": rng.uniform(-1, 1, (words, hidden)).astype(dtype),
        "b": np.zeros((6, hidden), dtype=dtype),
        "c": np.zeros(words, dtype=dtype),
    }


def rnn_arrays(hidden=3, words=7, dtype=np.float32):
    """The tutorial's part 2 RNN arrays U, V, W."""
    rng = np.random.default_rng(2)
    return {
        "U": rng.uniform(-1, 1, (hidden, words)).astype(dtype),
        "V": rng.uniform(-1, 1, (words, hidden)).astype(dtype),
        "W": rng.uniform(-1, 1, (hidden, hidden)).astype(dtype),
    }


def full_checkpoint(path, **overrides):
    """A symrnn checkpoint with every part: vocabulary, settings, optimizer and training state."""
    kwargs = dict(
        vocabulary=VOCABULARY,
        settings={"hidden_dim": HIDDEN, "word_dim": WORDS, "learning_rate": 0.001, "name": "modèle", "layers": [1, 2]},
        optimizer_state={"E/cache": np.ones((HIDDEN, WORDS), np.float32), "step": np.int64(7)},
        training_state={
            "epoch": np.array(3, dtype=np.int64),
            "position": np.array(1234, dtype=np.int64),
            "rng_state": np.array([2**64 - 1, 0, 12345, 99], dtype=np.uint64),
        },
    )
    kwargs.update(overrides)
    return save_checkpoint(path, sample_params(), **kwargs)


def write_savez(path, **arrays):
    """Write an .npz at exactly `path` the way a foreign tool would."""
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def assert_fails_and_unchanged(path, match=None, *, load=load_checkpoint, **load_kwargs):
    """Loading `path` (with `load`, by default :func:`load_checkpoint`) raises a one-line CheckpointError and changes nothing."""
    path = Path(path)
    before_bytes = path.read_bytes() if path.is_file() else None
    before_listing = sorted(os.listdir(path.parent))
    with pytest.raises(CheckpointError, match=match) as info:
        load(path, **load_kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    if before_bytes is not None:
        assert path.read_bytes() == before_bytes
    assert sorted(os.listdir(path.parent)) == before_listing
    return message
