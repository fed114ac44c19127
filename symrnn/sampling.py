"""Sentence generation through a compiled one-step function.

The model is stepped one token at a time with its state carried between calls,
so producing a sentence of n tokens costs n calls (O(n)); the tutorial re-ran
the model over the whole prefix for every new word (O(n^2)). Several sentences
are generated side by side in one batch; a rejected sentence restarts in its
slot, and the total number of attempts is bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

__all__ = ["GenerationResult", "generate", "sample_tokens"]


def sample_tokens(logits: np.ndarray, rng: np.random.Generator, temperature: float = 1.0) -> np.ndarray:
    """Draw one token per row from ``softmax(logits / temperature)``; temperature 0 is greedy (argmax).

    Parameters
    ----------
    logits : ndarray (B, V)
    rng : numpy.random.Generator
    temperature : float >= 0

    Returns
    -------
    ndarray (B,) int32
    """
    if temperature * float(np.finfo(np.float32).max) < 1:
        # 0, or so close to it that 1 / temperature is no float32: the limit, greedy.
        return np.argmax(logits, axis=1).astype(np.int32)
    from symrnn.ops.kernels import sample_rows

    logits = np.ascontiguousarray(logits)
    if logits.dtype not in (np.float32, np.float64):
        logits = logits.astype(np.float64)
    tokens = np.empty(len(logits), dtype=np.int32)
    # Inverse-CDF sampling, one uniform draw per row, in a Numba kernel: the
    # NumPy version (float64 softmax, cumsum, comparison) took 7.8 ms for a
    # batch of 64 rows of 8000 words, twice the model's own step.
    sample_rows(logits, np.float32(1.0 / temperature), rng.random(len(logits)), tokens)
    return tokens


@dataclass
class GenerationResult:
    """Sentences generated, as token ids without the start/end markers.

    Attributes
    ----------
    sentences : list of list of int
    attempts : int
        Sentences started, accepted or rejected.
    steps : int
        Calls of the one-step function.
    exhausted : bool
        True when ``max_attempts`` ran out before ``n`` sentences were accepted.
    """

    sentences: list
    attempts: int
    steps: int
    exhausted: bool


def generate(
    step: Callable,
    initial_states: Callable[[int], list],
    n: int,
    start_id: int,
    end_id: int,
    rng: np.random.Generator,
    *,
    temperature: float = 1.0,
    prompt: Sequence[int] = (),
    reject_ids: Sequence[int] = (),
    min_length: int = 5,
    max_length: int = 100,
    batch_size: int | None = None,
    max_attempts: int | None = None,
) -> GenerationResult:
    """Generate ``n`` sentences with the tutorial's acceptance rules, bounded.

    A sentence starts as ``[start_id, *prompt]`` and grows one sampled token per
    step until ``end_id``. It is rejected (and its slot restarts) when it samples
    one of ``reject_ids`` (the tutorial: UNKNOWN_TOKEN) or grows past
    ``max_length`` tokens, and rejected at the end if it has fewer than
    ``min_length`` tokens (markers counted, as in the tutorial).

    Parameters
    ----------
    step : callable
        ``step(ids (B,) int32, *states) -> (logits (B, V), *states)``, the
        model's compiled one-step function.
    initial_states : callable
        ``initial_states(B) -> list of ndarray (B, H)``, the zero states.
    n : int
        Sentences wanted.
    start_id, end_id : int
        Ids of SENTENCE_START and SENTENCE_END.
    rng : numpy.random.Generator
        Source of all randomness: equal seeds give equal sentences.
    temperature : float
        0 for greedy decoding.
    prompt : sequence of int
        Token ids every sentence starts with (after the start marker).
    reject_ids : sequence of int
    min_length, max_length : int
    batch_size : int, optional
        Sentences generated side by side (default ``min(n, 32)``).
    max_attempts : int, optional
        Bound on sentences started (default ``100 * n + 100``).

    Returns
    -------
    GenerationResult
    """
    max_attempts = 100 * n + 100 if max_attempts is None else max_attempts
    batch = max(1, min(n, 32) if batch_size is None else batch_size)
    result = GenerationResult([], 0, 0, False)
    if n <= 0:
        return result
    reject = np.zeros(0, dtype=np.int64) if len(reject_ids) == 0 else np.asarray(reject_ids)

    # State after reading [start, *prompt], computed once and copied into any restarting slot.
    states = initial_states(1)
    prefix = [start_id, *prompt]
    for token in prefix:
        logits, *states = step(np.array([token], dtype=np.int32), *states)
        result.steps += 1
    prefix_logits, prefix_states = logits, states

    slot_tokens = [list(prefix) for _ in range(batch)]
    logits = np.repeat(prefix_logits, batch, axis=0)
    states = [np.repeat(s, batch, axis=0) for s in prefix_states]
    result.attempts = batch
    active = np.ones(batch, dtype=bool)

    while len(result.sentences) < n and active.any():
        sampled = sample_tokens(logits, rng, temperature)
        finished = []
        for slot in np.flatnonzero(active):
            token = int(sampled[slot])
            tokens = slot_tokens[slot]
            tokens.append(token)
            if token in reject or len(tokens) > max_length:
                finished.append(slot)
            elif token == end_id:
                if len(tokens) >= min_length and len(result.sentences) < n:
                    result.sentences.append(tokens[1:-1])
                finished.append(slot)
        if len(result.sentences) >= n:
            break
        logits, *states = step(sampled, *states)
        result.steps += 1
        if finished:
            # Restarts write rows: device (JAX) outputs are read-only, so they
            # come to the host first (only on the steps that restart a slot).
            logits = _writable(logits)
            states = [_writable(state) for state in states]
        for slot in finished:
            if result.attempts >= max_attempts:
                active[slot] = False
                continue
            # Restart the slot from the state after the prefix (no extra step).
            result.attempts += 1
            slot_tokens[slot] = list(prefix)
            logits[slot] = prefix_logits[0]
            for state, start in zip(states, prefix_states):
                state[slot] = start[0]
    result.exhausted = len(result.sentences) < n
    return result


def _writable(array) -> np.ndarray:
    """``array`` as a writable NumPy array, copied only when it is not one."""
    array = np.asarray(array)
    return array if array.flags.writeable else array.copy()
