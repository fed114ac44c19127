r"""The PyTorch peers' models: symrnn's network written by hand, and PyTorch's own recurrent layers.

Imported only by the PyTorch side (it imports torch). Every model holds the
embedding (V, D), the recurrent layers (as many as ``values`` has, two in the
benchmark's tables) and the output layer (H, V) + (V,),
starts from symrnn's parameter values and offers ``loss(ids, targets, mask)``
(the summed masked cross-entropy from log-softmax and the token count),
``output_loss(hidden, targets, mask)`` and ``step(ids, states)`` (one
generation step); :class:`NativeLanguageModel` also ``stream_loss(ids,
targets, states)`` (a window of stream training, from carried states).

:class:`HandWrittenLanguageModel` has symrnn's parameter layout and equations
(:mod:`symrnn.cells`): per layer ``W_x`` (in, k*H), ``W_h`` (H, k*H), ``b``
(k*H,), gate blocks ``[z | r | c]`` (GRU), ``[i | f | o | g]`` (LSTM),
``[candidate]`` (RNN); the time loop runs in Python, padded steps keep the
state. With ``compiled=True`` the per-step cell and the output layer with its
loss go through :func:`torch.compile`; the loop stays in Python, because
compiling it would unroll every time step and recompile for every sentence
length.

:class:`NativeLanguageModel` uses ``nn.GRU`` / ``nn.LSTM`` / ``nn.RNN``
(one module of two layers; on a CPU ``nn.LSTM`` runs oneDNN's kernels, the
other two ATen's C++ time loop), logistic-sigmoid gates, the hidden-to-hidden
biases held at zero (not trained), so that the trainable parameters are
symrnn's. ``nn.RNN`` is then exactly symrnn's RNN and ``nn.LSTM`` symrnn's
LSTM with sigmoid gates (blocks reordered to PyTorch's ``[i | f | g | o]``);
``nn.GRU`` resets after the recurrent product, ``tanh(W_in x + b_in + r *
(W_hn h))``, where the tutorial resets before it, ``tanh(U x + W (r * h))``:
a peer of the same size, not of the same function. It runs over padded steps
unmasked: padding is at the end of each sentence and masked out of the loss,
so the real tokens' losses and every gradient are those of the masked model.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.workload import layer_count

__all__ = ["CELL_BLOCKS", "HandWrittenLanguageModel", "NativeLanguageModel"]

#: Gate blocks per cell (k of the parameter shapes) and states carried per layer.
CELL_BLOCKS = {"gru": 3, "lstm": 4, "rnn": 1}
_STATES = {"gru": 1, "lstm": 2, "rnn": 1}


def hard_sigmoid(x):
    """clip(0.2 x + 0.5, 0, 1), Theano's and symrnn's hard sigmoid."""
    return torch.clamp(x * 0.2 + 0.5, 0.0, 1.0)


GATES = {"hard_sigmoid": hard_sigmoid, "sigmoid": torch.sigmoid}


def gru_cell(a_t, h, W_h, gate):
    """symrnn.cells.gru_step: a_t (B, 3H) input projection, h (B, H) -> (h,)."""
    H = h.shape[1]
    zr = gate(torch.addmm(a_t[:, : 2 * H], h, W_h[:, : 2 * H]))
    z, r = zr[:, :H], zr[:, H:]
    c = torch.tanh(torch.addmm(a_t[:, 2 * H :], r * h, W_h[:, 2 * H :]))
    return ((1.0 - z) * c + z * h,)


def lstm_cell(a_t, h, c, W_h, gate):
    """symrnn.cells.lstm_step: a_t (B, 4H), h and c (B, H) -> (h, c)."""
    H = h.shape[1]
    pre = torch.addmm(a_t, h, W_h)
    ifo = gate(pre[:, : 3 * H])
    i, f, o = ifo[:, :H], ifo[:, H : 2 * H], ifo[:, 2 * H :]
    c = f * c + i * torch.tanh(pre[:, 3 * H :])
    return o * torch.tanh(c), c


def rnn_cell(a_t, h, W_h, gate):
    """symrnn.cells.rnn_step: tanh(a_t + h W_h), a_t and h (B, H) -> (h,)."""
    return (torch.tanh(torch.addmm(a_t, h, W_h)),)


CELL_STEPS = {"gru": gru_cell, "lstm": lstm_cell, "rnn": rnn_cell}


def masked_nll(logits, targets, mask):
    """Summed cross-entropy of the real tokens: logits (N, V), targets (N,), mask (N,)."""
    return (F.cross_entropy(logits, targets, reduction="none") * mask).sum()


def _tensor(values, name):
    """A parameter value as a tensor of its own dtype (float32 in the benchmark, float64 in tests)."""
    return torch.tensor(np.asarray(values[name]))


class _LanguageModel(nn.Module):
    """What both models share: embedding, output layer, the loss."""

    def __init__(self, values, cell):
        super().__init__()
        self.cell_name = cell
        self.embedding = nn.Parameter(_tensor(values, "embedding"))
        self.W_out = nn.Parameter(_tensor(values, "output/W"))
        self.b_out = nn.Parameter(_tensor(values, "output/b"))
        self.hidden = self.W_out.shape[0]
        self.num_layers = layer_count(values)
        self._output_nll = masked_nll

    def output_loss(self, hidden, targets, mask):
        """Summed masked cross-entropy of the output layer: hidden (N, H), targets and mask (N,)."""
        return self._output_nll(torch.addmm(self.b_out, hidden, self.W_out), targets, mask)

    def loss(self, ids, targets, mask):
        """Summed masked cross-entropy of a padded batch (T, B) and its token count."""
        T, B = ids.shape
        hidden = self.forward(ids, mask)
        return self.output_loss(hidden.reshape(T * B, -1), targets.reshape(-1), mask.reshape(-1)), mask.sum()

    def initial_states(self, batch, device):
        """Zero states, ``num_layers * states-per-layer`` of (B, H), in symrnn's order (an LSTM layer: h, then c)."""
        return [torch.zeros(batch, self.hidden, dtype=self.W_out.dtype, device=device)
                for _ in range(self.num_layers * _STATES[self.cell_name])]


