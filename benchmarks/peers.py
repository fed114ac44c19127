"""The two sides of the benchmark: symrnn's model and the same model in PyTorch.

Each is an object with ``train_step(x, y, mask) -> (loss, grad norm)``,
``step(ids, *states) -> [logits, *states]``, ``initial_states(B)``,
``output_layer(hidden, targets, mask)`` -> a callable running forward and backward
once (and waiting for its results), ``gpu_peak_mib()`` and ``threads()``.
"""

from __future__ import annotations

import math
import os

import numpy as np

from benchmarks.workload import DECAY, DTYPE, EMBEDDING_DIM, EPSILON, HIDDEN_DIM, LEARNING_RATE, NUM_LAYERS, WORD_DIM

def _wait(outputs):
    """Wait until JAX's asynchronously dispatched results exist (no-op for NumPy)."""
    for value in outputs:
        if hasattr(value, "block_until_ready"):
            value.block_until_ready()
    return outputs


class SymrnnSide:
    """symrnn's RNNLanguageModel with its compiled training and step functions."""

    name = "symrnn"

    def __init__(self, values, backend="c", implementation="auto"):
        from models.language_model import RNNLanguageModel

        recurrence, output_layer = {"auto": ("auto", "auto"), "scan": ("scan", "reference"), "fused": ("fused", "fused")}[implementation]
        self.model = RNNLanguageModel(
            WORD_DIM, EMBEDDING_DIM, HIDDEN_DIM, num_layers=NUM_LAYERS, cell="gru", gate="hard_sigmoid",
            dtype=DTYPE, backend=backend, recurrence=recurrence, output_layer=output_layer,
            initial_values=values,
        )
        self.lr = np.float32(LEARNING_RATE)
        self._train = None
        self._step = None

    def compile_train(self):
        self._train = self.model.compile_train(optimizer="rmsprop", decay=DECAY)

    def train_step(self, x, y, mask):
        loss, n_tokens, norm, applied = self._train(x, y, mask, self.lr)
        return float(loss), float(norm)

    def compile_step(self):
        self._step = self.model.compile_step()

    def step(self, ids, *states):
        return self._step(ids, *states)

    def initial_states(self, batch):
        return self.model.initial_state_values(batch)

    def output_layer(self, hidden, targets, mask):
        """Compiled fwd+bwd of the output layer, the same ops as the training graph."""
        import pytensor
        import pytensor.tensor as pt

        from symrnn import losses

        # Static shapes under JAX, as the training graph has them there.
        shape = targets.shape if self.model.static_shapes else (None, None)
        h = pt.tensor3("hidden", dtype=DTYPE, shape=(*shape, HIDDEN_DIM))
        t = pt.tensor("targets", dtype="int32", shape=shape)
        m = pt.tensor("mask", dtype=DTYPE, shape=shape)
        W, b = self.model.params["output/W"], self.model.params["output/b"]
        total, _ = losses.masked_nll(h, W, b, t, m, self.model.output_layer)
        grads = pytensor.grad(total, [W, b, h])
        f = pytensor.function([h, t, m], [total, *grads], mode=self.model.mode)
        return lambda: _wait(f(hidden, targets, mask))

    def gpu_peak_mib(self):
        """JAX's peak device memory in MiB when it runs on a GPU, else None."""
        if self.model.backend != "jax":
            return None
        import jax

        device = jax.devices()[0]
        if device.platform != "gpu":
            return None
        stats = device.memory_stats() or {}
        return stats.get("peak_bytes_in_use", 0) / 2**20 or None

    @staticmethod
    def threads():
        return {"openblas_threads": openblas_threads()}


def openblas_threads():
    """numpy's OpenBLAS thread count (what symrnn's matrix products use), or None."""
    try:
        import ctypes
        import glob

        libs = glob.glob(os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs", "*openblas*"))
        for path in libs:
            lib = ctypes.CDLL(path)
            for name in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                         "scipy_openblas_get_num_threads", "openblas_get_num_threads"):
                if hasattr(lib, name):
                    return int(getattr(lib, name)())
    except Exception:  # pragma: no cover - informational only
        pass
    return None


