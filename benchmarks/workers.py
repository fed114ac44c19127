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

from benchmarks.peers import SymrnnSide, TorchSide, native_computes_symrnn_function, numpy_blas, sample_tokens
from benchmarks.workload import (
    GENERATE_LENGTH, HIDDEN_DIM, LOSS_CHECK_RTOL, OUTPUT_LAYER_STEPS, START_ID, WORD_DIM, load_batches,
)


def _max_rss_mib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _symrnn_side(args, values, gate=None):
    from scripts.process import configure_process

    # As symrnn's scripts run: the Numba kernels' own BLAS on one thread, JAX's
    # full float32 products; thread counts come from the environment the runner set.
    configure_process(backend=args["backend"])
    return SymrnnSide(values, args.get("cell", "gru"), gate or args.get("gate", "hard_sigmoid"),
                      args["backend"], args["implementation"])


def _torch_side(args, values, peer=None):
    return TorchSide(values, args.get("cell", "gru"), args.get("gate", "hard_sigmoid"),
                     peer or args.get("peer", "eager"), args.get("device", "cpu"))


def _make_side(args, values):
    if args["side"] == "symrnn":
        return _symrnn_side(args, values)
    return _torch_side(args, values)


def _libraries(side):
    info = side.libraries()
    requested = os.environ.get("SYMRNN_BENCH_THREADS")
    if requested:
        info["requested_threads"] = int(requested)
    return info


def _apply_threads(side_name):
    n = os.environ.get("SYMRNN_BENCH_THREADS")
    if n and side_name == "pytorch":
        import torch

        torch.set_num_threads(int(n))


def _one_line(exc):
    """An exception as one line (torch.compile's errors run to pages)."""
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def generate_sentences(side, batch: int, length: int, rng) -> np.ndarray:
    """The generation driver both sides share: sample from the step function's logits.

    Returns
    -------
    ndarray (length, batch) int32 of the sampled ids
    """
    states = side.initial_states(batch)
    ids = np.full(batch, START_ID, dtype=np.int32)
    out = np.empty((length, batch), dtype=np.int32)
    for t in range(length):
        logits, *states = side.step(ids, *states)
        ids = sample_tokens(logits, rng)
        out[t] = ids
    return out


def worker_train(args, data, values):
    """Training throughput at batch 1 or 64: warm-up steps, then passes over the measured steps.

    ``first_step_s`` is the first warm-up step's time: for the compiled PyTorch
    peer, torch.compile's compilation happens there. If that peer cannot
    compile, the result says why (``unavailable``) instead of failing.
    """
    plan = args["plan"]
    _apply_threads(args["side"])
    side = _make_side(args, values)
    t0 = time.perf_counter()
    side.compile_train()
    compile_s = time.perf_counter() - t0
    prefix = "b1" if args["batch"] == 1 else "b64"
    warmup, steps, passes = (plan[f"train{args['batch']}_{k}"] for k in ("warmup", "steps", "passes"))
    batches = load_batches(data, prefix)[: warmup + steps]
    t0 = time.perf_counter()
    try:
        side.train_step(*batches[0])
    except Exception as exc:  # noqa: BLE001 - torch.compile's failures (no C++ compiler, ...) end the row only
        if args.get("peer") != "compiled":
            raise
        return {"unavailable": f"torch.compile failed: {_one_line(exc)}", **_libraries(side)}
    first_step_s = time.perf_counter() - t0
    for x, y, mask in batches[1:warmup]:
        side.train_step(x, y, mask)
    measured = batches[warmup:]
    if args["backend"] == "jax":
        # JAX compiles once per padded shape: one untimed pass first, so
        # that no compilation falls into the timed passes (every side runs it).
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
        "first_step_s": first_step_s,
        "last_loss_per_token": losses[-1] / max(1, int(np.count_nonzero(measured[-1][2]))),
        "peak_rss_mib": _max_rss_mib(),
        "gpu_peak_mib": side.gpu_peak_mib(),
        **_libraries(side),
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
        **_libraries(side),
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
    return {"gflops": 2 * n**3 / statistics.median(times) / 1e9, **numpy_blas()}


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


def _relative_difference(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-30)


def _losses_and_logits(side, batch, ids):
    """Loss and grad norm before and after one update on ``batch``; the first step's logits."""
    steps = [side.train_step(*batch) for _ in range(2)]
    side.compile_step()
    logits = np.asarray(side.step(ids, *side.initial_states(len(ids)))[0])
    return {"loss": [l for l, _ in steps], "grad_norm": [g for _, g in steps]}, logits


def _compare(reference, reference_logits, figures, logits):
    """Relative differences of a peer's figures to symrnn's (``reference``), and PASS/FAIL."""
    diffs = [_relative_difference(a, b) for key in ("loss", "grad_norm") for a, b in zip(reference[key], figures[key])]
    diffs.append(float(np.max(np.abs(reference_logits - logits)) / np.max(np.abs(logits))))
    worst = max(diffs)
    return {**figures, "max_rel_diff": worst, "passed": bool(worst <= LOSS_CHECK_RTOL)}


