"""``RNNLanguageModel`` (models/language_model.py): its compiled functions against float64 NumPy references.

* ``compile_loss`` for every cell, 1 to 3 layers and both gates on padded batches;
* ``compile_train``: the loss before the update, a single-token batch, the guard
  against non-finite losses, float32 throughout, a short training run, dropout;
* ``compile_step`` run over a sentence reproduces the full-sequence graph.

Compiling a PyTensor function costs seconds, so models and compiled functions
are built once per module and every test that uses them first sets the values
it needs.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytensor
import pytest
from pytensor.tensor.special import softmax

from symrnn.legacy import tutorial_to_library
from models.language_model import RNNLanguageModel
from symrnn.layers import project
from symrnn.network import stacked_states
from symrnn.training import evaluate, train
from tests import numpy_reference as ref
from tests.model_cases import (
    HIDDEN, LENGTHS, NUMPY_GATES, ONE_WORD, PARAMS, SENTENCES, WORD_DIM, D_SMALL, H_SMALL, V_SMALL, column,
    finite_difference_gradients, padded_batch, reference_loss, reset_library, small_values, tutorial_args, tutorial_loss,
)


@pytest.fixture(scope="module")
def library_gru():
    """The library's equivalent of GRUTheano (two hard_sigmoid GRU layers, float64)."""
    return RNNLanguageModel(WORD_DIM, HIDDEN, HIDDEN, num_layers=2, cell="gru", gate="hard_sigmoid", dtype="float64", seed=0)


@pytest.fixture(scope="module")
def library_train_step(library_gru):
    """``library_gru``'s RMSprop training step (compiled once for the module)."""
    return library_gru.compile_train(optimizer="rmsprop", decay=0.9)


def test_compile_train_accepts_a_batch_holding_a_single_token(library_gru, library_train_step):
    reset_library(library_gru, tutorial_to_library(*tutorial_args(PARAMS)))
    step = library_train_step
    x, y = ONE_WORD
    loss_sum, n_tokens, _, applied = step(column(x), column(y), np.ones((1, 1)), 0.01)
    assert applied == 1 and n_tokens == 1
    np.testing.assert_allclose(loss_sum, tutorial_loss(PARAMS, x, y), rtol=1e-10)


def test_the_train_step_reports_the_loss_before_the_update(library_gru, library_train_step):
    values = tutorial_to_library(*tutorial_args(PARAMS))
    reset_library(library_gru, values)
    step = library_train_step
    x, y = SENTENCES[0]
    loss_sum, n_tokens, grad_norm, applied = step(column(x), column(y), np.ones((len(x), 1)), 0.01)
    np.testing.assert_allclose(loss_sum, tutorial_loss(PARAMS, x, y), rtol=1e-10)
    grads = finite_difference_gradients(lambda p: tutorial_loss(p, x, y), PARAMS)
    np.testing.assert_allclose(grad_norm, math.sqrt(sum(np.sum(g**2) for g in grads.values())), rtol=1e-6)


def test_the_train_step_skips_the_update_when_the_loss_is_not_finite_and_applies_it_otherwise(library_gru, library_train_step):
    values = tutorial_to_library(*tutorial_args(PARAMS))
    step = library_train_step
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


def test_the_one_step_function_run_over_a_sentence_reproduces_the_full_sequence_probabilities_at_every_step(library_gru):
    reset_library(library_gru, tutorial_to_library(*tutorial_args(PARAMS)))
    check_one_step_against_probabilities(library_gru, seed=4)


def full_sequence_probabilities(model, ids):
    """softmax over the vocabulary at every position of a (T, B) batch without padding,
    from the network's full-sequence graph (the one the loss is built on)."""
    ids_var, _, mask_var = model.input_variables()
    hidden, _ = stacked_states(model.params, ids_var, mask_var, model.num_layers, model.cell, model.gate,
                               recurrence=model.recurrence)
    logits = project(hidden, model.params["output/W"], model.params["output/b"])
    probabilities = pytensor.function([ids_var, mask_var], softmax(logits, axis=-1), mode=model.mode)
    return probabilities(ids, np.ones(ids.shape, dtype=model.dtype))


def check_one_step_against_probabilities(model, seed):
    ids = np.random.default_rng(seed).integers(0, model.word_dim, (6, 2)).astype(np.int32)
    probabilities = full_sequence_probabilities(model, ids)
    assert probabilities.shape == (6, 2, model.word_dim)
    step = model.compile_step()
    states = model.initial_state_values(2)
    for t in range(ids.shape[0]):
        logits, *states = step(ids[t], *states)
        np.testing.assert_allclose(ref.softmax(logits), probabilities[t], rtol=1e-9, atol=1e-14, err_msg=f"step {t}")
    # And both equal the NumPy reference.
    values = model.get_values()
    gate = NUMPY_GATES[model.gate]
    logits = ref.library_forward(values, ids, np.ones(ids.shape), model.cell, gate, model.num_layers)
    np.testing.assert_allclose(probabilities, ref.softmax(logits), rtol=1e-9, atol=1e-14)



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



