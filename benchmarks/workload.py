"""The benchmark's workload: the model's sizes, the seeded sentences and the padded batches."""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------- the model
WORD_DIM = 8000
EMBEDDING_DIM = 48
HIDDEN_DIM = 128
NUM_LAYERS = 2
LEARNING_RATE = 0.001
DECAY = 0.9
EPSILON = 1e-6
DTYPE = "float32"
#: The cells of the training table, each with symrnn's default gate (the RNN has none).
CELLS = ("gru", "lstm", "rnn")
GATE = "hard_sigmoid"

# ----------------------------------------------------------------- the data
START_ID, END_ID = 1, 2  # sentence markers; words are ids 3 .. WORD_DIM - 1
MIN_LENGTH, MAX_LENGTH = 5, 60
N_SENTENCES = 3200  # one bucketing pool of 64 x 50 sentences
GENERATE_LENGTH = 20
OUTPUT_LAYER_STEPS = 20  # output-layer measurement: batch 64 x T 20
LOSS_CHECK_RTOL = 1e-4
BUCKET_WIDTH = 16  # time-step multiple of every padded batch under JAX (static shapes)

# Repetitions, for the full run and for --quick. Training: ``*_warmup`` steps,
# then ``*_passes`` passes over the same ``*_steps`` batches (one sentence each
# at batch 1, bucketed batches of 64); the figure is the median pass's real
# tokens per second. Every cell and peer trains on the same batches; with
# three cells and four sides the full run has two passes, not three as when
# it measured the GRU against one peer, to stay under ten minutes on 2 cores. Generation: the median of ``gen1_sentences`` single
# sentences and of ``gen64_reps`` batches of 64, after one warm-up each.
PLANS = {
    "full": dict(
        train1_warmup=5, train1_steps=20, train1_passes=2,
        train64_warmup=2, train64_steps=10, train64_passes=2,
        gen1_sentences=20, gen64_reps=10, outlayer_reps=10, matmul_reps=5,
    ),
    "quick": dict(
        train1_warmup=2, train1_steps=6, train1_passes=1,
        train64_warmup=1, train64_steps=2, train64_passes=1,
        gen1_sentences=3, gen64_reps=1, outlayer_reps=3, matmul_reps=2,
    ),
}


def make_sentences(n: int = N_SENTENCES, seed: int = 0, word_dim: int = WORD_DIM,
                   min_length: int = MIN_LENGTH, max_length: int = MAX_LENGTH) -> list:
    """A fixed, seeded set of encoded sentences.

    Lengths (markers included) are a rounded lognormal (median 18, sigma 0.5,
    mean about 20) clipped to ``[min_length, max_length]``; every sentence is
    ``[START_ID, words..., END_ID]`` with words drawn Zipf-like (probability of
    rank k proportional to 1/k) over ids ``3 .. word_dim - 1``.

    Returns
    -------
    list of numpy.ndarray of int32, one per sentence
    """
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.rint(rng.lognormal(np.log(18.0), 0.5, size=n)), min_length, max_length).astype(np.int64)
    ranks = np.arange(1, word_dim - 2, dtype=np.float64)
    p = 1.0 / ranks
    p /= p.sum()
    words = (rng.choice(len(ranks), size=int((lengths - 2).sum()), p=p) + 3).astype(np.int32)
    sentences, start = [], 0
    for length in lengths:
        middle = words[start : start + length - 2]
        start += length - 2
        sentences.append(np.concatenate([[START_ID], middle, [END_ID]]).astype(np.int32))
    return sentences


def build_batches(sentences: list, seed: int, plan: dict, bucket_width: int | None = None) -> dict:
    """The padded batches both sides train on, built once with symrnn.batching.

    ``bucket_width`` pads every batch (batch 1 too) to a multiple of that many
    time steps, as the JAX backend needs; None pads batch 1 not at all and
    batch 64 to its longest sentence.

    Returns
    -------
    dict of arrays: ``b1_<i>_{x,y,mask}`` (one sentence each, no padding) and
    ``b64_<i>_{x,y,mask}`` (bucketed batches of 64), (T, B) time-major.
    """
    from symrnn.batching import bucket_length, iterate_minibatches, pad_batch

    X = [s[:-1] for s in sentences]
    Y = [s[1:] for s in sentences]
    arrays = {}
    n1 = plan["train1_warmup"] + plan["train1_steps"]
    for i in range(n1):
        length = bucket_length(len(X[i]), bucket_width)
        x, mask = pad_batch([X[i]], length)
        y, _ = pad_batch([Y[i]], length)
        arrays[f"b1_{i}_x"], arrays[f"b1_{i}_y"], arrays[f"b1_{i}_mask"] = x, y, mask
    n64 = plan["train64_warmup"] + plan["train64_steps"]
    full = [b for b in iterate_minibatches(X, Y, 64, rng=seed, bucket_width=bucket_width) if b.x.shape[1] == 64][:n64]
    if len(full) < n64:
        raise RuntimeError(f"only {len(full)} full batches of 64 in {len(X)} sentences")
    for i, b in enumerate(full):
        arrays[f"b64_{i}_x"], arrays[f"b64_{i}_y"], arrays[f"b64_{i}_mask"] = b.x, b.y, b.mask
    return arrays


def layer_count(values) -> int:
    """Number of recurrent layers in symrnn's parameter values (``layer<l>/W_x`` for l = 0, 1, ...)."""
    count = 0
    while f"layer{count}/W_x" in values:
        count += 1
    return count


def load_batches(arrays, prefix: str) -> list:
    out, i = [], 0
    while f"{prefix}_{i}_x" in arrays:
        out.append((arrays[f"{prefix}_{i}_x"], arrays[f"{prefix}_{i}_y"], arrays[f"{prefix}_{i}_mask"]))
        i += 1
    return out
