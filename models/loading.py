"""Build a :class:`~models.language_model.RNNLanguageModel` from any model file symrnn reads.

* a symrnn checkpoint: its settings give the architecture, its parameters the values;
* the tutorial's part-4 GRU file (E, U, W, V, b, c) and part-2 RNN file (U, V, W):
  :func:`symrnn.legacy.library_model` gives the architecture (a two-layer ``gru``,
  a one-layer ``rnn``) and the converted values.
"""

from __future__ import annotations

from symrnn.checkpoint import Checkpoint
from symrnn.errors import CheckpointError
from symrnn.legacy import library_model
from symrnn.network import parameter_shapes

from models.language_model import RNNLanguageModel

__all__ = ["ARCHITECTURE_KEYS", "model_from_checkpoint"]

ARCHITECTURE_KEYS = ("word_dim", "embedding_dim", "hidden_dim", "num_layers", "cell", "gate")


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
    if checkpoint.layout != "symrnn":
        arch, values = library_model(checkpoint.layout, checkpoint.params)
    else:
        missing = [key for key in ARCHITECTURE_KEYS if key not in checkpoint.settings]
        if missing:
            raise CheckpointError(f"{path}: its settings lack {', '.join(missing)}; the file was not written by symrnn's train.py")
        arch = {key: checkpoint.settings[key] for key in ARCHITECTURE_KEYS}
        arch["tie_weights"] = bool(checkpoint.settings.get("tie_weights", 0))  # absent from older checkpoints
        values = checkpoint.params
        try:
            expected = parameter_shapes(arch["word_dim"], arch["embedding_dim"], arch["hidden_dim"], arch["num_layers"],
                                        arch["cell"], tie_weights=arch["tie_weights"])
        except (KeyError, TypeError, ValueError) as exc:
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
