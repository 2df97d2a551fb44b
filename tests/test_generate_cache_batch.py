"""The prompt cache (reuse = recomputation) and batched generation (= one at a time at T=0)."""
from __future__ import annotations

import pytest

from helpers import ALPHABET, char_tokenizer, tiny_model
from glassgpt.errors import GlassError
from glassgpt.generate import PromptCache, generate, generate_batch

NO_EOT = char_tokenizer(ALPHABET + "#", specials=())


@pytest.fixture(scope="module")
def model():
    return tiny_model(scale=4.0, tokenizer=NO_EOT)


def test_a_shared_prefix_is_reused_and_gives_the_same_tokens_and_logprobs(model):
    cache = PromptCache()
    base = "the quick brown fox "
    first = generate(model, base + "jumps", max_new_tokens=10, temperature=0, logprobs=3, prompt_cache=cache)[0]
    second = generate(model, base + "naps", max_new_tokens=10, temperature=0, logprobs=3, prompt_cache=cache)[0]
    fresh = generate(model, base + "naps", max_new_tokens=10, temperature=0, logprobs=3)[0]
    assert first.stats.prefill_reused == 0 and first.stats.prefill_tokens == len(base) + 5
    assert second.stats.prefill_reused == len(base) and second.stats.prefill_tokens == 4
    assert second.ids == fresh.ids
    assert [r.logprob for r in second.logprobs] == pytest.approx([r.logprob for r in fresh.logprobs], abs=1e-5)
    assert cache.hits == 1 and cache.misses == 1


def test_a_follow_up_that_continues_a_generation_reuses_the_generated_text_too(model):
    cache = PromptCache()
    g = generate(model, "once ", max_new_tokens=8, temperature=0, prompt_cache=cache)[0]
    follow = g.prompt_ids + g.ids + NO_EOT.encode(" then")
    again = generate(model, follow, max_new_tokens=6, temperature=0, prompt_cache=cache)[0]
    assert again.stats.prefill_reused == len(g.prompt_ids) + len(g.ids) - 1   # the last new token was never fed
    assert again.ids == generate(model, follow, max_new_tokens=6, temperature=0)[0].ids


def test_the_same_prompt_twice_computes_only_its_last_token(model):
    cache = PromptCache()
    prompt = NO_EOT.encode("abcdefghij" * 3)
    a = generate(model, prompt, max_new_tokens=4, num_samples=2, seed=1, prompt_cache=cache)
    b = generate(model, prompt, max_new_tokens=4, num_samples=2, seed=1, prompt_cache=cache)
    assert b[0].stats.prefill_tokens == 1 and b[0].stats.prefill_reused == len(prompt) - 1
    assert [g.ids for g in a] == [g.ids for g in b]


def test_the_cache_is_bounded_and_evicts_the_least_recently_used(model):
    cache = PromptCache(max_entries=2)
    for prompt in ("aaaa", "bbbb", "aaaa", "cccc"):           # "aaaa" was used again, so "bbbb" goes
        generate(model, prompt, max_new_tokens=1, temperature=0, prompt_cache=cache)
    assert len(cache) == 2
    assert generate(model, "bbbbz", max_new_tokens=1, temperature=0, prompt_cache=cache)[0].stats.prefill_reused == 0
    one_entry = cache.nbytes // len(cache)
    small = PromptCache(max_bytes=int(one_entry * 1.5))
    for prompt in ("aaaa", "bbbb", "cccc"):
        generate(model, prompt, max_new_tokens=1, temperature=0, prompt_cache=small)
    assert len(small) == 1 and small.nbytes <= one_entry * 1.5


def test_a_prompt_cache_belongs_to_one_model(model):
    cache = PromptCache()
    generate(model, "ab", max_new_tokens=1, prompt_cache=cache)
    with pytest.raises(GlassError, match="another model"):
        generate(tiny_model(seed=1, tokenizer=NO_EOT), "ab", max_new_tokens=1, prompt_cache=cache)


