"""``GRUTheano`` (models/gru.py), the tutorial's drop-in, against independent float64 NumPy references.

* its forward pass, loss, ``bptt`` and ``sgd_step`` against ``numpy_reference.tutorial_gru_forward``
  and finite differences of it, with full and truncated backpropagation and
  with an embedding size of its own;
* the conversion between the tutorial's parameter layout and the library's;
* the library model with converted parameters: GRUTheano's loss, and its
  training step on one-sentence batches is GRUTheano's ``sgd_step``.

Compiling a PyTensor function costs seconds, so models and compiled functions
are built once per module and every test that uses them first sets the values
it needs.
"""

from __future__ import annotations

import math

import numpy as np
import pytensor
import pytest

from models.gru import GRUTheano
from symrnn.legacy import library_to_tutorial, tutorial_to_library
from models.language_model import RNNLanguageModel
from tests import numpy_reference as ref
from tests.model_cases import (
    HIDDEN, ONE_WORD, PARAMS, SENTENCES, TUTORIAL_BPTT_ORDER, TUTORIAL_NAMES, WORD_DIM,
    assert_tutorial_gates_far_from_kinks, bptt_by_name, column, finite_difference_gradients, random_tutorial_params,
    reset_library, set_tutorial_values, tutorial_args, tutorial_loss, tutorial_values,
)


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
    ids, targets, mask = model.input_variables()
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
    loss_fn = library_gru.compile_loss()
    for x, y in SENTENCES:
        total, count = loss_fn(column(x), column(y), np.ones((len(x), 1)))
        np.testing.assert_allclose(total, gru.ce_error(x, y), rtol=1e-10)
        np.testing.assert_allclose(total, tutorial_loss(PARAMS, x, y), rtol=1e-10)
        assert count == len(y)


def test_compile_train_with_one_sentence_batches_reproduces_gru_theano_sgd_step_exactly(gru, library_gru):
    """The key equivalence: the library's RMSprop step on (T, 1) batches is the tutorial's sgd_step."""
    set_tutorial_values(gru, PARAMS)
    reset_library(library_gru, tutorial_to_library(*tutorial_args(PARAMS)))
    step = library_gru.compile_train(optimizer="rmsprop", decay=0.9)
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

