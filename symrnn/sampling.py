"""Sentence and long-text generation through a compiled one-step function.

The model is stepped one token at a time with its state carried between calls,
so producing a sentence of n tokens costs n calls (O(n)); the tutorial re-ran
the model over the whole prefix for every new word (O(n^2)). :func:`generate`
makes sentences, several side by side in one batch; a rejected sentence
restarts in its slot, and the total number of attempts is bounded.
:func:`generate_text` makes one continuous text of a given number of tokens
after a prime, and :func:`detokenize` joins its tokens into text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from symrnn.errors import ConfigError
from symrnn.vocab import END_OF_LINE, SENTENCE_END

__all__ = ["GenerationResult", "LINE_END_TOKENS", "TEXT_KINDS", "detokenize", "generate", "generate_text", "sample_tokens"]


def sample_tokens(logits: np.ndarray, rng: np.random.Generator, temperature: float = 1.0, top_k: int = 0) -> np.ndarray:
    """Draw one token per row from ``softmax(logits / temperature)``; temperature 0 is greedy (argmax).

    With ``top_k`` > 0 the softmax is taken over the ``top_k`` largest logits
    of each row only (the rest have probability 0); ``top_k`` 1 is greedy and
    ``top_k`` 0 or at least V samples from all tokens. Among logits tied with
    the k-th largest, which ones are kept is unspecified.

    Parameters
    ----------
    logits : ndarray (B, V)
    rng : numpy.random.Generator
        Not drawn from when decoding is greedy.
    temperature : float >= 0
    top_k : int >= 0

    Returns
    -------
    ndarray (B,) int32

    Raises
    ------
    ConfigError
        If ``top_k`` is negative.
    """
    if top_k < 0:
        raise ConfigError(f"top_k must be 0 or more, got {top_k}")
    if top_k == 1 or temperature * float(np.finfo(np.float32).max) < 1:
        # Temperature 0, or so close to it that 1 / temperature is no float32: the limit, greedy.
        return np.argmax(logits, axis=1).astype(np.int32)
    from symrnn.ops.sampling_kernels import sample_rows_in_blocks

    logits = np.asarray(logits)
    kept_columns = None
    if top_k < logits.shape[1] and top_k > 0:
        kept_columns = np.argpartition(logits, logits.shape[1] - top_k, axis=1)[:, -top_k:]
        logits = np.take_along_axis(logits, kept_columns, axis=1)
    logits = np.ascontiguousarray(logits)
    if logits.dtype not in (np.float32, np.float64):
        logits = logits.astype(np.float64)
    tokens = np.empty(len(logits), dtype=np.int32)
    # Inverse-CDF sampling, one uniform draw per row, in a Numba kernel: the
    # NumPy version (float64 softmax, cumsum, comparison) took 7.8 ms for a
    # batch of 64 rows of 8000 words, twice the model's own step.
    sample_rows_in_blocks(logits, np.float32(1.0 / temperature), rng.random(len(logits)), tokens)
    if kept_columns is not None:
        tokens = np.take_along_axis(kept_columns, tokens[:, None], axis=1)[:, 0].astype(np.int32)
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
    top_k: int = 0,
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
    top_k : int
        Sample among the ``top_k`` most probable tokens (0: all; see :func:`sample_tokens`).
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
        sampled = sample_tokens(logits, rng, temperature, top_k)
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


def generate_text(
    step: Callable,
    initial_states: Sequence[np.ndarray],
    prime_ids: Sequence[int],
    length: int,
    rng: np.random.Generator,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    banned_ids: Sequence[int] = (),
    sentence_markers: tuple[int, int] | None = None,
    on_token: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Generate ``length`` tokens of continuous text after a prime, one step per token.

    The prime is read token by token from ``initial_states``; then each token
    is sampled from the logits of the last step and fed to the next, the state
    carried along. That is ``len(prime_ids) + length - 1`` calls of ``step``
    (the last token sampled is not fed: nothing would read its logits).

    Parameters
    ----------
    step : callable
        ``step(ids (1,) int32, *states) -> (logits (1, V), *states)``, the
        model's compiled one-step function.
    initial_states : sequence of ndarray (1, H)
        The states the prime is read from (the zero states, or those training
        ended with).
    prime_ids : sequence of int, length P >= 1
        Token ids read before the first token is sampled.
    length : int >= 0
        Tokens to generate.
    rng : numpy.random.Generator
        Source of all randomness: equal seeds give equal texts.
    temperature : float >= 0
        0 for greedy decoding.
    top_k : int >= 0
        Sample among the ``top_k`` most probable tokens (0: all; see :func:`sample_tokens`).
    banned_ids : sequence of int
        Tokens never sampled: their probability is 0 and the rest renormalised
        (e.g. the padding token).
    sentence_markers : (start_id, end_id), optional
        For models trained on sentences: when ``end_id`` is sampled, the next
        step reads ``start_id`` from ``initial_states``, so that the next
        sentence starts as the model learned sentences start (still one step
        per token).
    on_token : callable, optional
        Called with each token id as soon as it is sampled (to print as it goes).

    Returns
    -------
    ndarray (length,) int32
        The generated ids, the prime not included.

    Raises
    ------
    ConfigError
        If the prime is empty (the model needs an input to predict from), or
        ``length`` or ``top_k`` is negative.
    """
    prime = np.asarray(prime_ids, dtype=np.int32).reshape(-1)
    if len(prime) == 0:
        raise ConfigError("the prime holds no token: the model needs at least one input to predict from")
    if length < 0:
        raise ConfigError(f"length must be 0 or more, got {length}")
    if top_k < 0:
        raise ConfigError(f"top_k must be 0 or more, got {top_k}")
    banned = np.asarray(banned_ids, dtype=np.int64).reshape(-1)
    states = list(initial_states)
    for token in prime:
        logits, *states = step(np.array([token], dtype=np.int32), *states)
    generated = np.empty(length, dtype=np.int32)
    for position in range(length):
        if len(banned):
            logits = np.array(logits, copy=True)
            logits[:, banned] = -np.inf
        token = int(sample_tokens(logits, rng, temperature, top_k)[0])
        generated[position] = token
        if on_token is not None:
            on_token(token)
        if position + 1 == length:
            break
        if sentence_markers is not None and token == sentence_markers[1]:
            token, states = sentence_markers[0], list(initial_states)
        logits, *states = step(np.array([token], dtype=np.int32), *states)
    return generated


