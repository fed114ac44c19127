"""What every symrnn script shares: error handling, loading models and corpora (process set-up: :mod:`process`)."""

from __future__ import annotations

import sys
from pathlib import Path

# Running as ``python scripts/x.py`` from a checkout: make symrnn and models importable.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path and (_ROOT / "symrnn").is_dir():
    sys.path.insert(0, str(_ROOT))

try:
    from . import process  # noqa: E402
except ImportError:  # run as a file: python scripts/x.py
    import process  # noqa: E402

configure_process, prepare_environment, warn = process.configure_process, process.prepare_environment, process.warn

prepare_environment()  # before NumPy is first imported (below, through symrnn)

from symrnn.checkpoint import load_checkpoint  # noqa: E402
from symrnn.errors import SymrnnError  # noqa: E402
from symrnn.corpus import load_sentences  # noqa: E402
from symrnn.reading import DEFAULT_MAX_DATA_BYTES  # noqa: E402
from symrnn.vocab import Vocabulary  # noqa: E402

EXIT_BAD_INPUT = 2


EXIT_ENVIRONMENT = 1


def run(main) -> None:
    """Call ``main()`` and turn every fault into one line on stderr.

    symrnn's errors (bad input, bad settings, bad files) exit with status 2;
    faults of the machine that no input caused (a full disk under PyTensor's
    compile folder, memory running out) with status 1.
    """
    prog = Path(sys.argv[0]).name
    try:
        status = main()
    except SymrnnError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except MemoryError:
        print(f"{prog}: error: out of memory; lower the model's sizes or BATCH_SIZE", file=sys.stderr)
        sys.exit(EXIT_ENVIRONMENT)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"{prog}: error: {exc.strerror or exc}{where}; check free disk space and permissions", file=sys.stderr)
        sys.exit(EXIT_ENVIRONMENT)
    sys.exit(status or 0)


def add_model_arguments(parser, data_help: str) -> None:
    """The arguments every script that reads a model file takes."""
    parser.add_argument("model_file", metavar="MODEL_FILE", help="model file (.npz checkpoint or the tutorial's layout)")
    parser.add_argument("--data", default=None, help=data_help)
    parser.add_argument("--vocabulary-size", type=int, default=None,
                        help="vocabulary size to rebuild for a tutorial-layout file (default: its word count)")
    parser.add_argument("--blas-threads", type=int, default=0, help="threads for matrix products (default 0: the BLAS default)")
    default_max_mb = DEFAULT_MAX_DATA_BYTES // 2**20
    parser.add_argument("--max-data-mb", type=int, default=default_max_mb,
                        help=f"largest data read, in MiB (default {default_max_mb}, as train.py's MAX_DATA_MB)")


def open_model(args):
    """Check the model arguments, set up logging and threads, and load the model (see :func:`load_model`)."""
    from symrnn.errors import ConfigError

    if args.blas_threads < 0:
        raise ConfigError("--blas-threads must be 0 or more")
    if args.max_data_mb <= 0:
        raise ConfigError("--max-data-mb must be greater than 0")
    if args.vocabulary_size is not None and args.vocabulary_size < 4:
        raise ConfigError("--vocabulary-size must be at least 4")
    configure_process(blas_threads=args.blas_threads)
    return load_model(args.model_file, data=args.data, vocabulary_size=args.vocabulary_size,
                      max_data_bytes=args.max_data_mb * 2**20)


def load_model(path: str, data: str | None = None, vocabulary_size: int | None = None,
               max_data_bytes: int | None = DEFAULT_MAX_DATA_BYTES, **model_options):
    """A model file and its vocabulary.

    Files of the original tutorial carry no vocabulary: it is rebuilt from
    ``data`` (the corpus the model was trained on, at most ``max_data_bytes``)
    with ``vocabulary_size`` words (default: the model's word count).

    Returns
    -------
    model : RNNLanguageModel
    vocabulary : Vocabulary
    checkpoint : Checkpoint
    """
    from models.loading import model_from_checkpoint

    checkpoint = load_checkpoint(path)
    model = model_from_checkpoint(checkpoint, **model_options)
    if checkpoint.vocabulary is not None:
        vocabulary = Vocabulary(checkpoint.vocabulary)
    else:
        if not data:
            raise SymrnnError(
                f"{path} holds no vocabulary (the original tutorial's layout): pass --data FILE "
                "(the corpus it was trained on) and --vocabulary-size N"
            )
        vocabulary = Vocabulary.build(load_sentences(data, max_data_bytes=max_data_bytes),
                                      vocabulary_size or model.word_dim)
    if len(vocabulary) != model.word_dim:
        raise SymrnnError(
            f"{path}: the model has {model.word_dim} words but the vocabulary has {len(vocabulary)}; "
            "check --vocabulary-size and --data"
        )
    return model, vocabulary, checkpoint