def build_torch_model(values):
    """The PyTorch peer: an nn.Module with symrnn's weight layout, time loop in Python.

    Parameters are ``embedding`` (V, D), per layer ``W_x`` (in, 3H), ``W_h``
    (H, 3H), ``b`` (3H,), gate blocks ``[z | r | c]``, and ``W_out`` (H, V),
    ``b_out`` (V,), copied from ``values`` (symrnn's names).
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class TorchGRULanguageModel(nn.Module):
        def __init__(self):
            super().__init__()

            def param(name):
                return nn.Parameter(torch.tensor(np.asarray(values[name], dtype=np.float32)))

            self.embedding = param("embedding")
            self.W_x = nn.ParameterList([param(f"layer{l}/W_x") for l in range(NUM_LAYERS)])
            self.W_h = nn.ParameterList([param(f"layer{l}/W_h") for l in range(NUM_LAYERS)])
            self.b = nn.ParameterList([param(f"layer{l}/b") for l in range(NUM_LAYERS)])
            self.W_out = param("output/W")
            self.b_out = param("output/b")
            self.hidden = self.W_h[0].shape[0]

        def cell(self, a_t, h, W_h):
            """One GRU step: a_t (B, 3H) input projection, h (B, H)."""
            H = self.hidden
            zr = torch.clamp(torch.addmm(a_t[:, : 2 * H], h, W_h[:, : 2 * H]) * 0.2 + 0.5, 0.0, 1.0)
            z, r = zr[:, :H], zr[:, H:]
            c = torch.tanh(torch.addmm(a_t[:, 2 * H :], r * h, W_h[:, 2 * H :]))
            return (1.0 - z) * c + z * h

        def forward(self, ids, mask):
            """Top layer's states (T, B, H) of a padded batch; padding keeps the state."""
            T, B = ids.shape
            full = (mask.amin(dim=1) == 1).tolist()  # steps without padding skip the masking
            x = self.embedding[ids]
            for l in range(NUM_LAYERS):
                a = torch.addmm(self.b[l], x.reshape(T * B, -1), self.W_x[l]).reshape(T, B, -1)
                h = x.new_zeros(B, self.hidden)
                outs = []
                for t in range(T):
                    new = self.cell(a[t], h, self.W_h[l])
                    if not full[t]:
                        m = mask[t].unsqueeze(1)
                        new = m * new + (1.0 - m) * h
                    h = new
                    outs.append(h)
                x = torch.stack(outs)
            return x

        def loss(self, ids, targets, mask):
            """Summed masked cross-entropy (log-softmax of the logits) and the token count."""
            T, B = ids.shape
            hidden = self.forward(ids, mask)
            return self.output_loss(hidden.reshape(T * B, -1), targets.reshape(-1), mask.reshape(-1)), mask.sum()

        def output_loss(self, hidden, targets, mask):
            logits = torch.addmm(self.b_out, hidden, self.W_out)
            return (F.cross_entropy(logits, targets, reduction="none") * mask).sum()

        @torch.inference_mode()
        def step(self, ids, states):
            """One generation step: ids (B,), states list of (B, H) -> logits, new states."""
            x = self.embedding[ids]
            new = []
            for l in range(NUM_LAYERS):
                h = self.cell(torch.addmm(self.b[l], x, self.W_x[l]), states[l], self.W_h[l])
                new.append(h)
                x = h
            return torch.addmm(self.b_out, x, self.W_out), new

    return TorchGRULanguageModel()


class TorchSide:
    """The PyTorch peer, trained with the tutorial's RMSprop written as in-place ops."""

    name = "pytorch"

    def __init__(self, values, device="cpu"):
        import torch

        self.torch = torch
        self.device = torch.device("cuda" if device == "gpu" else "cpu")
        self.model = build_torch_model(values).to(self.device)
        self.params = list(self.model.parameters())
        self.caches = [torch.zeros_like(p) for p in self.params]

    def _tensor(self, array, long=False):
        t = self.torch.from_numpy(np.ascontiguousarray(array))
        return (t.long() if long else t).to(self.device)

    def _sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def compile_train(self):
        pass

    def train_step(self, x, y, mask):
        torch = self.torch
        ids, targets, m = self._tensor(x, long=True), self._tensor(y, long=True), self._tensor(mask)
        loss, _ = self.model.loss(ids, targets, m)
        loss.backward()
        with torch.no_grad():
            grads = [p.grad for p in self.params]
            norm = torch.sqrt(sum((g * g).sum() for g in grads))
            loss_value, norm_value = loss.item(), norm.item()
            if math.isfinite(loss_value) and math.isfinite(norm_value):  # symrnn skips such steps too
                for p, g, cache in zip(self.params, grads, self.caches):
                    cache.mul_(DECAY).addcmul_(g, g, value=1.0 - DECAY)
                    p.addcdiv_(g, cache.add(EPSILON).sqrt_(), value=-LEARNING_RATE)
        for p in self.params:
            p.grad = None
        self._sync()
        return loss_value, norm_value

    def compile_step(self):
        pass

    def step(self, ids, *states):
        torch = self.torch
        states = [s if isinstance(s, torch.Tensor) else self._tensor(s) for s in states]
        logits, new = self.model.step(self._tensor(ids, long=True), states)
        # Only the logits go back to the host (for sampling); on a GPU the
        # states stay there, as symrnn's JAX states do.
        return [logits.cpu().numpy(), *(new if self.device.type == "cuda" else [s.numpy() for s in new])]

    def initial_states(self, batch):
        return [np.zeros((batch, HIDDEN_DIM), dtype=np.float32) for _ in range(NUM_LAYERS)]

    def output_layer(self, hidden, targets, mask):
        torch = self.torch
        T, B, H = hidden.shape
        h = self._tensor(hidden.reshape(T * B, H)).requires_grad_(True)
        t = self._tensor(targets.reshape(-1), long=True)
        m = self._tensor(mask.reshape(-1))
        W, b = self.model.W_out, self.model.b_out

        def run():
            loss = self.model.output_loss(h, t, m)
            grads = torch.autograd.grad(loss, [W, b, h])
            self._sync()
            return loss, grads

        return run

    def gpu_peak_mib(self):
        if self.device.type != "cuda":
            return None
        return self.torch.cuda.max_memory_allocated() / 2**20

    def threads(self):
        return {"torch_threads": self.torch.get_num_threads(),
                "torch_interop_threads": self.torch.get_num_interop_threads()}
