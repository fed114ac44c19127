"""Long text generation: symrnn.sampling.generate_text and detokenize with a fake NumPy
step function, and generate.py --length end to end on a tiny character model."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from symrnn.checkpoint import load_checkpoint, save_checkpoint
from symrnn.errors import CheckpointError, ConfigError
from symrnn.sampling import LINE_END_TOKENS, detokenize, generate_text
from symrnn.vocab import SENTENCE_END
from tests.test_scripts import GENERATE, TRAIN, assert_one_line_error, command, run_all, small_env

VOCAB = 8
START, END = 2, 3


class RecordingStep:
    """A deterministic one-step function that records every call.

    Its single state (1, 2) is ``[steps taken, last token]``; the logits come
    from a fixed random table indexed by the step count and the input token,
    so the text depends on both the state carried and the tokens fed.
    """

    def __init__(self, seed=0, scale=2.0):
        self.table = np.random.default_rng(seed).normal(size=(512, VOCAB, VOCAB)) * scale
        self.calls = []

    @staticmethod
    def initial_states():
        return [np.zeros((1, 2))]

    def __call__(self, ids, state):
        assert isinstance(ids, np.ndarray) and ids.shape == (1,) and ids.dtype == np.int32
        self.calls.append((int(ids[0]), state.copy()))
        steps = state[:, 0] + 1
        logits = self.table[steps.astype(int) % len(self.table), ids]
        return logits, np.stack([steps, ids.astype(float)], axis=1)

    @property
    def fed(self):
        return [token for token, _ in self.calls]


def run_text(step, prime, length, seed=0, **options):
    return generate_text(step, step.initial_states(), prime, length, np.random.default_rng(seed), **options)


def greedy_reference(step, prime, length):
    """The argmax path of ``step``, computed from its table in plain NumPy."""
    steps, tokens = 0, []
    for token in prime:
        steps += 1
        logits = step.table[steps % len(step.table), token]
    for _ in range(length):
        token = int(np.argmax(logits))
        tokens.append(token)
        steps += 1
        logits = step.table[steps % len(step.table), token]
    return tokens


# --------------------------------------------------------------------------
# generate_text
# --------------------------------------------------------------------------


@pytest.mark.parametrize("prime,length", [([5], 1), ([4, 5, 6], 50), ([7] * 10, 300)])
def test_long_generation_is_one_step_per_prime_token_and_per_generated_token(prime, length):
    step = RecordingStep()
    tokens = run_text(step, prime, length)
    assert tokens.dtype == np.int32 and tokens.shape == (length,)
    # The last token sampled is not fed: nothing would read its logits.
    assert len(step.calls) == len(prime) + length - 1
    assert step.fed == [*prime, *tokens[:-1].tolist()]


def test_the_state_is_carried_from_each_step_to_the_next():
    step = RecordingStep()
    run_text(step, [4, 5], 40)
    np.testing.assert_array_equal([state[0, 0] for _, state in step.calls], np.arange(41))
    assert [int(state[0, 1]) for _, state in step.calls[1:]] == step.fed[:-1]


def test_the_prime_is_read_from_the_initial_states_given():
    step = RecordingStep()
    start = [np.array([[100.0, 4.0]])]
    generate_text(step, start, [5, 6], 3, np.random.default_rng(0))
    np.testing.assert_array_equal(step.calls[0][1], start[0])
    assert step.calls[1][1][0, 0] == 101


def test_equal_seeds_give_equal_text_and_different_seeds_differ():
    first = run_text(RecordingStep(), [4], 200, seed=5)
    again = run_text(RecordingStep(), [4], 200, seed=5)
    other = run_text(RecordingStep(), [4], 200, seed=6)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("options", [{"top_k": 1, "temperature": 1.0}, {"top_k": 1, "temperature": 3.0},
                                     {"temperature": 0.0}])
def test_top_k_1_and_temperature_0_follow_the_argmax_at_every_step(options):
    step = RecordingStep()
    tokens = run_text(step, [4, 6], 100, seed=1, **options)
    assert tokens.tolist() == greedy_reference(step, [4, 6], 100)


def test_top_k_samples_only_among_the_k_most_probable_tokens_of_each_step():
    step = RecordingStep(scale=0.3)  # flat logits: without top-k every token would turn up
    tokens = run_text(step, [4], 2000, seed=2, top_k=3)
    for position, token in enumerate(tokens):
        fed, state = step.calls[position]  # the call whose logits this token was sampled from
        logits = step.table[(int(state[0, 0]) + 1) % len(step.table), fed]
        assert token in np.argsort(-logits)[:3]
    assert len(set(tokens.tolist())) > 3  # the three best differ from step to step


def test_banned_tokens_are_never_sampled():
    step = RecordingStep(scale=0.3)
    tokens = run_text(step, [4], 1000, seed=3, banned_ids=[0, 5])
    assert not np.isin(tokens, [0, 5]).any()
    assert set(tokens.tolist()) == set(range(VOCAB)) - {0, 5}


def test_after_a_sentence_end_the_next_step_reads_the_start_marker_from_the_initial_states():
    step = RecordingStep()
    step.table[:, :, END] += 1.5  # sentences end often
    tokens = run_text(step, [START, 4], 300, seed=4, sentence_markers=(START, END))
    ends = np.flatnonzero(tokens[:-1] == END)
    assert len(ends) > 3
    prime_length = 2
    for position in ends:
        fed, state = step.calls[prime_length + position]
        assert fed == START
        np.testing.assert_array_equal(state, step.initial_states()[0])
    others = [position for position in range(len(tokens) - 1) if tokens[position] != END]
    assert all(step.calls[prime_length + position][0] == tokens[position] for position in others)
    assert len(step.calls) == prime_length + len(tokens) - 1


def test_each_token_is_handed_to_on_token_as_soon_as_it_is_sampled():
    step = RecordingStep()
    seen = []
    tokens = run_text(step, [4, 5, 6], 30, seed=7, on_token=lambda token: seen.append((token, len(step.calls))))
    assert [token for token, _ in seen] == tokens.tolist()
    assert [calls for _, calls in seen] == list(range(3, 3 + 30))


def test_length_0_reads_the_prime_and_generates_nothing():
    step = RecordingStep()
    assert run_text(step, [4, 5], 0).shape == (0,)
    assert step.fed == [4, 5]


@pytest.mark.parametrize("prime,length,options,needle", [
    ([], 10, {}, "prime"),
    ([4], -1, {}, "length"),
    ([4], 10, {"top_k": -2}, "top_k"),
])
def test_bad_arguments_of_generate_text_are_refused_before_any_step(prime, length, options, needle):
    step = RecordingStep()
    with pytest.raises(ConfigError, match=needle):
        run_text(step, prime, length, **options)
    assert step.calls == []


# --------------------------------------------------------------------------
# detokenize
# --------------------------------------------------------------------------


def test_characters_are_joined_as_they_are():
    assert detokenize(list("a b, c"), "char") == "a b, c"


@pytest.mark.parametrize("kind", ["word", "whitespace"])
def test_words_are_joined_with_one_space(kind):
    assert detokenize(["the", "cat", ",", "sits"], kind) == "the cat , sits"


@pytest.mark.parametrize("kind", ["word", "whitespace", "char"])
@pytest.mark.parametrize("line_end", sorted(LINE_END_TOKENS))
def test_a_line_end_token_becomes_a_newline_with_no_space_around_it(kind, line_end):
    separator = "" if kind == "char" else " "
    text = detokenize(["a", "b", line_end, "c", line_end, line_end, "d"], kind)
    assert text == f"a{separator}b\nc\n\nd"


def test_the_end_of_line_token_and_the_sentence_end_are_line_ends():
    assert LINE_END_TOKENS == {"<eos>", SENTENCE_END}


@pytest.mark.parametrize("kind", ["word", "char"])
def test_text_joined_in_chunks_equals_the_text_joined_at_once(kind):
    tokens = ["x", "y", "<eos>", "z", "w", "SENTENCE_END", "v", "u", "t"]
    for cut in range(len(tokens) + 1):
        head, tail = tokens[:cut], tokens[cut:]
        continues = bool(head) and head[-1] not in LINE_END_TOKENS
        assert detokenize(head, kind) + detokenize(tail, kind, continues=continues) == detokenize(tokens, kind)


def test_an_unknown_kind_of_tokens_is_refused():
    with pytest.raises(ConfigError, match="tokens"):
        detokenize(["a"], "bytes")


# --------------------------------------------------------------------------
# generate.py --length, end to end
# --------------------------------------------------------------------------

CHARACTERS = "the cat sees a dog. "


def fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def char_model(tmp_path_factory):
    """A tiny character model ``m.npz`` (HIDDEN_DIM 8) trained by train.py, and ``state.npz``: the
    same model with training state arrays ``stream_state/<i>`` of random rows added by hand."""
    from models.loading import model_from_checkpoint

    folder = tmp_path_factory.mktemp("char")
    rng = np.random.default_rng(0)
    lines = ["".join(rng.choice(list(CHARACTERS), size=rng.integers(10, 30))) for _ in range(60)]
    (folder / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = small_env(folder, TOKENS="char", MAX_SENTENCES="60", HIDDEN_DIM="8", EMBEDDING_DIM="4",
                    VOCABULARY_SIZE="40", NUM_SAMPLES="0", MODEL_OUTPUT_FILE="m.npz")
    trained = subprocess.run(command(TRAIN), env=env, cwd=folder, capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr
    checkpoint = load_checkpoint(str(folder / "m.npz"))
    zero = model_from_checkpoint(checkpoint).initial_state_values(1)
    saved = dict(params=checkpoint.params, vocabulary=checkpoint.vocabulary, settings=checkpoint.settings,
                 optimizer_state=checkpoint.optimizer_state)
    states = {f"stream_state/{i}": rng.normal(size=(3, z.shape[1])).astype(z.dtype) * 2 for i, z in enumerate(zero)}
    save_checkpoint(folder / "state.npz", **saved, training_state={**checkpoint.training_state, **states})
    return folder, states


@pytest.fixture(scope="module")
def char_runs(char_model):
    folder, _ = char_model
    before = {name: fingerprint(folder / name) for name in ("m.npz", "state.npz")}
    long = ["--length", "200", "--prime", "the ", "--seed"]
    runs = run_all({
        "first": (command(GENERATE, "m.npz", *long, "1"), None, folder),
        "again": (command(GENERATE, "m.npz", *long, "1"), None, folder),
        "other": (command(GENERATE, "m.npz", *long, "2"), None, folder),
        "clamped": (command(GENERATE, "m.npz", *long, "1", "--top-k", "1000"), None, folder),
        "state": (command(GENERATE, "state.npz", "--length", "60", "--seed", "3", "--prime", "Ωthe",
                          "--from-training-state"), None, folder),
        "no-state": (command(GENERATE, "m.npz", "--length", "5", "--from-training-state"), None, folder),
    })
    after = {name: fingerprint(folder / name) for name in before}
    return runs, before, after


def test_generate_length_prints_the_prime_then_that_many_characters(char_runs, char_model):
    result = char_runs[0]["first"]
    assert result.returncode == 0, result.stderr
    vocabulary = load_checkpoint(str(char_model[0] / "m.npz")).vocabulary
    assert result.stdout.startswith("the ")
    text = result.stdout.removeprefix("the ")
    # One character per token (a sentence end is a newline), then a newline unless the last was one.
    assert len(text) == 201 or (len(text) == 200 and text.endswith("\n"))
    assert text.endswith("\n")
    assert set(text) <= set(vocabulary) | {"\n"}
    assert result.stderr.splitlines()[0] == "generate.py: generating 200 tokens from m.npz ..."


def test_generate_length_with_equal_seeds_prints_equal_text_and_with_different_seeds_differs(char_runs):
    runs = char_runs[0]
    assert runs["first"].stdout == runs["again"].stdout
    assert runs["first"].stdout != runs["other"].stdout


def test_a_top_k_beyond_the_vocabulary_is_clamped_with_one_warning_and_samples_as_without(char_runs):
    result = char_runs[0]["clamped"]
    assert result.returncode == 0, result.stderr
    assert result.stdout == char_runs[0]["first"].stdout
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "--top-k 1000" in warnings[0]


def test_unknown_characters_of_the_prime_are_read_as_unknown_with_a_warning_naming_how_many(char_runs):
    result = char_runs[0]["state"]
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "1 of the 4 tokens" in warnings[0] and "UNKNOWN_TOKEN" in warnings[0]


def test_from_training_state_starts_from_row_0_of_the_stream_state_arrays_and_reads_the_prime(char_runs, char_model):
    from models.loading import model_from_checkpoint
    from symrnn.vocab import Vocabulary

    folder, states = char_model
    result = char_runs[0]["state"]
    assert result.returncode == 0, result.stderr
    checkpoint = load_checkpoint(str(folder / "state.npz"))
    model = model_from_checkpoint(checkpoint)
    vocabulary = Vocabulary(checkpoint.vocabulary)
    step = model.compile_step()

    def expected_text(start_states):
        tokens = generate_text(
            step, start_states, [vocabulary.start_index, vocabulary.unknown_index, *vocabulary.encode("the")], 60,
            np.random.default_rng(3),
            banned_ids=[vocabulary.mask_index, vocabulary.unknown_index, vocabulary.start_index],
            sentence_markers=(vocabulary.start_index, vocabulary.end_index),
        )
        return "Ωthe" + detokenize(vocabulary.decode(tokens), "char")

    from_row_0 = expected_text([states[f"stream_state/{i}"][:1] for i in range(len(states))])
    from_zero = expected_text(model.initial_state_values(1))
    assert from_row_0 != from_zero  # else this test could not tell the two apart
    assert result.stdout == (from_row_0 if from_row_0.endswith("\n") else from_row_0 + "\n")


def test_from_training_state_without_stream_state_arrays_exits_2_with_one_line(char_runs):
    result = char_runs[0]["no-state"]
    assert_one_line_error(result, "m.npz", "stream_state", "--from-training-state")
    assert result.stdout == ""


@pytest.mark.parametrize("arrays, needle", [
    ({}, "holds no training state"),
    ({"stream_state/0": np.zeros((3, 9), dtype=np.float32)}, "stream_state/0 is of shape (3, 9)"),
    ({"stream_state/0": np.zeros((0, 8), dtype=np.float32)}, "stream_state/0 is of shape (0, 8)"),
    ({"stream_state/0": np.zeros(8, dtype=np.float32)}, "stream_state/0 is of shape (8,)"),
    ({"stream_state/1": np.zeros((1, 8), dtype=np.float32)}, "stream_state/0 is missing"),
])
def test_training_states_of_the_wrong_shape_or_count_are_refused_naming_the_array(char_model, arrays, needle):
    from models.loading import model_from_checkpoint
    from scripts.generate import training_end_states

    checkpoint = load_checkpoint(str(char_model[0] / "m.npz"))
    model = model_from_checkpoint(checkpoint)
    checkpoint.training_state = {**checkpoint.training_state, **arrays}
    with pytest.raises(CheckpointError, match=re.escape(needle)):
        training_end_states(checkpoint, model)


def test_training_states_are_row_0_of_each_array_in_the_models_dtype(char_model):
    from models.loading import model_from_checkpoint
    from scripts.generate import training_end_states

    folder, states = char_model
    checkpoint = load_checkpoint(str(folder / "state.npz"))
    model = model_from_checkpoint(checkpoint)
    read = training_end_states(checkpoint, model)
    assert len(read) == len(model.initial_state_values(1)) == len(states)
    for i, state in enumerate(read):
        assert state.shape == (1, 8) and state.dtype == model.initial_state_values(1)[i].dtype
        np.testing.assert_array_equal(state[0], states[f"stream_state/{i}"][0])


def test_generate_runs_leave_every_model_file_as_it_was(char_runs):
    _, before, after = char_runs
    assert after == before


@pytest.mark.parametrize("options, needle", [
    (["--length", "0"], "--length must be greater than 0"),
    (["--length", "-5"], "--length must be greater than 0"),
    (["--top-k", "-1"], "--top-k must be 0 or more"),
    (["--length", "5", "--num", "3"], "--num is for sentences"),
    (["--length", "5", "--max-length", "30"], "--max-length is for sentences"),
    (["--length", "5", "--min-length", "2"], "--min-length is for sentences"),
    (["--from-training-state"], "--from-training-state needs --length"),
])
def test_bad_long_text_options_are_refused_naming_the_option(options, needle):
    from scripts.generate import parse_arguments

    with pytest.raises(ConfigError, match=re.escape(needle)):
        parse_arguments(["m.npz", *options])


def test_generate_refuses_a_bad_length_with_one_line_exit_2_and_no_output(tmp_path):
    model = tmp_path / "m.npz"
    model.write_bytes(b"never read")
    result = subprocess.run(command(GENERATE, str(model), "--length", "0"), capture_output=True, text=True, timeout=120)
    assert_one_line_error(result, "--length must be greater than 0")
    assert result.stdout == ""
    assert model.read_bytes() == b"never read"


def test_prime_and_prompt_are_one_option():
    from scripts.generate import parse_arguments

    assert parse_arguments(["m.npz", "--prime", "the cat"]).prompt == "the cat"
    assert parse_arguments(["m.npz", "--prompt", "the cat"]).prompt == "the cat"
    defaults = parse_arguments(["m.npz"])
    assert (defaults.num, defaults.max_length, defaults.min_length, defaults.length) == (10, 100, 5, None)
