#!/usr/bin/env python
"""Print a saved model's per-word loss and perplexity on a corpus.

    python scripts/evaluate.py MODEL_FILE [--data FILE]

Without --data the model's own corpus is used (as recorded in the checkpoint)
and, when it was trained with VALIDATION_FRACTION > 0, only its held-out
validation sentences. Words outside the model's vocabulary count as
UNKNOWN_TOKEN, as in training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from . import common
except ImportError:  # run as a file: python scripts/evaluate.py
    import common

import numpy as np

from symrnn.batching import split_train_validation
from symrnn.config import DEFAULT_INPUT_DATA_FILE, Settings
from symrnn.errors import ConfigError
from symrnn.corpus import load_sentences
from symrnn.default_corpus import DEFAULT_CORPUS_NAME
from symrnn.training import evaluate
from symrnn.vocab import sentences_to_pairs, unknown_share, unknown_share_warning


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="evaluate.py", description=__doc__.split("\n\n")[0])
    common.add_model_arguments(parser, "corpus to evaluate on (CSV, text file or folder)")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per evaluation batch (default 64)")
    default_max_mb = Settings.__dataclass_fields__["max_data_mb"].default
    parser.add_argument("--max-data-mb", type=int, default=default_max_mb,
                        help=f"largest data read, in MiB (default {default_max_mb}, as train.py's MAX_DATA_MB)")
    args = parser.parse_args(argv)
    if args.batch_size <= 0:
        raise ConfigError("--batch-size must be greater than 0")
    if args.max_data_mb <= 0:
        raise ConfigError("--max-data-mb must be greater than 0")
    return args


def main(argv=None) -> int:
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    model, vocabulary, checkpoint = common.open_model(args)
    settings = checkpoint.settings
    data = args.data
    held_out_only = False
    if data is None:
        data = settings.get("input_data_file") or (DEFAULT_INPUT_DATA_FILE if Path(DEFAULT_INPUT_DATA_FILE).exists() else None)
        held_out_only = float(settings.get("validation_fraction", 0.0)) > 0
    sentences = load_sentences(
        data, tokens=settings.get("tokens", "word"), min_sent_characters=int(settings.get("min_sent_characters", 0)),
        max_data_bytes=args.max_data_mb * 2**20,
    )
    share = unknown_share(sentences, vocabulary)
    trained_share = checkpoint.training_state.get("unknown_share")
    warning = unknown_share_warning(share, None if trained_share is None else float(trained_share))
    if warning:
        common.warn(warning)
    X, Y = sentences_to_pairs(sentences, vocabulary)
    if held_out_only:
        max_sentences = int(settings.get("max_sentences", 0))
        if max_sentences:
            X, Y = X[:max_sentences], Y[:max_sentences]
        _, valid = split_train_validation(len(X), float(settings["validation_fraction"]), int(settings.get("seed", 0)))
        X, Y = [X[i] for i in valid], [Y[i] for i in valid]
    total, count = evaluate(model.compile_loss(), X, Y, batch_size=args.batch_size)
    loss = total / max(count, 1)
    what = "validation sentences" if held_out_only else "sentences"
    print(f"{len(X)} {what}, {count} tokens from {data or DEFAULT_CORPUS_NAME}")
    print(f"tokens not in the model's vocabulary (UNKNOWN_TOKEN): {share:.1%}")
    print(f"per-word loss: {loss:.6f}")
    print(f"perplexity: {np.exp(loss):.3f}")
    return 0


def entry_point():
    """Console command installed by setup.py."""
    common.run(main)


if __name__ == "__main__":
    entry_point()
