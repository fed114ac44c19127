"""The models against independent float64 NumPy references.

* ``GRUTheano`` (models/gru.py), the tutorial's drop-in, against
  ``numpy_reference.tutorial_gru_forward`` and finite differences of it;
* ``RNNLanguageModel`` (every cell, 1 to 3 layers, both gates, both recurrence
  and loss implementations) against ``numpy_reference.library_forward``;
* the update rules against NumPy update rules, the training step's guard
  against non-finite losses, dropout, the one-step generator function and a
  short training run.

Compiling a PyTensor function costs seconds, so models and compiled functions
are built once per module and every test that uses them first sets the values
it needs.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from models.gru import GRUTheano, library_to_tutorial, tutorial_to_library
from models.language_model import RNNLanguageModel
from symrnn import updates as update_rules
from symrnn.training import evaluate, train
from tests import numpy_reference as ref

WORD_DIM = 30
HIDDEN = 6
TUTORIAL_NAMES = ("E", "U", "W", "V", "b", "c")
#: The order of ``bptt``'s gradients in the tutorial: [dE, dU, dW, db, dV, dc].
TUTORIAL_BPTT_ORDER = ("E", "U", "W", "b", "V", "c")
NUMPY_GATES = {"hard_sigmoid": ref.hard_sigmoid, "sigmoid": ref.sigmoid}


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


class GateRecorder:
    """A NumPy gate that remembers its inputs, to check hard_sigmoid's kinks are far."""

    def __init__(self, fn=ref.hard_sigmoid):
        self.fn = fn
        self.inputs = []

    def __call__(self, v):
        self.inputs.append(np.ravel(v).copy())
        return self.fn(v)

    def distance_to_kinks(self) -> float:
        """Smallest distance of any gate input to +-2.5, where clip(0.2 v + 0.5, 0, 1) bends."""
        values = np.concatenate(self.inputs)
        return float(np.min(np.abs(np.abs(values) - 2.5)))


def random_tutorial_params(seed, word_dim=WORD_DIM, hidden=HIDDEN, scale=0.5, embedding=None):
    """Tutorial-layout parameters with every entry random (b and c too), small enough
    that hard_sigmoid's inputs stay far from its kinks."""
    rng = np.random.default_rng(seed)
    dim = embedding or hidden
    params = {
        "E": rng.uniform(-scale, scale, (dim, word_dim)),
        "U": rng.uniform(-scale, scale, (3 if embedding else 6, hidden, hidden)),
        "W": rng.uniform(-scale, scale, (6, hidden, hidden)),
        "V": rng.uniform(-3 * scale, 3 * scale, (word_dim, hidden)),
        "b": rng.uniform(-scale, scale, (6, hidden)),
        "c": rng.uniform(-scale, scale, word_dim),
    }
    if embedding:
        params["U_in"] = rng.uniform(-scale, scale, (3, hidden, embedding))
    return params


def tutorial_args(params):
    return [params[name] for name in TUTORIAL_NAMES]


def tutorial_loss(params, x, y):
    return ref.tutorial_gru_loss(tutorial_args(params), x, y, U_in=params.get("U_in"))


def assert_tutorial_gates_far_from_kinks(params, sentences, margin=0.05):
    recorder = GateRecorder()
    for x, _ in sentences:
        ref.tutorial_gru_forward(*tutorial_args(params), x, U_in=params.get("U_in"), gate=recorder)
    assert recorder.distance_to_kinks() > margin


def finite_difference_gradients(loss, params, names=None, eps=1e-6):
    """Central differences of ``loss(params)`` with respect to ``params[name]`` for each name."""
    work = {name: np.array(value, dtype=np.float64) for name, value in params.items()}
    return {
        name: ref.numerical_gradient(lambda: loss(work), work[name], eps=eps)
        for name in (names or list(work))
    }


def set_tutorial_values(model, params):
    """Give a GRUTheano these parameter values and fresh (zero) RMSprop caches."""
    for name, value in params.items():
        getattr(model, name).set_value(np.array(value, dtype=model.dtype))
    for cache in model.optimizer_state.values():
        cache.set_value(np.zeros_like(cache.get_value()))


def tutorial_values(model):
    return {p.name: p.get_value() for p in model.params}


def bptt_by_name(model, x, y):
    """``model.bptt`` keyed by parameter name, whichever of the two orders it returns
    (the order itself is pinned by its own test)."""
    grads = model.bptt(x, y)
    names = [p.name for p in model.params]
    if model.U_in is None and grads[3].shape == model.b.get_value().shape:
        names = list(TUTORIAL_BPTT_ORDER)
    return dict(zip(names, grads))


def make_sentences(seed, lengths, word_dim=WORD_DIM):
    rng = np.random.default_rng(seed)
    out = []
    for n in lengths:
        ids = rng.integers(0, word_dim, n + 1).astype(np.int32)
        out.append((ids[:-1], ids[1:]))
    return out


def reset_library(model, values):
    model.set_values(values)
    for state in model.optimizer_state.values():
        state.set_value(np.zeros_like(state.get_value()))


def column(a):
    return np.asarray(a, dtype=np.int32)[:, None]


# Tutorial-layout values and sentences shared by the GRUTheano tests.
PARAMS = random_tutorial_params(1)
SENTENCES = make_sentences(2, [6, 2, 4, 7, 3])
ONE_WORD = (np.array([5], dtype=np.int32), np.array([9], dtype=np.int32))
# A word id repeated in a sentence (its embedding gradient sums over both uses).
SENTENCES[0] = (np.array([3, 3, 7, 3, 9, 3], dtype=np.int32), np.array([3, 7, 3, 9, 3, 12], dtype=np.int32))


def test_the_shared_test_parameters_keep_hard_sigmoid_far_from_its_kinks():
    assert_tutorial_gates_far_from_kinks(PARAMS, SENTENCES, margin=0.2)


