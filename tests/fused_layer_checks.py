"""Shared checks of the fused layer Ops (tests/test_ops_gru.py, test_ops_lstm.py, test_ops_rnn.py).

Each fused Op is compared with ``recurrent_layer(..., implementation="scan")``
(the plain scan graph) and with a float64 NumPy layer built on the cells of
:mod:`tests.numpy_reference`, which shares no code with symrnn.
"""

from __future__ import annotations

import functools

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.link.vm import VMLinker

from models.language_model import RNNLanguageModel
from symrnn.cells import CELLS
from symrnn.recurrence import recurrent_layer
from tests import numpy_reference as ref

# MODE, the C-VM linker, is what the project runs the fused Ops under; PY_MODE
# (Python VM, no C thunks) runs the reference scan graphs: same results, and
# far less C compilation on a cold PyTensor cache.
MODE = pytensor.compile.mode.Mode(linker="cvm", optimizer="fast_run")
PY_MODE = pytensor.compile.mode.Mode(linker=VMLinker(use_cloop=False, c_thunks=False), optimizer="fast_run")
GATES = ("hard_sigmoid", "sigmoid")
NUMPY_GATES = {"hard_sigmoid": ref.hard_sigmoid, "sigmoid": ref.sigmoid}
LENGTHS = (7, 3, 0, 5)  # with a fully padded sequence


def layer_inputs(cell, T, B, H, dtype="float64", seed=0, lengths=None, scale=1.0):
    """Random (projected, mask, initial_states, W_h) of a ``cell`` layer; ``lengths`` (B,) gives padding."""
    rng = np.random.default_rng(seed)
    k, n = CELLS[cell].blocks, CELLS[cell].states
    projected = (rng.normal(size=(T, B, k * H)) * scale).astype(dtype)
    initial = [(rng.normal(size=(B, H)) * 0.5 * scale).astype(dtype) for _ in range(n)]
    W_h = (rng.normal(size=(H, k * H)) * scale / np.sqrt(H)).astype(dtype)
    lengths = [T] * B if lengths is None else lengths
    mask = (np.arange(T)[:, None] < np.asarray(lengths)[None, :]).astype(dtype)
    return projected, mask, initial, W_h


def numpy_layer(cell, projected, mask, initial, W_h, gate):
    """Float64 NumPy layer: the state sequences (T, B, H), output first, padding carrying the states."""
    step, _ = ref.NUMPY_CELLS[cell]
    states = [np.asarray(s, dtype=np.float64) for s in initial]
    W_h = np.asarray(W_h, dtype=np.float64)
    sequences = [[] for _ in states]
    for a, m in zip(np.asarray(projected, dtype=np.float64), np.asarray(mask, dtype=np.float64)):
        new = step(a, *states, W_h, gate=NUMPY_GATES[gate])
        m = m[:, None]
        states = [m * n + (1 - m) * o for n, o in zip(new, states)]
        for seq, s in zip(sequences, states):
            seq.append(s)
    H = W_h.shape[0]
    return [np.array(seq).reshape(len(projected), mask.shape[1], H) for seq in sequences]


def numpy_cost(cell, projected, mask, initial, W_h, gate, weights):
    """``sum_i sum(states_i * weights_i)`` of the NumPy layer: a cost on every state sequence."""
    return sum(np.sum(s * w) for s, w in zip(numpy_layer(cell, projected, mask, initial, W_h, gate), weights))


