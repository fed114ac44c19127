#!/usr/bin/env python
"""Benchmark symrnn's two-layer language models (GRU, LSTM, RNN) against PyTorch peers.

    python scripts/benchmark.py                 # full run, every cell and peer, tables on stdout
    python scripts/benchmark.py --quick --json  # fewer repetitions; JSON on the last line
    python scripts/benchmark.py --skip-torch    # symrnn only (ratios n/a)
    python scripts/benchmark.py --cells gru --peers eager,native   # a part of it
    python scripts/benchmark.py --device gpu    # symrnn on PyTensor's JAX backend vs PyTorch on CUDA
    python scripts/benchmark.py --stream        # also the stream section (char-rnn LSTM vs nn.LSTM)
    python scripts/benchmark.py --stream-only --quick   # only the stream section, fewer configurations

The benchmark itself lives in the ``benchmarks`` package beside ``scripts/``
(not installed with symrnn): what is measured and how is described there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Running as ``python scripts/benchmark.py`` from a checkout: make symrnn, models
# and benchmarks importable. This is scripts/common.py's path setup, repeated
# here because importing ``common`` also imports symrnn.corpus and with it NLTK
# (about 1.2 s and tens of MiB), which would count against both sides' start
# time and memory in the measured child processes.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from benchmarks.peers import PEERS, SYMRNN_BACKENDS, SYMRNN_CPU_BACKEND  # noqa: E402
from benchmarks.report import format_report, format_stream_report  # noqa: E402
from benchmarks.runner import collect, collect_streams  # noqa: E402
from benchmarks.workers import WORKERS, run_worker  # noqa: E402
from benchmarks.workload import CELLS  # noqa: E402


def _names(allowed, what):
    """An argparse type: a comma-separated list of some of ``allowed``, in the order given."""

    def parse(text):
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"{what} must be a comma-separated list of {', '.join(allowed)}, not {text!r}")
        return list(dict.fromkeys(names))

    return parse


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        prog="benchmark.py",
        description="Benchmark symrnn's two-layer language models against PyTorch peers: training "
        "tokens/s of every cell against the hand-written PyTorch model (eager and under torch.compile) and "
        "PyTorch's own layers; for the tutorial's GRU also generation, start-up, memory and output-layer efficiency.",
    )
    parser.add_argument("--json", action="store_true", help="also print every figure as one JSON object on the last line")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (for tests)")
    parser.add_argument("--skip-torch", action="store_true", help="run symrnn's side only (ratios n/a)")
    parser.add_argument("--cells", type=_names(CELLS, "--cells"), default=list(CELLS),
                        help=f"cells of the training table (default {','.join(CELLS)})")
    parser.add_argument("--peers", type=_names(PEERS, "--peers"), default=list(PEERS),
                        help="PyTorch peers: eager (the hand-written model), compiled (the same under torch.compile), "
                        f"native (nn.GRU / nn.LSTM / nn.RNN); default {','.join(PEERS)}")
    parser.add_argument("--backend", choices=SYMRNN_BACKENDS, default=None,
                        help=f"symrnn's compile backend (default {SYMRNN_CPU_BACKEND}; jax with --device gpu)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="gpu: symrnn on PyTensor's JAX backend, PyTorch on CUDA (default cpu)")
    parser.add_argument("--implementation", choices=("auto", "scan", "fused"), default="auto",
                        help="symrnn's recurrence and loss: auto (fused Ops), scan (plain scan + log_softmax graph), "
                        "fused (the fused recurrence and output-layer Ops, every cell)")
    parser.add_argument("--threads", type=int, default=0,
                        help="OMP/OpenBLAS/MKL threads and torch.set_num_threads in the children, the same for both sides "
                        "(default 0: each library's own default, all cores; 1 is far steadier on a busy machine)")
    parser.add_argument("--stream", action="store_true",
                        help="also run the stream section: char-rnn style LSTM training (1/2/3 layers x 128/256/512, "
                        "batch 50 x seq 50, states carried), ms per step and peak memory against nn.LSTM, and a "
                        "step-by-step loss check of the same run in PyTorch")
    parser.add_argument("--stream-only", action="store_true", help="run the stream section only")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sentences, batches and initial values")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--worker-args", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.backend is None:
        options.backend = "jax" if options.device == "gpu" else SYMRNN_CPU_BACKEND
    elif options.device == "gpu" and options.backend != "jax":
        parser.error("--device gpu runs symrnn on the jax backend; leave --backend out or give --backend jax")
    if (options.stream or options.stream_only) and options.device == "gpu":
        parser.error("the stream section runs on the CPU; leave --device gpu out with --stream or --stream-only")
    return options


def main(argv=None) -> int:
    options = parse_arguments(sys.argv[1:] if argv is None else argv)
    if options.worker:
        return run_worker(options.worker, json.loads(options.worker_args))
    import warnings

    from scripts.process import blas_kernel_warning, warn

    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
    message = blas_kernel_warning()
    if message:
        warn(message)
    report, status = ({}, 0) if options.stream_only else collect(options)
    if report:
        print(format_report(report), flush=True)
    if options.stream or options.stream_only:
        report["stream"], stream_status = collect_streams(options)
        status = max(status, stream_status)
        print(("\n" if not options.stream_only else "") + format_stream_report(report["stream"]), flush=True)
    if options.json:
        print(json.dumps(report, default=float), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
