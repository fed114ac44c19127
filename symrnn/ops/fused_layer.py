r"""What the fused recurrent layer Ops share: the Op skeletons and the gate convention.

A fused layer Op (:mod:`symrnn.ops.gru`, :mod:`symrnn.ops.lstm`,
:mod:`symrnn.ops.rnn`) runs one recurrent layer over all T time steps of a
padded, time-major batch in one ``perform`` (a Numba kernel loops over time,
its matrix products through BLAS: :mod:`symrnn.ops.gru_kernels`,
:mod:`symrnn.ops.lstm_kernels`, :mod:`symrnn.ops.rnn_kernels`), and its
gradient is again one Op. The cells differ in
their equations only; the graph side is the same for all of them:

* forward Op inputs ``projected (T, B, kH), mask (T, B), *initial_states (B, H),
  W_h (H, kH)`` (``k`` gate blocks, ``n`` states: 1, or 2 for the LSTM's
  ``h, c``); outputs the ``n`` state sequences (T, B, H) and ``acts``
  (T, B, kH), the activations the backward pass needs (not differentiable);
* gradient Op inputs ``mask, *initial_states, W_h, *state_sequences, acts,
  *state_gradients``; outputs ``d_projected`` (T, B, kH), the gradients of the
  ``n`` initial states and ``d_W_h``.

Padded steps (``mask == 0``) carry every state through unchanged: with
``m = mask[t][:, None]`` a state becomes ``m * new + (1 - m) * old``.

Batch rows are independent through time: a large enough pass
(:meth:`FusedLayer.row_bounds`) runs in row blocks, one per thread of the
kernels' pool (:func:`symrnn.ops.kernels.thread_count`), each block's whole
loop over time on its own thread, every kernel writing its rows of the
shared output arrays in place; ``d_W_h`` is then summed over the blocks, or
computed once from the whole arrays (:meth:`FusedLayerGrad.weight_gradient`).
:class:`FusedLayer` and :class:`FusedLayerGrad` hold the graph side and run
the row blocks; a cell's Op supplies ``forward_rows`` and ``backward_rows``,
its kernels over a block of rows.

Gates
-----
``gate="hard_sigmoid"`` is ``clip(0.2 v + 0.5, 0, 1)`` (the WildML
tutorial's), ``gate="sigmoid"`` the logistic function. For the hard sigmoid
the forward pass keeps the unclipped ``u = 0.2 v + 0.5`` in ``acts``. Its
derivative follows PyTensor's ``clip`` gradient: 0.2 where ``0 <= u <= 1``
(boundaries included), else 0.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import grad_not_implemented, grad_undefined
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.tensor.type import TensorType

from symrnn.ops import kernels
from symrnn.ops.background_compile import compile_in_background
from symrnn.ops.checks import FLOAT_DTYPES, as_float_tensor, first_known, is_disconnected, same_dtype

__all__ = [
    "CellLayout",
    "GATES",
    "FusedLayer",
    "FusedLayerGrad",
    "apply_fused_layer",
    "check_gate",
    "check_layer_shapes",
    "kernel_operands",
    "previous_states",
    "row_blocks",
    "transposed_weights",
]

GATES = ("hard_sigmoid", "sigmoid")

# A layer runs in row blocks on threads when its batch has at least twice
# _MIN_BLOCK_ROWS rows and a step's recurrent product at least the cell's
# row_block_work multiply-adds (B * H * kH). Measured on an AMD EPYC, 2 cores
# (SciPy's OpenBLAS 0.3.30, SkylakeX kernels, 1 thread per block), a layer's
# forward and backward, one block -> two: GRU T=20 H=128 B=32 1.44 -> 0.93 ms,
# B=64 2.40 -> 1.59 ms; LSTM T=20 B=64 H=128 2.76 -> 2.46 ms, T=50 B=50 H=512
# 89.7 -> 67.1 ms; the RNN's lighter steps only at large sizes: T=50 B=50
# H=512 21.7 -> 16.5 ms, but B=64 H=128 0.78 -> 0.98 ms, B=64 H=256 equal.
# And a whole pass of at least row_block_layer_work (T * B * H * kH): handing
# the blocks to the pool costs 20 to 60 us a pass, so a generated token (T=1)
# was slower in blocks (GRU forward B=64 H=128: 51 us in one block, 90 us in
# two; Haswell kernels 79 and 107 us); from about 2^23 they pay (GRU T=4 B=64:
# forward 184 -> 165 us, backward 311 -> 263 us). The LSTM's backward pays
# later, from about 2^26 (its d_W_h is one product after the blocks: T=8 B=64
# H=128 744 us in one block, 897 us in two; T=20 1873 -> 1800 us).
_MIN_BLOCK_ROWS = 16


def check_gate(gate):
    """``gate`` if it is one of :data:`GATES`, else ValueError."""
    if gate not in GATES:
        raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
    return gate


class CellLayout:
    """What a cell's forward and gradient Ops both declare.

    ``cell`` (name used in messages), ``blocks`` (k, gate blocks of ``W_h``)
    and ``initial_names`` (one name per state, e.g. ``("h0", "c0")``);
    ``row_block_work`` and ``row_block_layer_work`` for :meth:`row_bounds`.
    """

    cell = ""
    blocks = 1
    initial_names = ("h0",)
    #: Multiply-adds of a step's recurrent product (B * H * kH) from which row blocks on threads pay.
    row_block_work = 1 << 20
    #: And of the whole pass (T * B * H * kH): handing a block to a thread costs tens of microseconds.
    row_block_layer_work = 1 << 23

    @property
    def n_states(self):
        return len(self.initial_names)

    def row_bounds(self, T, B, H):
        """Bounds of the row blocks of a pass over T steps of B rows, hidden size H.

        :func:`row_blocks`, or one block ``[0, B]`` where a step's product is
        under ``row_block_work`` or the whole pass's under ``row_block_layer_work``.
        """
        step_work = B * H * self.blocks * H
        if step_work < self.row_block_work or T * step_work < self.row_block_layer_work:
            return [0, B]
        return row_blocks(B)


class FusedLayer(CellLayout, Op):
    """Base of the forward Ops: one recurrent layer over all time steps.

    Subclasses set ``cell``, ``blocks`` and ``initial_names`` (:class:`CellLayout`)
    and define ``grad_op()``, the matching :class:`FusedLayerGrad`, and
    ``forward_rows(projected, mask, initial_states, W_h, state_sequences, acts,
    start, stop)``, which runs their kernel for the batch rows ``start:stop``
    over C-contiguous NumPy arrays, writing those rows of the outputs
    ``state_sequences`` (T, B, H) and ``acts`` (T, B, kH).
    """

    def make_node(self, projected, mask, *initial_and_W_h):
        if len(initial_and_W_h) != self.n_states + 1:
            raise TypeError(f"{type(self).__name__} takes projected, mask, {', '.join(self.initial_names)}, W_h")
        *initial, W_h = initial_and_W_h
        projected = as_float_tensor(projected, "projected", 3)
        mask = as_float_tensor(mask, "mask", 2)
        initial = [as_float_tensor(s, name, 2) for s, name in zip(initial, self.initial_names)]
        W_h = as_float_tensor(W_h, "W_h", 2)
        named = {"projected": projected, "mask": mask, **dict(zip(self.initial_names, initial)), "W_h": W_h}
        dtype = same_dtype(named)
        T, B, KH = projected.type.shape
        H = first_known(W_h.type.shape[0], *(s.type.shape[1] for s in initial), None if KH is None else KH // self.blocks)
        B = first_known(B, *(s.type.shape[0] for s in initial), mask.type.shape[1])
        T = first_known(T, mask.type.shape[0])
        states = [TensorType(dtype, shape=(T, B, H))() for _ in initial]
        acts = TensorType(dtype, shape=(T, B, None if H is None else self.blocks * H))()
        # Numba compiles the layer's kernels in the background while the graph
        # is built, rewritten and C-compiled, instead of at the first step.
        compile_in_background((type(self).__name__, dtype), lambda: self.warm_up(dtype))
        return Apply(self, [projected, mask, *initial, W_h], [*states, acts])

    def warm_up(self, dtype):
        """Run the forward and the backward pass once on tiny arrays of ``dtype`` (compiles their kernels)."""
        T, B, H = 2, 1, 2
        initial = [np.zeros((B, H), dtype=dtype) for _ in self.initial_names]
        W_h = np.zeros((H, self.blocks * H), dtype=dtype)
        mask = np.ones((T, B), dtype=dtype)
        states, acts = self.forward(np.zeros((T, B, self.blocks * H), dtype=dtype), mask, initial, W_h)
        self.grad_op().gradients(mask, initial, W_h, states, acts, [np.zeros_like(s) for s in states])

    def infer_shape(self, fgraph, node, input_shapes):
        p_shape, w_shape = input_shapes[0], input_shapes[-1]
        state_shape = (p_shape[0], p_shape[1], w_shape[0])
        return [state_shape] * self.n_states + [(p_shape[0], p_shape[1], self.blocks * w_shape[0])]

    def forward(self, projected, mask, initial, W_h):
        """``(state_sequences, acts)`` of the layer over NumPy arrays, in row blocks on threads where that pays."""
        T, B, KH = projected.shape
        H = W_h.shape[0]
        projected, mask, W_h, *initial = kernel_operands(projected, mask, W_h, *initial)
        states = [np.empty((T, B, H), dtype=projected.dtype) for _ in initial]
        acts = np.empty((T, B, KH), dtype=projected.dtype)
        kernels.on_row_blocks(lambda a, b: self.forward_rows(projected, mask, initial, W_h, states, acts, a, b),
                              self.row_bounds(T, B, H))
        return states, acts

    def perform(self, node, inputs, output_storage):
        projected, mask, *initial, W_h = inputs
        check_layer_shapes(self.cell, self.blocks, projected, mask, initial, W_h)
        states, acts = self.forward(projected, mask, initial, W_h)
        for storage, value in zip(output_storage, [*states, acts]):
            storage[0] = value

    def pullback(self, inputs, outputs, cotangents):
        n = self.n_states
        projected, mask, *initial, W_h = inputs
        states, g_states, g_acts = outputs[:n], cotangents[:n], cotangents[n]
        if not is_disconnected(g_acts):
            message = f"the activations output of {type(self).__name__} is not differentiable"
            return [grad_not_implemented(self, i, x, message) for i, x in enumerate(inputs)]
        g_states = [
            pt.zeros_like(s) if is_disconnected(g) else (g if g.type.dtype == s.type.dtype else pt.cast(g, s.type.dtype))
            for s, g in zip(states, g_states)
        ]
        d_projected, *d_initial, d_W_h = self.grad_op()(mask, *initial, W_h, *states, outputs[n], *g_states)
        no_mask_grad = grad_undefined(self, 1, mask, "mask is data (1 on tokens, 0 on padding); it has no gradient")
        return [d_projected, no_mask_grad, *d_initial, d_W_h]


class FusedLayerGrad(CellLayout, Op):
    """Base of the gradient Ops (backpropagation through time of a :class:`FusedLayer`).

    Subclasses set ``cell``, ``blocks`` and ``initial_names`` as the forward
    Op and define ``backward_rows(mask, initial_states, weights,
    state_sequences, acts, state_gradients, d_projected, d_initial_states,
    d_W_h, start, stop)``, which runs their kernel for the batch rows
    ``start:stop`` (T >= 1) over C-contiguous NumPy arrays, writing those
    rows of ``d_projected`` (T, B, kH) and of each of ``d_initial_states``
    (B, H). ``weights`` is :meth:`backward_weights` of ``W_h``, made once for
    all row blocks. With ``weights_in_kernel`` the kernel also writes
    ``d_W_h`` (H, kH), the sum over its rows; else ``d_W_h`` is None and
    :meth:`weight_gradient` makes it once for all rows.
    """

    weights_in_kernel = False

    def backward_weights(self, W_h):
        """``W_h`` as the cell's ``backward_rows`` reads it: by default ``W_h`` itself."""
        return W_h

    def _split(self, inputs):
        n = self.n_states
        mask, initial, W_h = inputs[0], list(inputs[1 : 1 + n]), inputs[1 + n]
        states, acts, g_states = list(inputs[2 + n : 2 + 2 * n]), inputs[2 + 2 * n], list(inputs[3 + 2 * n :])
        return mask, initial, W_h, states, acts, g_states

    def make_node(self, *inputs):
        n = self.n_states
        if len(inputs) != 3 * n + 3:
            raise TypeError(f"{type(self).__name__} takes {3 * n + 3} inputs, got {len(inputs)}")
        mask, initial, W_h, states, acts, g_states = self._split(inputs)
        mask = as_float_tensor(mask, "mask", 2)
        initial = [as_float_tensor(s, name, 2) for s, name in zip(initial, self.initial_names)]
        W_h = as_float_tensor(W_h, "W_h", 2)
        states = [as_float_tensor(s, f"state sequence {i}", 3) for i, s in enumerate(states)]
        acts = as_float_tensor(acts, "acts", 3)
        g_states = [as_float_tensor(g, f"gradient of state sequence {i}", 3) for i, g in enumerate(g_states)]
        inputs = [mask, *initial, W_h, *states, acts, *g_states]
        same_dtype({f"input {i}": x for i, x in enumerate(inputs)})
        return Apply(self, inputs, [acts.type(), *(s.type() for s in initial), W_h.type()])

    def infer_shape(self, fgraph, node, input_shapes):
        mask, initial, W_h, _, acts, _ = self._split(input_shapes)
        return [acts, *initial, W_h]

    def perform(self, node, inputs, output_storage):
        mask, initial, W_h, states, acts, g_states = self._split(inputs)
        check_layer_shapes(self.cell, self.blocks, acts, mask, initial, W_h)
        T, B, _ = acts.shape
        if any(a.shape != (T, B, W_h.shape[0]) for a in (*states, *g_states)):
            shapes = ", ".join(str(a.shape) for a in (*states, *g_states))
            raise ValueError(f"{type(self).__name__}: state and gradient shapes {shapes} disagree with acts {acts.shape}")
        if T == 0:
            grads = (np.empty_like(acts), [np.zeros_like(s) for s in initial], np.zeros_like(W_h))
        else:
            grads = self.gradients(mask, initial, W_h, states, acts, g_states)
        d_projected, d_initial, d_W_h = grads
        for storage, value in zip(output_storage, [d_projected, *d_initial, d_W_h]):
            storage[0] = value

    def gradients(self, mask, initial, W_h, states, acts, g_states):
        """``(d_projected, d_initial_states, d_W_h)`` over NumPy arrays (T >= 1), in row blocks on threads where that pays."""
        T, B, _ = acts.shape
        H = W_h.shape[0]
        n = self.n_states
        mask, W_h, acts, *rest = kernel_operands(mask, W_h, acts, *initial, *states, *g_states)
        initial, states, g_states = rest[:n], rest[n : 2 * n], rest[2 * n :]
        d_projected = np.empty_like(acts)
        d_initial = [np.empty((B, H), dtype=acts.dtype) for _ in range(n)]
        bounds = self.row_bounds(T, B, H)
        d_W_h = {start: np.empty_like(W_h) if self.weights_in_kernel else None for start in bounds[:-1]}
        weights = self.backward_weights(W_h)
        kernels.on_row_blocks(lambda a, b: self.backward_rows(
            mask, initial, weights, states, acts, g_states, d_projected, d_initial, d_W_h[a], a, b), bounds)
        if not self.weights_in_kernel:
            return d_projected, d_initial, self.weight_gradient(initial, states, d_projected)
        total, *others = d_W_h.values()
        for part in others:
            total += part
        return d_projected, d_initial, total

    def weight_gradient(self, initial, states, d_projected):
        """``d_W_h = h_prev.T @ d_projected`` summed over t and B, ``h`` the first state (its sequence (T, B, H)).

        One product on NumPy's BLAS (all its threads), made once for all row
        blocks: the blocks' threads calling it at once were several times slower.
        """
        hs = states[0]
        T, B, H = hs.shape
        # np.dot, not matmul: NumPy's matmul is slow for T * B == 1
        return np.dot(previous_states(initial[0], hs).reshape(T * B, H).T, d_projected.reshape(T * B, -1))

    def pullback(self, inputs, outputs, cotangents):
        message = f"second derivatives of the fused {self.cell} are not implemented"
        return [grad_not_implemented(self, i, x, message) for i, x in enumerate(inputs)]


