"""Option scoring (inspect/choices.py) against an independent computation: `trace` of each
full text, its next-token log-probabilities summed over the option's tokens."""
import math

import pytest

from glassgpt.errors import GlassError
from glassgpt.inspect import trace
from glassgpt.inspect.choices import option_logprobs, score_choices
from helpers import corpus_model

CORPUS = ("the answer is yes. the answer is no. is it yes or no? yes, yes and no. "
          "maybe the answer is maybe. a cat, a dog and a bird.\n") * 20


@pytest.fixture(scope="module")
def bpe_model():
    return corpus_model(CORPUS, "bpe", 48, vocab_size=300)


@pytest.fixture(scope="module")
def char_model():
    return corpus_model(CORPUS, "char", 48)


def trace_logprob(model, text: str, n_context_tokens: int) -> float:
    """Sum of the trace's next-token log-probabilities of the tokens after the first n."""
    t = trace(model, text, attention=False, residual=False)
    return t.next_log_prob[n_context_tokens - 1:].sum().item()


@pytest.mark.parametrize("which", ["bpe_model", "char_model"])
def test_option_logprobs_equal_summed_trace(which, request):
    model = request.getfixturevalue(which)
    context, options = "is it yes or no? the answer is", [" yes", " no", " maybe", " a cat and a dog"]
    scores = option_logprobs(model, context, options)
    for option, score in zip(options, scores):
        n_ctx = len(model.tokenizer.encode(context))
        assert score.ids == model.tokenizer.encode(context + option)[n_ctx:]
        assert score.prefix == ""
        assert score.logprob == pytest.approx(trace_logprob(model, context + option, n_ctx), abs=1e-4)
        assert score.n_tokens == len(score.ids) == len(score.token_logprobs)
        assert score.n_chars == len(option)


def test_boundary_merge_is_read_as_the_model_sees_it(bpe_model):
    tok = bpe_model.tokenizer
    context = "the answer is "                       # trailing space: BPE joins it with the option
    assert tok.encode("the answer is yes")[-1] == tok.encode(" yes")[0]
    scores = option_logprobs(bpe_model, context, ["yes", "no"])
    full = tok.encode("the answer is yes")
    assert scores[0].prefix == " "
    assert scores[0].ids == full[len(full) - len(scores[0].ids):]
    assert tok.decode(scores[0].ids) == " yes"
    n_ctx = len(full) - len(scores[0].ids)
    assert scores[0].logprob == pytest.approx(trace_logprob(bpe_model, "the answer is yes", n_ctx), abs=1e-4)


def test_context_as_ids_matches_context_as_text(bpe_model):
    context = "maybe the answer is"
    by_text = option_logprobs(bpe_model, context, [" yes", " no"])
    by_ids = option_logprobs(bpe_model, bpe_model.tokenizer.encode(context), [" yes", " no"])
    for a, b in zip(by_text, by_ids):
        assert a.ids == b.ids and a.logprob == pytest.approx(b.logprob, abs=1e-6)


@pytest.mark.parametrize("which", ["bpe_model", "char_model"])
def test_score_choices_normalises_trace_probabilities(which, request):
    model = request.getfixturevalue(which)
    prompt, options = "a cat, a", [" dog", " bird", " cat and a dog"]
    result = score_choices(model, prompt, options)
    n_ctx = len(model.tokenizer.encode(prompt))
    raw = [math.exp(trace_logprob(model, prompt + o, n_ctx)) for o in options]
    assert result.probs == pytest.approx([p / sum(raw) for p in raw], abs=1e-5)
    assert sum(result.probs) == pytest.approx(1.0)
    assert result.mass_outside == pytest.approx(1 - sum(raw), abs=1e-5)   # no option's tokens extend another's
    per_token = [lp / s.n_tokens for lp, s in zip(result.logprobs, result.scores)]
    assert result.per_token_logprobs == pytest.approx(per_token)
    z = sum(math.exp(x) for x in per_token)
    assert result.per_token_probs == pytest.approx([math.exp(x) / z for x in per_token])
    assert result.best == options[max(range(3), key=result.probs.__getitem__)]


def test_an_option_extending_another_is_not_counted_twice(char_model):
    result = score_choices(char_model, "the answer is ", ["y", "ye", "yes", "no"])
    p = [math.exp(lp) for lp in result.logprobs]
    assert result.mass_outside == pytest.approx(1 - p[0] - p[3], abs=1e-6)


@pytest.mark.parametrize("options, message", [([], "empty"), ("yes", "list"), (["yes", "yes"], "repeat"),
                                               (["yes", ""], "non-empty")])
def test_bad_options(char_model, options, message):
    with pytest.raises(GlassError, match=message):
        option_logprobs(char_model, "the answer is", options)


def test_empty_context_is_refused(char_model):
    with pytest.raises(GlassError, match="context is empty"):
        option_logprobs(char_model, "", ["yes"])