def cost_weights(cell, T, B, H, dtype="float64", seed=1):
    """Random weights (T, B, H), one per state sequence, for ``sum(states * weights)``."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(T, B, H)).astype(dtype) for _ in range(CELLS[cell].states)]


@functools.lru_cache(maxsize=None)
def compiled_layer(cell, gate, implementation, dtype="float64"):
    """``f(projected, mask, W_h, *initial, *weights) -> [*states, d_projected, d_W_h, *d_initial]``.

    The gradients are those of ``sum_i sum(states_i * weights_i)``; the fused
    layer runs under MODE, the scan graph under PY_MODE.
    """
    n = CELLS[cell].states
    P = pt.tensor3("P", dtype=dtype)
    M = pt.matrix("M", dtype=dtype)
    W = pt.matrix("W", dtype=dtype)
    initial = [pt.matrix(f"s0_{i}", dtype=dtype) for i in range(n)]
    weights = [pt.tensor3(f"R{i}", dtype=dtype) for i in range(n)]
    states = recurrent_layer(cell, P, M, initial, W, gate=gate, implementation=implementation)
    cost = sum(pt.sum(s * r) for s, r in zip(states, weights))
    grads = pt.grad(cost, [P, W, *initial])
    mode = PY_MODE if implementation == "scan" else MODE
    return pytensor.function([P, M, W, *initial, *weights], [*states, *grads], mode=mode)


def run_layer(cell, gate, implementation, projected, mask, initial, W_h, weights):
    """Outputs of :func:`compiled_layer`, named."""
    n = CELLS[cell].states
    fn = compiled_layer(cell, gate, implementation, projected.dtype.name)
    outs = fn(projected, mask, W_h, *initial, *weights)
    names = [f"state {i}" for i in range(n)] + ["d_projected", "d_W_h"] + [f"d_initial {i}" for i in range(n)]
    return dict(zip(names, outs))


def assert_fused_equals_scan_and_numpy(cell, gate, T=7, B=4, H=5, seed=0):
    """Forward states and all gradients: fused vs scan vs float64 NumPy (finite differences for the gradients)."""
    P, M, initial, W = layer_inputs(cell, T, B, H, seed=seed, lengths=LENGTHS[:B], scale=0.5)
    R = cost_weights(cell, T, B, H, seed=seed + 1)
    fused = run_layer(cell, gate, "fused", P, M, initial, W, R)
    scan = run_layer(cell, gate, "scan", P, M, initial, W, R)
    for name in scan:
        np.testing.assert_allclose(fused[name], scan[name], rtol=1e-9, atol=1e-12, err_msg=name)
    for i, want in enumerate(numpy_layer(cell, P, M, initial, W, gate)):
        np.testing.assert_allclose(fused[f"state {i}"], want, rtol=1e-10, atol=1e-12)

    def numerical(x):
        return ref.numerical_gradient(lambda: numpy_cost(cell, P, M, initial, W, gate, R), x)

    np.testing.assert_allclose(fused["d_projected"], numerical(P), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(fused["d_W_h"], numerical(W), rtol=1e-6, atol=1e-8)
    for i, s in enumerate(initial):
        np.testing.assert_allclose(fused[f"d_initial {i}"], numerical(s), rtol=1e-6, atol=1e-8, err_msg=f"initial {i}")
    return fused


def assert_padding_carries_the_states(cell, gate):
    """Every state stays what it was after a sequence's last token; a fully padded one keeps its initial states."""
    T, B, H = 7, 4, 3
    P, M, initial, W = layer_inputs(cell, T, B, H, seed=3, lengths=LENGTHS)
    out = run_layer(cell, gate, "fused", P, M, initial, W, cost_weights(cell, T, B, H))
    for i, s0 in enumerate(initial):
        states = out[f"state {i}"]
        for j, L in enumerate(LENGTHS):
            last = s0[j] if L == 0 else states[L - 1, j]
            np.testing.assert_array_equal(states[L:, j], np.broadcast_to(last, (T - L, H)))
    # the fully padded sequence passes its gradient straight to its initial states
    R = cost_weights(cell, T, B, H)
    for i in range(len(initial)):
        np.testing.assert_allclose(out[f"d_initial {i}"][2], R[i][:, 2].sum(axis=0), rtol=1e-12)
        assert not np.any(out["d_projected"][:, 2])


def assert_float32_stays_float32(cell, gate):
    """float32 in, float32 states and gradients out, close to the float64 results."""
    T, B, H = 6, 3, 5
    P, M, initial, W = layer_inputs(cell, T, B, H, dtype="float32", seed=14, lengths=[6, 4, 2])
    R = cost_weights(cell, T, B, H, dtype="float32", seed=15)
    got = run_layer(cell, gate, "fused", P, M, initial, W, R)
    want = run_layer(cell, gate, "fused", *(_f64(x) for x in (P, M, initial, W, R)))
    for name, value in got.items():
        assert value.dtype == np.float32, name
        np.testing.assert_allclose(value, want[name], rtol=1e-4, atol=1e-5, err_msg=name)


def _f64(x):
    return [a.astype("float64") for a in x] if isinstance(x, list) else x.astype("float64")