def test_the_one_step_function_of_a_two_layer_lstm_reproduces_the_full_sequence_probabilities():
    model = RNNLanguageModel(V_SMALL, D_SMALL, H_SMALL, num_layers=2, cell="lstm", gate="sigmoid", dtype="float64",
                             recurrence="scan", output_layer="fused", initial_values=small_values("lstm", 2, seed=12))
    assert len(model.initial_state_values(1)) == 4  # h and c for each layer
    check_one_step_against_probabilities(model, seed=5)



# --------------------------------------------------------------------------
# float32 stays float32
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell,recurrence,output_layer",
    [("gru", "scan", "reference"), ("gru", "fused", "fused"), ("lstm", "scan", "fused"), ("rnn", "scan", "reference")],
)
def test_the_symbolic_loss_and_its_gradients_are_float32_in_a_float32_model(cell, recurrence, output_layer):
    model = RNNLanguageModel(V_SMALL, D_SMALL, H_SMALL, num_layers=1, cell=cell, dtype="float32", seed=0, dropout=0.3,
                             recurrence=recurrence, output_layer=output_layer)
    ids, targets, mask = model.input_variables()
    total, count = model.loss(ids, targets, mask)
    assert total.dtype == "float32" and count.dtype == "float32"
    total, count, _ = model.training_loss(ids, targets, mask)  # with dropout
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
    return model, model.get_values(), model.compile_train(optimizer="rmsprop"), model.compile_loss()


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
    loss_fn = dropout_model.compile_loss()
    first = loss_fn(ids, targets, mask)
    second = loss_fn(ids, targets, mask)
    assert first[0] == second[0]
    expected = reference_loss(dropout_model.get_values(), ids, targets, mask, "gru", ref.hard_sigmoid, 2)
    np.testing.assert_allclose(first[0], expected, rtol=1e-10)


def test_with_dropout_the_train_step_gives_different_losses_on_identical_batches(dropout_model):
    ids, targets, mask = padded_batch(seed=41, word_dim=WORD_DIM)
    step = dropout_model.compile_train(optimizer="rmsprop")
    before = dropout_model.get_values()
    losses = [float(step(ids, targets, mask, 0.0)[0]) for _ in range(4)]
    assert len(set(losses)) == 4
    for name, value in dropout_model.get_values().items():
        np.testing.assert_array_equal(value, before[name])  # learning rate 0: nothing moved
    expected = reference_loss(before, ids, targets, mask, "gru", ref.hard_sigmoid, 2)
    # Dropout makes the training loss noisy around (not systematically far from) the clean loss.
    assert min(losses) < 3 * expected and all(np.isfinite(losses))



def test_architecture_names_the_sizes_cell_gate_and_tying_the_model_was_built_with():
    model = RNNLanguageModel(word_dim=50, hidden_dim=12, embedding_dim=7, num_layers=2, cell="lstm", gate="sigmoid",
                             tie_weights=False, seed=3)
    assert model.architecture() == {"word_dim": 50, "embedding_dim": 7, "hidden_dim": 12, "num_layers": 2,
                                     "cell": "lstm", "gate": "sigmoid", "tie_weights": 0}


def test_the_cpu_training_step_updates_with_the_fused_rmsprop_ops_and_matches_the_elementwise_graph(monkeypatch):
    from symrnn.ops.update_steps import RMSpropStep, SquaredNorm
    import models.language_model as language_model

    rng = np.random.default_rng(60)
    ids, targets = rng.integers(0, 40, size=(6, 3)).astype(np.int32), rng.integers(0, 40, size=(6, 3)).astype(np.int32)
    mask = np.ones((6, 3), dtype=np.float32)
    mask[4:, 1] = 0
    models = {}
    for fused in (True, False):
        model = RNNLanguageModel(word_dim=40, hidden_dim=8, embedding_dim=5, seed=4)
        monkeypatch.setattr(language_model.backends, "uses_fused_ops", lambda backend, fused=fused: fused)
        step = model.compile_train(optimizer="rmsprop", grad_clip=2.0)
        node_ops = {type(node.op) for node in step.maker.fgraph.apply_nodes}
        assert (RMSpropStep in node_ops and SquaredNorm in node_ops) == fused
        for _ in range(3):
            step(ids, targets, mask, np.float32(0.05))
        models[fused] = model
    fused_state, graph_state = models[True].state(), models[False].state()
    for name, value in graph_state["params"].items():
        np.testing.assert_allclose(fused_state["params"][name], value, rtol=1e-5, atol=1e-6)
    for name, value in graph_state["optimizer_state"].items():
        np.testing.assert_allclose(fused_state["optimizer_state"][name], value, rtol=1e-5, atol=1e-9)
    assert not np.allclose(fused_state["params"]["output/W"], RNNLanguageModel(40, 5, 8, seed=4).get_values()["output/W"])
