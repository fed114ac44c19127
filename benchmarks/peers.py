"""The sides of the benchmark: symrnn's model and its PyTorch peers.

Each side is an object with ``train_step(x, y, mask) -> (loss, grad norm)``,
``step(ids, *states) -> [logits, *states]``, ``initial_states(B)``,
``output_layer(hidden, targets, mask)`` -> a callable running forward and backward
once (and waiting for its results), ``gpu_peak_mib()`` and ``libraries()``
(its BLAS library, version and thread counts).

symrnn is reached here only, through its public API: every name the
benchmark uses of it (model keyword arguments, backend names, sampling) is
in this module.
"""

from __future__ import annotations

import math
import re

import numpy as np

from benchmarks.workload import DECAY, DTYPE, EMBEDDING_DIM, EPSILON, HIDDEN_DIM, LEARNING_RATE, NUM_LAYERS, WORD_DIM
from symrnn.sampling import sample_tokens  # noqa: F401  (workers.generate_sentences: both sides sample with it)

#: symrnn's compile backends the benchmark offers, and the one it uses on a CPU by default.
SYMRNN_BACKENDS = ("c", "numba", "jax")
SYMRNN_CPU_BACKEND = "c"  # PyTensor's C VM linker with symrnn's fused Ops

#: The PyTorch peers: the hand-written model eager and under torch.compile, PyTorch's own layers.
PEERS = ("eager", "compiled", "native")


def native_computes_symrnn_function(cell: str, gate: str) -> bool:
    """Whether PyTorch's own layer for ``cell`` (sigmoid gates) computes symrnn's function with ``gate``.

    nn.RNN is symrnn's RNN and nn.LSTM its LSTM with sigmoid gates; nn.GRU
    applies the reset gate after the recurrent product (see :mod:`benchmarks.torch_models`).
    """
    return cell == "rnn" or (cell == "lstm" and gate == "sigmoid")


def _wait(outputs):
    """Wait until JAX's asynchronously dispatched results exist (no-op for NumPy)."""
    for value in outputs:
        if hasattr(value, "block_until_ready"):
            value.block_until_ready()
    return outputs


def _symrnn_model(cell, gate="hard_sigmoid", values=None, seed=None, backend=SYMRNN_CPU_BACKEND, implementation="auto"):
    from models.language_model import RNNLanguageModel

    recurrence, output_layer = {"auto": ("auto", "auto"), "scan": ("scan", "reference"), "fused": ("fused", "fused")}[implementation]
    return RNNLanguageModel(
        WORD_DIM, EMBEDDING_DIM, HIDDEN_DIM, num_layers=NUM_LAYERS, cell=cell, gate=gate, dtype=DTYPE, seed=seed,
        backend=backend, recurrence=recurrence, output_layer=output_layer, initial_values=values,
    )


def initial_values(cell: str, seed: int) -> dict:
    """symrnn's seeded initial parameter values for ``cell`` (no compilation), by parameter name."""
    return dict(_symrnn_model(cell, seed=seed).get_values())


class SymrnnSide:
    """symrnn's RNNLanguageModel with its compiled training and step functions."""

    name = "symrnn"

    def __init__(self, values, cell="gru", gate="hard_sigmoid", backend=SYMRNN_CPU_BACKEND, implementation="auto"):
        self.model = _symrnn_model(cell, gate, values, backend=backend, implementation=implementation)
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
    def libraries():
        """numpy's BLAS (the graph's matrix products), SciPy's (the fused layers' per-step products) and Numba's threads."""
        import numba

        return {**numpy_blas(), **kernel_blas(), "numba_threads": numba.get_num_threads()}


def numpy_blas():
    """numpy's BLAS library, version, kernel architecture and threads, as threadpoolctl sees them."""
    from threadpoolctl import threadpool_info

    info = {"numpy": np.__version__, "blas": "unknown (threadpoolctl found no BLAS of numpy's)"}
    for pool in threadpool_info():
        if pool.get("user_api") == "blas" and "numpy" in pool.get("filepath", ""):
            info.update(blas=f"{pool['internal_api']} {pool.get('version')}", blas_architecture=pool.get("architecture"),
                        blas_threading=pool.get("threading_layer"), blas_threads=pool.get("num_threads"))
            break
    return info