def assert_windows_carry_the_states(cell, gate, implementation="fused"):
    """One pass over a long batch equals 3 windows, each started from the previous window's final states."""
    T, B, H = 12, 3, 4
    P, M, initial, W = layer_inputs(cell, T, B, H, seed=20, lengths=[12, 9, 5])
    R = cost_weights(cell, T, B, H)
    whole = run_layer(cell, gate, implementation, P, M, initial, W, R)
    n = len(initial)
    states = initial
    pieces = [[] for _ in range(n)]
    for window in (slice(0, 5), slice(5, 8), slice(8, 12)):
        out = run_layer(cell, gate, implementation, P[window], M[window], states, W, [r[window] for r in R])
        seqs = [out[f"state {i}"] for i in range(n)]
        for piece, seq in zip(pieces, seqs):
            piece.append(seq)
        states = [seq[-1] for seq in seqs]
    for i in range(n):
        np.testing.assert_allclose(np.concatenate(pieces[i]), whole[f"state {i}"], rtol=1e-12, atol=1e-14)


def assert_the_default_model_trains_with_the_fused_op(cell, gate, op_type):
    """The default (auto) training graph uses ``op_type`` and gives the loss and gradients of the scan graph."""
    V, D, H, T, B = 11, 4, 5, 6, 3
    rng = np.random.default_rng(40)
    ids = rng.integers(0, V, size=(T, B)).astype("int32")
    targets = rng.integers(0, V, size=(T, B)).astype("int32")
    mask = (np.arange(T)[:, None] < np.array([6, 4, 1])[None, :]).astype("float64")
    results = []
    for implementation in ("auto", "scan"):
        model = RNNLanguageModel(V, D, H, num_layers=2, cell=cell, gate=gate, dtype="float64", seed=3,
                                 recurrence=implementation)
        ids_v, targets_v, mask_v = pt.imatrix("ids"), pt.imatrix("targets"), pt.matrix("mask", dtype="float64")
        total, _ = model.loss(ids_v, targets_v, mask_v)
        grads = pytensor.grad(total, list(model.params.values()))
        fn = pytensor.function([ids_v, targets_v, mask_v], [total, *grads], mode=model.mode)
        ops = [type(node.op) for node in fn.maker.fgraph.apply_nodes]
        results.append((ops, fn(ids, targets, mask)))
    (auto_ops, auto_out), (scan_ops, scan_out) = results
    assert auto_ops.count(op_type) == 2  # one per layer
    assert op_type not in scan_ops
    for a, b in zip(auto_out, scan_out):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-13)


def assert_the_generation_step_uses_the_fused_op(cell, gate, op_type):
    """The default (auto) one-step generator runs ``op_type`` and equals the cell's step function."""
    V, D, H, B = 11, 4, 5, 3
    steps = {
        implementation: RNNLanguageModel(V, D, H, num_layers=2, cell=cell, gate=gate, dtype="float64", seed=4,
                                         recurrence=implementation).compile_step()
        for implementation in ("auto", "scan")
    }
    assert [type(n.op) for n in steps["auto"].maker.fgraph.apply_nodes].count(op_type) == 2
    assert not any(isinstance(n.op, op_type) for n in steps["scan"].maker.fgraph.apply_nodes)
    rng = np.random.default_rng(6)
    states = [rng.normal(size=(B, H)) for _ in range(2 * CELLS[cell].states)]
    ids = np.array([1, 5, 7], dtype="int32")
    for got, want in zip(steps["auto"](ids, *states), steps["scan"](ids, *states)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)


def _f64_scan(cell, gate, P, M, initial, W, R):
    return run_layer(cell, gate, "scan", _f64(P), _f64(M), _f64(initial), _f64(W), _f64(R))


def assert_float32_is_within_float32_rounding_of_the_float64_scan(cell, gate):
    """float32 states and gradients within a few float32 roundings (of the largest value) of the float64 scan.

    H = 37 runs both the vectorised loops of the kernels and their remainders.
    """
    T, B, H = 10, 3, 37
    P, M, initial, W = layer_inputs(cell, T, B, H, dtype="float32", seed=5, lengths=[10, 6, 0])
    R = cost_weights(cell, T, B, H, dtype="float32", seed=6)
    got = run_layer(cell, gate, "fused", P, M, initial, W, R)
    want = _f64_scan(cell, gate, P, M, initial, W, R)
    for name, value in got.items():
        assert value.dtype == np.float32, name
        np.testing.assert_allclose(value, want[name], rtol=1e-5, atol=1e-6 * np.abs(want[name]).max(), err_msg=name)


