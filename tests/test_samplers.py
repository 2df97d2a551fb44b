"""Each sampler step alone, and the chain's order."""
from __future__ import annotations

import math

import pytest
import torch

from glassgpt.errors import GlassError
from glassgpt.generate import samplers as S
from glassgpt.generate import samplers_fast as fast
from glassgpt.generate.samplers import SamplerChain, SamplingParams

INF = float("inf")
ORDER = ["repetition_penalty", "frequency_penalty", "presence_penalty", "logit_bias",
         "top_k", "top_p", "min_p", "temperature"]


def kept(logits):
    return set(torch.nonzero(torch.isfinite(logits[0])).flatten().tolist())


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens():
    logits = torch.tensor([[2.0, -1.0, 3.0]])
    counts = torch.tensor([[1.0, 2.0, 0.0]])
    assert S.repetition_penalty(logits, counts, 2.0).tolist() == [[1.0, -2.0, 3.0]]


def test_repetition_penalty_matches_the_textbook_rule_on_a_large_vocabulary():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5000, generator=g) * 3
    counts = (torch.rand(2, 5000, generator=g) < 0.1).float() * torch.randint(1, 4, (2, 5000), generator=g)
    textbook = torch.where(counts > 0, torch.where(logits > 0, logits / 1.3, logits * 1.3), logits)
    out = S.repetition_penalty(logits, counts, 1.3)
    assert torch.equal(out[counts == 0], logits[counts == 0])          # unseen tokens untouched
    torch.testing.assert_close(out, textbook, rtol=1e-6, atol=1e-6)
    banned = S.repetition_penalty(torch.tensor([[-INF, -INF, 1.0]]), torch.tensor([[1.0, 0.0, 1.0]]), 2.0)
    assert banned.tolist() == [[-INF, -INF, 0.5]]                        # -inf stays -inf, seen or not


def test_frequency_penalty_scales_with_the_count_presence_penalty_does_not():
    logits = torch.zeros(1, 3)
    counts = torch.tensor([[0.0, 1.0, 3.0]])
    assert S.frequency_penalty(logits, counts, 0.5).tolist() == [[0.0, -0.5, -1.5]]
    assert S.presence_penalty(logits, counts, 0.5).tolist() == [[0.0, -0.5, -0.5]]


def test_logit_bias_adds_and_minus_infinity_bans():
    out = S.logit_bias(torch.zeros(1, 3), torch.tensor([1.0, -INF, 0.0]))
    assert out.tolist() == [[1.0, -INF, 0.0]]


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[0.1, 3.0, 2.0, -1.0, 2.5]])
    assert kept(S.top_k(logits, 2)) == {1, 4}
    assert torch.equal(S.top_k(logits, 5), logits)


def top_p_by_full_sort(logits, p):
    """The textbook nucleus: sort everything, keep tokens while the mass before them is below p."""
    probs = torch.softmax(logits, -1)
    values, order = probs.sort(descending=True)
    keep_sorted = (values.cumsum(-1) - values) < p
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def test_top_p_keeps_the_smallest_set_with_mass_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert kept(S.top_p(logits, 0.5)) == {0}
    assert kept(S.top_p(logits, 0.6)) == {0, 1}
    assert kept(S.top_p(logits, 0.9)) == {0, 1, 2}
    assert kept(S.top_p(logits, 1.0)) == {0, 1, 2, 3}


@pytest.mark.parametrize("spread", [0.02, 0.4, 2.0, 8.0])     # random-weight flat to trained-model peaked
def test_textbook_top_p_keeps_what_a_full_sort_keeps(spread):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5000, generator=g) * spread
    logits[2, :100] = -INF
    for p in (0.1, 0.5, 0.9, 0.99):
        assert torch.equal(torch.isfinite(S.top_p(logits, p)), top_p_by_full_sort(logits, p))


@pytest.mark.parametrize("spread", [0.02, 0.4, 2.0, 8.0])
def test_fast_top_p_over_a_large_vocabulary_equals_the_textbook(spread):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 50257, generator=g) * spread
    logits[2, :100] = -INF                                   # tokens an earlier step removed
    for p in (0.1, 0.5, 0.9, 0.95, 0.99):
        ours = torch.isfinite(fast.top_p_fast(logits, p))
        # as many tokens (one more or less only where float32 sums in another order reach p)...
        assert (ours.sum(-1) - top_p_by_full_sort(logits, p).sum(-1)).abs().max() <= 1
        probs = torch.softmax(logits, -1)                                          # ...and the most likely ones
        for row, kept_row in zip(probs, ours):                                     # (equal up to exact ties)
            assert row[kept_row].min() >= row[~kept_row].max() * (1 - 1e-5)


@pytest.mark.parametrize("top_p", [S.top_p, fast.top_p_fast])
def test_top_p_keeps_ties_with_the_last_token_kept(top_p):
    logits = torch.log(torch.tensor([[0.4, 0.2, 0.2, 0.2]]))
    assert kept(top_p(logits, 0.5)) == {0, 1, 2, 3}
    assert kept(top_p(torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])), 0.6)) == {0, 1}


def test_fast_top_k_and_min_p_equal_the_textbook_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 50257, generator=g) * 3
    logits[1, :50] = -INF
    logits[3, 10:20] = logits[3, 5]                                     # ties
    for k in (1, 5, 40, 50257):
        assert torch.equal(fast.top_k_fast(logits, k), S.top_k(logits, k))
    for m in (0.0, 0.01, 0.1, 0.9):
        assert torch.equal(fast.min_p_fast(logits, m), S.min_p(logits, m))


