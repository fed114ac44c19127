#!/usr/bin/env python
"""Print a saved model's per-word loss and perplexity on a corpus.

    python scripts/evaluate.py MODEL_FILE [--data FILE]

Without --data the model's own corpus is used (as recorded in the checkpoint)
and, when it was trained with VALIDATION_FRACTION > 0, only its held-out
validation sentences (a stream model: the held-out tail of its stream).
Words outside the model's vocabulary count as UNKNOWN_TOKEN, as in training.
A model trained with SEQUENCE=stream is evaluated as train.py does: the text
as parallel streams, the state carried across windows of its SEQ_LENGTH.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from . import common
except ImportError:  # run as a file: python scripts/evaluate.py
    import common

import math

import numpy as np

from symrnn.batching import split_train_validation
from symrnn.config import DEFAULT_INPUT_DATA_FILE
from symrnn.errors import ConfigError
from symrnn.corpus import load_sentences, load_token_stream
from symrnn.default_corpus import DEFAULT_CORPUS_NAME
from symrnn.streams import hold_out_tail, parallel_streams
from symrnn.training import evaluate, evaluate_streams
from symrnn.vocab import sentences_to_pairs, unknown_share, unknown_share_warning


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="evaluate.py", description=__doc__.split("\n\n")[0])
    common.add_model_arguments(parser, "corpus to evaluate on (CSV, text file or folder)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="sentences per evaluation batch (default 64); for a stream model, parallel streams "
                        "(default its BATCH_SIZE)")
    args = parser.parse_args(argv)
    if args.batch_size is not None and args.batch_size <= 0:
        raise ConfigError("--batch-size must be greater than 0")
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
    if settings.get("sequence") == "stream":
        return evaluate_stream_model(args, model, vocabulary, checkpoint, data, held_out_only)
    sentences = load_sentences(
        data, tokens=settings.get("tokens", "word"), min_sent_characters=int(settings.get("min_sent_characters", 0)),
        max_data_bytes=args.max_data_mb * 2**20,
    )
    share = check_unknown_share(sentences, vocabulary, checkpoint)
    X, Y = sentences_to_pairs(sentences, vocabulary)
    if held_out_only:
        max_sentences = int(settings.get("max_sentences", 0))
        if max_sentences:
            X, Y = X[:max_sentences], Y[:max_sentences]
        _, valid = split_train_validation(len(X), float(settings["validation_fraction"]), int(settings.get("seed", 0)))
        X, Y = [X[i] for i in valid], [Y[i] for i in valid]
    total, count = evaluate(model.compile_loss(), X, Y, batch_size=args.batch_size or 64)
    what = "validation sentences" if held_out_only else "sentences"
    print(f"{len(X)} {what}, {count} tokens from {data or DEFAULT_CORPUS_NAME}")
    print_losses(share, total / max(count, 1), settings)
    return 0


def check_unknown_share(token_lists, vocabulary, checkpoint) -> float:
    """The share of unknown tokens, with a warning when far above the training corpus's."""
    share = unknown_share(token_lists, vocabulary)
    trained_share = checkpoint.training_state.get("unknown_share")
    warning = unknown_share_warning(share, None if trained_share is None else float(trained_share))
    if warning:
        common.warn(warning)
    return share


def print_losses(share: float, loss: float, settings: dict) -> None:
    print(f"tokens not in the model's vocabulary (UNKNOWN_TOKEN): {share:.1%}")
    print(f"per-word loss: {loss:.6f}")
    print(f"perplexity: {np.exp(loss):.3f}")
    if settings.get("tokens") == "char":
        print(f"bits per character: {loss / math.log(2):.4f}")


def evaluate_stream_model(args, model, vocabulary, checkpoint, data, held_out_only: bool) -> int:
    """A SEQUENCE=stream model on a text: parallel streams, state carried across windows, as train.py evaluates."""
    settings = checkpoint.settings
    tokens = load_token_stream(data, tokens=settings.get("tokens", "char"),
                               min_sent_characters=int(settings.get("min_sent_characters", 0)),
                               max_data_bytes=args.max_data_mb * 2**20)
    share = check_unknown_share([tokens], vocabulary, checkpoint)
    ids = vocabulary.encode(tokens)
    if held_out_only:
        ids = hold_out_tail(ids, float(settings["validation_fraction"]))[1]
    batch = max(1, min(args.batch_size or int(settings.get("batch_size", 1)), len(ids) // 2))
    streams = parallel_streams(ids, batch)
    total, count = evaluate_streams(model.compile_loss(carry_state=True), streams, int(settings.get("seq_length", 50)),
                                    model.initial_state_values(batch))
    what = "held-out tokens" if held_out_only else "tokens"
    print(f"{count} {what} in {batch} streams from {data or DEFAULT_CORPUS_NAME}")
    print_losses(share, total / max(count, 1), settings)
    return 0


def entry_point():
    """Console command installed by setup.py."""
    common.run(main)


if __name__ == "__main__":
    entry_point()