@pytest.fixture(scope="module")
def gru():
    np.random.seed(0)
    return GRUTheano(WORD_DIM, hidden_dim=HIDDEN, bptt_truncate=-1, dtype="float64")


@pytest.fixture(scope="module")
def truncated_gradients():
    """Loss and gradients (tutorial layout) of the tutorial's GRU with ``bptt_truncate=2``.

    Built as GRUTheano builds it (library graph, scan with ``truncate_gradient``) but as
    one function: a GRUTheano with truncation compiles five scan graphs (~40 s).
    """
    model = RNNLanguageModel(WORD_DIM, HIDDEN, HIDDEN, num_layers=2, cell="gru", gate="hard_sigmoid", dtype="float64",
                             truncate_gradient=2, initial_values=tutorial_to_library(*tutorial_args(PARAMS)))
    ids, targets, mask = model._inputs()
    total, _ = model.loss(ids, targets, mask)
    fn = pytensor.function([ids, targets, mask], [total, *pytensor.grad(total, list(model.params.values()))],
                           mode=model.mode)

    def run(x, y):
        total, *grads = fn(column(x), column(y), np.ones((len(x), 1)))
        return total, library_to_tutorial(dict(zip(model.params, grads)))

    return run


@pytest.fixture(scope="module")
def library_gru():
    """The library's equivalent of GRUTheano (two hard_sigmoid GRU layers, float64)."""
    return RNNLanguageModel(WORD_DIM, HIDDEN, HIDDEN, num_layers=2, cell="gru", gate="hard_sigmoid", dtype="float64", seed=0)


# --------------------------------------------------------------------------
# GRUTheano against the NumPy tutorial reference
# --------------------------------------------------------------------------


def test_gru_theano_has_the_tutorials_parameter_shapes_initial_ranges_and_zero_biases(monkeypatch):
    shapes = {"E": (HIDDEN, WORD_DIM), "U": (6, HIDDEN, HIDDEN), "W": (6, HIDDEN, HIDDEN),
              "V": (WORD_DIM, HIDDEN), "b": (6, HIDDEN), "c": (WORD_DIM,)}
    # Only the initial values matter here: skip compiling the functions.
    monkeypatch.setattr(GRUTheano, "__theano_build__", lambda self: None)
    np.random.seed(5)
    fresh = GRUTheano(WORD_DIM, hidden_dim=HIDDEN, dtype="float64")
    values = {}
    for name, shape in shapes.items():
        values[name] = getattr(fresh, name).get_value()
        assert values[name].shape == shape, name
        assert values[name].dtype == np.float64
    assert not values["b"].any() and not values["c"].any()
    assert np.abs(values["E"]).max() <= math.sqrt(1 / WORD_DIM)
    for name in ("U", "W", "V"):
        assert np.abs(values[name]).max() <= math.sqrt(1 / HIDDEN)
        assert np.abs(values[name]).max() > 0.5 * math.sqrt(1 / HIDDEN)


def test_gru_theano_predict_equals_the_numpy_tutorial_forward_pass_in_float64(gru):
    set_tutorial_values(gru, PARAMS)
    for x, _ in SENTENCES:
        expected = ref.tutorial_gru_forward(*tutorial_args(PARAMS), x)
        probs = gru.predict(x)
        assert probs.shape == (len(x), WORD_DIM)
        np.testing.assert_allclose(probs, expected, rtol=1e-10, atol=1e-15)


def test_gru_theano_loss_equals_the_numpy_tutorial_reference_in_float64(gru):
    set_tutorial_values(gru, PARAMS)
    for x, y in SENTENCES:
        np.testing.assert_allclose(gru.ce_error(x, y), tutorial_loss(PARAMS, x, y), rtol=1e-10)


def test_gru_theano_forward_pass_works_on_a_one_word_sentence(gru):
    set_tutorial_values(gru, PARAMS)
    x, y = ONE_WORD
    np.testing.assert_allclose(gru.ce_error(x, y), tutorial_loss(PARAMS, x, y), rtol=1e-10)
    np.testing.assert_allclose(gru.predict(x), ref.tutorial_gru_forward(*tutorial_args(PARAMS), x), rtol=1e-10, atol=1e-15)


def test_gru_theano_bptt_and_sgd_step_work_on_a_one_word_sentence(gru):
    set_tutorial_values(gru, PARAMS)
    x, y = ONE_WORD
    expected = finite_difference_gradients(lambda p: tutorial_loss(p, x, y), PARAMS)
    got = bptt_by_name(gru, x, y)
    for name in TUTORIAL_NAMES:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-8, err_msg=name)
    gru.sgd_step(x, y, 0.01)
    assert not np.allclose(gru.V.get_value(), PARAMS["V"])


def test_gru_theano_predict_class_is_the_argmax_of_the_reference_probabilities(gru):
    set_tutorial_values(gru, PARAMS)
    for x, _ in SENTENCES:
        expected = np.argmax(ref.tutorial_gru_forward(*tutorial_args(PARAMS), x), axis=1)
        np.testing.assert_array_equal(gru.predict_class(x), expected)


def test_gru_theano_bptt_gradients_equal_central_finite_differences_of_the_numpy_loss(gru):
    set_tutorial_values(gru, PARAMS)
    for x, y in SENTENCES[:2]:
        expected = finite_difference_gradients(lambda p: tutorial_loss(p, x, y), PARAMS)
        got = bptt_by_name(gru, x, y)
        assert set(got) == set(TUTORIAL_NAMES)
        for name in TUTORIAL_NAMES:
            assert got[name].shape == PARAMS[name].shape, name
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-8, err_msg=name)


def test_gru_theano_bptt_returns_gradients_in_the_tutorials_order_de_du_dw_db_dv_dc(gru):
    set_tutorial_values(gru, PARAMS)
    x, y = SENTENCES[0]
    grads = gru.bptt(x, y)
    assert [g.shape for g in grads] == [PARAMS[name].shape for name in TUTORIAL_BPTT_ORDER]