class HandWrittenLanguageModel(_LanguageModel):
    """symrnn's model in eager PyTorch (symrnn's layout), optionally with torch.compile'd pieces.

    Parameters
    ----------
    values : mapping name -> array, symrnn's parameter names and shapes
    cell : ``"gru"``, ``"lstm"`` or ``"rnn"``
    gate : ``"hard_sigmoid"`` or ``"sigmoid"`` (unused by the RNN)
    compiled : bool
        Compile the cell step (static shapes) and the output layer's loss
        (dynamic token count) with :func:`torch.compile`.
    """

    def __init__(self, values, cell="gru", gate="hard_sigmoid", compiled=False):
        super().__init__(values, cell)
        self.W_x = nn.ParameterList([nn.Parameter(_tensor(values, f"layer{l}/W_x")) for l in range(self.num_layers)])
        self.W_h = nn.ParameterList([nn.Parameter(_tensor(values, f"layer{l}/W_h")) for l in range(self.num_layers)])
        self.b = nn.ParameterList([nn.Parameter(_tensor(values, f"layer{l}/b")) for l in range(self.num_layers)])
        step, gate_fn = CELL_STEPS[cell], GATES[gate]

        def cell_step(a_t, *states_and_W_h):
            return step(a_t, *states_and_W_h, gate_fn)

        self.cell_step = cell_step
        if compiled:
            self.cell_step = torch.compile(cell_step, dynamic=False, fullgraph=True)
            self._output_nll = torch.compile(masked_nll, dynamic=True, fullgraph=True)

    def forward(self, ids, mask):
        """Top layer's outputs (T, B, H) of a padded batch; padded steps keep the states."""
        T, B = ids.shape
        full = (mask.amin(dim=1) == 1).tolist()  # steps without padding skip the masking
        x = self.embedding[ids]
        n = _STATES[self.cell_name]
        for l in range(self.num_layers):
            a = torch.addmm(self.b[l], x.reshape(T * B, -1), self.W_x[l]).reshape(T, B, -1)
            states = [x.new_zeros(B, self.hidden) for _ in range(n)]
            outs = []
            for t in range(T):
                new = self.cell_step(a[t], *states, self.W_h[l])
                if not full[t]:
                    m = mask[t].unsqueeze(1)
                    new = [m * s_new + (1.0 - m) * s for s_new, s in zip(new, states)]
                states = list(new)
                outs.append(states[0])
            x = torch.stack(outs)
        return x

    @torch.inference_mode()
    def step(self, ids, states):
        """One generation step: ids (B,), states list of (B, H) -> logits (B, V), new states."""
        x = self.embedding[ids]
        n = _STATES[self.cell_name]
        new = []
        for l in range(self.num_layers):
            layer = self.cell_step(torch.addmm(self.b[l], x, self.W_x[l]), *states[l * n : (l + 1) * n], self.W_h[l])
            new.extend(layer)
            x = layer[0]
        return torch.addmm(self.b_out, x, self.W_out), new