def worker_check(args, data, values):
    """symrnn and every PyTorch peer computing its function: same parameters, same batch.

    Compares losses and gradient norms before and after one RMSprop update and
    the generation step's logits. Peers that compute another function (nn.GRU;
    nn.LSTM beside hard-sigmoid gates) are listed under ``not_checked``.
    """
    phases = {}
    batch = load_batches(data, "b64")[0]
    x, y, mask = batch
    ids = np.arange(3, 3 + 64, dtype=np.int32)
    t0 = time.perf_counter()
    sym = _symrnn_side(args, values)
    sym.compile_train()
    phases["symrnn_compile_train_s"] = time.perf_counter() - t0
    sym_figures, sym_logits = _losses_and_logits(sym, batch, ids)
    result = {
        "cell": args.get("cell", "gru"), "gate": args.get("gate", "hard_sigmoid"),
        "phases": phases,
        "tokens": int(np.count_nonzero(mask)),
        "batch_shape": list(x.shape),
        "symrnn_loss": sym_figures["loss"],
        "symrnn_grad_norm": sym_figures["grad_norm"],
        "peers": {},
        "not_checked": {},
    }
    if args.get("skip_torch"):
        return result
    try:
        import torch
    except ImportError as exc:
        result["torch_import_error"] = f"{type(exc).__name__}: {exc}"
        return result
    result["torch_version"] = torch.__version__
    for peer in args.get("peers", ["eager"]):
        if peer == "native" and not native_computes_symrnn_function(result["cell"], result["gate"]):
            result["not_checked"][peer] = "computes another function (speed peer only)"
            continue
        t0 = time.perf_counter()
        try:
            figures, logits = _losses_and_logits(_torch_side(args, values, peer), batch, ids)
        except Exception as exc:  # noqa: BLE001
            if peer != "compiled":
                raise
            result["not_checked"][peer] = f"torch.compile failed: {_one_line(exc)}"
            continue
        phases[f"pytorch_{peer}_s"] = time.perf_counter() - t0
        result["peers"][peer] = _compare(sym_figures, sym_logits, figures, logits)
    if result["peers"]:
        result["max_rel_diff"] = max(p["max_rel_diff"] for p in result["peers"].values())
        result["passed"] = all(p["passed"] for p in result["peers"].values())
    return result


def _stream_side(args, values):
    from benchmarks.stream import SymrnnStreamSide, TorchStreamSide

    _apply_threads(args["side"])
    if args["side"] == "pytorch":
        return TorchStreamSide(values)
    from scripts.process import configure_process

    configure_process(backend=args["backend"])
    return SymrnnStreamSide(values, args["backend"])


def worker_stream_train(args, data, values):
    """Milliseconds per stream training step of one side: warm-up windows, then the timed ones (their median)."""
    from benchmarks.stream import train_steps

    plan = args["plan"]
    side = _stream_side(args, values)
    t0 = time.perf_counter()
    side.compile_train()
    compile_s = time.perf_counter() - t0
    figures = train_steps(side, load_batches(data, "stream")[: plan["warmup"] + plan["steps"]])
    timed = figures["step_s"][plan["warmup"]:]
    return {
        "median_step_ms": 1000 * statistics.median(timed), "step_ms": [1000 * t for t in timed],
        "first_step_s": figures["step_s"][0], "compile_s": compile_s, "last_loss": figures["loss"][-1],
        "peak_rss_mib": _max_rss_mib(), **_libraries(side),
    }


def worker_stream_check(args, data, values):
    """Both sides over the same first windows from the same values: per-step losses, gradient norms, step times."""
    from benchmarks.stream import CHECK_RTOL, CHECK_STEPS, relative_differences, train_steps

    windows = load_batches(data, "stream")[:CHECK_STEPS]
    result = {"windows": len(windows), "window_shape": list(windows[0][0].shape)}
    for side_name in ("symrnn", "pytorch"):
        side = _stream_side(dict(args, side=side_name), values)
        side.compile_train()
        result[side_name] = train_steps(side, windows)
        # The first step of a side allocates and warms up: the median is over the others.
        result[side_name]["median_step_ms"] = 1000 * statistics.median(result[side_name]["step_s"][1:])
    for key in ("loss", "grad_norm"):
        result[f"max_rel_diff_{key}"] = float(relative_differences(result["symrnn"][key], result["pytorch"][key]).max())
    result["passed"] = result["max_rel_diff_loss"] <= CHECK_RTOL
    return result


WORKERS = {
    "train": worker_train,
    "generate": worker_generate,
    "start": worker_start,
    "output_layer": worker_output_layer,
    "matmul": worker_matmul,
    "check": worker_check,
    "stream_train": worker_stream_train,
    "stream_check": worker_stream_check,
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