def test_gru_theano_calculate_loss_is_the_total_loss_divided_by_the_number_of_words(gru):
    set_tutorial_values(gru, PARAMS)
    X = [x for x, _ in SENTENCES]
    Y = [y for _, y in SENTENCES]
    total = sum(tutorial_loss(PARAMS, x, y) for x, y in SENTENCES)
    words = sum(len(y) for y in Y)
    np.testing.assert_allclose(gru.calculate_total_loss(X, Y), total, rtol=1e-10)
    np.testing.assert_allclose(gru.calculate_loss(X, Y), total / words, rtol=1e-10)


def test_gru_theano_sgd_step_equals_numpy_rmsprop_with_reference_gradients_over_three_steps(gru):
    set_tutorial_values(gru, PARAMS)
    params = {name: PARAMS[name].copy() for name in TUTORIAL_NAMES}
    caches = {name: np.zeros_like(value) for name, value in params.items()}
    learning_rate, decay = 0.01, 0.9
    for x, y in SENTENCES[2:5]:
        assert_tutorial_gates_far_from_kinks(params, [(x, y)])
        grads = finite_difference_gradients(lambda p: tutorial_loss(p, x, y), params)
        for name in TUTORIAL_NAMES:
            params[name], caches[name] = ref.rmsprop_step(params[name], grads[name], caches[name], learning_rate, decay, 1e-6)
        assert gru.sgd_step(x, y, learning_rate, decay) == []
        for name in TUTORIAL_NAMES:
            np.testing.assert_allclose(getattr(gru, name).get_value(), params[name], rtol=1e-6, atol=1e-7, err_msg=name)
            # The tutorial's cache attributes mE, mU, ... carry over between steps.
            np.testing.assert_allclose(getattr(gru, "m" + name).get_value(), caches[name], rtol=1e-5, atol=1e-10, err_msg=name)
    # Every parameter moved (all six are updated densely on every step).
    for name in TUTORIAL_NAMES:
        assert not np.allclose(params[name], PARAMS[name]), name


def test_with_bptt_truncate_2_the_loss_is_unchanged_but_the_recurrent_gradients_differ_from_full_bptt(gru, truncated_gradients):
    set_tutorial_values(gru, PARAMS)
    x, y = SENTENCES[3]  # 7 steps, truncated to the last 2
    total, truncated = truncated_gradients(x, y)
    np.testing.assert_allclose(total, tutorial_loss(PARAMS, x, y), rtol=1e-10)
    full = bptt_by_name(gru, x, y)
    for name in ("E", "U", "W", "b"):
        assert not np.allclose(full[name], truncated[name], rtol=1e-3, atol=1e-6), name
    for name in ("V", "c"):  # the output layer lies outside the recurrence
        np.testing.assert_allclose(truncated[name], full[name], rtol=1e-10, atol=1e-14)


def test_with_bptt_truncate_2_gradients_equal_a_window_of_the_last_2_steps_with_earlier_states_held_fixed(truncated_gradients):
    """scan's ``truncate_gradient=2``: the recurrence's parameters get gradient from the
    last 2 steps only (states before them are constants); the output layer lies outside
    the scan, so V and c get the full gradient."""
    x, y = SENTENCES[3]
    frozen = tutorial_args(PARAMS)
    inner = finite_difference_gradients(
        lambda p: ref.tutorial_gru_window_loss(tutorial_args(p), frozen, x, y, 2), PARAMS, names=["E", "U", "W", "b"]
    )
    outer = finite_difference_gradients(lambda p: tutorial_loss(p, x, y), PARAMS, names=["V", "c"])
    _, got = truncated_gradients(x, y)
    for name, expected in {**inner, **outer}.items():
        np.testing.assert_allclose(got[name], expected, rtol=1e-5, atol=1e-8, err_msg=name)


# --------------------------------------------------------------------------
# GRUTheano with an embedding size different from the hidden size
# --------------------------------------------------------------------------

EMBEDDING = 4
SEPARATE_PARAMS = random_tutorial_params(11, embedding=EMBEDDING)


@pytest.fixture(scope="module")
def gru_separate():
    np.random.seed(1)
    return GRUTheano(WORD_DIM, hidden_dim=HIDDEN, embedding_dim=EMBEDDING, dtype="float64")


def test_gru_theano_with_its_own_embedding_size_keeps_first_layer_input_weights_in_u_in(gru_separate):
    model = gru_separate
    assert model.E.get_value().shape == (EMBEDDING, WORD_DIM)
    assert model.U_in.get_value().shape == (3, HIDDEN, EMBEDDING)
    assert model.U.get_value().shape == (3, HIDDEN, HIDDEN)
    assert model.W.get_value().shape == (6, HIDDEN, HIDDEN)
    assert [p.name for p in model.params] == ["E", "U_in", "U", "W", "b", "V", "c"]


def test_gru_theano_with_its_own_embedding_size_has_the_reference_loss_and_gradients(gru_separate):
    set_tutorial_values(gru_separate, SEPARATE_PARAMS)
    assert_tutorial_gates_far_from_kinks(SEPARATE_PARAMS, SENTENCES[:2])
    for x, y in SENTENCES[:2]:
        np.testing.assert_allclose(gru_separate.ce_error(x, y), tutorial_loss(SEPARATE_PARAMS, x, y), rtol=1e-10)
        np.testing.assert_allclose(
            gru_separate.predict(x), ref.tutorial_gru_forward(*tutorial_args(SEPARATE_PARAMS), x, U_in=SEPARATE_PARAMS["U_in"]),
            rtol=1e-10, atol=1e-15,
        )
    x, y = SENTENCES[0]
    expected = finite_difference_gradients(lambda p: tutorial_loss(p, x, y), SEPARATE_PARAMS)
    got = bptt_by_name(gru_separate, x, y)
    assert set(got) == set(SEPARATE_PARAMS)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-8, err_msg=name)


