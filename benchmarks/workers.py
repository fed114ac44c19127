"""The measurements, each run in a fresh child process (``scripts/benchmark.py --worker NAME``).

A worker prints its figures as JSON on its last line.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import numpy as np

from benchmarks.peers import SymrnnSide, TorchSide, openblas_threads
from benchmarks.workload import (
    GENERATE_LENGTH, HIDDEN_DIM, LOSS_CHECK_RTOL, OUTPUT_LAYER_STEPS, START_ID, WORD_DIM, load_batches,
)

def _max_rss_mib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _symrnn_side(args, values):
    from scripts.process import configure_process

    # As symrnn's scripts run: Numba's workqueue threads, JAX's full float32
    # products; thread counts come from the environment the runner set.
    configure_process(backend=args["backend"])
    return SymrnnSide(values, args["backend"], args["implementation"])


def _make_side(args, values):
    if args["side"] == "symrnn":
        return _symrnn_side(args, values)
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
    return {"gflops": 2 * n**3 / statistics.median(times) / 1e9, "openblas_threads": openblas_threads()}


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
    sym = _symrnn_side(args, values)
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
