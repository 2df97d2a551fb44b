"""The decoding loop: greedy = argmax of a plain forward, logprobs = log_softmax of a plain
forward, seeds, stop strings, end-of-text, the context window, and bad input."""
from __future__ import annotations

import pytest
import torch

from helpers import ALPHABET, EOT, char_tokenizer, tiny_model
from glassgpt.errors import GlassError
from glassgpt.generate import generate, stream


NO_EOT = char_tokenizer(ALPHABET + "#", specials=())     # the same ids, with no end-of-text token


@pytest.fixture(scope="module")
def model():
    return tiny_model(scale=4.0)


def plain_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()          # (T, V)


def test_greedy_equals_argmax_of_a_plain_forward_token_by_token(model):
    prompt = model.tokenizer.encode("the cat")
    g = generate(model, prompt, max_new_tokens=20, temperature=0, tokenizer=NO_EOT)[0]
    ids = list(prompt)
    for token in g.ids:
        assert token == int(plain_logits(model, ids)[-1].argmax())
        ids.append(token)
    assert len(g.ids) == 20 and g.finish_reason == "length"
    assert g.text == model.tokenizer.decode(g.ids)


def test_logprobs_agree_with_log_softmax_of_a_plain_forward(model):
    prompt = model.tokenizer.encode("once upon")
    g = generate(model, prompt, max_new_tokens=12, seed=3, logprobs=4, top_k=8, temperature=0.7)[0]
    logp = torch.log_softmax(plain_logits(model, prompt + g.ids), dim=-1)
    for i, (token, record) in enumerate(zip(g.ids, g.logprobs)):
        row = logp[len(prompt) - 1 + i]
        assert record.id == token and record.text == model.tokenizer.id_to_str(token)
        assert record.logprob == pytest.approx(float(row[token]), abs=1e-4)
        assert record.entropy == pytest.approx(float(-(row.exp() * row).sum()), abs=1e-4)
        best = row.topk(4)
        assert [a.id for a in record.top] == best.indices.tolist()
        assert [a.prob for a in record.top] == pytest.approx(best.values.exp().tolist(), abs=1e-5)
        # after top-k 8 and T=0.7 the sampled distribution is sharper and sums to one over 8 tokens
        kept = torch.softmax(row.topk(8).values / 0.7, dim=-1)
        assert record.top[0].prob_after == pytest.approx(float(kept[0]), abs=1e-4)
        assert record.logprob_after >= record.logprob - 1e-5


def test_same_seed_same_text_other_seed_other_text(model):
    a = generate(model, "the ", max_new_tokens=30, seed=7, num_samples=2)
    b = generate(model, "the ", max_new_tokens=30, seed=7, num_samples=2)
    c = generate(model, "the ", max_new_tokens=30, seed=8, num_samples=2)
    assert [g.ids for g in a] == [g.ids for g in b]
    assert [g.ids for g in a] != [g.ids for g in c]
    assert a[0].ids != a[1].ids                       # samples of one call differ


def test_stream_yields_the_same_tokens_and_text_as_generate(model):
    g = generate(model, "abc", max_new_tokens=25, seed=5, logprobs=2)[0]
    events = list(stream(model, "abc", max_new_tokens=25, seed=5, logprobs=2))
    ids = [e.id for e in events if e.finish_reason != "eot"]
    assert ids == g.ids
    assert "".join(e.text for e in events) == g.text
    assert [e.logprob.logprob for e in events[:len(ids)]] == [r.logprob for r in g.logprobs]
    assert events[-1].finish_reason == g.finish_reason


def test_stop_string_ends_the_sample_and_is_cut_from_the_text(model):
    free = generate(model, "ab", max_new_tokens=40, temperature=0)[0]
    stop = free.text[5:7]
    g = generate(model, "ab", max_new_tokens=40, temperature=0, stop=[stop, "never-there"])[0]
    assert g.finish_reason == "stop"
    assert g.text == free.text[:free.text.index(stop)]
    assert free.text.startswith(g.text + stop)
    streamed = "".join(e.text for e in stream(model, "ab", max_new_tokens=40, temperature=0, stop=stop))
    assert streamed == g.text