@pytest.mark.parametrize("packed", [True, False], ids=["packed-prefill", "padded-prefill"])
@pytest.mark.parametrize("positional", ["learned", "rope", "sinusoidal"])
def test_batched_prompts_of_different_lengths_equal_generating_each_alone(positional, packed, monkeypatch):
    import glassgpt.generate.decode as decode

    calls, pays = [], decode.packing_pays
    monkeypatch.setattr(decode, "packing_pays", lambda *a: calls.append(pays(*a)) or packed)
    model = tiny_model(scale=4.0, tokenizer=NO_EOT, positional=positional)
    prompts = ["a", "the lazy dog", "quick brown", "zz top and more words"]
    batch = generate_batch(model, prompts, max_new_tokens=20, temperature=0, logprobs=2)
    for prompt, g in zip(prompts, batch):
        alone = generate(model, prompt, max_new_tokens=20, temperature=0, logprobs=2)[0]
        assert g.ids == alone.ids and g.text == alone.text
        assert [r.logprob for r in g.logprobs] == pytest.approx([r.logprob for r in alone.logprobs], abs=1e-4)
    assert batch[0].stats.batch_size == 4 and batch[0].stats.forward_passes == 20
    assert calls[0] is True                           # these lengths take the packed prefill by default


def test_packing_pays_for_mixed_short_prompts_within_the_context_only():
    from glassgpt.generate.decode import packing_pays
    from glassgpt.model import GPTConfig

    gpt2 = GPTConfig.preset("gpt2")
    assert packing_pays([64, 40, 57, 33, 64, 48, 60, 25], gpt2)           # the benchmark's prompts
    assert packing_pays([500] + [10] * 7, gpt2)
    assert not packing_pays([1000, 30], gpt2)                             # 1,030 tokens: no room in one row
    assert not packing_pays([50, 50], gpt2)                               # no padding to save
    narrow = GPTConfig.preset("gpt2", d_model=64, n_head=4)
    assert not packing_pays([120] * 7 + [100], narrow)                    # attention over 940^2 pairs costs more


def test_batched_generation_slides_each_row_like_generating_alone(model):
    prompts = ["ab", "a longer prompt here"]
    batch = generate_batch(model, prompts, max_new_tokens=30, temperature=0)
    # until the padded window first fills, every row is exactly its own greedy decoding
    for prompt, g in zip(prompts, batch):
        alone = generate(model, prompt, max_new_tokens=30, temperature=0)[0]
        assert g.ids == alone.ids
    long = generate_batch(model, prompts, max_new_tokens=100, temperature=0)
    assert [len(g.ids) for g in long] == [100, 100]


def test_batched_rows_finish_on_their_own():
    model = tiny_model(scale=4.0)                      # with an end-of-text token
    eot = model.tokenizer.eot_id
    prompts = ["ab", "abc"]
    batch = generate_batch(model, prompts, max_new_tokens=30, temperature=0, stop=["zz"])
    for prompt, g in zip(prompts, batch):
        assert g.ids == generate(model, prompt, max_new_tokens=30, temperature=0, stop=["zz"])[0].ids
        assert eot not in g.ids


def test_generate_batch_rejects_bad_input(model):
    with pytest.raises(GlassError):
        generate_batch(model, [])
    with pytest.raises(GlassError, match="prompt_cache"):
        generate_batch(model, ["a"], prompt_cache=PromptCache())


def test_prompts_longer_together_than_the_context_are_padded_not_packed(model):
    prompts = ["a" * 40, "the lazy dog " * 3, "b"]                      # 40 + 39 + 1 > context 64
    batch = generate_batch(model, prompts, max_new_tokens=5, temperature=0)
    for prompt, g in zip(prompts, batch):
        assert g.ids == generate(model, prompt, max_new_tokens=5, temperature=0)[0].ids