def test_gru_theano_with_its_own_embedding_size_equals_the_library_model_with_converted_parameters(gru_separate):
    set_tutorial_values(gru_separate, SEPARATE_PARAMS)
    values = tutorial_to_library(*tutorial_args(SEPARATE_PARAMS), U_in=SEPARATE_PARAMS["U_in"])
    library = RNNLanguageModel(WORD_DIM, EMBEDDING, HIDDEN, num_layers=2, cell="gru", gate="hard_sigmoid",
                               dtype="float64", initial_values=values)
    loss_fn = library.compile_loss()
    for x, y in SENTENCES[:3]:
        total, count = loss_fn(column(x), column(y), np.ones((len(x), 1)))
        np.testing.assert_allclose(total, gru_separate.ce_error(x, y), rtol=1e-10)
        assert count == len(y)
        # The library's NumPy reference agrees too (so the conversion is right).
        logits = ref.library_forward(values, column(x), np.ones((len(x), 1)), "gru", ref.hard_sigmoid, 2)
        np.testing.assert_allclose(ref.masked_nll(logits, column(y), np.ones((len(x), 1))), total, rtol=1e-10)


def test_gru_theano_with_its_own_embedding_size_trains_every_parameter_including_u_in(gru_separate):
    set_tutorial_values(gru_separate, SEPARATE_PARAMS)
    x, y = SENTENCES[0]
    gru_separate.sgd_step(x, y, 0.01)
    after = tutorial_values(gru_separate)
    for name, before in SEPARATE_PARAMS.items():
        assert not np.allclose(after[name], before), name
    assert gru_separate.mU_in.get_value().any()


# --------------------------------------------------------------------------
# Conversion between the tutorial's layout and the library's
# --------------------------------------------------------------------------


def test_tutorial_to_library_and_back_round_trips_exactly():
    values = tutorial_to_library(*tutorial_args(PARAMS))
    assert list(values) == ["embedding", "layer0/W_x", "layer0/W_h", "layer0/b", "layer1/W_x", "layer1/W_h",
                            "layer1/b", "output/W", "output/b"]
    assert values["embedding"].shape == (WORD_DIM, HIDDEN)
    assert values["layer0/W_x"].shape == (HIDDEN, 3 * HIDDEN)
    assert values["output/W"].shape == (HIDDEN, WORD_DIM)
    back = library_to_tutorial(values)
    assert list(back) == list(TUTORIAL_NAMES)
    for name in TUTORIAL_NAMES:
        np.testing.assert_array_equal(back[name], PARAMS[name])


def test_tutorial_to_library_maps_blocks_as_documented():
    values = tutorial_to_library(*tutorial_args(PARAMS))
    H = HIDDEN
    np.testing.assert_array_equal(values["embedding"], PARAMS["E"].T)
    for k in range(3):
        np.testing.assert_array_equal(values["layer0/W_x"][:, k * H : (k + 1) * H], PARAMS["U"][k].T)
        np.testing.assert_array_equal(values["layer1/W_h"][:, k * H : (k + 1) * H], PARAMS["W"][3 + k].T)
        np.testing.assert_array_equal(values["layer1/b"][k * H : (k + 1) * H], PARAMS["b"][3 + k])
    np.testing.assert_array_equal(values["output/W"], PARAMS["V"].T)
    np.testing.assert_array_equal(values["output/b"], PARAMS["c"])


def test_library_to_tutorial_refuses_an_embedding_size_different_from_the_hidden_size():
    values = tutorial_to_library(*tutorial_args(SEPARATE_PARAMS), U_in=SEPARATE_PARAMS["U_in"])
    with pytest.raises(ValueError, match="embedding"):
        library_to_tutorial(values)


def test_the_library_gru_with_converted_tutorial_parameters_has_gru_theanos_loss(gru, library_gru):
    set_tutorial_values(gru, PARAMS)
    reset_library(library_gru, tutorial_to_library(*tutorial_args(PARAMS)))
    loss_fn = library_gru.function("loss")
    for x, y in SENTENCES:
        total, count = loss_fn(column(x), column(y), np.ones((len(x), 1)))
        np.testing.assert_allclose(total, gru.ce_error(x, y), rtol=1e-10)
        np.testing.assert_allclose(total, tutorial_loss(PARAMS, x, y), rtol=1e-10)
        assert count == len(y)


def test_compile_train_with_one_sentence_batches_reproduces_gru_theano_sgd_step_exactly(gru, library_gru):
    """The key equivalence: the library's RMSprop step on (T, 1) batches is the tutorial's sgd_step."""
    set_tutorial_values(gru, PARAMS)
    reset_library(library_gru, tutorial_to_library(*tutorial_args(PARAMS)))
    step = library_gru.function("train", optimizer="rmsprop", decay=0.9)
    assert sorted(library_gru.optimizer_state) == sorted(f"{name}/rmsprop_cache" for name in library_gru.params)
    learning_rate = 0.01
    for x, y in SENTENCES:  # five steps
        gru.sgd_step(x, y, learning_rate, 0.9)
        loss_sum, n_tokens, _, applied = step(column(x), column(y), np.ones((len(x), 1)), learning_rate)
        assert applied == 1 and n_tokens == len(y)
        converted = library_to_tutorial(library_gru.get_values())
        for name in TUTORIAL_NAMES:
            np.testing.assert_allclose(converted[name], getattr(gru, name).get_value(), rtol=1e-6, atol=1e-12, err_msg=name)
        caches = library_to_tutorial({k.split("/rmsprop_cache")[0]: v.get_value() for k, v in library_gru.optimizer_state.items()})
        for name in TUTORIAL_NAMES:
            np.testing.assert_allclose(caches[name], getattr(gru, "m" + name).get_value(), rtol=1e-6, atol=1e-15, err_msg=name)
    assert not np.allclose(gru.E.get_value(), PARAMS["E"])


