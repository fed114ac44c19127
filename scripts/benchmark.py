#!/usr/bin/env python
"""Benchmark symrnn's two-layer GRU language model against an eager PyTorch peer.

    python scripts/benchmark.py                 # full run, both sides, table on stdout
    python scripts/benchmark.py --quick --json  # fewer repetitions; JSON on the last line
    python scripts/benchmark.py --skip-torch    # symrnn only (ratios n/a)
    python scripts/benchmark.py --device gpu    # symrnn on PyTensor's JAX backend vs PyTorch on CUDA

Both sides build the same network -- embedding (V=8000, D=48), two GRU layers
(H=128, hard-sigmoid gates ``clip(0.2 x + 0.5, 0, 1)``, the tutorial's
candidate ``tanh(a_c + (r * h) @ W_hc)`` and ``h' = (1 - z) * c + z * h``),
masked state carry over padding, an output layer to 8000 logits, the summed
masked cross-entropy from logits (log-softmax) and the tutorial's RMSprop on
every parameter, densely, in float32 -- start from the same parameter values
(symrnn's initial values are copied into the PyTorch module) and are fed the
very same padded batches, built once here with :mod:`symrnn.batching` and
saved to a file that every worker loads. Before anything is timed, a check
runs one batch through both sides and compares the losses before and after
one update (and the generation step's logits) to 1e-4 relative.

Every measurement runs in a fresh child process of this script
(``--worker NAME``), so that peak memory (``ru_maxrss``), thread pools and
import costs belong to one side and one measurement only; a worker prints its
figures as JSON on its last line.

PyTorch is an optional extra (``pip install .[bench]``) and never imported by
symrnn; without it (or with ``--skip-torch``) only symrnn's side runs.

``--device gpu`` runs symrnn on PyTensor's JAX backend and the PyTorch peer on
CUDA. JAX needs static shapes, so there (and with ``--backend jax`` on a CPU)
every batch, the batch-1 ones included, is padded to a multiple of
``BUCKET_WIDTH`` time steps, for both sides alike; rates still count real
tokens only. Both sides then do true float32 matrix products (JAX's default
precision is set to ``highest``, PyTorch's TF32 stays off, its default), every
timed call waits for the GPU to finish, and the machine rate is CUDA's float32
matrix product instead of NumPy's.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Running as ``python scripts/benchmark.py`` from a checkout: make symrnn and
# models importable. This is scripts/common.py's path setup, repeated here
# because importing ``common`` also imports symrnn.text and with it NLTK
# (about 1.2 s and tens of MiB), which would count against both sides' start
# time and memory in the measured child processes.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path and (_ROOT / "symrnn").is_dir():
    sys.path.insert(0, str(_ROOT))

import numpy as np  # noqa: E402

# ---------------------------------------------------------------- the model
WORD_DIM = 8000
EMBEDDING_DIM = 48
HIDDEN_DIM = 128
NUM_LAYERS = 2
LEARNING_RATE = 0.001
DECAY = 0.9
EPSILON = 1e-6
DTYPE = "float32"

# ----------------------------------------------------------------- the data
START_ID, END_ID = 1, 2  # sentence markers; words are ids 3 .. WORD_DIM - 1
MIN_LENGTH, MAX_LENGTH = 5, 60
N_SENTENCES = 3200  # one bucketing pool of 64 x 50 sentences
GENERATE_LENGTH = 20
OUTPUT_LAYER_STEPS = 20  # output-layer measurement: batch 64 x T 20
LOSS_CHECK_RTOL = 1e-4
BUCKET_WIDTH = 16  # time-step multiple of every padded batch under JAX (static shapes)

# Repetitions, for the full run and for --quick. Training: ``*_warmup`` steps,
# then ``*_passes`` passes over the same ``*_steps`` batches (one sentence each
# at batch 1, bucketed batches of 64); the figure is the median pass's real
# tokens per second. Generation: the median of ``gen1_sentences`` single
# sentences and of ``gen64_reps`` batches of 64, after one warm-up each.
PLANS = {
    "full": dict(
        train1_warmup=5, train1_steps=20, train1_passes=3,
        train64_warmup=2, train64_steps=10, train64_passes=3,
        gen1_sentences=20, gen64_reps=10, outlayer_reps=10, matmul_reps=5,
    ),
    "quick": dict(
        train1_warmup=2, train1_steps=6, train1_passes=1,
        train64_warmup=1, train64_steps=2, train64_passes=1,
        gen1_sentences=3, gen64_reps=1, outlayer_reps=3, matmul_reps=2,
    ),
}


def make_sentences(n: int = N_SENTENCES, seed: int = 0, word_dim: int = WORD_DIM,
                   min_length: int = MIN_LENGTH, max_length: int = MAX_LENGTH) -> list:
    """A fixed, seeded set of encoded sentences.

    Lengths (markers included) are a rounded lognormal (median 18, sigma 0.5,
    mean about 20) clipped to ``[min_length, max_length]``; every sentence is
    ``[START_ID, words..., END_ID]`` with words drawn Zipf-like (probability of
    rank k proportional to 1/k) over ids ``3 .. word_dim - 1``.

    Returns
    -------
    list of numpy.ndarray of int32, one per sentence
    """
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.rint(rng.lognormal(np.log(18.0), 0.5, size=n)), min_length, max_length).astype(np.int64)
    ranks = np.arange(1, word_dim - 2, dtype=np.float64)
    p = 1.0 / ranks
    p /= p.sum()
    words = (rng.choice(len(ranks), size=int((lengths - 2).sum()), p=p) + 3).astype(np.int32)
    sentences, start = [], 0
    for length in lengths:
        middle = words[start : start + length - 2]
        start += length - 2
        sentences.append(np.concatenate([[START_ID], middle, [END_ID]]).astype(np.int32))
    return sentences


def build_batches(sentences: list, seed: int, plan: dict, bucket_width: int | None = None) -> dict:
    """The padded batches both sides train on, built once with symrnn.batching.

    ``bucket_width`` pads every batch (batch 1 too) to a multiple of that many
    time steps, as the JAX backend needs; None pads batch 1 not at all and
    batch 64 to its longest sentence.

    Returns
    -------
    dict of arrays: ``b1_<i>_{x,y,mask}`` (one sentence each, no padding) and
    ``b64_<i>_{x,y,mask}`` (bucketed batches of 64), (T, B) time-major.
    """
    from symrnn.batching import bucket_length, iterate_minibatches, pad_batch

    X = [s[:-1] for s in sentences]
    Y = [s[1:] for s in sentences]
    arrays = {}
    n1 = plan["train1_warmup"] + plan["train1_steps"]
    for i in range(n1):
        length = bucket_length(len(X[i]), bucket_width)
        x, mask = pad_batch([X[i]], length)
        y, _ = pad_batch([Y[i]], length)
        arrays[f"b1_{i}_x"], arrays[f"b1_{i}_y"], arrays[f"b1_{i}_mask"] = x, y, mask
    n64 = plan["train64_warmup"] + plan["train64_steps"]
    full = [b for b in iterate_minibatches(X, Y, 64, rng=seed, bucket_width=bucket_width) if b.x.shape[1] == 64][:n64]
    if len(full) < n64:
        raise RuntimeError(f"only {len(full)} full batches of 64 in {len(X)} sentences")
    for i, b in enumerate(full):
        arrays[f"b64_{i}_x"], arrays[f"b64_{i}_y"], arrays[f"b64_{i}_mask"] = b.x, b.y, b.mask
    return arrays


def load_batches(arrays, prefix: str) -> list:
    out, i = [], 0
    while f"{prefix}_{i}_x" in arrays:
        out.append((arrays[f"{prefix}_{i}_x"], arrays[f"{prefix}_{i}_y"], arrays[f"{prefix}_{i}_mask"]))
        i += 1
    return out


# ======================================================================
# The two sides. Each is an object with train_step(x, y, mask) -> (loss, grad norm),
# step(ids, *states) -> [logits, *states], initial_states(B),
# output_layer(hidden, targets, mask) -> callable running fwd+bwd once (and
# waiting for its results), gpu_peak_mib() and threads().
# ======================================================================


def _wait(outputs):
    """Wait until JAX's asynchronously dispatched results exist (no-op for NumPy)."""
    for value in outputs:
        if hasattr(value, "block_until_ready"):
            value.block_until_ready()
    return outputs


