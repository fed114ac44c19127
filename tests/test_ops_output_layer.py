"""The fused output layer (symrnn.ops.output_layer.OutputLayerNLL) against NumPy and the log_softmax graph."""

from __future__ import annotations

import functools

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.gradient import NullTypeGradError, verify_grad
from pytensor.link.vm import VMLinker

from symrnn.backend import compile_mode
from symrnn.losses import masked_nll
from symrnn.ops.output_layer import OutputLayerNLL, output_layer_nll

CPU = compile_mode("c")
PY_MODE = pytensor.compile.mode.Mode(linker=VMLinker(use_cloop=False, c_thunks=False), optimizer="fast_run")


def numpy_output_layer(hidden, W, b, targets, weights):
    """Float64 reference: loss, and gradients with respect to hidden, W and b."""
    hidden, W, b, weights = (np.asarray(x, dtype=np.float64) for x in (hidden, W, b, weights))
    z = hidden @ W + b
    top = z.max(axis=1, keepdims=True)
    lse = (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True)))[:, 0]
    rows = np.arange(len(z))
    loss = float(np.sum(weights * (lse - z[rows, targets])))
    d = np.exp(z - lse[:, None])
    d[rows, targets] -= 1
    d *= weights[:, None]
    return loss, d @ W.T, hidden.T @ d, d.sum(axis=0)


def random_layer(rng, N, H, V, dtype, masked_rows=()):
    hidden = rng.normal(size=(N, H)).astype(dtype)
    W = (rng.normal(size=(H, V)) * 0.5).astype(dtype)
    b = rng.normal(size=V).astype(dtype)
    targets = rng.integers(0, V, size=N).astype("int32")
    weights = np.ones(N, dtype=dtype)
    weights[list(masked_rows)] = 0
    return hidden, W, b, targets, weights


@functools.lru_cache(maxsize=None)
def compiled(dtype, mode_name):
    """f(hidden, W, b, targets, weights) -> loss, d hidden, d W, d b, through the fused Op."""
    h = pt.matrix("h", dtype=dtype)
    W = pt.matrix("W", dtype=dtype)
    b = pt.vector("b", dtype=dtype)
    y = pt.ivector("y")
    w = pt.vector("w", dtype=dtype)
    total = output_layer_nll(h, W, b, y, w)
    mode = CPU if mode_name == "cpu" else PY_MODE
    return pytensor.function([h, W, b, y, w], [total, *pt.grad(total, [h, W, b])], mode=mode)


@pytest.mark.parametrize("mode_name", ["cpu", "python"])
def test_the_float64_output_layer_equals_numpy_loss_and_gradients(mode_name):
    rng = np.random.default_rng(0)
    inputs = random_layer(rng, 11, 6, 17, "float64", masked_rows=(3, 9))
    got = compiled("float64", mode_name)(*inputs)
    for value, want in zip(got, numpy_output_layer(*inputs)):
        np.testing.assert_allclose(value, want, rtol=1e-12, atol=1e-13)


