"""Greedy and beam search over a step function, in NumPy: transformers' `generate` decisions without its overhead.

The fast path owns its decode loop (a step of `generate` costs milliseconds of Python and logits
processors per token; the model step itself is a few milliseconds once quantised). To stay a drop-in for
`generate`, the loop follows transformers 5's `_sample` (greedy) and `_beam_search` step for step: the
same candidate count (2 x beams), the same -1e9 masks in float32, the same length penalty and early-stop
heuristic, the same n-gram ban (`NoRepeatNGramLogitsProcessor`), so with the same log-probabilities it
picks the same tokens (`tests/inference/test_search.py` checks this against `generate` in fp32).

The step function receives the token each sequence just produced and which row of the previous step
each row continues (None: each row continues itself; beam search reorders and replaces sequences); it returns
next-token log-probabilities (N, vocab) in float32. The search also records each chosen token's
log-probability (before the n-gram ban), which is what `inference.confidence` needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# (tokens (N,), origin (N,) or None) -> log-probabilities (N, vocab), float32
StepFn = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]

_MASK = np.float32(-1.0e9)


@dataclass(frozen=True)
class SearchSpec:
    """What to search for; mirrors the `generate` arguments capbot uses (`inference.generation.generate_kwargs`)."""

    start_id: int  # decoder start token
    eos_id: int
    pad_id: int  # fills rows after their EOS, as generate does
    max_new_tokens: int
    num_beams: int = 1
    no_repeat_ngram_size: int = 0
    n_best: int = 1  # sequences returned per image (beam search only)
    length_penalty: float = 1.0
    early_stopping: bool | str = False


@dataclass(frozen=True)
class SearchResult:
    """`sequences` is (images x n_best, length): start token first, right-padded like generate's output."""

    sequences: np.ndarray
    token_logprobs: list[list[float]]  # per row: each generated token's log-probability, up to and with EOS


def search(step: StepFn, images: int, spec: SearchSpec) -> SearchResult:
    """Greedy search when `spec.num_beams` is 1, else beam search."""
    if spec.num_beams == 1:
        return greedy_search(step, images, spec)
    return beam_search(step, images, spec)


def greedy_search(step: StepFn, images: int, spec: SearchSpec) -> SearchResult:
    """transformers' greedy `_sample`: argmax after the n-gram ban; finished rows continue with padding."""
    rows = np.full((images, 1), spec.start_id, dtype=np.int64)
    chosen_logprobs = np.zeros((images, 0), dtype=np.float32)
    unfinished = np.ones(images, dtype=bool)
    max_length = 1 + spec.max_new_tokens
    while True:
        logprobs = step(rows[:, -1], None)  # rows never move in greedy search
        scores = ban_repeated_ngrams(rows, logprobs, spec.no_repeat_ngram_size)
        tokens = scores.argmax(axis=-1)
        picked = logprobs[np.arange(images), tokens]
        tokens = np.where(unfinished, tokens, spec.pad_id)
        rows = np.concatenate([rows, tokens[:, None]], axis=1)
        chosen_logprobs = np.concatenate([chosen_logprobs, picked[:, None]], axis=1)
        unfinished &= tokens != spec.eos_id
        if not unfinished.any() or rows.shape[1] >= max_length:
            break
    return SearchResult(rows, [_up_to_eos(r[1:], lp, spec.eos_id) for r, lp in zip(rows.tolist(), chosen_logprobs.tolist())])