class SymrnnSide:
    """symrnn's RNNLanguageModel with its compiled training and step functions."""

    name = "symrnn"

    def __init__(self, values, backend="cpu", implementation="auto"):
        from models.language_model import RNNLanguageModel

        impl, loss_impl = {"auto": ("auto", "auto"), "scan": ("scan", "reference"), "fused": ("fused", "fused")}[implementation]
        self.model = RNNLanguageModel(
            WORD_DIM, EMBEDDING_DIM, HIDDEN_DIM, num_layers=NUM_LAYERS, cell="gru", gate="hard_sigmoid",
            dtype=DTYPE, backend=backend, implementation=impl, loss_implementation=loss_impl,
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
        total, _ = losses.masked_nll(h, W, b, t, m, self.model.loss_implementation)
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
        return {"openblas_threads": _openblas_threads()}


def _openblas_threads():
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


# ======================================================================
# Workers (run in child processes)
# ======================================================================


def _max_rss_mib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _make_side(args, values):
    if args["side"] == "symrnn":
        return SymrnnSide(values, args["backend"], args["implementation"])
    return TorchSide(values, args.get("device", "cpu"))


def _threads_info(side):
    info = side.threads()
    requested = os.environ.get("SYMRNN_BENCH_THREADS")
    if requested:
        info["requested_threads"] = int(requested)
    return info


def _apply_threads(side_name):
    n = os.environ.get("SYMRNN_BENCH_THREADS")
    if n and side_name == "pytorch":
        import torch

        torch.set_num_threads(int(n))


def generate_sentences(side, batch: int, length: int, rng) -> np.ndarray:
    """The generation driver both sides share: sample from the step function's logits.

    Returns
    -------
    ndarray (length, batch) int32 of the sampled ids
    """
    from symrnn.sampling import sample_tokens

    states = side.initial_states(batch)
    ids = np.full(batch, START_ID, dtype=np.int32)
    out = np.empty((length, batch), dtype=np.int32)
    for t in range(length):
        logits, *states = side.step(ids, *states)
        ids = sample_tokens(logits, rng)
        out[t] = ids
    return out


def worker_train(args, data, values):
    """Training throughput at batch 1 or 64: warm-up steps, then passes over the measured steps."""
    plan = args["plan"]
    _apply_threads(args["side"])
    side = _make_side(args, values)
    t0 = time.perf_counter()
    side.compile_train()
    compile_s = time.perf_counter() - t0
    if args["batch"] == 1:
        batches = load_batches(data, "b1")
        warmup, passes = plan["train1_warmup"], plan["train1_passes"]
    else:
        batches = load_batches(data, "b64")
        warmup, passes = plan["train64_warmup"], plan["train64_passes"]
    for x, y, mask in batches[:warmup]:
        side.train_step(x, y, mask)
    measured = batches[warmup:]
    if args["backend"] == "jax":
        # JAX compiles once per padded shape: one untimed pass first, so
        # that no compilation falls into the timed passes (both sides run it).
        for x, y, mask in measured:
            side.train_step(x, y, mask)
    tokens = int(sum(np.count_nonzero(m) for _, _, m in measured))
    rates, step_times, losses = [], [], []
    for _ in range(passes):
        pass_time = 0.0
        for x, y, mask in measured:
            t = time.perf_counter()
            loss, _ = side.train_step(x, y, mask)
            dt = time.perf_counter() - t
            pass_time += dt
            step_times.append(dt)
            losses.append(loss)
        rates.append(tokens / pass_time)
    return {
        "tokens_per_s": statistics.median(rates),
        "tokens_per_s_passes": rates,
        "tokens_per_pass": tokens,
        "steps_per_pass": len(measured),
        "median_step_s": statistics.median(step_times),
        "compile_s": compile_s,
        "last_loss_per_token": losses[-1] / max(1, int(np.count_nonzero(measured[-1][2]))),
        "peak_rss_mib": _max_rss_mib(),
        "gpu_peak_mib": side.gpu_peak_mib(),
        **_threads_info(side),
    }


def worker_generate(args, data, values):
    """Generation sentences/s at batch 1 and 64, fixed length, through the shared driver."""
    plan = args["plan"]
    _apply_threads(args["side"])
    side = _make_side(args, values)
    t0 = time.perf_counter()
    side.compile_step()
    compile_s = time.perf_counter() - t0
    rng = np.random.default_rng(args["seed"])
    generate_sentences(side, 1, GENERATE_LENGTH, rng)  # warm-up
    times1 = []
    for _ in range(plan["gen1_sentences"]):
        t = time.perf_counter()
        generate_sentences(side, 1, GENERATE_LENGTH, rng)
        times1.append(time.perf_counter() - t)
    generate_sentences(side, 64, GENERATE_LENGTH, rng)  # warm-up
    times64 = []
    for _ in range(plan["gen64_reps"]):
        t = time.perf_counter()
        generate_sentences(side, 64, GENERATE_LENGTH, rng)
        times64.append(time.perf_counter() - t)
    return {
        "sentences_per_s_b1": 1.0 / statistics.median(times1),
        "sentences_per_s_b64": 64.0 / statistics.median(times64),
        "compile_s": compile_s,
        "peak_rss_mib": _max_rss_mib(),
        **_threads_info(side),
    }


def worker_start(args, data, values):
    """From interpreter start to the end of the first training step at batch 64.

    The parent measures the wall time from just before starting this process
    to ``end_time`` (``time.time()`` here, after the first step).
    """
    _apply_threads(args["side"])
    side = _make_side(args, values)
    side.compile_train()
    x, y, mask = load_batches(data, "b64")[0]
    side.train_step(x, y, mask)
    return {"end_time": time.time(), "peak_rss_mib": _max_rss_mib()}


def worker_output_layer(args, data, values):
    """Achieved GFLOP/s of the output layer's forward+backward at batch 64 x T 20."""
    plan = args["plan"]
    _apply_threads(args["side"])
    side = _make_side(args, values)
    rng = np.random.default_rng(args["seed"])
    T, B = OUTPUT_LAYER_STEPS, 64
    hidden = rng.uniform(-1, 1, size=(T, B, HIDDEN_DIM)).astype(np.float32)
    targets = rng.integers(3, WORD_DIM, size=(T, B)).astype(np.int32)
    mask = np.ones((T, B), dtype=np.float32)
    run = side.output_layer(hidden, targets, mask)
    run()
    run()  # warm-up
    times = []
    for _ in range(plan["outlayer_reps"]):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    flops = 3 * 2 * T * B * HIDDEN_DIM * WORD_DIM
    return {"gflops": flops / statistics.median(times) / 1e9, "median_s": statistics.median(times), "flops": flops}


def worker_matmul(args, data, values):
    """This machine's float32 matrix-product rate: NumPy's 2048^3, or CUDA's 8192^3 on a GPU."""
    if args.get("device") == "gpu":
        return _gpu_matmul(args["plan"]["matmul_reps"])
    n = 2048
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm-up
    times = []
    for _ in range(args["plan"]["matmul_reps"]):
        t = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - t)
    return {"gflops": 2 * n**3 / statistics.median(times) / 1e9, "openblas_threads": _openblas_threads()}


