"""Fused PyTensor Ops that replace slow generic graphs on the CPU.

PyTensor's ``scan`` is slow on CPU, above all its gradient, and
``pytensor.tensor.special.log_softmax`` runs as a Python Op under the C-VM
linker. The Ops here compute the same things in Numba kernels (and NumPy for
float64 where speed does not matter) called from their ``perform`` methods, and their gradients are again fused Ops. Tests check each
against the plain graph (``scan``, ``log_softmax``) and float64 NumPy.

Modules
-------
:mod:`symrnn.ops.gru`, :mod:`symrnn.ops.lstm`, :mod:`symrnn.ops.rnn`
    :func:`~symrnn.ops.gru.fused_gru`, :func:`~symrnn.ops.lstm.fused_lstm`,
    :func:`~symrnn.ops.rnn.fused_rnn`: a whole recurrent layer over all time
    steps, with padding mask and differentiable initial states (Ops
    ``FusedGRU``/``FusedGRUGrad``, ``FusedLSTM``/``FusedLSTMGrad``,
    ``FusedRNN``/``FusedRNNGrad``); used by :mod:`symrnn.recurrence`.
:mod:`symrnn.ops.fused_layer`
    What those Ops share: the graph side (``make_node``, shapes, gradient
    wiring) of a layer Op and its gradient Op.
:mod:`symrnn.ops.output_layer`
    :func:`~symrnn.ops.output_layer.output_layer_nll`: ``hidden @ W + b``, its
    softmax and the masked summed cross-entropy in one Op whose backward pass
    is two matrix products (Op ``OutputLayerNLL``); used by :mod:`symrnn.losses`.
:mod:`symrnn.ops.kernels`
    The Numba kernels of the output layer's float32 softmax (NumPy and Numba
    only, no PyTensor).
:mod:`symrnn.ops.sampling_kernels`
    The Numba sampler of :mod:`symrnn.sampling` (inverse CDF, one draw per row).
:mod:`symrnn.ops.update_steps`
    One RMSprop step per parameter and the squared norm of a gradient, each
    one Numba pass (used by :mod:`symrnn.updates` with ``fused=True``).
:mod:`symrnn.ops.cell_math`
    float32 ``tanh`` and ``sigmoid`` that vectorise inside Numba loops.
:mod:`symrnn.ops.gru_kernels`
    The fused GRU layer's forward and backward loops over time as Numba
    kernels (NumPy and Numba only), with their BLAS matrix products.
:mod:`symrnn.ops.lstm_kernels`, :mod:`symrnn.ops.rnn_kernels`
    The Numba kernels of the fused LSTM and RNN layers (NumPy and Numba only):
    all time steps of a layer's forward or backward pass in one call.
:mod:`symrnn.ops.background_compile`
    Numba compilation on a background thread, started from the Ops' ``make_node``.
:mod:`symrnn.ops.checks`
    Input checks the Ops share.

Import the modules themselves; this package re-exports nothing.
"""
