"""Settings from environment variables (symrnn.config.Settings.from_environ)."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from symrnn.config import SETTINGS, Settings, misspelt_settings
from symrnn.errors import ConfigError

TUTORIAL_DEFAULTS = {
    "LEARNING_RATE": 0.001,
    "VOCABULARY_SIZE": 2000,
    "EMBEDDING_DIM": 48,
    "HIDDEN_DIM": 128,
    "NEPOCH": 20,
    "PRINT_EVERY": 25000,
}

NOT_A_NUMBER = ["abc", "1,5", "0x10", "--1", "one"]
NOT_FINITE = ["nan", "inf", "-inf", "NaN", "Infinity"]

#: Out-of-range values of every numeric setting (besides non-numbers and non-finite values).
OUT_OF_RANGE = {
    "LEARNING_RATE": ["0", "-1", "-0.001", "1e39", "3.5e38", "1e-39"],
    "VOCABULARY_SIZE": ["3", "0", "-2000"],
    "EMBEDDING_DIM": ["0", "-48"],
    "HIDDEN_DIM": ["0", "-1"],
    "NEPOCH": ["0", "-20"],
    "PRINT_EVERY": ["0", "-1"],
    "SEED": ["-1"],
    "BATCH_SIZE": ["0", "-16"],
    "NUM_LAYERS": ["0", "-2"],
    "DECAY": ["1", "1.5", "-0.1"],
    "GRAD_CLIP": ["-1", "-0.5"],
    "ANNEAL_RATE": ["0", "1", "2", "-0.5"],
    "DROPOUT": ["1", "1.2", "-0.1"],
    "BPTT_TRUNCATE": ["0", "-2", "-100"],
    "VALIDATION_FRACTION": ["1", "-0.1", "3"],
    "MIN_SENT_CHARACTERS": ["-1"],
    "MAX_SENTENCES": ["-1"],
    "NUM_SAMPLES": ["-1"],
    "TEMPERATURE": ["-0.5", "-1"],
    "BUCKET_WIDTH": ["-1"],
    "TIME_LIMIT": ["-1", "-0.5"],
    "BLAS_THREADS": ["-1", "-2"],
    "MAX_DATA_MB": ["0", "-1"],
    "SEQ_LENGTH": ["0", "-50"],
    "TIE_WEIGHTS": ["2", "-1"],
}

#: Boundary values that are allowed.
ACCEPTED = {
    "LEARNING_RATE": ["1e-3", " 0.5 ", "2", "3.4e38", "1.2e-38"],
    "VOCABULARY_SIZE": ["4", "8000"],
    "SEED": ["0"],
    "DECAY": ["0", "0.99"],
    "GRAD_CLIP": ["0", "5"],
    "DROPOUT": ["0", "0.5"],
    "BPTT_TRUNCATE": ["-1", "1", "4"],
    "VALIDATION_FRACTION": ["0", "0.1"],
    "TEMPERATURE": ["0", "1.5"],
    "NUM_SAMPLES": ["0"],
    "MAX_SENTENCES": ["0", "200"],
    "TIME_LIMIT": ["0", "90.5"],
    "BLAS_THREADS": ["0", "1", "16"],
    "MAX_DATA_MB": ["1", "4096"],
    "SEQ_LENGTH": ["1", "200"],
    "TIE_WEIGHTS": ["0"],
}

CHOICES = {
    "FLOATX": ("float32", "float64"),
    "CELL": ("gru", "lstm", "rnn"),
    "GATE": ("hard_sigmoid", "sigmoid"),
    "OPTIMIZER": ("sgd", "rmsprop", "adam"),
    "ANNEAL": ("none", "plateau", "exponential"),
    "TOKENS": ("word", "char", "whitespace"),
    "SEQUENCE": ("sentence", "stream"),
    "DEVICE": ("cpu", "gpu"),
    "BACKEND": ("auto", "cpu", "numba", "jax"),
}

FIELDS = {f.name.upper(): f for f in dataclasses.fields(Settings)}
NUMERIC = sorted(name for name, f in FIELDS.items() if type(f.default) in (int, float))
INTEGER = sorted(name for name, f in FIELDS.items() if type(f.default) is int)


def test_every_numeric_setting_has_out_of_range_cases_in_this_file():
    assert sorted(OUT_OF_RANGE) == NUMERIC


def test_every_choice_setting_is_covered_in_this_file():
    choices = sorted(name for name, f in FIELDS.items() if type(f.default) is str and f.default)
    assert sorted(CHOICES) == choices
    assert sorted(SETTINGS) == sorted(FIELDS)


def test_defaults_are_the_tutorials():
    settings = Settings.from_environ({})
    for name, value in TUTORIAL_DEFAULTS.items():
        assert getattr(settings, name.lower()) == value, name
        assert type(getattr(settings, name.lower())) is type(value), name
    assert settings.learning_rate == 0.001 and settings.decay == 0.9


def test_unset_and_blank_variables_keep_the_defaults_and_unrelated_ones_are_ignored():
    settings = Settings.from_environ({"HIDDEN_DIM": "", "NEPOCH": "   ", "PATH": "/bin", "hidden_dim": "7"})
    assert settings == Settings()


def test_values_are_read_converted_and_stripped():
    settings = Settings.from_environ({
        "LEARNING_RATE": " 0.01 ", "HIDDEN_DIM": "16", "EMBEDDING_DIM": "8", "CELL": "lstm",
        "MODEL_OUTPUT_FILE": "out/m.dat", "DROPOUT": "0.25", "BPTT_TRUNCATE": "-1",
    })
    assert settings.learning_rate == 0.01 and settings.hidden_dim == 16 and settings.embedding_dim == 8
    assert type(settings.hidden_dim) is int and type(settings.learning_rate) is float
    assert settings.cell == "lstm" and settings.model_output_file == "out/m.dat"
    assert settings.dropout == 0.25 and settings.bptt_truncate == -1


def test_an_integer_written_for_a_float_setting_becomes_a_float():
    settings = Settings.from_environ({"LEARNING_RATE": "1", "GRAD_CLIP": "5"})
    assert settings.learning_rate == 1.0 and type(settings.learning_rate) is float
    assert type(settings.grad_clip) is float


def assert_config_error_names(variable, environ):
    with pytest.raises(ConfigError) as info:
        Settings.from_environ(environ)
    message = str(info.value)
    assert variable in message
    assert "\n" not in message
    return message


@pytest.mark.parametrize("variable", NUMERIC)
@pytest.mark.parametrize("value", NOT_A_NUMBER)
def test_a_non_numeric_value_is_a_config_error_naming_the_variable(variable, value):
    message = assert_config_error_names(variable, {variable: value})
    assert repr(value) in message


@pytest.mark.parametrize("variable", NUMERIC)
@pytest.mark.parametrize("value", NOT_FINITE)
def test_a_non_finite_value_is_a_config_error_naming_the_variable(variable, value):
    assert_config_error_names(variable, {variable: value})


@pytest.mark.parametrize(
    "variable,value", [(name, value) for name, values in OUT_OF_RANGE.items() for value in values]
)
def test_an_out_of_range_value_is_a_config_error_naming_the_variable(variable, value):
    assert_config_error_names(variable, {variable: value})


@pytest.mark.parametrize("variable", INTEGER)
@pytest.mark.parametrize("value", ["1.5", "2e3", "7.0"])
def test_a_fractional_value_of_an_integer_setting_is_a_config_error(variable, value):
    assert_config_error_names(variable, {variable: value})


@pytest.mark.parametrize(
    "variable,value", [(name, value) for name, values in ACCEPTED.items() for value in values]
)
def test_boundary_values_that_are_allowed_are_accepted(variable, value):
    settings = Settings.from_environ({variable: value})
    assert getattr(settings, variable.lower()) == pytest.approx(float(value))


@pytest.mark.parametrize("variable", sorted(CHOICES))
def test_an_unknown_choice_is_a_config_error_naming_the_variable_and_the_choices(variable):
    message = assert_config_error_names(variable, {variable: "bogus"})
    for option in CHOICES[variable]:
        assert option in message


@pytest.mark.parametrize("variable,options", sorted(CHOICES.items()))
def test_every_listed_choice_is_accepted(variable, options):
    for option in options:
        assert getattr(Settings.from_environ({variable: option}), variable.lower()) == option


def test_the_first_bad_variable_is_reported_even_when_others_are_fine():
    assert_config_error_names("HIDDEN_DIM", {"LEARNING_RATE": "0.1", "HIDDEN_DIM": "abc", "NEPOCH": "3"})


def test_settings_built_directly_are_checked_too():
    with pytest.raises(ConfigError, match="HIDDEN_DIM"):
        Settings(hidden_dim=0)
    with pytest.raises(ConfigError, match="LEARNING_RATE"):
        Settings(learning_rate=float("nan"))
    with pytest.raises(ConfigError, match="NEPOCH"):
        Settings(nepoch=True)
    with pytest.raises(ConfigError, match="DROPOUT"):
        Settings().replace(dropout=1.0)


def test_the_default_model_file_name_follows_the_tutorials_pattern_to_the_second_with_a_tag():
    settings = Settings.from_environ({"VOCABULARY_SIZE": "8000", "EMBEDDING_DIM": "32", "HIDDEN_DIM": "64"})
    name = settings.output_path(datetime.datetime(2015, 10, 9, 8, 7, 6), tag="abc123")
    assert name == "GRU-2015-10-09-08-07-06-8000-32-64-abc123.npz"
    assert Settings.from_environ({"MODEL_OUTPUT_FILE": "x.dat"}).output_path() == "x.dat"


def test_default_model_names_of_runs_started_in_the_same_second_differ():
    now = datetime.datetime(2015, 10, 9, 8, 7, 6)
    names = {Settings().output_path(now) for _ in range(50)}
    assert len(names) == 50


@pytest.mark.parametrize("variable, nearest", [
    ("HIDDEN_DIMS", "HIDDEN_DIM"), ("LEARNIG_RATE", "LEARNING_RATE"), ("NEPOCHS", "NEPOCH"), ("BATCHSIZE", "BATCH_SIZE"),
    ("hidden_dim", "HIDDEN_DIM"), ("Learning_Rate", "LEARNING_RATE"),
])
def test_a_mistyped_setting_is_found_with_its_nearest_name(variable, nearest):
    assert misspelt_settings({variable: "3", "HIDDEN_DIM": "4"}) == [(variable, nearest)]


def test_ordinary_environment_variables_and_real_settings_are_not_taken_for_typos():
    ordinary = ["PATH", "HOME", "TERM", "SHELL", "LANG", "PWD", "PYTHONPATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "XDG_CACHE_HOME", "XDG_CACHE_DIR", "CUDA_VISIBLE_DEVICES",
                "JAX_PLATFORMS", "PYTENSOR_FLAGS", "PYTHONUNBUFFERED", "lower_case_thing"]
    assert misspelt_settings({name: "1" for name in ordinary + SETTINGS}) == []


def test_settings_describe_and_help_name_every_variable():
    settings = Settings()
    described = "\n".join(settings.describe())
    helped = "\n".join(Settings.help_lines())
    for name in FIELDS:
        assert name in described and name in helped
    assert settings.as_dict()["hidden_dim"] == 128


def test_backend_name_is_one_of_the_librarys_backends_with_cpu_naming_the_c_vm_linker_as_in_older_checkpoints():
    from symrnn.backend import BACKENDS

    assert Settings.from_environ({"BACKEND": "cpu"}).backend_name == "c"  # checkpoints of earlier runs hold "cpu"
    assert Settings.from_environ({"BACKEND": "c"}).backend_name == "c"
    assert Settings.from_environ({}).backend_name == "c"
    assert Settings.from_environ({"DEVICE": "gpu"}).backend_name == "jax"
    for name in ("numba", "jax"):
        assert Settings.from_environ({"BACKEND": name}).backend_name == name
    for value in ("auto", "c", "cpu", "numba", "jax"):
        assert Settings(backend=value).backend_name in BACKENDS


def test_tied_weights_with_unequal_embedding_and_hidden_sizes_is_one_line_naming_both():
    message = assert_config_error_names("TIE_WEIGHTS", {"TIE_WEIGHTS": "1", "EMBEDDING_DIM": "8", "HIDDEN_DIM": "16"})
    assert "EMBEDDING_DIM=8" in message and "HIDDEN_DIM=16" in message
    assert Settings.from_environ({"TIE_WEIGHTS": "1", "EMBEDDING_DIM": "16", "HIDDEN_DIM": "16"}).tie_weights == 1


def test_the_new_settings_default_to_the_tutorials_sentence_training():
    settings = Settings()
    assert settings.sequence == "sentence" and settings.seq_length == 50 and settings.tie_weights == 0
    assert settings.validation_file == "" and settings.test_file == ""


def test_the_settings_a_resumed_run_may_change_are_declared_on_the_fields():
    resumable = set(Settings.resumable_names())
    assert {"nepoch", "print_every", "model_output_file", "resume", "time_limit", "test_file"} <= resumable
    # What a run computes comes from its checkpoint.
    for name in ("learning_rate", "hidden_dim", "cell", "sequence", "seq_length", "tokens", "tie_weights", "seed"):
        assert name not in resumable
    assert all("kind" not in f.metadata for f in dataclasses.fields(Settings))
