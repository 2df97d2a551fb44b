"""Speculative decoding: greedy at T=0, exactly the target's distribution at T>0."""
from __future__ import annotations

import pytest
import torch

from helpers import ALPHABET, char_tokenizer, tiny_model
from glassgpt.errors import GlassError
from glassgpt.generate import PromptCache, generate, stream
from glassgpt.generate.samplers import SamplerChain, SamplingParams

NO_EOT = char_tokenizer(ALPHABET + "#", specials=())


@pytest.fixture(scope="module")
def pair():
    target = tiny_model(seed=0, scale=4.0, tokenizer=NO_EOT)
    draft = tiny_model(seed=1, scale=4.0, tokenizer=NO_EOT, n_layer=1)   # a different, smaller model
    return target, draft


@pytest.mark.parametrize("k", [1, 3, 6])
def test_at_temperature_zero_speculative_equals_plain_greedy(pair, k):
    target, draft = pair
    plain = generate(target, "hello", max_new_tokens=100, temperature=0)[0]     # slides past context 64
    fast = generate(target, "hello", max_new_tokens=100, temperature=0, draft=draft, draft_tokens=k)[0]
    assert fast.ids == plain.ids and fast.text == plain.text
    s = fast.stats
    assert 0 < s.acceptance_rate < 1 and s.drafted > 0
    assert s.tokens_per_target_forward > 1


def test_a_draft_identical_to_the_target_is_always_accepted(pair):
    target, _ = pair
    g = generate(target, "abc", max_new_tokens=40, temperature=0, draft=target, draft_tokens=4)[0]
    assert g.stats.acceptance_rate == 1.0
    assert g.stats.tokens_per_target_forward == pytest.approx(5.0)


def test_penalties_logprobs_and_streaming_agree_with_plain_greedy(pair):
    target, draft = pair
    options = dict(max_new_tokens=40, temperature=0, repetition_penalty=1.5, presence_penalty=0.5, logprobs=3)
    plain = generate(target, "the cat", **options)[0]
    fast = generate(target, "the cat", draft=draft, draft_tokens=3, **options)[0]
    assert fast.ids == plain.ids
    assert [r.logprob for r in fast.logprobs] == pytest.approx([r.logprob for r in plain.logprobs], abs=1e-4)
    events = list(stream(target, "the cat", draft=draft, draft_tokens=3, **options))
    assert [e.id for e in events] == plain.ids


def joint_distribution(model, prompt, chain):
    """P(t1, t2 | prompt) under `model` and the sampler chain, computed exactly: (V, V)."""
    V = model.config.vocab_size
    with torch.no_grad():
        first = chain.probabilities(model(torch.tensor([prompt])).logits[:, -1].float())[0]       # (V,)
        ids = torch.tensor([prompt + [t] for t in range(V)])                                      # (V, T+1)
        second = chain.probabilities(model(ids).logits[:, -1].float())                           # (V, V)
    return first[:, None] * second


def chi_square(counts, probs):
    mask = probs > 0
    n = counts.sum()
    assert counts[~mask].sum() == 0, "a sample the distribution rules out"
    return float(((counts[mask] - n * probs[mask]) ** 2 / (n * probs[mask])).sum())


@pytest.mark.parametrize("settings", [dict(temperature=1.0), dict(temperature=0.7, top_k=4)])
def test_at_temperature_above_zero_the_samples_follow_the_targets_distribution(settings):
    V = 5
    target = tiny_model(seed=2, vocab_size=V, scale=12.0, n_layer=1, d_model=16, context_length=8)
    draft = tiny_model(seed=3, vocab_size=V, scale=12.0, n_layer=1, d_model=16, context_length=8)
    prompt, n = [1, 2], 1200
    chain = SamplerChain(SamplingParams(**settings), V)
    p, q = joint_distribution(target, prompt, chain), joint_distribution(draft, prompt, chain)
    assert 0.5 * (p - q).abs().sum() > 0.3                  # the draft really is a different model
    samples = generate(target, prompt, max_new_tokens=2, seed=0, num_samples=n, draft=draft, draft_tokens=2,
                       prompt_cache=PromptCache(), **settings)
    counts = torch.zeros(V, V)
    for g in samples:
        counts[g.ids[0], g.ids[1]] += 1
    cells = int((p > 0).sum())
    # chi-square, cells-1 degrees of freedom: 99.9th percentile < cells-1 + 5 sqrt(2 (cells-1))
    critical = (cells - 1) + 5 * (2 * (cells - 1)) ** 0.5
    assert chi_square(counts, p) < critical
    assert 0.5 * (counts / n - p).abs().sum() < 0.07        # total variation to the target: small
    assert 0.5 * (counts / n - q).abs().sum() > 0.25        # ...to the draft: the test tells them apart
    assert 0 < samples[0].stats.acceptance_rate < 1


def test_bad_draft_settings_are_one_line_errors(pair):
    target, _ = pair
    other = tiny_model(vocab_size=50)
    with pytest.raises(GlassError, match="vocabulary"):
        generate(target, "ab", draft=other)
    with pytest.raises(GlassError, match="draft_tokens"):
        generate(target, "ab", draft=target, draft_tokens=0)