def test_compile_train_accepts_a_batch_holding_a_single_token(library_gru):
    reset_library(library_gru, tutorial_to_library(*tutorial_args(PARAMS)))
    step = library_gru.function("train", optimizer="rmsprop", decay=0.9)
    x, y = ONE_WORD
    loss_sum, n_tokens, _, applied = step(column(x), column(y), np.ones((1, 1)), 0.01)
    assert applied == 1 and n_tokens == 1
    np.testing.assert_allclose(loss_sum, tutorial_loss(PARAMS, x, y), rtol=1e-10)


def test_the_train_step_reports_the_loss_before_the_update(library_gru):
    values = tutorial_to_library(*tutorial_args(PARAMS))
    reset_library(library_gru, values)
    step = library_gru.function("train", optimizer="rmsprop", decay=0.9)
    x, y = SENTENCES[0]
    loss_sum, n_tokens, grad_norm, applied = step(column(x), column(y), np.ones((len(x), 1)), 0.01)
    np.testing.assert_allclose(loss_sum, tutorial_loss(PARAMS, x, y), rtol=1e-10)
    grads = finite_difference_gradients(lambda p: tutorial_loss(p, x, y), PARAMS)
    np.testing.assert_allclose(grad_norm, math.sqrt(sum(np.sum(g**2) for g in grads.values())), rtol=1e-6)


def test_the_train_step_skips_the_update_when_the_loss_is_not_finite_and_applies_it_otherwise(library_gru):
    values = tutorial_to_library(*tutorial_args(PARAMS))
    step = library_gru.function("train", optimizer="rmsprop", decay=0.9)
    # Warm the caches with one good step first, so "unchanged" means something for them.
    reset_library(library_gru, values)
    x, y = SENTENCES[0]
    ones = np.ones((len(x), 1))
    assert step(column(x), column(y), ones, 0.01)[3] == 1
    library_gru.params["output/b"].set_value(np.where(np.arange(WORD_DIM) == 4, np.nan, library_gru.params["output/b"].get_value()))
    before = library_gru.get_values()
    caches_before = {k: v.get_value() for k, v in library_gru.optimizer_state.items()}
    loss_sum, _, _, applied = step(column(x), column(y), ones, 0.01)
    assert applied == 0
    assert not np.isfinite(loss_sum)
    for name, value in library_gru.get_values().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)  # NaN == NaN here
    for name, cache in library_gru.optimizer_state.items():
        np.testing.assert_array_equal(cache.get_value(), caches_before[name], err_msg=name)
    # A huge finite value that overflows the loss is skipped as well.
    huge = dict(values)
    huge["output/W"] = values["output/W"] * 1e306
    library_gru.set_values(huge)
    assert step(column(x), column(y), ones, 0.01)[3] == 0
    np.testing.assert_array_equal(library_gru.params["output/W"].get_value(), huge["output/W"])
    # With finite values the same step is applied and changes every parameter.
    library_gru.set_values(values)
    loss_sum, _, _, applied = step(column(x), column(y), ones, 0.01)
    assert applied == 1 and np.isfinite(loss_sum)
    for name, value in library_gru.get_values().items():
        assert not np.array_equal(value, values[name]), name


def test_the_one_step_function_run_over_a_sentence_reproduces_compile_probabilities_at_every_step(library_gru):
    reset_library(library_gru, tutorial_to_library(*tutorial_args(PARAMS)))
    check_one_step_against_probabilities(library_gru, seed=4)


def check_one_step_against_probabilities(model, seed):
    ids = np.random.default_rng(seed).integers(0, model.word_dim, (6, 2)).astype(np.int32)
    probabilities = model.function("probabilities")(ids, np.ones(ids.shape, dtype=model.dtype))
    assert probabilities.shape == (6, 2, model.word_dim)
    step = model.function("step")
    states = model.initial_state_values(2)
    for t in range(ids.shape[0]):
        logits, *states = step(ids[t], *states)
        np.testing.assert_allclose(ref.softmax(logits), probabilities[t], rtol=1e-9, atol=1e-14, err_msg=f"step {t}")
    # And both equal the NumPy reference.
    values = model.get_values()
    gate = NUMPY_GATES[model.gate]
    logits = ref.library_forward(values, ids, np.ones(ids.shape), model.cell, gate, model.num_layers)
    np.testing.assert_allclose(probabilities, ref.softmax(logits), rtol=1e-9, atol=1e-14)


# --------------------------------------------------------------------------
# RNNLanguageModel: every cell, layer count and gate against NumPy
# --------------------------------------------------------------------------

V_SMALL, D_SMALL, H_SMALL = 7, 3, 3
LENGTHS = [5, 2, 4, 1]  # sentences of different lengths in one padded batch


def padded_batch(seed, lengths=LENGTHS, word_dim=V_SMALL):
    """ids, targets (T, B) int32 with random junk in the padding, and the mask (T, B) float64."""
    rng = np.random.default_rng(seed)
    T, B = max(lengths), len(lengths)
    ids = rng.integers(0, word_dim, (T, B)).astype(np.int32)
    targets = rng.integers(0, word_dim, (T, B)).astype(np.int32)
    mask = (np.arange(T)[:, None] < np.asarray(lengths)[None, :]).astype(np.float64)
    return ids, targets, mask


def small_values(cell, num_layers, seed, scale=0.4):
    """Random values (biases included) for a small library model."""
    from models.language_model import parameter_shapes

    rng = np.random.default_rng(seed)
    shapes = parameter_shapes(V_SMALL, D_SMALL, H_SMALL, num_layers, cell)
    return {name: rng.uniform(-scale, scale, shape) * (3 if name == "output/W" else 1) for name, shape in shapes.items()}


def reference_loss(values, ids, targets, mask, cell, gate, num_layers):
    logits = ref.library_forward(values, ids, mask, cell, gate, num_layers)
    return ref.masked_nll(logits, targets, mask)