def _gpu_matmul(reps, n=8192):
    """CUDA's float32 (not TF32) matrix-product rate, through PyTorch, else JAX."""
    try:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        a, b = (torch.randn(n, n, device="cuda") for _ in range(2))
        out = a @ b
        times = []
        for _ in range(reps + 1):
            torch.cuda.synchronize()
            t = time.perf_counter()
            out = torch.matmul(a, b, out=out)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        library = "torch"
    except ImportError:
        import jax
        import jax.numpy as jnp

        a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype=jnp.float32)
        product = jax.jit(lambda x, y: jnp.matmul(x, y, precision="highest"))
        times = []
        for _ in range(reps + 1):
            t = time.perf_counter()
            product(a, a).block_until_ready()
            times.append(time.perf_counter() - t)
        library = "jax"
    return {"gflops": 2 * n**3 / statistics.median(times[1:]) / 1e9, "size": n, "library": library}


def worker_check(args, data, values):
    """Both sides, same parameters, same batch: losses before and after one update, step logits."""
    phases = {}
    t0 = time.perf_counter()
    x, y, mask = load_batches(data, "b64")[0]
    sym = SymrnnSide(values, args["backend"], args["implementation"])
    sym.compile_train()
    phases["symrnn_compile_train_s"] = time.perf_counter() - t0
    sym_losses = [sym.train_step(x, y, mask) for _ in range(2)]
    t0 = time.perf_counter()
    sym.compile_step()
    phases["symrnn_compile_step_s"] = time.perf_counter() - t0
    ids = np.arange(3, 3 + 64, dtype=np.int32)
    sym_logits = np.asarray(sym.step(ids, *sym.initial_states(64))[0])
    result = {
        "phases": phases,
        "tokens": int(np.count_nonzero(mask)),
        "batch_shape": list(x.shape),
        "symrnn_loss": [l for l, _ in sym_losses],
        "symrnn_grad_norm": [g for _, g in sym_losses],
    }
    if args.get("skip_torch"):
        return result
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        result["torch_import_error"] = f"{type(exc).__name__}: {exc}"
        return result
    t0 = time.perf_counter()
    ref = TorchSide(values, args.get("device", "cpu"))
    torch_losses = [ref.train_step(x, y, mask) for _ in range(2)]
    torch_logits = ref.step(ids, *ref.initial_states(64))[0]
    phases["pytorch_s"] = time.perf_counter() - t0

    def rel(a, b):
        return abs(a - b) / max(abs(a), abs(b), 1e-30)

    result.update(
        torch_version=torch.__version__,
        pytorch_loss=[l for l, _ in torch_losses],
        pytorch_grad_norm=[g for _, g in torch_losses],
        rel_diff_loss=[rel(a, b) for (a, _), (b, _) in zip(sym_losses, torch_losses)],
        rel_diff_grad_norm=[rel(a, b) for (_, a), (_, b) in zip(sym_losses, torch_losses)],
        rel_diff_step_logits=float(np.max(np.abs(sym_logits - torch_logits)) / np.max(np.abs(torch_logits))),
    )
    worst = max(result["rel_diff_loss"] + result["rel_diff_grad_norm"] + [result["rel_diff_step_logits"]])
    result["max_rel_diff"] = worst
    result["passed"] = bool(worst <= LOSS_CHECK_RTOL)
    return result