# symrnn's gate blocks in PyTorch's order: nn.GRU [r | z | n], nn.LSTM [i | f | g | o].
_NATIVE_BLOCK_ORDER = {"gru": (1, 0, 2), "lstm": (0, 1, 3, 2), "rnn": (0,)}
_NATIVE_MODULES = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}


def _native_blocks(matrix, cell):
    """symrnn's (rows, k*H) block matrix as PyTorch's (k*H, rows) weight, blocks reordered."""
    blocks = np.split(np.asarray(matrix), CELL_BLOCKS[cell], axis=-1)
    return torch.tensor(np.concatenate([blocks[i] for i in _NATIVE_BLOCK_ORDER[cell]], axis=-1).T.copy())


class NativeLanguageModel(_LanguageModel):
    """The same sizes with PyTorch's ``nn.GRU`` / ``nn.LSTM`` / ``nn.RNN`` (all layers in one module).

    Parameters
    ----------
    values : mapping name -> array, symrnn's parameter names and shapes
    cell : ``"gru"``, ``"lstm"`` or ``"rnn"``
    """

    def __init__(self, values, cell="gru"):
        super().__init__(values, cell)
        D = self.embedding.shape[1]
        self.rnn = _NATIVE_MODULES[cell](D, self.hidden, num_layers=self.num_layers, dtype=self.embedding.dtype)
        with torch.no_grad():
            for l in range(self.num_layers):
                getattr(self.rnn, f"weight_ih_l{l}").copy_(_native_blocks(values[f"layer{l}/W_x"], cell))
                getattr(self.rnn, f"weight_hh_l{l}").copy_(_native_blocks(values[f"layer{l}/W_h"], cell))
                getattr(self.rnn, f"bias_ih_l{l}").copy_(_native_blocks(values[f"layer{l}/b"][None, :], cell)[:, 0])
                bias_hh = getattr(self.rnn, f"bias_hh_l{l}")
                bias_hh.zero_()
                bias_hh.requires_grad_(False)

    def forward(self, ids, mask):
        """Top layer's outputs (T, B, H); padded steps are run, not masked (see the module notes)."""
        return self.rnn(self.embedding[ids])[0]

    def stream_loss(self, ids, targets, states):
        """Summed cross-entropy of one stream window from carried states, and its final states.

        Parameters
        ----------
        ids, targets : LongTensor (T, B), a window without padding (no mask)
        states : list of (B, H) tensors, as :meth:`initial_states`; the gradient stops at them
            when they are detached (truncated backpropagation at window edges)

        Returns
        -------
        loss : scalar tensor
        final_states : list of (B, H) tensors, in the order of ``states``
        """
        T, B = ids.shape
        out, hx = self.rnn(self.embedding[ids], self._pack(states))
        loss = F.cross_entropy(torch.addmm(self.b_out, out.reshape(T * B, -1), self.W_out), targets.reshape(-1),
                               reduction="sum")
        return loss, self._unpack(hx)

    def _pack(self, states):
        if self.cell_name == "lstm":
            return (torch.stack(states[0::2]), torch.stack(states[1::2]))
        return torch.stack(states)

    def _unpack(self, hx):
        if self.cell_name == "lstm":
            return [s for pair in zip(hx[0], hx[1]) for s in pair]
        return list(hx)

    @torch.inference_mode()
    def step(self, ids, states):
        """One generation step: ids (B,), states as :meth:`initial_states` -> logits (B, V), new states."""
        out, hx = self.rnn(self.embedding[ids][None], self._pack(states))
        return torch.addmm(self.b_out, out[0], self.W_out), self._unpack(hx)
