r"""Masked cross-entropy loss computed from logits.

The loss of a batch is the tutorial's summed negative log-likelihood

.. math:: L = -\sum_{t, b} m_{t,b} \log \mathrm{softmax}(o_{t,b})[y_{t,b}]

computed stably from the logits :math:`o` (never by clipping probabilities);
padded positions (:math:`m = 0`) contribute nothing.
"""

from __future__ import annotations

import pytensor.tensor as pt
from pytensor.tensor.special import log_softmax

__all__ = ["LOSS_IMPLEMENTATIONS", "masked_nll"]

LOSS_IMPLEMENTATIONS = ("auto", "reference", "fused")


def _check_loss_implementation(implementation: str) -> None:
    if implementation not in LOSS_IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {LOSS_IMPLEMENTATIONS}, not {implementation!r}")


def masked_nll(hidden, W_out, b_out, targets, mask, implementation: str = "auto"):
    """Output layer and summed masked loss of a padded batch.

    Parameters
    ----------
    hidden : TensorVariable (T, B, H)
        Top layer's states.
    W_out : TensorVariable (H, V)
    b_out : TensorVariable (V,)
    targets : TensorVariable (T, B) int
    mask : TensorVariable (T, B) float
    implementation : ``"reference"`` (the ``log_softmax`` graph), ``"fused"``
        (:func:`symrnn.ops.output_layer.output_layer_nll`: product, softmax
        and loss in one Op whose backward pass is two matrix products) or
        ``"auto"`` (``"fused"``).

    Returns
    -------
    total : TensorVariable scalar
        Summed negative log-likelihood over real tokens.
    n_tokens : TensorVariable scalar
        Number of real tokens (sum of the mask).
    """
    _check_loss_implementation(implementation)
    steps, batch = hidden.shape[0], hidden.shape[1]
    flat_hidden = hidden.reshape((steps * batch, hidden.shape[2]))
    flat_targets = targets.reshape((steps * batch,))
    flat_mask = mask.reshape((steps * batch,))
    n_tokens = pt.sum(flat_mask)
    if implementation == "reference":
        log_probs = log_softmax(pt.dot(flat_hidden, W_out) + b_out, axis=-1)
        # take_along_axis rather than arange indexing: JAX needs static shapes.
        nll = -pt.take_along_axis(log_probs, flat_targets[:, None], axis=1)[:, 0]
        return pt.sum(nll * flat_mask), n_tokens
    from symrnn.ops.output_layer import output_layer_nll

    return output_layer_nll(flat_hidden, W_out, b_out, flat_targets, flat_mask), n_tokens
