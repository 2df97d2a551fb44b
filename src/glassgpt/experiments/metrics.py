"""Repetition and diversity of generated text: pure functions on token lists.

A token can be anything hashable (ids, strings). Definitions:

    repeated_ngram_fraction(t, n)  share of the sample's n-grams that already occurred earlier
                                   in the same sample (Welleck et al. 2019's seq-rep-n)
    distinct_n(samples, n)         unique n-grams / all n-grams, pooled over several samples
                                   (Li et al. 2016): low when samples repeat themselves or
                                   each other
    longest_loop(t)                the longest stretch made of one unit repeated back to back
                                   ("abcabcab" is the unit "abc" covering 8 tokens)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np


def ngrams(tokens: Sequence[Hashable], n: int) -> list[tuple]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def repeated_ngram_fraction(tokens: Sequence[Hashable], n: int) -> float:
    """Fraction of n-gram positions whose n-gram already appeared earlier (0 if none fit)."""
    grams = ngrams(tokens, n)
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def distinct_n(samples: Sequence[Sequence[Hashable]], n: int) -> float:
    """Unique n-grams over all n-grams, pooled across `samples` (0 if none fit)."""
    grams = [g for s in samples for g in ngrams(s, n)]
    if not grams:
        return 0.0
    return len(set(grams)) / len(grams)


@dataclass(frozen=True)
class Loop:
    span: int      # tokens covered by the repeating stretch (0: nothing repeats back to back)
    period: int    # length of the repeated unit
    start: int     # index where the stretch begins

    @property
    def repeats(self) -> float:
        return self.span / self.period if self.period else 0.0


def longest_loop(tokens: Sequence[Hashable], min_repeats: float = 2.0) -> Loop:
    """The longest stretch where tokens[i] == tokens[i - p] throughout, for some period p.

    The stretch counts only when its unit appears at least `min_repeats` times in a row
    (span >= min_repeats * p). Ties go to the shortest period.
    """
    codes = _as_codes(tokens)
    n = len(codes)
    best = Loop(0, 0, 0)
    for p in range(1, n // 2 + 1):
        same = codes[p:] == codes[:-p]                      # same[j]: tokens[j+p] == tokens[j]
        run_start, run_len = _longest_true_run(same)
        span = run_len + p
        if run_len and span >= min_repeats * p and span > best.span:
            best = Loop(span=span, period=p, start=run_start)
    return best


def _as_codes(tokens: Sequence[Hashable]) -> np.ndarray:
    index: dict = {}
    return np.array([index.setdefault(t, len(index)) for t in tokens], dtype=np.int64)


def _longest_true_run(mask: np.ndarray) -> tuple[int, int]:
    """(start, length) of the longest run of True in a 1-D bool array."""
    if not mask.any():
        return 0, 0
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))               # alternating run starts and ends
    starts, ends = edges[::2], edges[1::2]
    i = int(np.argmax(ends - starts))
    return int(starts[i]), int(ends[i] - starts[i])


def sample_metrics(tokens: Sequence[Hashable]) -> dict:
    """The per-sample repetition numbers the temperature study records."""
    loop = longest_loop(tokens)
    out = {f"rep_{n}": repeated_ngram_fraction(tokens, n) for n in (2, 3, 4)}
    out.update(loop_span=loop.span, loop_period=loop.period,
               loop_fraction=loop.span / len(tokens) if len(tokens) else 0.0, length=len(tokens))
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Rank correlation (ties get their mean rank); nan when either side is constant.

    Values are rounded to 9 decimals first, so float noise in an equal value is a tie."""
    rx, ry = _ranks(np.round(np.asarray(x, float), 9)), _ranks(np.round(np.asarray(y, float), 9))
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(a: np.ndarray) -> np.ndarray:
    order = np.argsort(a, kind="stable")
    ranks = np.empty(len(a))
    ranks[order] = np.arange(len(a), dtype=float)
    for value in np.unique(a):                            # mean rank for ties
        tie = a == value
        ranks[tie] = ranks[tie].mean()
    return ranks
