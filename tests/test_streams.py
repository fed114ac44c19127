"""Continuous text: stream batching, stream tokens, carried states, window-edge gradients, tied weights, metrics."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from models.language_model import RNNLanguageModel
from symrnn.corpus import load_token_stream
from symrnn.errors import DataError
from symrnn.metrics import METRICS_COLUMNS, write_metrics
from symrnn.streams import count_windows, hold_out_tail, parallel_streams, stream_windows
from symrnn.tokenize import sentence_stream_tokens, text_stream_tokens, tokenize_whitespace
from symrnn.vocab import END_OF_LINE
from symrnn.vocab import SENTENCE_END, SENTENCE_START, Vocabulary


# ---------------------------------------------------------------- batching


def test_a_stream_is_cut_into_parallel_rows_dropping_the_remainder():
    streams = parallel_streams(np.arange(11), 3)  # 11 // 3 = 3 tokens a stream, 2 dropped
    np.testing.assert_array_equal(streams, [[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    assert streams.dtype == np.int32


def test_windows_are_time_major_with_next_token_targets_and_the_last_partial_window_kept():
    streams = parallel_streams(np.arange(16), 2)  # [[0..7], [8..15]]
    windows = list(stream_windows(streams, 3))
    assert len(windows) == count_windows(8, 3) == 3  # inputs 0-2, 3-5, 6 (7 pairs in a stream of 8)
    np.testing.assert_array_equal(windows[0].x, [[0, 8], [1, 9], [2, 10]])
    np.testing.assert_array_equal(windows[0].y, [[1, 9], [2, 10], [3, 11]])
    np.testing.assert_array_equal(windows[1].x, [[3, 11], [4, 12], [5, 13]])
    np.testing.assert_array_equal(windows[2].x, [[6, 14]])
    np.testing.assert_array_equal(windows[2].y, [[7, 15]])
    assert all(w.mask.dtype == np.float32 and w.mask.all() for w in windows)
    assert [w.index for w in stream_windows(streams, 3, start=1)] == [1, 2]


def test_a_window_length_dividing_the_stream_leaves_no_partial_window():
    windows = list(stream_windows(parallel_streams(np.arange(14), 2), 3))  # 7 tokens, 6 pairs
    assert [w.x.shape for w in windows] == [(3, 2), (3, 2)]


def test_a_text_too_short_for_the_streams_is_a_data_error_naming_batch_size():
    with pytest.raises(DataError, match="BATCH_SIZE"):
        parallel_streams(np.arange(5), 3)


def test_the_held_out_part_is_the_streams_tail():
    head, tail = hold_out_tail(np.arange(20), 0.1)
    np.testing.assert_array_equal(tail, [18, 19])
    np.testing.assert_array_equal(head, np.arange(18))
    assert len(hold_out_tail(np.arange(20), 0.0)[1]) == 0


# ---------------------------------------------------------------- tokens


def test_whitespace_tokens_keep_unk_and_turn_newlines_into_eos():
    text = " the <unk> said N shares\n a <unk> rose\n"
    assert text_stream_tokens(text, "whitespace") == [
        "the", "<unk>", "said", "N", "shares", END_OF_LINE, "a", "<unk>", "rose", END_OF_LINE,
    ]
    assert tokenize_whitespace(["the <unk> said", "  "]) == [[SENTENCE_START, "the", "<unk>", "said", SENTENCE_END]]


def test_whitespace_tokens_keep_unk_in_the_vocabulary_of_a_penn_treebank_style_file(tmp_path):
    path = tmp_path / "ptb.txt"
    path.write_text(" the <unk> fell\n the <unk> rose\n", encoding="utf-8")
    tokens = load_token_stream(path, "whitespace")
    vocabulary = Vocabulary.build([tokens], 100)
    assert "<unk>" in vocabulary and END_OF_LINE in vocabulary
    assert vocabulary.decode(vocabulary.encode(tokens)) == tokens


def test_utf8_accents_cjk_and_emoji_are_single_character_tokens(tmp_path):
    path = tmp_path / "u.txt"
    path.write_text("café 日本語 🙂\nñ\n", encoding="utf-8")
    tokens = load_token_stream(path, "char")
    assert tokens == list("café 日本語 🙂\nñ\n")
    assert "é" in tokens and "日" in tokens and "🙂" in tokens and "\n" in tokens
    vocabulary = Vocabulary.build([tokens], 100)
    assert "".join(vocabulary.decode(vocabulary.encode(tokens))) == "café 日本語 🙂\nñ\n"


def test_word_streams_follow_each_sentence_by_the_end_token():
    sentences = [[SENTENCE_START, "a", "b", SENTENCE_END], [SENTENCE_START, "c", SENTENCE_END]]
    assert sentence_stream_tokens(sentences) == ["a", "b", SENTENCE_END, "c", SENTENCE_END]


def test_the_stream_vocabulary_keeps_the_most_frequent_tokens_and_the_special_ones():
    vocabulary = Vocabulary.build([list("aaabbc")], 6)  # mask, unknown, 2 markers: room for a and b
    assert "a" in vocabulary and "b" in vocabulary and "c" not in vocabulary
    assert vocabulary.index_to_word[:2] == ["<MASK/>", "UNKNOWN_TOKEN"]


# ---------------------------------------------------------------- carried state


def tiny_model(cell, **options):
    return RNNLanguageModel(9, 4, 4, num_layers=2, cell=cell, dtype="float64", seed=2, **options)


def random_windows(rng, T=11, B=3, V=9):
    return rng.integers(0, V, (T, B)).astype(np.int32), rng.integers(0, V, (T, B)).astype(np.int32)


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_three_windows_with_carried_state_equal_one_unbroken_pass(cell):
    model = tiny_model(cell)
    ids, targets = random_windows(np.random.default_rng(0))
    mask = np.ones(ids.shape)
    whole_loss, whole_count = model.compile_loss()(ids, targets, mask)
    whole_states = model.compile_loss(carry_state=True)(ids, targets, mask, *model.initial_state_values(3))[2:]
    carried = model.compile_loss(carry_state=True)
    states, total = model.initial_state_values(3), 0.0
    for begin, end in ((0, 4), (4, 8), (8, 11)):
        loss, count, *states = carried(ids[begin:end], targets[begin:end], mask[begin:end], *states)
        total += loss
    np.testing.assert_allclose(total, whole_loss, rtol=1e-12)
    assert len(states) == len(model.initial_state_values(3)) == 2 * (2 if cell == "lstm" else 1)
    for state, expected in zip(states, whole_states):
        np.testing.assert_allclose(state, expected, rtol=1e-12)


def sgd_gradient(model, step, *arguments):
    """The gradient a carried-state SGD step (learning rate 1) applied, by parameter."""
    before = model.get_values()
    step(*arguments)
    after = model.get_values()
    model.set_values(before)
    return {name: before[name] - after[name] for name in before}


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_gradient_stops_at_the_window_edge(cell):
    """Window 2's step gradient is that of its loss with its initial states held fixed (finite differences),
    not that of the unbroken pass, where window 1's inputs reach window 2's loss through the states."""
    model = tiny_model(cell)
    ids, targets = random_windows(np.random.default_rng(1), T=8)
    mask = np.ones(ids.shape)
    carried = model.compile_loss(carry_state=True)
    first = carried(ids[:4], targets[:4], mask[:4], *model.initial_state_values(3))
    edge_states = first[2:]
    step = model.compile_train("sgd", carry_state=True)
    gradient = sgd_gradient(model, step, ids[4:], targets[4:], mask[4:], np.float64(1.0), *edge_states)

    def window2_loss(fixed_states: bool) -> float:
        if fixed_states:
            return float(carried(ids[4:], targets[4:], mask[4:], *edge_states)[0])
        states = carried(ids[:4], targets[:4], mask[:4], *model.initial_state_values(3))[2:]
        return float(carried(ids[4:], targets[4:], mask[4:], *states)[0])

    name = "layer0/W_x"  # reaches window 2's loss through window 1's states as well
    values = model.get_values()
    rng = np.random.default_rng(2)
    differs = False
    for flat in rng.choice(values[name].size, 6, replace=False):
        index = np.unravel_index(flat, values[name].shape)
        estimates = {}
        for fixed in (True, False):
            plus, minus = {k: v.copy() for k, v in values.items()}, {k: v.copy() for k, v in values.items()}
            plus[name][index] += 1e-6
            minus[name][index] -= 1e-6
            model.set_values(plus)
            up = window2_loss(fixed)
            model.set_values(minus)
            down = window2_loss(fixed)
            estimates[fixed] = (up - down) / 2e-6
        model.set_values(values)
        np.testing.assert_allclose(gradient[name][index], estimates[True], rtol=1e-5, atol=1e-8)
        differs |= abs(estimates[False] - estimates[True]) > 1e-4
    assert differs, "the unbroken pass should give another gradient; the check would not tell them apart"


def test_window_two_does_not_depend_on_window_ones_inputs_given_its_states():
    model = tiny_model("gru")
    ids, targets = random_windows(np.random.default_rng(3), T=8)
    mask = np.ones(ids.shape)
    step = model.compile_train("sgd", carry_state=True)
    states = [np.full((3, 4), 0.1)] * 2
    gradients = [sgd_gradient(model, step, ids[4:], targets[4:], mask[4:], np.float64(1.0), *states) for _ in range(2)]
    for name in gradients[0]:
        np.testing.assert_array_equal(gradients[0][name], gradients[1][name])


# ---------------------------------------------------------------- tied weights


def test_tied_weights_are_one_parameter_whose_gradient_sums_both_uses():
    tied = RNNLanguageModel(9, 4, 4, num_layers=1, cell="gru", dtype="float64", seed=4, tie_weights=True)
    assert "output/W" not in tied.params and "embedding" in tied.params
    values = tied.get_values()
    untied_values = dict(values, **{"output/W": values["embedding"].T.copy()})
    untied = RNNLanguageModel(9, 4, 4, num_layers=1, cell="gru", dtype="float64", initial_values=untied_values)
    ids, targets = random_windows(np.random.default_rng(5), T=6)
    mask = np.ones(ids.shape)
    np.testing.assert_allclose(tied.compile_loss()(ids, targets, mask)[0], untied.compile_loss()(ids, targets, mask)[0])
    tied_gradient = sgd_gradient(tied, tied.compile_train("sgd"), ids, targets, mask, np.float64(1.0))
    untied_gradient = sgd_gradient(untied, untied.compile_train("sgd"), ids, targets, mask, np.float64(1.0))
    np.testing.assert_allclose(tied_gradient["embedding"], untied_gradient["embedding"] + untied_gradient["output/W"].T,
                               rtol=1e-10, atol=1e-12)


def test_tied_weights_with_unequal_sizes_are_refused():
    with pytest.raises(ValueError, match="embedding_dim == hidden_dim"):
        RNNLanguageModel(9, 4, 6, tie_weights=True)


# ---------------------------------------------------------------- metrics


def test_the_metrics_file_has_a_header_and_one_row_per_report(tmp_path):
    path = tmp_path / "m.metrics.csv"
    history = [[100, 5.0, None], [200, 4.5, 4.7, 3000, 12.5, 0.001]]  # an older checkpoint's row first
    write_metrics(str(path), history)
    rows = list(csv.reader(path.open(encoding="utf-8")))
    assert tuple(rows[0]) == METRICS_COLUMNS
    assert rows[1] == ["100", "", "", "5", "", ""]
    assert rows[2] == ["200", "3000", "12.5", "4.5", "4.7", "0.001"]
    assert [p.name for p in tmp_path.iterdir()] == ["m.metrics.csv"]
