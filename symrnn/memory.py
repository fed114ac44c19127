"""How much memory a training run needs, and how much the machine has.

Settings whose arrays cannot exist (``HIDDEN_DIM=100000`` asks for a 120 GB
recurrent matrix) are better refused before anything is allocated than
answered by a ``MemoryError`` halfway through building the model:
:func:`training_memory_bytes` estimates the need from the sizes alone and
:func:`available_memory_bytes` says what the machine can give.
"""

from __future__ import annotations

import math
import os

import numpy as np

from symrnn.cells import CELLS

__all__ = ["available_memory_bytes", "format_bytes", "parameter_count", "training_memory_bytes"]

#: Arrays the size of the parameters alive during a step, besides the
#: optimizer state: the parameters, their gradients and the updated values.
_PARAMETER_COPIES = 3
_OPTIMIZER_COPIES = {"sgd": 0, "rmsprop": 1, "adam": 2}


def parameter_count(vocabulary_size: int, embedding_dim: int, hidden_dim: int, num_layers: int, cell: str) -> int:
    """Number of parameters of ``RNNLanguageModel`` with these sizes.

    Embedding (V, D); per layer ``W_x`` (D or H, k*H), ``W_h`` (H, k*H) and
    ``b`` (k*H) with k the cell's gate blocks; output ``W`` (H, V) and ``b`` (V).
    """
    V, D, H = int(vocabulary_size), int(embedding_dim), int(hidden_dim)
    kH = CELLS[cell].blocks * H
    layers = sum((D if layer == 0 else H) * kH + H * kH + kH for layer in range(int(num_layers)))
    return V * D + layers + H * V + V


def training_memory_bytes(
    vocabulary_size: int,
    embedding_dim: int,
    hidden_dim: int,
    num_layers: int,
    cell: str,
    batch_size: int,
    max_length: int,
    optimizer: str = "rmsprop",
    dtype: str = "float32",
    evaluation_batch_size: int = 64,
) -> int:
    """A lower estimate of the memory a training run needs, in bytes.

    Counts only arrays every run must hold at once, so a run refused by it
    cannot succeed: the parameters, their gradients and updated values, the
    optimizer state, and the larger of the activations of one training batch
    (logits and their gradient, input projections and states of every layer,
    embeddings) and of one evaluation batch (its logits).

    Parameters
    ----------
    vocabulary_size, embedding_dim, hidden_dim, num_layers : int
        The model's sizes.
    cell : str
        ``"gru"``, ``"lstm"`` or ``"rnn"``.
    batch_size : int
        Sentences per training step.
    max_length : int
        Steps of the longest sentence (a batch is padded to its longest).
    optimizer : str
        ``"sgd"``, ``"rmsprop"`` or ``"adam"``.
    dtype : str
        The float type of parameters and activations.
    evaluation_batch_size : int
        Sentences per evaluation batch.

    Returns
    -------
    int
    """
    itemsize = np.dtype(dtype).itemsize
    V, D, H = int(vocabulary_size), int(embedding_dim), int(hidden_dim)
    spec = CELLS[cell]
    parameters = parameter_count(V, D, H, num_layers, cell)
    parameter_arrays = (_PARAMETER_COPIES + _OPTIMIZER_COPIES.get(optimizer, 2)) * parameters
    tokens = int(batch_size) * int(max_length)
    per_layer = tokens * (spec.blocks * H + spec.states * H)
    training = tokens * (2 * V + D) + int(num_layers) * per_layer
    evaluation = int(evaluation_batch_size) * int(max_length) * V
    return int((parameter_arrays + max(training, evaluation)) * itemsize)


def _meminfo() -> dict[str, int]:
    values = {}
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                name, _, rest = line.partition(":")
                fields = rest.split()
                if fields and fields[0].isdigit():
                    values[name] = int(fields[0]) * 1024
    except OSError:
        pass
    return values


def _cgroup_room() -> int | None:
    """Bytes the process's memory cgroup still allows (cgroup v2), or None."""
    try:
        with open("/proc/self/cgroup", encoding="ascii", errors="replace") as handle:
            relative = next((line.split(":", 2)[2].strip() for line in handle if line.startswith("0::")), None)
        if relative is None:
            return None
        folder = os.path.join("/sys/fs/cgroup", relative.lstrip("/"))
        with open(os.path.join(folder, "memory.max"), encoding="ascii") as handle:
            limit = handle.read().strip()
        if limit == "max":
            return None
        with open(os.path.join(folder, "memory.current"), encoding="ascii") as handle:
            current = int(handle.read().strip())
        return max(int(limit) - current, 0)
    except (OSError, ValueError, IndexError):
        return None


def available_memory_bytes() -> int | None:
    """Memory a new allocation can still get, in bytes, or None when unknown.

    Linux's ``MemAvailable`` plus free swap (``/proc/meminfo``), else
    ``os.sysconf``'s available physical pages; never more than the memory
    cgroup still allows.
    """
    info = _meminfo()
    if "MemAvailable" in info:
        available = info["MemAvailable"] + info.get("SwapFree", 0)
    else:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    room = _cgroup_room()
    return available if room is None else min(available, room)


def format_bytes(n: int) -> str:
    """``n`` bytes as MiB or GiB with one decimal, for messages."""
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{math.ceil(n / 1024)} KiB"
