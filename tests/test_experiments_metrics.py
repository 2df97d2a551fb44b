"""Repetition metrics on hand-made texts whose repetition is known."""
import math

import pytest

from glassgpt.experiments.metrics import (distinct_n, longest_loop, repeated_ngram_fraction, sample_metrics,
                                          spearman)


def test_repeated_ngrams_of_a_pure_loop_and_of_distinct_text():
    loop = list("abcabcabcabc")                  # 12 tokens, 10 trigrams of which 3 are new
    assert repeated_ngram_fraction(loop, 3) == pytest.approx(7 / 10)
    assert repeated_ngram_fraction(loop, 2) == pytest.approx(8 / 11)
    assert repeated_ngram_fraction(list("abcdefgh"), 2) == 0.0
    assert repeated_ngram_fraction(list("ab"), 4) == 0.0          # no 4-gram fits


def test_repeated_ngrams_count_only_earlier_occurrences():
    words = "the cat sat on the mat the cat".split()
    # bigrams: the-cat, cat-sat, sat-on, on-the, the-mat, mat-the, the-cat(repeat)
    assert repeated_ngram_fraction(words, 2) == pytest.approx(1 / 7)
    assert repeated_ngram_fraction(words, 1) == pytest.approx(3 / 8)    # the, the, cat


def test_distinct_n_pools_samples():
    assert distinct_n([list("abcd")], 1) == 1.0
    assert distinct_n([list("abcd"), list("abcd")], 1) == 0.5            # same sample twice
    assert distinct_n([list("aaaa")], 2) == pytest.approx(1 / 3)
    assert distinct_n([list("a")], 2) == 0.0


def test_longest_loop_finds_period_span_and_start():
    loop = longest_loop(list("xyzabcabcabcab"))
    assert (loop.period, loop.span, loop.start) == (3, 11, 3)
    assert loop.repeats == pytest.approx(11 / 3)
    assert longest_loop(list("abcdefg")).span == 0
    assert longest_loop(list("aaaaa")).period == 1 and longest_loop(list("aaaaa")).span == 5
    # a unit seen once and a half is not a loop: "abcdab" has no back-to-back repeat of 2+ units
    assert longest_loop(list("abcdab")).span == 0
    # word tokens: the loop "I said no ." x3
    words = "well I said no . I said no . I said no . ok".split()
    assert (longest_loop(words).period, longest_loop(words).span) == (4, 12)


def test_sample_metrics_separates_loop_from_varied_text():
    looped = sample_metrics(list("the end. " * 8))
    varied = sample_metrics(list("a quick brown fox jumps over the lazy dog"))
    assert looped["rep_4"] > 0.8 > 0.1 > varied["rep_4"]
    assert looped["loop_fraction"] == 1.0
    assert varied["loop_span"] < 5


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2, 3], [5, 5, 5]))
    assert math.isnan(spearman([1, 2, 3], [0.1 + 0.2, 0.3, 0.30000000000000004]))   # float noise is a tie
