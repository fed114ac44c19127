"""The non-recurrent parts of a model: each one matrix product over all steps.

Embedding lookup, input projection and output layer are computed for the whole
(T, B) batch at once, outside the recurrent loop.
"""

from __future__ import annotations

import pytensor.tensor as pt

__all__ = ["embed", "project"]


def embed(embedding, ids):
    """Look up word vectors.

    Parameters
    ----------
    embedding : TensorVariable (V, D)
        One row per word.
    ids : TensorVariable (T, B) int

    Returns
    -------
    TensorVariable (T, B, D)
    """
    flat = ids.flatten()
    # Gather one spare row and drop it: PyTensor 3.0's gradient of a one-row
    # gather (a batch holding a single token) fails its runtime broadcast check.
    rows = embedding[pt.concatenate([flat, flat[:1]])][:-1]
    return rows.reshape((ids.shape[0], ids.shape[1], embedding.shape[1]))


def project(inputs, W, b=None):
    """Affine map of every position with one matrix product.

    Parameters
    ----------
    inputs : TensorVariable (T, B, D_in)
    W : TensorVariable (D_in, D_out)
    b : TensorVariable (D_out,) or None

    Returns
    -------
    TensorVariable (T, B, D_out): ``inputs @ W + b``, computed as one
    (T*B, D_in) x (D_in, D_out) product.
    """
    steps, batch = inputs.shape[0], inputs.shape[1]
    flat = pt.dot(inputs.reshape((steps * batch, inputs.shape[2])), W)
    if b is not None:
        flat = flat + b
    return flat.reshape((steps, batch, W.shape[1]))