# Each cell with 1 and 3 layers, each gate for the gated cells (2 layers and the other
# gates are covered by the gradient tests below).
LOSS_CONFIGS = [
    ("gru", 1, "hard_sigmoid"),
    ("gru", 3, "sigmoid"),
    ("lstm", 1, "sigmoid"),
    ("lstm", 3, "hard_sigmoid"),
    ("rnn", 1, "sigmoid"),
    ("rnn", 3, "hard_sigmoid"),
]


@functools.lru_cache(maxsize=None)
def loss_case(cell, num_layers, gate):
    model = RNNLanguageModel(V_SMALL, D_SMALL, H_SMALL, num_layers=num_layers, cell=cell, gate=gate, dtype="float64",
                             initial_values=small_values(cell, num_layers, seed=num_layers))
    return model, model.compile_loss()


@pytest.mark.parametrize("cell,num_layers,gate", LOSS_CONFIGS, ids=["-".join(map(str, c)) for c in LOSS_CONFIGS])
def test_compile_loss_on_a_padded_batch_equals_the_numpy_reference_in_float64(cell, num_layers, gate):
    model, loss_fn = loss_case(cell, num_layers, gate)
    ids, targets, mask = padded_batch(seed=7)
    total, count = loss_fn(ids, targets, mask)
    expected = reference_loss(model.get_values(), ids, targets, mask, cell, NUMPY_GATES[gate], num_layers)
    np.testing.assert_allclose(total, expected, rtol=1e-10)
    assert count == sum(LENGTHS)
    # Padding never matters: other ids and targets at masked positions give the same loss.
    junk_ids, junk_targets, _ = padded_batch(seed=8)
    pad = mask == 0
    ids2, targets2 = np.where(pad, junk_ids, ids), np.where(pad, junk_targets, targets)
    assert (ids2 != ids).any() and (targets2 != targets).any()
    np.testing.assert_allclose(loss_fn(ids2, targets2, mask)[0], total, rtol=1e-13)
    # Each sentence alone (no padding at all) sums to the same total.
    separate = sum(
        loss_fn(ids[:n, b : b + 1], targets[:n, b : b + 1], np.ones((n, 1)))[0] for b, n in enumerate(LENGTHS)
    )
    np.testing.assert_allclose(separate, total, rtol=1e-10)


GRAD_CONFIGS = [
    ("gru", 2, "hard_sigmoid", "scan", "reference"),
    ("gru", 2, "hard_sigmoid", "fused", "fused"),
    ("lstm", 2, "sigmoid", "scan", "fused"),
    ("rnn", 1, "sigmoid", "scan", "reference"),
]


@functools.lru_cache(maxsize=None)
def grad_case(cell, num_layers, gate, implementation, loss_implementation):
    """A model and a compiled ``f(ids, targets, mask) -> [loss, n_tokens, *grads]``."""
    values = small_values(cell, num_layers, seed=10 + num_layers)
    model = RNNLanguageModel(V_SMALL, D_SMALL, H_SMALL, num_layers=num_layers, cell=cell, gate=gate, dtype="float64",
                             implementation=implementation, loss_implementation=loss_implementation, initial_values=values)
    ids, targets, mask = pt.imatrix("ids"), pt.imatrix("targets"), pt.matrix("mask", dtype="float64")
    total, count = model.loss(ids, targets, mask)
    grads = pytensor.grad(total, list(model.params.values()))
    return model, values, pytensor.function([ids, targets, mask], [total, count, *grads], mode=model.mode)


def named_grads(model, outputs):
    return dict(zip(model.params, outputs[2:]))


