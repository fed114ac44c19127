"""The benchmark's parent process: data, the worker children, machine facts.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.peers import PEERS, initial_values
from benchmarks.workload import (
    BUCKET_WIDTH, DTYPE, EMBEDDING_DIM, GATE, HIDDEN_DIM, LOSS_CHECK_RTOL, N_SENTENCES, NUM_LAYERS, PLANS, WORD_DIM,
    build_batches, make_sentences,
)
from scripts.process import BLAS_ENVIRONMENT

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "benchmark.py"

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

    def env(self, compiledir=None, torch_cache=None):
        env = dict(os.environ)
        # Both sides' children get the allocator setting symrnn's scripts use
        # (scripts/common.py keep_freed_memory_for_reuse): glibc keeps large
        # freed blocks instead of unmapping them, so per-step arrays are reused.
        env.setdefault("MALLOC_MMAP_THRESHOLD_", str(1 << 30))
        env.setdefault("MALLOC_TRIM_THRESHOLD_", str((1 << 31) - 1))
        # And the OpenBLAS setting they make before NumPy loads (scripts/process.py BLAS_ENVIRONMENT).
        for name, value in BLAS_ENVIRONMENT.items():
            env.setdefault(name, value)
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
        if torch_cache is not None:
            # An empty torch.compile cache: the compiled peer's first step is its whole compilation.
            env["TORCHINDUCTOR_CACHE_DIR"] = str(torch_cache)
            env["TRITON_CACHE_DIR"] = str(Path(torch_cache) / "triton")
        if compiledir is not None:
            flags = env.get("PYTENSOR_FLAGS", "")
            env["PYTENSOR_FLAGS"] = (flags + "," if flags else "") + f"compiledir={compiledir}"
            env["NUMBA_CACHE_DIR"] = str(Path(compiledir) / "numba")
        return env

    def __call__(self, name, label, compiledir=None, torch_cache=None, **extra):
        args = dict(self.base, **extra)
        load = _loadavg()
        _progress(f"  {label} ... (load {load[0] if load else '?'})")
        start = time.time()
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), "--worker", name, "--worker-args", json.dumps(args)],
            capture_output=True, text=True, env=self.env(compiledir, torch_cache), cwd=str(ROOT),
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


def _torch_availability(options):
    """(peers to run, note): the PyTorch peers asked for, or none with the reason."""
    if options.skip_torch:
        return [], "PyTorch side skipped (--skip-torch)"
    if importlib.util.find_spec("torch") is None:
        return [], "PyTorch is not installed (ImportError); running symrnn only. Install it with: pip install .[bench]"
    return list(options.peers), None


def training_row(cell, batch, results):
    """One row of the training table: symrnn's and each peer's tokens/s, the best peer and the ratio."""
    symrnn = _get(results.get("symrnn"), "tokens_per_s")
    peers = {}
    for peer in PEERS:
        if peer in results:
            r = results[peer] or {}
            peers[peer] = {"tokens_per_s": r.get("tokens_per_s"), "first_step_s": r.get("first_step_s"),
                           "unavailable": r.get("unavailable") or (None if r else "failed (see FAILURE)")}
    ran = {peer: p["tokens_per_s"] for peer, p in peers.items() if p["tokens_per_s"]}
    best = max(ran, key=ran.get) if ran else None
    return {
        "cell": cell, "gate": None if cell == "rnn" else GATE, "batch": batch, "symrnn": symrnn, "peers": peers,
        "best_peer": best, "best_peer_tokens_per_s": ran.get(best),
        "ratio": symrnn / ran[best] if symrnn and best else None,
    }


def collect(options) -> tuple[dict, int]:
    """Run every measurement; return the report dict and the exit status."""
    script_start = time.perf_counter()
    plan = PLANS["quick" if options.quick else "full"]
    cells = list(options.cells)
    report = {
        "machine": {
            "cpu": _cpu_model(), "cores": os.cpu_count(), "load_start": _loadavg(),
            "python": platform.python_version(), "pytensor": _version("pytensor"), "numpy": np.__version__,
            "torch": _version("torch"), "jax": _version("jax") if options.backend == "jax" else None,
            "gpu": _gpu_name() if options.device == "gpu" else None,
        },
        "config": {
            "word_dim": WORD_DIM, "embedding_dim": EMBEDDING_DIM, "hidden_dim": HIDDEN_DIM,
            "num_layers": NUM_LAYERS, "gate": GATE, "dtype": DTYPE, "optimizer": "rmsprop",
            "backend": options.backend, "implementation": options.implementation, "device": options.device,
            "seed": options.seed, "bucket_width": BUCKET_WIDTH if options.backend == "jax" else None,
            "quick": bool(options.quick), "threads": options.threads or "default", "plan": plan,
            "cells": cells, "peers": list(options.peers),
        },
    }
    peers, torch_note = _torch_availability(options)
    if torch_note:
        _progress(torch_note)

    with tempfile.TemporaryDirectory(prefix="symrnn-bench-") as tmp_name:
        tmp = Path(tmp_name)
        _progress("building sentences, batches and initial values")
        sentences = make_sentences(N_SENTENCES, options.seed)
        lengths = np.array([len(s) for s in sentences])
        bucket_width = BUCKET_WIDTH if options.backend == "jax" else None
        arrays = build_batches(sentences, options.seed, plan, bucket_width)
        data_path = tmp / "batches.npz"
        np.savez(data_path, **arrays)
        values_paths = {}
        for cell in dict.fromkeys(["gru", *cells]):
            values_paths[cell] = tmp / f"values-{cell}.npz"
            np.savez(values_paths[cell], **{k.replace("/", "__"): v for k, v in initial_values(cell, options.seed).items()})
        report["data"] = {
            "sentences": len(sentences), "mean_length": float(lengths.mean()),
            "min_length": int(lengths.min()), "max_length": int(lengths.max()),
            "batch64_shapes": [list(arrays[f"b64_{i}_x"].shape) for i in range(plan["train64_warmup"] + plan["train64_steps"])],
        }
        run = Runner(options, tmp, data_path, values_paths["gru"], plan)

        report["loss_check"] = {}
        for cell in values_paths:
            _progress(f"checking that symrnn and the PyTorch peers compute the same loss ({cell})")
            check = run("check", f"{cell} loss check", skip_torch=not peers, peers=peers, cell=cell, gate=GATE,
                        values=str(values_paths[cell]), torch_cache=tmp / f"inductor-{cell}-check")
            report["loss_check"][cell] = check
            if check and check.get("torch_import_error"):
                torch_note = f"PyTorch could not be imported ({check['torch_import_error']}); running symrnn only"
                _progress(torch_note)
                peers = []

        _progress("machine matrix-product rate")
        matmul = run("matmul", "CUDA float32 matmul 8192^3" if options.device == "gpu" else "numpy float32 matmul 2048^3")

        # Sides alternate measurement by measurement, so that a change in the
        # machine's load during the run affects all alike.
        training, training_results = [], {}
        for cell in cells:
            for batch in (1, 64):
                label = f"{cell} train batch {batch}"
                _progress(label)
                results = training_results[(cell, batch)] = {}
                results["symrnn"] = run("train", f"symrnn {label}", side="symrnn", cell=cell, gate=GATE, batch=batch,
                                        values=str(values_paths[cell]))
                for peer in peers:
                    cache = tmp / f"inductor-{cell}-b{batch}" if peer == "compiled" else None
                    results[peer] = run("train", f"pytorch {peer} {label}", side="pytorch", peer=peer, cell=cell,
                                        gate=GATE, batch=batch, values=str(values_paths[cell]), torch_cache=cache)
                training.append(training_row(cell, batch, results))
        report["training"] = training

        # The tutorial's GRU against the peer computing the same function, eagerly.
        sides = ["symrnn"] + (["pytorch"] if "eager" in peers else [])
        results = {s: {} for s in sides}
        if "gru" in cells:
            for part, batch in (("train1", 1), ("train64", 64)):
                results["symrnn"][part] = training_results[("gru", batch)]["symrnn"]
                if "pytorch" in results:
                    results["pytorch"][part] = training_results[("gru", batch)]["eager"]
        for part, worker, label in (("generate", "generate", "generation"), ("output_layer", "output_layer", "output layer")):
            _progress(label)
            for side in sides:
                results[side][part] = run(worker, f"{side} {label}", side=side)
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
        report["libraries"] = _libraries(training_results, matmul)

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
        report["details"] = {"gru": results,
                             "training": {f"{cell} b{batch}": r for (cell, batch), r in training_results.items()}}
        report["runs"] = run.log
        report["torch_note"] = torch_note
        failures = list(run.failures)
        for cell, check in report["loss_check"].items():
            if check and check.get("passed") is False:
                failed = [f"{peer} {p['max_rel_diff']:.2e}" for peer, p in check["peers"].items() if not p["passed"]]
                failures.append(f"{cell} loss check failed (> {LOSS_CHECK_RTOL}): {', '.join(failed)}")
    report["failures"] = failures
    report["script_seconds"] = time.perf_counter() - script_start
    return report, (1 if failures else 0)


def _machine(options):
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "load_start": _loadavg(), "python": platform.python_version(),
            "pytensor": _version("pytensor"), "numpy": np.__version__, "torch": _version("torch")}


def collect_streams(options) -> tuple[dict, int]:
    """The stream section (:mod:`benchmarks.stream`): the step-by-step check, then ms per step and peak memory.

    For every configuration a symrnn child and then a PyTorch child, each
    training from the same values over the same windows.

    Returns
    -------
    report : dict with ``machine``, ``config``, ``check``, ``rows``, ``runs``, ``failures``, ``script_seconds``
    status : int, 1 when a child failed or the check did not pass
    """
    from benchmarks import stream
    from symrnn.corpus import read_stream_text

    script_start = time.perf_counter()
    plan = stream.STREAM_PLANS["quick" if options.quick else "full"]
    peers, torch_note = _torch_availability(options)
    ids, alphabet = stream.character_ids(read_stream_text(None))
    report = {
        "machine": _machine(options),
        "config": {
            "cell": stream.CELL, "gate": stream.GATE, "vocabulary": len(alphabet), "characters": int(ids.size),
            "embedding_dim": stream.STREAM_EMBEDDING, "batch": stream.STREAM_BATCH, "seq_length": stream.STREAM_SEQ,
            "learning_rate": stream.LEARNING_RATE, "decay": stream.DECAY, "epsilon": stream.EPSILON,
            "grad_clip": stream.GRAD_CLIP, "backend": options.backend, "threads": options.threads or "default",
            "seed": options.seed, "quick": bool(options.quick), "plan": plan,
            "check": {"layers": stream.CHECK_LAYERS, "hidden": stream.CHECK_HIDDEN, "steps": stream.CHECK_STEPS,
                      "rtol": stream.CHECK_RTOL},
        },
        "torch_note": torch_note,
    }
    with tempfile.TemporaryDirectory(prefix="symrnn-stream-bench-") as tmp_name:
        tmp = Path(tmp_name)
        _progress("stream section: building windows and initial values")
        data_path = tmp / "windows.npz"
        np.savez(data_path, **stream.window_arrays(ids, max(stream.CHECK_STEPS, plan["warmup"] + plan["steps"])))

        def values_path(layers, hidden):
            path = tmp / f"values-{layers}x{hidden}.npz"
            if not path.exists():
                values = stream.initial_values(len(alphabet), hidden, layers, options.seed)
                np.savez(path, **{k.replace("/", "__"): v for k, v in values.items()})
            return str(path)

        run = Runner(options, tmp, data_path, values_path(stream.CHECK_LAYERS, stream.CHECK_HIDDEN), plan)
        if peers:
            _progress("stream section: symrnn and nn.LSTM step by step")
            report["check"] = run("stream_check", f"stream check {stream.CHECK_LAYERS}x{stream.CHECK_HIDDEN}")
        rows = []
        for layers, hidden in plan["configs"]:
            row = {"layers": layers, "hidden": hidden}
            for side in ["symrnn"] + (["pytorch"] if peers else []):
                row[side] = run("stream_train", f"{side} stream {layers}x{hidden}", side=side,
                                values=values_path(layers, hidden))
            rows.append(row)
        report["rows"] = rows
    report["machine"]["load_end"] = _loadavg()
    loads = [r["load_before"][0] for r in run.log if r["load_before"]]
    report["machine"]["load_1min_range"] = [min(loads), max(loads)] if loads else None
    report["runs"] = run.log
    failures = list(run.failures)
    check = report.get("check")
    if check and not check["passed"]:
        failures.append(f"stream check failed: losses differ by {check['max_rel_diff_loss']:.2e} (> {stream.CHECK_RTOL:g})")
    report["failures"] = failures
    report["script_seconds"] = time.perf_counter() - script_start
    return report, (1 if failures else 0)


def _libraries(training_results, matmul):
    """Each side's libraries and threads, as its first training child reported them."""
    libraries = {}
    for results in training_results.values():
        for side, r in results.items():
            key = "symrnn" if side == "symrnn" else "pytorch"
            if r and key not in libraries:
                libraries[key] = {k: v for k, v in r.items() if k in _LIBRARY_KEYS}
    if "symrnn" not in libraries and matmul:
        libraries["symrnn"] = {k: v for k, v in matmul.items() if k in _LIBRARY_KEYS}
    return libraries


_LIBRARY_KEYS = {"numpy", "blas", "blas_architecture", "blas_threading", "blas_threads", "numba_threads", "torch",
                 "kernel_blas", "kernel_blas_architecture", "kernel_blas_threads",
                 "onednn", "cpu_capability", "torch_threads", "torch_interop_threads", "requested_threads"}