def test_generation_ends_at_the_end_of_text_token(model):
    eot = model.tokenizer.eot_id
    g = generate(model, "ab", max_new_tokens=40, temperature=0, logit_bias={eot: 1e4})[0]
    assert g.finish_reason == "eot" and g.ids == [] and g.text == ""
    assert generate(model, "ab", max_new_tokens=3, temperature=0, tokenizer=NO_EOT, logit_bias={eot: 1e4})[0].ids \
        == [eot] * 3


def test_a_long_prompt_is_cropped_from_the_left_with_a_warning(model):
    ids = model.tokenizer.encode("abcdefghij" * 8)           # 80 tokens, context 64
    with pytest.warns(UserWarning, match="keeping the last 64"):
        g = generate(model, ids, max_new_tokens=5, temperature=0)[0]
    assert g.prompt_ids == ids[-64:]
    assert g.ids == generate(model, ids[-64:], max_new_tokens=5, temperature=0)[0].ids


def test_generation_slides_past_the_context_length(model):
    prompt = model.tokenizer.encode("hello")
    g = generate(model, prompt, max_new_tokens=150, temperature=0, tokenizer=NO_EOT)[0]
    assert len(g.ids) == 150
    # until the window first fills, it is plain greedy decoding
    ids = list(prompt)
    for token in g.ids[:64 - len(prompt)]:
        assert token == int(plain_logits(model, ids)[-1].argmax())
        ids.append(token)
    assert g.stats.prefill_tokens > len(prompt)               # the slide recomputed the window


def test_stats_count_the_work(model):
    g = generate(model, "abcd", max_new_tokens=10, temperature=0, tokenizer=NO_EOT)[0]
    s = g.stats
    assert (s.prefill_tokens, s.decode_steps, s.forward_passes, s.new_tokens) == (4, 10, 10, 10)
    assert s.seconds > 0 and s.tokens_per_second > 0


def test_max_new_tokens_zero_gives_nothing(model):
    g = generate(model, "ab", max_new_tokens=0)[0]
    assert g.ids == [] and g.finish_reason == "length"


def test_model_generate_delegates(model):
    assert model.generate("ab", max_new_tokens=6, temperature=0)[0].ids == \
        generate(model, "ab", max_new_tokens=6, temperature=0)[0].ids


def test_text_prompt_with_the_eot_token_is_encoded_as_special(model):
    g = generate(model, EOT, max_new_tokens=2, temperature=0)[0]
    assert g.prompt_ids == [model.tokenizer.eot_id]


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=-0.1), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_k=0), "top_k"),
    (dict(min_p=1.5), "min_p"),
    (dict(min_p=-0.1), "min_p"),
    (dict(repetition_penalty=0), "repetition_penalty"),
    (dict(frequency_penalty=3), "frequency_penalty"),
    (dict(presence_penalty=-2.5), "presence_penalty"),
    (dict(logit_bias={10_000: 1.0}), "logit_bias"),
    (dict(stop=[""]), "stop"),
    (dict(max_new_tokens=-1), "max_new_tokens"),
    (dict(num_samples=0), "num_samples"),
    (dict(logprobs=-1), "logprobs"),
])
def test_bad_settings_are_one_line_errors(model, kwargs, message):
    with pytest.raises(GlassError, match=message) as e:
        generate(model, "ab", **kwargs)
    assert "\n" not in str(e.value)


def test_bad_prompts_are_one_line_errors(model):
    with pytest.raises(GlassError, match="outside the vocabulary"):
        generate(model, [1, 2, 999])
    with pytest.raises(GlassError, match="empty"):
        generate(model, [])
    bare = tiny_model(vocab_size=40)                     # no tokenizer
    with pytest.raises(GlassError, match="no tokenizer"):
        generate(bare, "some text")
    with pytest.raises(GlassError, match="tokenizer"):
        generate(bare, [1, 2], stop="x")
    with pytest.raises(GlassError, match="one sample"):
        stream(model, "ab", num_samples=2)
