"""Build a :class:`~models.language_model.RNNLanguageModel` from any model file symrnn reads.

* a symrnn checkpoint: its settings give the architecture, its parameters the values;
* the tutorial's part-4 GRU file (E, U, W, V, b, c): converted with
  :func:`models.gru.tutorial_to_library`;
* the tutorial's part-2 RNN file (U, V, W): the vanilla RNN
  ``s_t = tanh(U[:, x_t] + W s_{t-1})``, ``o_t = softmax(V s_t)`` is the library's
  one-layer ``rnn`` with ``embedding = U.T``, ``W_x`` = identity, ``W_h = W.T``,
  ``output/W = V.T`` and zero biases.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from symrnn.checkpoint import Checkpoint
from symrnn.errors import CheckpointError
from models.gru import tutorial_to_library
from models.language_model import RNNLanguageModel
from symrnn.network import parameter_shapes

__all__ = ["ARCHITECTURE_KEYS", "model_from_checkpoint", "part2_to_library"]

ARCHITECTURE_KEYS = ("word_dim", "embedding_dim", "hidden_dim", "num_layers", "cell", "gate")


def part2_to_library(U, V, W) -> "OrderedDict[str, np.ndarray]":
    """Library-named values of the tutorial's part-2 RNN (U (H, V), V (V, H), W (H, H))."""
    hidden = W.shape[0]
    return OrderedDict(
        [
            ("embedding", np.ascontiguousarray(U.T)),
            ("layer0/W_x", np.eye(hidden, dtype=U.dtype)),
            ("layer0/W_h", np.ascontiguousarray(W.T)),
            ("layer0/b", np.zeros(hidden, dtype=U.dtype)),
            ("output/W", np.ascontiguousarray(V.T)),
            ("output/b", np.zeros(V.shape[0], dtype=U.dtype)),
        ]
    )


def model_from_checkpoint(checkpoint: Checkpoint, **model_options) -> RNNLanguageModel:
    """A model holding a checkpoint's parameter values.

    Parameters
    ----------
    checkpoint : symrnn.checkpoint.Checkpoint
    **model_options
        Passed to :class:`RNNLanguageModel` (``dtype``, ``backend``, ``dropout``, ...).

    Raises
    ------
    CheckpointError
        The settings do not describe a model, or the parameters do not fit it.
    """
    path = checkpoint.path
    if checkpoint.layout == "tutorial-gru":
        values = tutorial_to_library(**checkpoint.params)
        arch = dict(word_dim=checkpoint.params["E"].shape[1], embedding_dim=checkpoint.params["E"].shape[0],
                    hidden_dim=checkpoint.params["W"].shape[1], num_layers=2, cell="gru", gate="hard_sigmoid")
    elif checkpoint.layout == "tutorial-rnn":
        values = part2_to_library(**checkpoint.params)
        hidden, words = checkpoint.params["U"].shape
        arch = dict(word_dim=words, embedding_dim=hidden, hidden_dim=hidden, num_layers=1, cell="rnn", gate="hard_sigmoid")
    else:
        missing = [key for key in ARCHITECTURE_KEYS if key not in checkpoint.settings]
        if missing:
            raise CheckpointError(f"{path}: its settings lack {', '.join(missing)}; the file was not written by symrnn's train.py")
        arch = {key: checkpoint.settings[key] for key in ARCHITECTURE_KEYS}
        values = checkpoint.params
        try:
            expected = parameter_shapes(arch["word_dim"], arch["embedding_dim"], arch["hidden_dim"], arch["num_layers"], arch["cell"])
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: its settings describe no known model ({exc})") from None
        problems = [
            f"{name} {values[name].shape if name in values else 'missing'} (expected {shape})"
            for name, shape in expected.items()
            if name not in values or values[name].shape != shape
        ]
        extra = sorted(set(values) - set(expected))
        if problems or extra:
            detail = "; ".join(problems + [f"unexpected parameter {name}" for name in extra])
            raise CheckpointError(f"{path}: parameters do not match its settings: {detail}")
    try:
        return RNNLanguageModel(**arch, initial_values=values, **model_options)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