WORKERS = {
    "train": worker_train,
    "generate": worker_generate,
    "start": worker_start,
    "output_layer": worker_output_layer,
    "matmul": worker_matmul,
    "check": worker_check,
}


def run_worker(name: str, args: dict) -> int:
    data = np.load(args["data"]) if args.get("data") else None
    values = None
    if args.get("values"):
        with np.load(args["values"]) as v:
            values = {k.replace("__", "/"): v[k] for k in v.files}
    result = WORKERS[name](args, data, values)
    sys.stdout.flush()
    print(json.dumps(result), flush=True)
    return 0


# ======================================================================
# The parent: data, children, table
# ======================================================================


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def _cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor() or platform.machine()


def _gpu_name():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _version(package):
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:
        return None


class Runner:
    """Starts worker children and collects their JSON."""

    def __init__(self, options, tmp: Path, data_path: Path, values_path: Path, plan: dict):
        self.options, self.tmp, self.plan = options, tmp, plan
        self.base = {
            "data": str(data_path), "values": str(values_path), "plan": plan, "seed": options.seed,
            "backend": options.backend, "implementation": options.implementation, "device": options.device,
        }
        self.failures = []
        self.log = []

    def env(self, compiledir=None):
        env = dict(os.environ)
        # Both sides' children get the allocator setting symrnn's scripts use
        # (scripts/common.py keep_freed_memory_for_reuse): glibc keeps large
        # freed blocks instead of unmapping them, so per-step arrays are reused.
        env.setdefault("MALLOC_MMAP_THRESHOLD_", str(1 << 30))
        env.setdefault("MALLOC_TRIM_THRESHOLD_", str((1 << 31) - 1))
        if self.options.threads:
            n = str(self.options.threads)
            env.update(OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n, NUMBA_NUM_THREADS=n,
                       SYMRNN_BENCH_THREADS=n)
        if self.options.backend == "jax":
            # True float32 products on both sides (PyTorch's TF32 is off by
            # default), and JAX allocating what it uses, so peak memory means
            # the same on both sides.
            env.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
            env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        if compiledir is not None:
            flags = env.get("PYTENSOR_FLAGS", "")
            env["PYTENSOR_FLAGS"] = (flags + "," if flags else "") + f"compiledir={compiledir}"
            env["NUMBA_CACHE_DIR"] = str(Path(compiledir) / "numba")
        return env

    def __call__(self, name, label, compiledir=None, **extra):
        args = dict(self.base, **extra)
        load = _loadavg()
        _progress(f"  {label} ... (load {load[0] if load else '?'})")
        start = time.time()
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--worker-args", json.dumps(args)],
            capture_output=True, text=True, env=self.env(compiledir), cwd=str(_ROOT),
        )
        wall = time.time() - start
        result = None
        if proc.returncode == 0:
            try:
                result = json.loads(proc.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                result = None
        if result is None:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            self.failures.append(f"{label}: exit status {proc.returncode}\n{tail}")
            _progress(f"    FAILED ({label}), exit status {proc.returncode}:\n{tail}")
        else:
            result["_wall_s"] = wall
            result["_start_time"] = start
            result["_load"] = load
            _progress(f"    done in {wall:.1f} s")
        self.log.append({"label": label, "wall_s": round(wall, 2), "load_before": load})
        return result


def _progress(message):
    print(message, file=sys.stderr, flush=True)


def _get(result, key):
    return None if result is None else result.get(key)


def collect(options) -> tuple[dict, int]:
    """Run every measurement; return the report dict and the exit status."""
    script_start = time.perf_counter()
    plan = PLANS["quick" if options.quick else "full"]
    report = {
        "machine": {
            "cpu": _cpu_model(), "cores": os.cpu_count(), "load_start": _loadavg(),
            "python": platform.python_version(), "pytensor": _version("pytensor"), "numpy": np.__version__,
            "torch": _version("torch"), "jax": _version("jax") if options.backend == "jax" else None,
            "gpu": _gpu_name() if options.device == "gpu" else None,
        },
        "config": {
            "word_dim": WORD_DIM, "embedding_dim": EMBEDDING_DIM, "hidden_dim": HIDDEN_DIM,
            "num_layers": NUM_LAYERS, "gate": "hard_sigmoid", "dtype": DTYPE, "optimizer": "rmsprop",
            "backend": options.backend, "implementation": options.implementation, "device": options.device,
            "seed": options.seed, "bucket_width": BUCKET_WIDTH if options.backend == "jax" else None,
            "quick": bool(options.quick), "threads": options.threads or "default", "plan": plan,
        },
    }
    torch_note = None
    with_torch = not options.skip_torch
    if with_torch and importlib.util.find_spec("torch") is None:
        with_torch = False
        torch_note = "PyTorch is not installed (ImportError); running symrnn only. Install it with: pip install .[bench]"
        _progress(torch_note)
    elif not with_torch:
        torch_note = "PyTorch side skipped (--skip-torch)"

    with tempfile.TemporaryDirectory(prefix="symrnn-bench-") as tmp_name:
        tmp = Path(tmp_name)
        _progress("building sentences, batches and initial values")
        sentences = make_sentences(N_SENTENCES, options.seed)
        lengths = np.array([len(s) for s in sentences])
        bucket_width = BUCKET_WIDTH if options.backend == "jax" else None
        arrays = build_batches(sentences, options.seed, plan, bucket_width)
        data_path = tmp / "batches.npz"
        np.savez(data_path, **arrays)
        from models.language_model import RNNLanguageModel  # initial values only; no compilation here

        initial = RNNLanguageModel(WORD_DIM, EMBEDDING_DIM, HIDDEN_DIM, num_layers=NUM_LAYERS, dtype=DTYPE,
                                   seed=options.seed).get_values()
        values_path = tmp / "values.npz"
        np.savez(values_path, **{k.replace("/", "__"): v for k, v in initial.items()})
        report["data"] = {
            "sentences": len(sentences), "mean_length": float(lengths.mean()),
            "min_length": int(lengths.min()), "max_length": int(lengths.max()),
            "batch64_shapes": [list(arrays[f"b64_{i}_x"].shape) for i in range(plan["train64_warmup"] + plan["train64_steps"])],
        }
        run = Runner(options, tmp, data_path, values_path, plan)
        sides = ["symrnn"] + (["pytorch"] if with_torch else [])

        _progress("checking that both sides compute the same loss")
        check = run("check", "loss check", skip_torch=not with_torch)
        if check and check.get("torch_import_error"):
            torch_note = f"PyTorch could not be imported ({check['torch_import_error']}); running symrnn only"
            _progress(torch_note)
            with_torch, sides = False, ["symrnn"]
        report["loss_check"] = check

        _progress("machine matrix-product rate")
        matmul = run("matmul", "CUDA float32 matmul 8192^3" if options.device == "gpu" else "numpy float32 matmul 2048^3")

        results = {s: {} for s in sides}
        # Sides alternate measurement by measurement, so that a change in the
        # machine's load during the run affects both alike.
        for part, worker, label, extra in (
            ("train1", "train", "train batch 1", {"batch": 1}),
            ("train64", "train", "train batch 64", {"batch": 64}),
            ("generate", "generate", "generation", {}),
            ("output_layer", "output_layer", "output layer", {}),
        ):
            _progress(label)
            for side in sides:
                results[side][part] = run(worker, f"{side} {label}", side=side, **extra)
        _progress("cold and warm start")
        for side in sides:
            (tmp / f"compiledir-{side}").mkdir()
        for kind in ("cold", "warm"):
            for side in sides:
                compiledir = tmp / f"compiledir-{side}" if side == "symrnn" else None
                r = run("start", f"{side} {kind} start", compiledir=compiledir, side=side)
                results[side][f"start_{kind}"] = None if r is None else r["end_time"] - r["_start_time"]
        report["machine"]["load_end"] = _loadavg()
        loads = [r["load_before"][0] for r in run.log if r["load_before"]]
        report["machine"]["load_1min_range"] = [min(loads), max(loads)] if loads else None
        report["machine"]["numpy_sgemm_gflops"] = _get(matmul, "gflops")
        report["machine"]["openblas_threads"] = _get(matmul, "openblas_threads")
        report["threads"] = {
            side: {k: v for k, v in (results[side]["train64"] or {}).items() if "thread" in k} for side in sides
        }

        machine_rate = _get(matmul, "gflops")

        def fig(side, part, key):
            if side not in results:
                return None
            return _get(results[side].get(part), key)

        metrics = {}

        def metric(name, unit, better, get):
            s, p = get("symrnn"), get("pytorch")
            ratio = None
            if s and p:
                ratio = s / p if better == "higher" else p / s
            metrics[name] = {"symrnn": s, "pytorch": p, "ratio": ratio, "unit": unit, "better": better}

        metric("train_tokens_per_s_b1", "tokens/s", "higher", lambda s: fig(s, "train1", "tokens_per_s"))
        metric("train_tokens_per_s_b64", "tokens/s", "higher", lambda s: fig(s, "train64", "tokens_per_s"))
        metric("generate_sentences_per_s_b1", "sentences/s", "higher", lambda s: fig(s, "generate", "sentences_per_s_b1"))
        metric("generate_sentences_per_s_b64", "sentences/s", "higher", lambda s: fig(s, "generate", "sentences_per_s_b64"))
        metric("cold_start_s", "s", "lower", lambda s: results.get(s, {}).get("start_cold"))
        metric("warm_start_s", "s", "lower", lambda s: results.get(s, {}).get("start_warm"))
        metric("peak_memory_mib_train_b64", "MiB", "lower", lambda s: fig(s, "train64", "peak_rss_mib"))
        if options.device == "gpu":
            metric("peak_gpu_memory_mib_train_b64", "MiB", "lower", lambda s: fig(s, "train64", "gpu_peak_mib"))
        metric("output_layer_gflops", "GFLOP/s", "higher", lambda s: fig(s, "output_layer", "gflops"))
        metric("output_layer_fraction_of_numpy_sgemm", "fraction", "higher",
               lambda s: (fig(s, "output_layer", "gflops") / machine_rate)
               if fig(s, "output_layer", "gflops") and machine_rate else None)
        report["metrics"] = metrics
        report["details"] = results
        report["runs"] = run.log
        report["torch_note"] = torch_note
        failures = list(run.failures)
        if check and with_torch and check.get("passed") is False:
            failures.append(f"loss check failed: max relative difference {check['max_rel_diff']:.2e} > {LOSS_CHECK_RTOL}")
    report["failures"] = failures
    report["script_seconds"] = time.perf_counter() - script_start
    return report, (1 if failures else 0)


ROWS = [
    ("train_tokens_per_s_b1", "train tokens/s, batch 1", "{:.0f}"),
    ("train_tokens_per_s_b64", "train tokens/s, batch 64", "{:.0f}"),
    ("generate_sentences_per_s_b1", "generate sentences/s (20 tokens), batch 1", "{:.2f}"),
    ("generate_sentences_per_s_b64", "generate sentences/s (20 tokens), batch 64", "{:.1f}"),
    ("cold_start_s", "cold start to 1st step b64, s (*)", "{:.1f}"),
    ("warm_start_s", "warm start to 1st step b64, s (*)", "{:.1f}"),
    ("peak_memory_mib_train_b64", "peak memory training b64, MiB (*)", "{:.0f}"),
    ("peak_gpu_memory_mib_train_b64", "peak GPU memory training b64, MiB (*)", "{:.0f}"),
    ("output_layer_gflops", "output layer fwd+bwd GFLOP/s (b64 x T20)", "{:.1f}"),
    ("output_layer_fraction_of_numpy_sgemm", "output layer / machine sgemm rate", "{:.0%}"),
]


def format_report(report) -> str:
    m = report["machine"]
    lines = []
    threads = report.get("threads", {})
    thread_text = "; ".join(
        f"{side}: " + ", ".join(f"{k}={v}" for k, v in t.items()) for side, t in threads.items() if t
    )
    lines.append(
        f"machine: {m['cpu']}, {m['cores']} cores, load average {m['load_start']} at start, {m.get('load_end')} at end; "
        f"Python {m['python']}, pytensor {m['pytensor']}, numpy {m['numpy']}, torch {m['torch'] or 'not installed'}"
    )
    if m.get("load_1min_range"):
        low, high = m["load_1min_range"]
        lines.append(f"1-minute load average before each measurement: {low:.2f} .. {high:.2f} on {m['cores']} cores")
    rate = m.get("numpy_sgemm_gflops")
    what = "CUDA float32 matmul 8192^3" if report["config"].get("device") == "gpu" else "numpy float32 matmul 2048^3"
    lines.append(f"{what}: {rate:.1f} GFLOP/s" if rate else f"{what}: failed")
    if m.get("gpu") or m.get("jax"):
        lines.append(f"GPU: {m.get('gpu') or 'none'}; jax {m.get('jax')}")
    lines.append(f"threads: {thread_text or 'n/a'}  (options: --threads {report['config']['threads']})")
    cfg = report["config"]
    d = report["data"]
    lines.append(
        f"model: V={cfg['word_dim']} D={cfg['embedding_dim']} H={cfg['hidden_dim']} x{cfg['num_layers']} GRU hard_sigmoid, "
        f"float32, RMSprop; symrnn backend={cfg['backend']} implementation={cfg['implementation']}; "
        f"device={cfg.get('device', 'cpu')}"
        + (f"; every batch padded to a multiple of {cfg['bucket_width']} steps (JAX static shapes)" if cfg.get("bucket_width") else "")
    )
    lines.append(
        f"data: {d['sentences']} sentences, lengths {d['min_length']}..{d['max_length']} mean {d['mean_length']:.1f}; "
        f"batch-64 T: {[s[0] for s in d['batch64_shapes']]}"
    )
    check = report.get("loss_check")
    if check is None:
        lines.append("loss check: FAILED to run")
    elif "pytorch_loss" in check:
        lines.append(
            f"loss check (same params, same batch T={check['batch_shape'][0]} B={check['batch_shape'][1]}, "
            f"{check['tokens']} tokens): symrnn {check['symrnn_loss'][0]:.4f} -> {check['symrnn_loss'][1]:.4f}, "
            f"PyTorch {check['pytorch_loss'][0]:.4f} -> {check['pytorch_loss'][1]:.4f} (before/after one RMSprop step); "
            f"max relative difference (losses, grad norms, step logits) {check['max_rel_diff']:.1e} "
            f"{'<=' if check['passed'] else '>'} {LOSS_CHECK_RTOL:g}: {'PASS' if check['passed'] else 'FAIL'}"
        )
    else:
        lines.append(f"loss check: symrnn loss {check['symrnn_loss'][0]:.4f} on {check['tokens']} tokens; PyTorch side not run")
    if report.get("torch_note"):
        lines.append(f"note: {report['torch_note']}")
    lines.append("")
    header = ("metric", "symrnn", "PyTorch", "symrnn/PyTorch (**)")
    rows = []
    for key, label, fmt in ROWS:
        if key not in report["metrics"]:
            continue
        x = report["metrics"][key]
        cell = lambda v: "n/a" if v is None else fmt.format(v)  # noqa: E731
        rows.append((label, cell(x["symrnn"]), cell(x["pytorch"]), "n/a" if x["ratio"] is None else f"{x['ratio']:.2f}"))
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    sep = "-+-".join("-" * w for w in widths)
    fmt_row = lambda r: " | ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))  # noqa: E731
    lines += [fmt_row(header), sep] + [fmt_row(r) for r in rows]
    lines.append("")
    lines.append("(*)  lower is better; cold = empty PyTensor compile directory, warm = the same directory again;")
    lines.append("     PyTorch has no compile cache: both of its figures are process start to the first step.")
    lines.append("(**) > 1 means symrnn is better: symrnn/PyTorch for rates, PyTorch/symrnn for seconds and MiB.")
    lines.append("Medians over repetitions; a busy machine (see load average) makes every figure noisy.")
    for failure in report.get("failures", []):
        lines.append(f"FAILURE: {failure}")
    lines.append(f"benchmark script: {report['script_seconds']:.0f} s wall")
    return "\n".join(lines)


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        prog="benchmark.py",
        description="Benchmark symrnn's two-layer GRU language model against an eager PyTorch peer "
        "(training, generation, start-up, memory, output-layer efficiency).",
    )
    parser.add_argument("--json", action="store_true", help="also print every figure as one JSON object on the last line")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (for tests)")
    parser.add_argument("--skip-torch", action="store_true", help="run symrnn's side only (ratios n/a)")
    parser.add_argument("--backend", choices=("cpu", "numba", "jax"), default=None,
                        help="symrnn's compile backend (default cpu; jax with --device gpu)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="gpu: symrnn on PyTensor's JAX backend, PyTorch on CUDA (default cpu)")
    parser.add_argument("--implementation", choices=("auto", "scan", "fused"), default="auto",
                        help="symrnn's recurrence and loss: auto (fused Ops), scan (plain scan + log_softmax graph), fused")
    parser.add_argument("--threads", type=int, default=0,
                        help="OMP/OpenBLAS/MKL threads and torch.set_num_threads in the children, the same for both sides "
                        "(default 0: each library's own default, all cores; 1 is far steadier on a busy machine)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sentences, batches and initial values")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--worker-args", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.backend is None:
        options.backend = "jax" if options.device == "gpu" else "cpu"
    elif options.device == "gpu" and options.backend != "jax":
        parser.error("--device gpu runs symrnn on the jax backend; leave --backend out or give --backend jax")
    return options


def main(argv=None) -> int:
    options = parse_arguments(sys.argv[1:] if argv is None else argv)
    if options.worker:
        return run_worker(options.worker, json.loads(options.worker_args))
    import warnings

    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
    report, status = collect(options)
    print(format_report(report), flush=True)
    if options.json:
        print(json.dumps(report, default=float), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