def assert_nan_reaches_the_states_and_gradients(cell, gate):
    """float32: a NaN in W_h makes every later state and every gradient NaN; a NaN in one
    sequence's projected input does so for that sequence (and W_h's gradient) only."""
    T, B, H = 4, 3, 37
    P, M, initial, W = layer_inputs(cell, T, B, H, dtype="float32", seed=2)
    R = cost_weights(cell, T, B, H, dtype="float32", seed=3)
    W_nan = W.copy()
    W_nan[2, 5] = np.nan
    out = run_layer(cell, gate, "fused", P, M, initial, W_nan, R)
    for name, value in out.items():
        assert np.isnan(value[1:] if name.startswith("state") else value).all(), name
    P_nan = P.copy()
    P_nan[0, 0, 1] = np.nan
    out = run_layer(cell, gate, "fused", P_nan, M, initial, W, R)
    for name, value in out.items():
        if name == "d_W_h":
            assert np.isnan(value).all()
            continue
        rows = value[1:, 0] if name.startswith("state") else value[:, 0] if name == "d_projected" else value[0]
        others = value[:, 1:] if value.ndim == 3 else value[1:]
        assert np.isnan(rows).all() and np.isfinite(others).all(), name


def assert_a_fully_padded_float32_batch_keeps_its_initial_states(cell, gate):
    """All-zero mask: the states stay the initial ones, which get the whole gradient; nothing reaches projected or W_h."""
    T, B, H = 5, 3, 20
    P, M, initial, W = layer_inputs(cell, T, B, H, dtype="float32", seed=8, lengths=[0, 0, 0])
    R = cost_weights(cell, T, B, H, dtype="float32", seed=9)
    out = run_layer(cell, gate, "fused", P, M, initial, W, R)
    for i, (s0, r) in enumerate(zip(initial, R)):
        assert out[f"state {i}"].dtype == np.float32
        np.testing.assert_array_equal(out[f"state {i}"], np.broadcast_to(s0, (T, B, H)))
        np.testing.assert_allclose(out[f"d_initial {i}"], r.sum(axis=0, dtype=np.float64), rtol=1e-6, atol=1e-6)
    assert not out["d_projected"].any() and not out["d_W_h"].any()


def _oddly_strided(x):
    """``x``'s values in a view with a negative first stride and a last stride of two elements."""
    holder = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), dtype=x.dtype)
    holder[..., ::2] = x
    view = np.ascontiguousarray(holder[::-1])[::-1][..., ::2]
    assert not view.flags.c_contiguous and not view.flags.f_contiguous
    return view


def assert_strided_inputs_give_the_results_of_contiguous_ones(op, cell):
    """The Ops' forward and backward, handed strided and Fortran-ordered arrays, return what they do for C-ordered copies."""
    T, B, H = 5, 3, 20
    P, M, initial, W = layer_inputs(cell, T, B, H, dtype="float32", seed=11, lengths=[5, 2, 4])
    states, acts = op.forward(P, M, initial, W)
    G = cost_weights(cell, T, B, H, dtype="float32", seed=12)
    grads = op.grad_op().gradients(M, initial, W, states, acts, G)
    odd_states, odd_acts = op.forward(_oddly_strided(P), np.asfortranarray(M), [_oddly_strided(s) for s in initial],
                                      np.asfortranarray(W))
    odd_grads = op.grad_op().gradients(
        _oddly_strided(M), [np.asfortranarray(s) for s in initial], _oddly_strided(W),
        [_oddly_strided(s) for s in states], _oddly_strided(acts), [np.asfortranarray(g) for g in G],
    )
    for got, want in zip([*odd_states, odd_acts], [*states, acts]):
        np.testing.assert_array_equal(got, want)
    (d_proj, d_initial, d_W), (odd_d_proj, odd_d_initial, odd_d_W) = grads, odd_grads
    for got, want in zip([odd_d_proj, *odd_d_initial, odd_d_W], [d_proj, *d_initial, d_W]):
        np.testing.assert_array_equal(got, want)