def test_the_float64_output_layer_handles_many_row_blocks():
    rng = np.random.default_rng(23)
    # 2000 float64 per row: the logsumexp runs in blocks of 16 rows, 5 blocks here.
    inputs = random_layer(rng, 70, 6, 2000, "float64", masked_rows=(5, 40))
    got = compiled("float64", "cpu")(*inputs)
    for value, want in zip(got, numpy_output_layer(*inputs)):
        np.testing.assert_allclose(value, want, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize(
    "N, V",
    [(7, 50), (300, 4000)],  # one thread below a million logits; 1.2 million: row blocks on threads
    ids=["one thread", "row blocks on threads"],
)
def test_the_float32_kernel_path_equals_the_float64_reference_and_stays_float32(N, V):
    rng = np.random.default_rng(1)
    inputs = random_layer(rng, N, 8, V, "float32", masked_rows=(0, N - 1))
    got = compiled("float32", "cpu")(*inputs)
    assert all(np.asarray(value).dtype == np.float32 for value in got)
    loss, d_hidden, d_W, d_b = numpy_output_layer(*inputs)
    np.testing.assert_allclose(got[0], loss, rtol=1e-6)
    np.testing.assert_allclose(got[1], d_hidden, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[2], d_W, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[3], d_b, rtol=1e-4, atol=1e-5)
    assert np.all(got[1][[0, N - 1]] == 0)  # masked rows: no gradient


def test_the_output_layer_agrees_with_finite_differences():
    rng = np.random.default_rng(2)
    _, _, _, targets, _ = random_layer(rng, 5, 3, 4, "float64")
    weights = np.array([1.0, 0.0, 1.0, 0.5, 1.0])
    values = [rng.normal(size=(5, 3)), rng.normal(size=(3, 4)), rng.normal(size=4)]
    verify_grad(lambda h, W, b: output_layer_nll(h, W, b, targets, weights), values, rng=rng, mode=PY_MODE)


def test_the_fused_masked_loss_trains_like_the_log_softmax_graph_inside_a_model_graph():
    rng = np.random.default_rng(3)
    T, B, H, V = 5, 3, 4, 9
    hidden = pt.tensor3("hidden")
    W, b = pt.matrix("W"), pt.vector("b")
    targets, mask = pt.imatrix("targets"), pt.matrix("mask")
    values = [rng.normal(size=(T, B, H)), rng.normal(size=(H, V)), rng.normal(size=V),
              rng.integers(0, V, size=(T, B)).astype("int32"), (rng.random((T, B)) > 0.3).astype("float64")]
    results = []
    for implementation, mode in (("fused", CPU), ("reference", PY_MODE)):
        total, n_tokens = masked_nll(hidden, W, b, targets, mask, implementation)
        # A scaled cost: the gradient factor g is not 1 here.
        cost = total / n_tokens
        f = pytensor.function([hidden, W, b, targets, mask], [cost, *pt.grad(cost, [hidden, W, b])], mode=mode)
        results.append(f(*values))
    for fused, reference in zip(*results):
        np.testing.assert_allclose(fused, reference, rtol=1e-11, atol=1e-13)


def test_large_logits_give_finite_losses_and_gradients():
    hidden = np.eye(3, dtype=np.float32)
    W = np.array([[1000.0, 0.0, -1000.0], [1000.0, 1000.0, 999.0], [-1000.0, -1000.0, -1000.0]], dtype=np.float32)
    b = np.zeros(3, dtype=np.float32)
    targets = np.array([0, 2, 1], dtype=np.int32)
    got = compiled("float32", "cpu")(hidden, W, b, targets, np.ones(3, dtype=np.float32))
    assert all(np.all(np.isfinite(value)) for value in got)
    np.testing.assert_allclose(got[0], 1 + np.log(2 + np.exp(-1.0)) + np.log(3), rtol=1e-6)


def test_bad_targets_and_mismatched_shapes_are_clear_errors():
    f = compiled("float64", "python")
    h, W, b, y, w = random_layer(np.random.default_rng(4), 4, 3, 5, "float64")
    with pytest.raises(ValueError, match="targets"):
        f(h, W, b, np.array([0, 1, 5, 2], dtype="int32"), w)
    with pytest.raises(ValueError, match="targets"):
        f(h, W, b, np.array([0, -1, 2, 2], dtype="int32"), w)
    with pytest.raises(ValueError, match="shapes do not match"):
        f(h, W, b, y, np.ones(3))
    with pytest.raises(TypeError, match="integer"):
        output_layer_nll(pt.matrix(), pt.matrix(), pt.vector(), pt.vector(), pt.vector())
    with pytest.raises(TypeError, match="one dtype"):
        output_layer_nll(pt.matrix(dtype="float32"), pt.matrix(), pt.vector(), pt.ivector(), pt.vector())


def test_the_mask_and_the_cached_gradient_outputs_are_not_differentiable():
    h, W, b, w = pt.matrix("h"), pt.matrix("W"), pt.vector("b"), pt.vector("w")
    y = pt.ivector("y")
    total, d_logits, d_b = OutputLayerNLL()(h, W, b, y, w)
    with pytest.raises(NullTypeGradError):
        pt.grad(total, w)
    with pytest.raises(NullTypeGradError):
        pt.grad(d_logits.sum(), W)
    with pytest.raises(pytensor.gradient.DisconnectedInputError):
        pt.grad(total, y)


def test_a_training_step_computes_the_output_layer_products_once():
    from pytensor.tensor.blas import Dot22

    from models.language_model import RNNLanguageModel

    model = RNNLanguageModel(30, 4, 5, num_layers=1, seed=0)
    step = model.compile_train()
    nodes = step.maker.fgraph.toposort()
    (layer,) = [n for n in nodes if isinstance(n.op, OutputLayerNLL)]
    readers = [n for n in nodes if layer.outputs[1] in n.inputs]
    # d_logits feeds exactly two products (for W and for hidden), and nothing
    # folds the learning rate into a second copy of the W product.
    assert len(readers) == 2 and all(isinstance(n.op, Dot22) for n in readers)
    assert not any(type(n.op).__name__ == "Dot22Scalar" for n in nodes)


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # the gradient products meet the poisoned rows
@pytest.mark.parametrize("N, V", [(6, 40), (300, 4000)], ids=["one thread", "row blocks on threads"])
@pytest.mark.parametrize("poison", [np.nan, np.inf, -np.inf])
def test_a_non_finite_logit_makes_the_loss_non_finite_so_training_skips_the_step(N, V, poison):
    # The kernel's fast-math passes could turn a NaN into an ordinary number;
    # the NaN guard of the training step relies on the loss staying non-finite.
    rng = np.random.default_rng(5)
    hidden, W, b, targets, weights = random_layer(rng, N, 8, V, "float32")
    b[(targets[2] + 1) % V] = poison  # one column other than row 2's target
    got = compiled("float32", "cpu")(hidden, W, b, targets, weights)
    assert not np.isfinite(got[0])
    weights[:] = 0  # every row masked: nothing is read, the loss is 0
    assert compiled("float32", "cpu")(hidden, W, b, targets, weights)[0] == 0