def stream_start_id(vocabulary, kind: str) -> int:
    """The token a stream model reads first when it is given no prime.

    What ends a line in its kind of text, which the model has read and learnt
    to continue from: a newline for characters, ``END_OF_LINE`` for
    whitespace tokens, ``SENTENCE_END`` for word streams; ``SENTENCE_START``
    where that token is not in the vocabulary.

    Parameters
    ----------
    vocabulary : symrnn.vocab.Vocabulary
    kind : {"word", "char", "whitespace"}

    Returns
    -------
    int
    """
    token = {"char": "\n", "whitespace": END_OF_LINE}.get(kind, SENTENCE_END)
    return vocabulary.word_to_index.get(token, vocabulary.start_index)


#: Tokens that end a line of generated text: :func:`detokenize` writes them
#: as a newline. ``END_OF_LINE`` (``<eos>``) ends a line of ``TOKENS=whitespace``.
LINE_END_TOKENS = frozenset({SENTENCE_END, END_OF_LINE})

#: Kinds of tokens :func:`detokenize` joins (the TOKENS setting).
TEXT_KINDS = ("word", "char", "whitespace")


def detokenize(tokens: Sequence[str], kind: str, *, continues: bool = False) -> str:
    """Join generated tokens into text.

    Characters (``kind="char"``) are joined as they are, words (``"word"``,
    ``"whitespace"``) with one space between them; a token of
    :data:`LINE_END_TOKENS` becomes a newline, with no space around it.

    Parameters
    ----------
    tokens : sequence of str
    kind : {"word", "char", "whitespace"}
    continues : bool
        Whether the tokens continue a line already written (a word then
        starts with a space); False at the start of a text or of a line.

    Returns
    -------
    str

    Raises
    ------
    ConfigError
        If ``kind`` is not one of :data:`TEXT_KINDS`.
    """
    if kind not in TEXT_KINDS:
        raise ConfigError(f"tokens must be one of {', '.join(TEXT_KINDS)}, got {kind!r}")
    separator = "" if kind == "char" else " "
    parts = []
    for token in tokens:
        if token in LINE_END_TOKENS:
            parts.append("\n")
            continues = False
            continue
        if continues:
            parts.append(separator)
        parts.append(token)
        continues = True
    return "".join(parts)


def _writable(array) -> np.ndarray:
    """``array`` as a writable NumPy array, copied only when it is not one."""
    array = np.asarray(array)
    return array if array.flags.writeable else array.copy()