def row_blocks(B):
    """Bounds ``[0, ..., B]`` of a batch's row blocks: one per kernel thread, each at least ``_MIN_BLOCK_ROWS`` rows."""
    return kernels.thread_blocks(B, _MIN_BLOCK_ROWS)


def check_layer_shapes(cell, blocks, projected, mask, initial, W_h):
    """ValueError unless projected (T, B, kH), mask (T, B), each state (B, H), W_h (H, kH) agree."""
    T, B, KH = projected.shape
    H = W_h.shape[0]
    k = "" if blocks == 1 else str(blocks)
    if W_h.shape != (H, blocks * H) or KH != blocks * H or mask.shape != (T, B) or any(s.shape != (B, H) for s in initial):
        states = ", ".join(f"initial state {s.shape}" for s in initial)
        raise ValueError(
            f"fused {cell} shapes disagree: expected projected (T, B, {k}H), mask (T, B), initial states (B, H), "
            f"W_h (H, {k}H); got projected {projected.shape}, mask {mask.shape}, {states}, W_h {W_h.shape}"
        )


def apply_fused_layer(op, projected, mask, initial_states, W_h):
    """``op(projected, mask, *initial_states, W_h)`` with ``mask`` cast to the dtype of ``projected``.

    Returns
    -------
    list of TensorVariable (T, B, H): the state sequences (``acts`` dropped).
    """
    projected = pt.as_tensor_variable(projected)
    mask = pt.as_tensor_variable(mask)
    if projected.type.dtype in FLOAT_DTYPES and mask.type.dtype != projected.type.dtype:
        mask = pt.cast(mask, projected.type.dtype)
    return op(projected, mask, *initial_states, W_h)[: op.n_states]


def kernel_operands(*arrays):
    """The arrays as writeable C-contiguous arrays (a copy only of those that are not), for the Numba kernels.

    The kernels then see one array type per dtype and compile once for it;
    PyTensor may hand ``perform`` strided views or read-only constants.
    """
    return [a if a.flags.c_contiguous and a.flags.writeable else np.array(a, order="C") for a in arrays]


def transposed_weights(W_h):
    """``W_h.T`` (kH, H) as a C-contiguous copy, for a backward kernel's ``dv @ W_h.T`` per step.

    BLAS reads the copy faster than the transposed view of ``W_h`` at few
    rows a call, and never slower in the measured shapes (docs/performance.md).
    """
    return np.ascontiguousarray(W_h.T)


def previous_states(initial, states):
    """The state before every step: ``[initial, states[0], ..., states[T-2]]``, shape (T, B, H)."""
    prev = np.empty_like(states)
    prev[0] = initial
    prev[1:] = states[:-1]
    return prev