def kernel_blas():
    """The BLAS that the Numba kernels call (SciPy's), as :func:`numpy_blas` names numpy's."""
    from scripts.process import scipy_own_blas

    libraries = scipy_own_blas()
    if libraries is None:
        return {"kernel_blas": "numpy's (SciPy shares it)"}
    pool = libraries.info()[0]
    return {"kernel_blas": f"{pool['internal_api']} {pool.get('version')}",
            "kernel_blas_architecture": pool.get("architecture"), "kernel_blas_threads": pool.get("num_threads")}


def rmsprop_step(loss, params, caches, learning_rate, decay, epsilon, grad_clip=None):
    """Backpropagate ``loss`` and update ``params`` in place exactly as symrnn's training step does.

    symrnn's rule (:func:`symrnn.updates.rmsprop`, the tutorial's):
    ``cache = decay * cache + (1 - decay) * g**2; p -= lr * g / sqrt(cache + epsilon)``,
    with ``g`` first scaled by ``min(1, grad_clip / max(norm, 1e-12))`` where
    ``grad_clip`` is given (:func:`symrnn.updates.clip_by_global_norm`); the
    update is skipped when the loss or the gradient's global norm is not finite.

    Returns
    -------
    loss : float
    norm : float, the gradient's global norm before clipping
    applied : bool, whether the parameters were updated
    """
    import torch

    loss.backward()
    with torch.no_grad():
        grads = [p.grad for p in params]
        norm = torch.sqrt(sum((g * g).sum() for g in grads))
        loss_value, norm_value = loss.item(), norm.item()
        applied = math.isfinite(loss_value) and math.isfinite(norm_value)
        if applied:
            if grad_clip:
                scale = torch.clamp(grad_clip / torch.clamp(norm, min=1e-12), max=1.0)
                grads = [g * scale for g in grads]
            for p, g, cache in zip(params, grads, caches):
                cache.mul_(decay).addcmul_(g, g, value=1.0 - decay)
                p.addcdiv_(g, cache.add(epsilon).sqrt_(), value=-learning_rate)
    for p in params:
        p.grad = None
    return loss_value, norm_value, applied


class TorchSide:
    """A PyTorch peer, trained with the tutorial's RMSprop written as in-place ops.

    Parameters
    ----------
    values : mapping name -> array, symrnn's parameter values for ``cell``
    cell, gate : as symrnn's model (the native peer always has sigmoid gates)
    peer : ``"eager"`` (hand-written, symrnn's equations), ``"compiled"`` (the
        same under torch.compile) or ``"native"`` (nn.GRU / nn.LSTM / nn.RNN)
    device : ``"cpu"`` or ``"gpu"`` (CUDA)
    """

    name = "pytorch"

    def __init__(self, values, cell="gru", gate="hard_sigmoid", peer="eager", device="cpu"):
        import torch

        from benchmarks import torch_models

        self.torch = torch
        self.peer = peer
        self.device = torch.device("cuda" if device == "gpu" else "cpu")
        if peer == "native":
            model = torch_models.NativeLanguageModel(values, cell)
        else:
            model = torch_models.HandWrittenLanguageModel(values, cell, gate, compiled=peer == "compiled")
        self.model = model.to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.caches = [torch.zeros_like(p) for p in self.params]

    def _tensor(self, array, long=False):
        t = self.torch.from_numpy(np.ascontiguousarray(array))
        return (t.long() if long else t).to(self.device)

    def _sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def compile_train(self):
        """Nothing ahead of time (torch.compile compiles at the first training step)."""

    def train_step(self, x, y, mask):
        ids, targets, m = self._tensor(x, long=True), self._tensor(y, long=True), self._tensor(mask)
        loss, _ = self.model.loss(ids, targets, m)
        loss_value, norm_value, _ = rmsprop_step(loss, self.params, self.caches, LEARNING_RATE, DECAY, EPSILON)
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
        return [s.cpu().numpy() for s in self.model.initial_states(batch, "cpu")]

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

    def libraries(self):
        """PyTorch's BLAS (MKL) and oneDNN versions, CPU kernels and thread counts."""
        torch = self.torch
        config = torch.__config__.show()
        mkl = re.search(r"Math Kernel Library Version ([0-9.]+)", config)
        onednn = re.search(r"MKL-DNN (v[0-9.]+)", config)
        blas = re.search(r"BLAS_INFO=(\w+)", config)
        return {
            "torch": torch.__version__,
            "blas": f"{blas.group(1) if blas else 'unknown'}" + (f" {mkl.group(1)}" if mkl else ""),
            "onednn": onednn.group(1) if onednn else None,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
        }