def beam_search(step: StepFn, images: int, spec: SearchSpec) -> SearchResult:
    """transformers' `_beam_search` (sequence scores = summed log-probabilities / length ** length_penalty)."""
    beams, keep = spec.num_beams, 2 * spec.num_beams  # one EOS id: keep (1 + 1) x beams candidates
    max_length = 1 + spec.max_new_tokens
    prompt = 1
    fill = spec.pad_id if spec.pad_id else spec.eos_id  # generate's `pad_token_id or eos_token_id`
    offsets = (np.arange(images) * beams)[:, None]

    running = np.full((images, beams, max_length), fill, dtype=np.int64)
    running[:, :, 0] = spec.start_id
    running_lp = np.zeros((images, beams, max_length), dtype=np.float32)  # each token's own log-probability
    running_scores = np.zeros((images, beams), dtype=np.float32)
    running_scores[:, 1:] = _MASK  # only the first beam's continuations count at the first step
    finished, finished_lp = running.copy(), running_lp.copy()
    finished_scores = np.full((images, beams), _MASK, dtype=np.float32)
    finished_lengths = np.zeros((images, beams), dtype=np.int64)
    is_finished = np.zeros((images, beams), dtype=bool)
    improvable = np.ones((images, 1), dtype=bool)
    top_beams = np.arange(keep) < beams

    cur_len, origin = prompt, None
    while True:
        # a. log-probabilities of every continuation, banned n-grams at -inf
        flat = running[:, :, :cur_len].reshape(images * beams, cur_len)
        logprobs = step(flat[:, -1], origin)
        vocab = logprobs.shape[-1]
        scores = ban_repeated_ngrams(flat, logprobs, spec.no_repeat_ngram_size)
        total = (scores.reshape(images, beams, vocab) + running_scores[:, :, None]).reshape(images, beams * vocab)

        # c. the best 2 x beams continuations over all beams of an image
        top_scores, top_index = _topk(total, keep)
        parent, token = top_index // vocab, top_index % vocab
        cand = np.take_along_axis(running, parent[:, :, None], axis=1)
        cand[:, :, cur_len] = token
        cand_lp = np.take_along_axis(running_lp, parent[:, :, None], axis=1)
        cand_lp[:, :, cur_len] = logprobs[(parent + offsets).reshape(-1), token.reshape(-1)].reshape(images, keep)

        # d. which candidates end here (EOS or length)
        ends = (token == spec.eos_id) | (cur_len + 1 >= max_length)

        # e. the best unfinished candidates keep running
        alive_scores = top_scores + ends.astype(np.float32) * _MASK
        _, nxt = _topk(alive_scores, beams)
        running = np.take_along_axis(cand, nxt[:, :, None], axis=1)
        running_lp = np.take_along_axis(cand_lp, nxt[:, :, None], axis=1)
        running_scores = np.take_along_axis(alive_scores, nxt, axis=1)
        origin = (np.take_along_axis(parent, nxt, axis=1) + offsets).reshape(-1)

        # f. candidates among the top `beams` that ended join the finished ones if they score higher
        just_ended = ends & top_beams[None, :]
        length = cur_len + 1 - prompt
        ended_scores = top_scores / np.float32(length ** spec.length_penalty)
        if spec.early_stopping is True:
            ended_scores = ended_scores + is_finished.all(axis=-1, keepdims=True).astype(np.float32) * _MASK
        ended_scores = ended_scores + (~improvable).astype(np.float32) * _MASK
        ended_scores = ended_scores + (~just_ended).astype(np.float32) * _MASK
        merged_scores = np.concatenate([finished_scores, ended_scores], axis=1)
        _, best = _topk(merged_scores, beams)
        finished = np.take_along_axis(np.concatenate([finished, cand], axis=1), best[:, :, None], axis=1)
        finished_lp = np.take_along_axis(np.concatenate([finished_lp, cand_lp], axis=1), best[:, :, None], axis=1)
        finished_scores = np.take_along_axis(merged_scores, best, axis=1)
        finished_lengths = np.take_along_axis(
            np.concatenate([finished_lengths, np.full((images, keep), length)], axis=1), best, axis=1)
        is_finished = np.take_along_axis(np.concatenate([is_finished, just_ended], axis=1), best, axis=1)

        # g. stop when no running beam can beat the worst finished one, or nothing can continue
        cur_len += 1
        improvable = improvable & _can_improve(running_scores, finished_scores, is_finished, cur_len - prompt,
                                               max_length - prompt, spec)
        open_beams = not (is_finished.all() and spec.early_stopping is True)
        if not (improvable.any() and open_beams and not ends.all()):
            break

    n_best = spec.n_best
    lengths = finished_lengths[:, :n_best].reshape(-1)
    sequences = finished[:, :n_best].reshape(images * n_best, max_length)[:, :prompt + int(lengths.max())]
    logprobs = finished_lp[:, :n_best].reshape(images * n_best, max_length)
    token_logprobs = [
        _up_to_eos(row[prompt:prompt + n].tolist(), lp[prompt:prompt + n].tolist(), spec.eos_id)
        for row, lp, n in zip(finished[:, :n_best].reshape(-1, max_length), logprobs, lengths)
    ]
    return SearchResult(sequences, token_logprobs)


def score_sequences(step: StepFn, sequences: np.ndarray, eos_id: int) -> list[list[float]]:
    """Teacher-forced log-probabilities of given sequences (start token first, one row per sequence):
    each row's tokens after the start, up to and with its first EOS, as the step function scores them."""
    rows, length = sequences.shape
    chosen = np.zeros((rows, length - 1), dtype=np.float32)
    for position in range(length - 1):
        logprobs = step(sequences[:, position], None)
        chosen[:, position] = logprobs[np.arange(rows), sequences[:, position + 1]]
    return [_up_to_eos(r[1:], lp, eos_id) for r, lp in zip(sequences.tolist(), chosen.tolist())]


def _can_improve(running_scores: np.ndarray, finished_scores: np.ndarray, is_finished: np.ndarray,
                 length: int, max_generated: int, spec: SearchSpec) -> np.ndarray:
    # transformers' _check_early_stop_heuristic
    if spec.early_stopping == "never" and spec.length_penalty > 0.0:
        length = max_generated
    best_running = running_scores[:, :1] / np.float32(length ** spec.length_penalty)
    worst_finished = np.where(is_finished, finished_scores.min(axis=1, keepdims=True), _MASK)
    return (best_running > worst_finished).any(axis=-1, keepdims=True)


def ban_repeated_ngrams(rows: np.ndarray, logprobs: np.ndarray, size: int) -> np.ndarray:
    """Scores with -inf for every token that would repeat an n-gram of `size` already in its row
    (`NoRepeatNGramLogitsProcessor`); returns `logprobs` itself when nothing is banned."""
    length = rows.shape[1]
    if size <= 0 or length < size:
        return logprobs
    banned_rows, banned_tokens = [], []
    for i, row in enumerate(rows.tolist()):
        prefix = row[length + 1 - size:]
        for start in range(length - size + 1):
            if row[start:start + size - 1] == prefix:
                banned_rows.append(i)
                banned_tokens.append(row[start + size - 1])
    if not banned_rows:
        return logprobs
    scores = logprobs.copy()
    scores[banned_rows, banned_tokens] = -np.inf
    return scores


def _topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest per row, largest first (ties: lower index first)."""
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)  # by score descending, then index ascending
    index = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(scores, index, axis=1), index


def _up_to_eos(tokens: list[int], logprobs: list[float], eos_id: int) -> list[float]:
    end = tokens.index(eos_id) + 1 if eos_id in tokens else len(tokens)
    return logprobs[:end]