@pytest.mark.parametrize("config", GRAD_CONFIGS, ids=["-".join(map(str, c)) for c in GRAD_CONFIGS])
def test_gradients_of_the_loss_for_all_parameters_match_finite_differences_of_the_numpy_reference(config):
    cell, num_layers, gate = config[:3]
    model, values, fn = grad_case(*config)
    ids, targets, mask = padded_batch(seed=21)
    recorder = GateRecorder(NUMPY_GATES[gate])
    expected_loss = reference_loss(values, ids, targets, mask, cell, recorder, num_layers)
    if gate == "hard_sigmoid":
        assert recorder.distance_to_kinks() > 0.05
    outputs = fn(ids, targets, mask)
    np.testing.assert_allclose(outputs[0], expected_loss, rtol=1e-10)
    expected = finite_difference_gradients(
        lambda p: reference_loss(p, ids, targets, mask, cell, NUMPY_GATES[gate], num_layers), values
    )
    got = named_grads(model, outputs)
    assert set(got) == set(values)
    for name in values:
        assert got[name].shape == values[name].shape
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("config", GRAD_CONFIGS, ids=["-".join(map(str, c)) for c in GRAD_CONFIGS])
def test_padding_never_changes_the_loss_nor_the_gradients(config):
    model, values, fn = grad_case(*config)
    ids, targets, mask = padded_batch(seed=22)
    junk_ids, junk_targets, _ = padded_batch(seed=23)
    pad = mask == 0
    first = fn(ids, targets, mask)
    second = fn(np.where(pad, junk_ids, ids), np.where(pad, junk_targets, targets), mask)
    for a, b in zip(first, second):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    # And a sentence's gradient does not depend on how much padding follows it.
    n = LENGTHS[0]
    alone = fn(ids[:n, :1], targets[:n, :1], np.ones((n, 1)))
    ids3 = np.vstack([ids[:n, :1], junk_ids[:3, :1]])
    targets3 = np.vstack([targets[:n, :1], junk_targets[:3, :1]])
    mask3 = np.vstack([np.ones((n, 1)), np.zeros((3, 1))])
    extended = fn(ids3, targets3, mask3)
    for a, b in zip(alone, extended):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_scan_and_fused_gru_implementations_and_both_loss_implementations_agree():
    scan_model, values, scan_fn = grad_case("gru", 2, "hard_sigmoid", "scan", "reference")
    fused_model, values2, fused_fn = grad_case("gru", 2, "hard_sigmoid", "fused", "fused")
    assert all(np.array_equal(values[k], values2[k]) for k in values)
    for seed in (30, 31):
        ids, targets, mask = padded_batch(seed)
        for a, b in zip(scan_fn(ids, targets, mask), fused_fn(ids, targets, mask)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


def test_the_fused_implementation_refuses_truncated_gradients():
    with pytest.raises(ValueError, match="fused"):
        RNNLanguageModel(V_SMALL, D_SMALL, H_SMALL, cell="lstm", implementation="fused", truncate_gradient=3).loss(
            pt.imatrix(), pt.imatrix(), pt.matrix(dtype="float32"))
    with pytest.raises(ValueError, match="fused"):
        RNNLanguageModel(V_SMALL, D_SMALL, H_SMALL, cell="gru", implementation="fused", truncate_gradient=3).loss(
            pt.imatrix(), pt.imatrix(), pt.matrix(dtype="float32"))


def test_the_one_step_function_of_a_two_layer_lstm_reproduces_compile_probabilities():
    model, _, _ = grad_case("lstm", 2, "sigmoid", "scan", "fused")
    assert len(model.initial_state_values(1)) == 4  # h and c for each layer
    check_one_step_against_probabilities(model, seed=5)


# --------------------------------------------------------------------------
# float32 stays float32
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell,implementation,loss_implementation",
    [("gru", "scan", "reference"), ("gru", "fused", "fused"), ("lstm", "scan", "fused"), ("rnn", "scan", "reference")],
)
def test_the_symbolic_loss_and_its_gradients_are_float32_in_a_float32_model(cell, implementation, loss_implementation):
    model = RNNLanguageModel(V_SMALL, D_SMALL, H_SMALL, num_layers=1, cell=cell, dtype="float32", seed=0, dropout=0.3,
                             implementation=implementation, loss_implementation=loss_implementation)
    ids, targets, mask = model._inputs()
    total, count = model.loss(ids, targets, mask, training=False)
    assert total.dtype == "float32" and count.dtype == "float32"
    total, count = model.loss(ids, targets, mask, training=True)  # with dropout
    assert total.dtype == "float32" and count.dtype == "float32"
    grads = pytensor.grad(total, list(model.params.values()))
    assert [g.dtype for g in grads] == ["float32"] * len(grads)
    for name, param in model.params.items():
        assert param.dtype == "float32", name


# --------------------------------------------------------------------------
# A float32 model trained on a tiny synthetic language
# --------------------------------------------------------------------------

SYNTH_VOCAB = 20
START, END = 2, 3


def synthetic_corpus(n=200, seed=0):
    """Sentences "the <noun> <verb> a <object> ." over 20 ids (0 mask, 1 unknown, 2/3 markers).

    Per-word entropy of the language: (log 3 + log 2 + log 3) / 7 = 0.41 nats.
    """
    rng = np.random.default_rng(seed)
    X, Y = [], []
    for _ in range(n):
        ids = np.array([START, 4, rng.choice([5, 6, 7]), rng.choice([8, 9]), 10, rng.choice([11, 12, 13]), 16, END],
                       dtype=np.int32)
        X.append(ids[:-1])
        Y.append(ids[1:])
    return X, Y


@pytest.fixture(scope="module")
def float32_model():
    model = RNNLanguageModel(SYNTH_VOCAB, 8, 16, num_layers=2, cell="gru", dtype="float32", seed=3)
    return model, model.get_values(), model.function("train", optimizer="rmsprop"), model.function("loss")


def test_a_float32_train_step_returns_float32_and_leaves_float32_parameters_and_state(float32_model):
    model, initial, step, loss_fn = float32_model
    reset_library(model, initial)
    X, Y = synthetic_corpus(4)
    ids = np.stack(X, axis=1)
    targets = np.stack(Y, axis=1)
    mask = np.ones(ids.shape, dtype=np.float32)
    loss_sum, n_tokens, grad_norm, applied = step(ids, targets, mask, np.float32(0.01))
    for value in (loss_sum, n_tokens, grad_norm):
        assert np.asarray(value).dtype == np.float32
    assert applied == 1
    for name, value in model.get_values().items():
        assert value.dtype == np.float32, name
        assert not np.array_equal(value, initial[name]), name
    for name, state in model.optimizer_state.items():
        assert state.get_value().dtype == np.float32, name
    total, count = loss_fn(ids, targets, mask)
    assert np.asarray(total).dtype == np.float32 and np.asarray(count).dtype == np.float32


def test_a_short_training_run_on_a_tiny_synthetic_language_brings_the_loss_well_below_log_v(float32_model):
    model, initial, step, loss_fn = float32_model
    reset_library(model, initial)
    X, Y = synthetic_corpus(200)
    before = evaluate(loss_fn, X, Y)
    assert before[1] == 7 * 200
    assert before[0] / before[1] > 0.9 * math.log(SYNTH_VOCAB)  # an untrained model is near uniform
    state, completed = train(step, X, Y, epochs=6, batch_size=16, report_every=1000, seed=0, learning_rate=0.01)
    assert completed and state.epoch == 6 and state.examples_seen == 6 * 200 and state.skipped_steps == 0
    total, count = evaluate(loss_fn, X, Y)
    assert total / count < 0.6 * math.log(SYNTH_VOCAB)


# --------------------------------------------------------------------------
# Dropout
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dropout_model():
    return RNNLanguageModel(WORD_DIM, HIDDEN, HIDDEN, num_layers=2, cell="gru", dtype="float64", seed=3, dropout=0.5,
                            initial_values=tutorial_to_library(*tutorial_args(PARAMS)))