def test_the_chain_takes_the_fast_filters_on_large_vocabularies_with_the_same_result():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, fast.FAST_VOCAB, generator=g) * 2
    params = SamplingParams(temperature=0.7, top_k=200, top_p=0.9, min_p=0.02)
    big = SamplerChain(params, fast.FAST_VOCAB)
    probs = big.probabilities(logits)
    textbook = S.temperature(S.min_p(S.top_p(S.top_k(logits, 200), 0.9), 0.02), 0.7).softmax(-1)
    torch.testing.assert_close(probs, textbook, atol=1e-6, rtol=0)


def test_drop_below_equals_masked_fill_and_leaves_kept_logits_untouched():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 1000, generator=g) * 3
    logits[1, :10] = -INF                                                # already removed
    logits[2, :] = logits[2, 7]                                          # all tied with the floor
    floor = torch.stack([logits[0, 3], logits[1, 500], logits[2, 7], torch.tensor(-INF), torch.tensor(0.1)])[:, None]
    expected = logits.masked_fill(logits < floor, -INF)
    assert torch.equal(fast.drop_below(logits, floor), expected)       # bit for bit, no nan
    assert torch.equal(fast.drop_below(logits, -INF), logits)


def test_min_p_keeps_tokens_at_least_min_p_times_the_best():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert kept(S.min_p(logits, 0.25)) == {0, 1, 2}        # threshold 0.125
    assert kept(S.min_p(logits, 0.0)) == {0, 1, 2, 3}


def test_temperature_divides_the_logits():
    assert S.temperature(torch.tensor([[2.0, -4.0]]), 2.0).tolist() == [[1.0, -2.0]]


def test_draw_follows_the_distribution_and_greedy_takes_the_argmax():
    probs = torch.tensor([0.0, 0.6, 0.0, 0.3, 0.1, 0.0])
    logits = probs.log().expand(20000, 6)
    g = torch.Generator().manual_seed(0)
    freq = torch.bincount(S.draw(logits, g), minlength=6) / 20000
    assert torch.allclose(freq, probs, atol=0.015)
    assert freq[[0, 2, 5]].sum() == 0                         # never a token with probability zero
    assert S.greedy(torch.tensor([[0.0, 5.0, 1.0]])).tolist() == [1]


def test_the_chain_lists_its_steps_in_the_documented_order_and_skips_no_ops():
    full = SamplingParams(temperature=0.8, top_k=10, top_p=0.9, min_p=0.05, repetition_penalty=1.1,
                          frequency_penalty=0.2, presence_penalty=0.1, logit_bias={3: 1.0})
    assert [name for name, _ in SamplerChain(full, 50).steps] == ORDER
    assert SamplerChain(SamplingParams(), 50).steps == []
    assert [n for n, _ in SamplerChain(SamplingParams(temperature=0, top_k=3), 50).steps] == []


def test_penalties_and_bias_run_before_top_k():
    logits = torch.tensor([[5.0, 4.0, 0.0]])
    counts = torch.tensor([[1.0, 0.0, 0.0]])
    chain = SamplerChain(SamplingParams(top_k=1, repetition_penalty=2.0), 3)
    assert kept(chain.process(logits, counts)) == {1}        # 5/2 < 4: the penalty came first
    chain = SamplerChain(SamplingParams(top_k=1, logit_bias={2: 10.0}), 3)
    assert kept(chain.process(logits)) == {2}


def test_filters_see_the_temperature_one_distribution_then_temperature_reshapes():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    chain = SamplerChain(SamplingParams(top_p=0.7, temperature=3.0), 4)
    probs = chain.probabilities(logits)
    assert kept(probs.log()) == {0, 1}                        # at T=3 top-p 0.7 would keep 3 tokens
    expected = torch.softmax(logits[0, :2] / 3.0, -1)
    assert torch.allclose(probs[0, :2], expected)
    assert kept(SamplerChain(SamplingParams(top_p=0.7), 4).process(S.temperature(logits, 3.0))) == {0, 1, 2}


def test_top_k_then_top_p_then_min_p_compose():
    logits = torch.log(torch.tensor([[0.4, 0.25, 0.2, 0.1, 0.05]]))
    chain = SamplerChain(SamplingParams(top_k=4, top_p=0.8, min_p=0.55), 5)
    # top-k 4 -> renormalised {0.42, 0.26, 0.21, 0.11}; top-p 0.8 keeps 3; min-p 0.55 x 0.42 drops index 2
    assert kept(chain.process(logits)) == {0, 1}


def test_greedy_probabilities_are_one_hot_at_the_argmax():
    chain = SamplerChain(SamplingParams(temperature=0), 3)
    assert chain.probabilities(torch.tensor([[0.0, 2.0, 1.0]])).tolist() == [[0.0, 1.0, 0.0]]


@pytest.mark.parametrize("params", [
    dict(temperature=-1), dict(temperature=math.nan), dict(top_k=0), dict(top_k=2.5), dict(top_p=0),
    dict(top_p=1.01), dict(min_p=2), dict(repetition_penalty=0), dict(frequency_penalty=2.5),
    dict(presence_penalty=-3), dict(logit_bias={-1: 1.0}), dict(logit_bias={1: INF}),
])
def test_out_of_range_settings_are_glass_errors(params):
    with pytest.raises(GlassError):
        SamplingParams(**params).validate(10)
