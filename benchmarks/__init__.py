"""Benchmark symrnn's two-layer language models against PyTorch peers.

    python scripts/benchmark.py                 # full run, every cell and peer, tables on stdout
    python scripts/benchmark.py --quick --json  # fewer repetitions; JSON on the last line
    python scripts/benchmark.py --skip-torch    # symrnn only (ratios n/a)
    python scripts/benchmark.py --cells gru,rnn --peers eager,native
    python scripts/benchmark.py --device gpu    # symrnn on PyTensor's JAX backend vs PyTorch on CUDA
    python scripts/benchmark.py --stream-only   # only the stream section (see benchmarks.stream)

Two tables. The first: training tokens/s at batch 1 and 64 of every cell
(``--cells gru,lstm,rnn``, each with symrnn's default gate, hard_sigmoid)
against up to three PyTorch peers (``--peers eager,compiled,native``): the
hand-written model with symrnn's equations and layout, eager; the same with
its cell step and output layer under ``torch.compile`` (its first step, from an
empty compile cache, is shown as its compile time; where torch.compile cannot
work the row says why); PyTorch's own ``nn.GRU`` / ``nn.LSTM`` / ``nn.RNN``
(sigmoid gates: nn.GRU and nn.LSTM beside hard_sigmoid gates compute another
function of the same size; see :mod:`benchmarks.torch_models`). The best peer
of a row is the fastest that ran. A loss check per cell covers every peer
computing symrnn's function. The second table: the tutorial's GRU against the
eager peer -- training, generation, start-up, memory, output layer -- as
follows.

For the GRU, both sides build the same network -- embedding (V=8000, D=48), two GRU layers
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

``--stream`` (or ``--stream-only``) adds a third table, torch-rnn's: char-rnn
style stream training of an LSTM against ``nn.LSTM``, ms per step and peak
memory per size, after a step-by-step loss check (:mod:`benchmarks.stream`).

Modules: :mod:`benchmarks.workload` (the model sizes, sentences and batches),
:mod:`benchmarks.stream` (the stream section's data and sides),
:mod:`benchmarks.peers` (the sides; every use of symrnn's API),
:mod:`benchmarks.torch_models` (the PyTorch models), :mod:`benchmarks.workers` (the measurements,
run in child processes), :mod:`benchmarks.runner` (the parent: children, machine facts)
and :mod:`benchmarks.report` (the table). The entry point is ``scripts/benchmark.py``.
"""