def test_with_dropout_evaluation_is_deterministic_and_equals_the_dropout_free_model(dropout_model):
    ids, targets, mask = padded_batch(seed=40, word_dim=WORD_DIM)
    loss_fn = dropout_model.function("loss")
    first = loss_fn(ids, targets, mask)
    second = loss_fn(ids, targets, mask)
    assert first[0] == second[0]
    expected = reference_loss(dropout_model.get_values(), ids, targets, mask, "gru", ref.hard_sigmoid, 2)
    np.testing.assert_allclose(first[0], expected, rtol=1e-10)


def test_with_dropout_the_train_step_gives_different_losses_on_identical_batches(dropout_model):
    ids, targets, mask = padded_batch(seed=41, word_dim=WORD_DIM)
    step = dropout_model.function("train", optimizer="rmsprop")
    before = dropout_model.get_values()
    losses = [float(step(ids, targets, mask, 0.0)[0]) for _ in range(4)]
    assert len(set(losses)) == 4
    for name, value in dropout_model.get_values().items():
        np.testing.assert_array_equal(value, before[name])  # learning rate 0: nothing moved
    expected = reference_loss(before, ids, targets, mask, "gru", ref.hard_sigmoid, 2)
    # Dropout makes the training loss noisy around (not systematically far from) the clean loss.
    assert min(losses) < 3 * expected and all(np.isfinite(losses))


# --------------------------------------------------------------------------
# Update rules against NumPy
# --------------------------------------------------------------------------


# The rules are plain expressions: a quickly compiled Python-linker function runs them exactly.
QUICK = pytensor.compile.mode.Mode(linker="py", optimizer="fast_compile")


def shared_params():
    rng = np.random.default_rng(50)
    return [pytensor.shared(rng.normal(size=(2, 3)), name="p1"), pytensor.shared(rng.normal(size=4), name="p2")]


def gradient_sequence(steps=4):
    rng = np.random.default_rng(51)
    return [(rng.normal(size=(2, 3)) * (k + 1), rng.normal(size=4)) for k in range(steps)]


def compile_rule(rule, params, **kwargs):
    g1, g2 = pt.matrix("g1", dtype="float64"), pt.vector("g2", dtype="float64")
    updates = rule([g1, g2], params, **kwargs)
    return pytensor.function([g1, g2], [], updates=updates, mode=QUICK), updates


def test_sgd_rule_equals_numpy_sgd_over_several_steps():
    params = shared_params()
    expected = [p.get_value() for p in params]
    fn, updates = compile_rule(update_rules.sgd, params, learning_rate=0.1)
    assert update_rules.optimizer_state(updates, params) == {}
    for grads in gradient_sequence():
        fn(*grads)
        expected = [ref.sgd_step(p, g, 0.1) for p, g in zip(expected, grads)]
        for param, value in zip(params, expected):
            np.testing.assert_allclose(param.get_value(), value, rtol=1e-12)


def test_rmsprop_rule_equals_numpy_rmsprop_over_several_steps_with_named_caches():
    params = shared_params()
    expected = [p.get_value() for p in params]
    caches = [np.zeros_like(v) for v in expected]
    fn, updates = compile_rule(update_rules.rmsprop, params, learning_rate=0.05, decay=0.8)
    state = update_rules.optimizer_state(updates, params)
    assert sorted(state) == ["p1/rmsprop_cache", "p2/rmsprop_cache"]
    for grads in gradient_sequence():
        fn(*grads)
        for i, g in enumerate(grads):
            expected[i], caches[i] = ref.rmsprop_step(expected[i], g, caches[i], 0.05, 0.8, 1e-6)
        for param, value in zip(params, expected):
            np.testing.assert_allclose(param.get_value(), value, rtol=1e-12)
        np.testing.assert_allclose(state["p1/rmsprop_cache"].get_value(), caches[0], rtol=1e-12)
        np.testing.assert_allclose(state["p2/rmsprop_cache"].get_value(), caches[1], rtol=1e-12)


def test_adam_rule_equals_numpy_adam_over_several_steps_with_named_moments_and_step():
    params = shared_params()
    expected = [p.get_value() for p in params]
    ms = [np.zeros_like(v) for v in expected]
    vs = [np.zeros_like(v) for v in expected]
    fn, updates = compile_rule(update_rules.adam, params, learning_rate=0.01)
    state = update_rules.optimizer_state(updates, params)
    assert sorted(state) == ["adam/step", "p1/adam_m", "p1/adam_v", "p2/adam_m", "p2/adam_v"]
    for t, grads in enumerate(gradient_sequence(), start=1):
        fn(*grads)
        for i, g in enumerate(grads):
            expected[i], ms[i], vs[i] = ref.adam_step(expected[i], g, ms[i], vs[i], t, 0.01)
        for param, value in zip(params, expected):
            np.testing.assert_allclose(param.get_value(), value, rtol=1e-12)
        assert state["adam/step"].get_value() == t
        np.testing.assert_allclose(state["p2/adam_m"].get_value(), ms[1], rtol=1e-12)
        np.testing.assert_allclose(state["p2/adam_v"].get_value(), vs[1], rtol=1e-12)


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_by_global_norm_scales_all_gradients_together_like_numpy(max_norm):
    g1, g2 = pt.matrix("g1", dtype="float64"), pt.vector("g2", dtype="float64")
    clipped, norm = update_rules.clip_by_global_norm([g1, g2], max_norm)
    fn = pytensor.function([g1, g2], [*clipped, norm], mode=QUICK)
    for grads in gradient_sequence(2):
        *got, got_norm = fn(*grads)
        expected, expected_norm = ref.clip_by_global_norm(list(grads), max_norm)
        np.testing.assert_allclose(got_norm, expected_norm, rtol=1e-12)
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=1e-12)
        new_norm = math.sqrt(sum(np.sum(a**2) for a in got))
        assert new_norm <= max_norm * (1 + 1e-12)
        if expected_norm <= max_norm:
            np.testing.assert_array_equal(got[0], grads[0])
