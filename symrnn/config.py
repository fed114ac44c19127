"""Training settings: declared once, typed, checked, printed and saved.

Each setting is read from the environment variable of the same name (the
tutorial's names and defaults, plus symrnn's own). Only scripts pass the
environment in: ``Settings.from_environ(os.environ)``. A bad value raises
:class:`symrnn.errors.ConfigError` with a one-line message naming the variable.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import math
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from symrnn.errors import CheckpointError, ConfigError

__all__ = ["DEFAULT_INPUT_DATA_FILE", "SETTINGS", "Settings", "misspelt_settings"]

DEFAULT_INPUT_DATA_FILE = "./data/reddit-comments-2015.csv"


def _positive(value):
    return None if value > 0 else "must be greater than 0"


def _non_negative(value):
    return None if value >= 0 else "must be 0 or more"


def _at_least(minimum):
    return lambda value: None if value >= minimum else f"must be at least {minimum}"


# float32's smallest normal and largest finite numbers: the step size is cast to float32.
_FLOAT32_TINY, _FLOAT32_MAX = 1.1754943508222875e-38, 3.4028234663852886e38


def _learning_rate(value):
    if value <= 0:
        return "must be greater than 0"
    if not _FLOAT32_TINY <= value <= _FLOAT32_MAX:
        return "must lie within float32's range (1.2e-38 to 3.4e38), as the step size is a float32"
    return None


def _fraction(value):
    return None if 0 <= value < 1 else "must be at least 0 and below 1"


def _choice(*options):
    return lambda value: None if value in options else "must be one of " + ", ".join(map(str, options))


def _truncate(value):
    return None if value == -1 or value >= 1 else "must be -1 (full backpropagation) or a positive number of steps"


def _setting(default, help: str, check: Callable | None = None, resumable: bool = False):
    """A settings field: its default, its help line, its check and whether a resumed run may change it.

    ``resumable`` settings change how a run goes on (how long, where it
    writes, how it reports), never what it computes, so a resumed run takes
    them from the environment; every other setting comes from the checkpoint.
    """
    return field(default=default, metadata={"help": help, "check": check, "resumable": resumable})


@dataclass(frozen=True)
class Settings:
    """All settings of ``scripts/train.py``; field names are the variable names in lower case."""

    learning_rate: float = _setting(0.001, "step size of the optimizer", _learning_rate)
    vocabulary_size: int = _setting(2000, "words kept, including <MASK/> and UNKNOWN_TOKEN", _at_least(4))
    embedding_dim: int = _setting(48, "word vector size (really used, unlike the tutorial)", _positive)
    hidden_dim: int = _setting(128, "state size of each recurrent layer", _positive)
    nepoch: int = _setting(20, "passes over the training sentences", _positive, resumable=True)
    model_output_file: str = _setting("", "checkpoint path (default GRU-<date-time>-<vocab>-<emb>-<hidden>-<random>.npz, a new name for each run; a resumed run writes to its RESUME file)", resumable=True)
    input_data_file: str = _setting("", f"corpus: a CSV like the tutorial's, a text file or a folder (default {DEFAULT_INPUT_DATA_FILE}, else the embedded corpus)", resumable=True)
    print_every: int = _setting(25000, "examples between progress reports, samples and checkpoints", _positive, resumable=True)
    seed: int = _setting(10, "seed of parameters, shuffling, dropout and sampling", _non_negative)
    batch_size: int = _setting(16, "sentences per step (1 = the tutorial's per-sentence steps)", _positive)
    floatx: str = _setting("float32", "float32 or float64", _choice("float32", "float64"))
    cell: str = _setting("gru", "recurrent cell: gru, lstm or rnn", _choice("gru", "lstm", "rnn"))
    num_layers: int = _setting(2, "stacked recurrent layers", _positive)
    gate: str = _setting("hard_sigmoid", "gate nonlinearity of GRU/LSTM: hard_sigmoid or sigmoid", _choice("hard_sigmoid", "sigmoid"))
    optimizer: str = _setting("rmsprop", "sgd, rmsprop or adam", _choice("sgd", "rmsprop", "adam"))
    decay: float = _setting(0.9, "RMSprop decay", _fraction)
    grad_clip: float = _setting(0.0, "maximum global gradient norm (0: no clipping)", _non_negative)
    anneal: str = _setting("none", "learning-rate schedule: none, plateau (multiply by ANNEAL_RATE when the validation loss rises) or exponential (every epoch)", _choice("none", "plateau", "exponential"))
    anneal_rate: float = _setting(0.5, "factor of the learning-rate schedule", lambda v: None if 0 < v < 1 else "must be between 0 and 1")
    dropout: float = _setting(0.0, "dropout between layers during training", _fraction)
    bptt_truncate: int = _setting(-1, "steps of backpropagation through time (-1: all)", _truncate)
    validation_fraction: float = _setting(0.0, "share of sentences held out for validation", _fraction)
    min_sent_characters: int = _setting(0, "drop shorter sentences", _non_negative)
    tokens: str = _setting("word", "word (NLTK, the tutorial's), char (every character) or whitespace (pre-tokenised text split on spaces, a newline as <eos>)", _choice("word", "char", "whitespace"))
    max_sentences: int = _setting(0, "use only the first N sentences (0: all)", _non_negative)
    num_samples: int = _setting(10, "sentences generated at each report", _non_negative, resumable=True)
    temperature: float = _setting(1.0, "sampling temperature (0: greedy)", _non_negative, resumable=True)
    device: str = _setting("cpu", "cpu or gpu (gpu runs PyTensor's JAX backend)", _choice("cpu", "gpu"), resumable=True)
    backend: str = _setting("auto", "auto, c (the C VM linker + fused ops; cpu is the same), numba or jax", _choice("auto", "c", "cpu", "numba", "jax"), resumable=True)
    bucket_width: int = _setting(0, "pad batch lengths to a multiple of this (0: no padding; the JAX backend uses 16)", _non_negative)
    blas_threads: int = _setting(0, "threads for matrix products (0: the BLAS default, all cores; 1 is far faster while other processes keep the cores busy)", _non_negative, resumable=True)
    time_limit: float = _setting(0.0, "stop training after this many seconds, saving the model (0: no limit)", _non_negative, resumable=True)
    resume: str = _setting("", "checkpoint to resume from", resumable=True)
    cache_dir: str = _setting("", "folder for tokenised corpora, so a second start skips tokenising (default ~/.cache/symrnn; off: no cache)", resumable=True)
    sequence: str = _setting("sentence", "sentence (one sentence per sequence from a zero state, the tutorial's) or stream (the text as one stream in BATCH_SIZE parallel streams, windows of SEQ_LENGTH tokens, state carried between windows: char-rnn's)", _choice("sentence", "stream"))
    seq_length: int = _setting(50, "tokens per training window in stream mode (truncated backpropagation at window edges)", _positive)
    validation_file: str = _setting("", "a separate validation text, read with the training vocabulary (besides VALIDATION_FRACTION)", resumable=True)
    test_file: str = _setting("", "a test text evaluated at the end of the run (Test loss: line)", resumable=True)
    tie_weights: int = _setting(0, "1: the output matrix is the embedding's transpose, one parameter (needs EMBEDDING_DIM == HIDDEN_DIM)", _choice(0, 1))
    max_data_mb: int = _setting(2048, "largest data read, in MiB (a folder's files together); raise it for a larger corpus", _positive, resumable=True)

    # ------------------------------------------------------------------
    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "Settings":
        """Read, convert and check every setting.

        Parameters
        ----------
        environ : mapping of variable name to string value (``os.environ``)

        Raises
        ------
        ConfigError
            One line naming the variable, its value and what it must be.
        """
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            variable = f.name.upper()
            raw = environ.get(variable)
            if raw is None or raw.strip() == "":
                continue
            values[f.name] = _convert(variable, raw.strip(), type(f.default))
        return cls(**values)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            expected = type(f.default)
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
                value = float(value)
            if not isinstance(value, expected) or isinstance(value, bool):
                raise ConfigError(f"{f.name.upper()}={value!r}: must be of type {expected.__name__}")
            if expected is float and not math.isfinite(value):
                raise ConfigError(f"{f.name.upper()}={value!r}: must be a finite number")
            check = f.metadata["check"]
            problem = check(value) if check else None
            if problem:
                raise ConfigError(f"{f.name.upper()}={value!r}: {problem}")
        if self.tie_weights and self.embedding_dim != self.hidden_dim:
            raise ConfigError(
                f"TIE_WEIGHTS=1 needs EMBEDDING_DIM equal to HIDDEN_DIM (EMBEDDING_DIM={self.embedding_dim}, "
                f"HIDDEN_DIM={self.hidden_dim}): set them equal or TIE_WEIGHTS=0"
            )

    @classmethod
    def resumable_names(cls) -> tuple[str, ...]:
        """The settings a resumed run takes from the environment (declared ``resumable`` on the field)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata["resumable"])

    def resumed_from(self, saved: Mapping[str, Any], environ: Mapping[str, str]) -> "Settings":
        """A resumed run's settings: the checkpoint's (``saved``), but for the resumable ones given in ``environ``.

        MODEL_OUTPUT_FILE never comes from the checkpoint: a copied or downloaded
        checkpoint would otherwise write to a name from another machine or folder.

        Raises
        ------
        CheckpointError
            The saved settings are not valid settings.
        """
        fields = {name: value for name, value in saved.items() if name in self.as_dict()}
        fields["model_output_file"] = self.model_output_file
        for name in self.resumable_names():
            if environ.get(name.upper(), "").strip():
                fields[name] = getattr(self, name)
        try:
            return Settings(**fields)
        except (TypeError, ConfigError) as exc:
            raise CheckpointError(f"{self.resume}: its saved settings are invalid ({exc})") from None

    def ignored_on_resume(self, resumed: "Settings", environ: Mapping[str, str]) -> list[str]:
        """One warning per setting given in ``environ`` (read into these settings) that ``resumed`` overrides."""
        warnings = []
        for name, value in resumed.as_dict().items():
            given = getattr(self, name)
            if name not in self.resumable_names() and environ.get(name.upper(), "").strip() and given != value:
                warnings.append(f"{name.upper()}={given} is ignored: a resumed run keeps its checkpoint's value, {value}")
        return warnings

    @property
    def backend_name(self) -> str:
        """The compilation backend these settings select, one of :data:`symrnn.backend.BACKENDS`.

        ``BACKEND=cpu`` (the name of earlier versions, kept in their
        checkpoints) is the C VM linker, ``"c"``.
        """
        if self.backend == "auto":
            return "jax" if self.device == "gpu" else "c"
        return "c" if self.backend == "cpu" else self.backend

    def output_path(self, now: datetime.datetime | None = None, tag: str | None = None) -> str:
        """MODEL_OUTPUT_FILE, or a new tutorial-style default name (with ``.npz``).

        The default name holds the time to the second and a random `tag` (six
        hex digits unless given), so runs started in the same second get
        different files.
        """
        if self.model_output_file:
            return self.model_output_file
        stamp = (now or datetime.datetime.now()).strftime("%Y-%m-%d-%H-%M-%S")
        tag = secrets.token_hex(3) if tag is None else tag
        return f"{self.cell.upper()}-{stamp}-{self.vocabulary_size}-{self.embedding_dim}-{self.hidden_dim}-{tag}.npz"

    def token_cache_dir(self, home: str) -> str | None:
        """Where tokenised corpora are cached (None when CACHE_DIR=off)."""
        if self.cache_dir.lower() == "off":
            return None
        return self.cache_dir or f"{home}/.cache/symrnn"

    def as_dict(self) -> dict:
        """Plain JSON-serialisable dict (saved in checkpoints)."""
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "Settings":
        """A copy with some settings changed (checked again)."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> list[str]:
        """``NAME = value`` lines for printing at start."""
        width = max(len(f.name) for f in dataclasses.fields(self))
        return [f"{f.name.upper():<{width}} = {getattr(self, f.name)}" for f in dataclasses.fields(self)]

    @classmethod
    def help_lines(cls) -> list[str]:
        """One line per variable: name, default, meaning (for ``--help``)."""
        return [
            f"  {f.name.upper():<20} {str(f.default) or '-':<14} {f.metadata['help']}"
            for f in dataclasses.fields(cls)
        ]


#: The fields, for documentation.
SETTINGS = [f.name.upper() for f in dataclasses.fields(Settings)]


def misspelt_settings(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """Variables that look like a mistyped setting: ``[(variable, nearest setting), ...]``.

    Settings are read by exact name, so ``HIDDEN_DIMS=64`` or ``hidden_dim=64``
    would otherwise be ignored without a word. A variable counts when it is a
    setting's name in another case, or an upper-case name close to one
    (:func:`difflib.get_close_matches`, cutoff 0.85: close enough for one
    dropped, added or swapped letter, far enough for PATH, HOME,
    OMP_NUM_THREADS, XDG_CACHE_DIR and the like).
    """
    found = []
    for variable in sorted(environ):
        if variable in SETTINGS:
            continue
        if variable.upper() in SETTINGS:
            found.append((variable, variable.upper()))
        elif _UPPER_NAME.fullmatch(variable):
            nearest = difflib.get_close_matches(variable, SETTINGS, n=1, cutoff=0.85)
            if nearest:
                found.append((variable, nearest[0]))
    return found


_UPPER_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


def _convert(variable: str, raw: str, kind: type):
    if kind is str:
        return raw
    try:
        if kind is int:
            return int(raw)
        value = float(raw)
    except ValueError:
        article = "an integer" if kind is int else "a number"
        raise ConfigError(f"{variable}={raw!r}: must be {article}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{variable}={raw!r}: must be a finite number")
    return value
