"""Constrained generation against independent oracles: the `regex` module's partial
matching decides which tokens may come next (brute force over the vocabulary), a plain
forward over the whole text gives each step's distribution, jsonschema validates JSON."""
import json
import math

import jsonschema
import pytest
import regex
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glassgpt.errors import GlassError
from glassgpt.generate import Session, generate, generate_batch, stream
from glassgpt.generate.constraints import Choice, Grammar, Integer, JSONSchema, Regex, constraint_from_fields
from glassgpt.generate.samplers import SamplerChain, SamplingParams
from glassgpt.generate.token_masks import compile_constraint, token_masks
from glassgpt.tokenizer import Tokenizer
from helpers import corpus_model, probe_model

CORPUS = ("the answer is yes. the answer is no. 12 apples, 345 pears, 7 apples.\n"
          '{"a": 1, "name": "bob"} {"a": 23, "name": "al"} maybe -5 or 42?\n') * 25
PROPERTY = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def bpe():
    return corpus_model(CORPUS, "bpe", 96, vocab_size=420)


@pytest.fixture(scope="module")
def char():
    return corpus_model(CORPUS, "char", 96)


@pytest.fixture(scope="module")
def char_no_eot():
    return probe_model(tokenizer=Tokenizer.chars(CORPUS), context_length=96)


def oracle_allowed(tokenizer, pattern: str, text: bytes) -> set[int]:
    """Brute force: the ordinary tokens after which the text can still become a full match,
    plus end-of-text when the text already is one."""
    allowed = set()
    specials = set(tokenizer.special_tokens.values())
    for i in range(tokenizer.vocab_size):
        if i in specials:
            continue
        try:
            candidate = (text + tokenizer.token_bytes(i)).decode("utf-8")
        except UnicodeDecodeError:       # our patterns are ASCII: part of a character never fits
            continue
        if regex.fullmatch(pattern, candidate, partial=True):
            allowed.add(i)
    if tokenizer.eot_id is not None and regex.fullmatch(pattern, text.decode()):
        allowed.add(tokenizer.eot_id)
    return allowed


PATTERNS = [r"[0-9]+ apples", r"(yes|no)\.", r"-?[1-9][0-9]{0,2}", r"the (answer|pears) is [a-z]+"]


@pytest.mark.parametrize("which", ["bpe", "char"])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_masks_equal_a_brute_force_oracle_along_random_paths(which, pattern, request):
    model = request.getfixturevalue(which)
    tok = model.tokenizer
    compiled = compile_constraint(Regex(pattern), tok, tok.vocab_size)
    g = torch.Generator().manual_seed(0)
    crossings = 0
    for _ in range(3):
        state, text = compiled.new_state(), b""
        for _ in range(25):
            if state.finished:
                break
            allowed = token_masks([state], tok.vocab_size)[0]
            got = set(allowed.nonzero().flatten().tolist())
            assert got == oracle_allowed(tok, pattern, text), (pattern, text)
            ordinary = sorted(got - {tok.eot_id})
            if not ordinary or (tok.eot_id in got and torch.rand(1, generator=g) < 0.3):
                break
            token = ordinary[int(torch.randint(len(ordinary), (1,), generator=g))]
            crossings += len(tok.token_bytes(token)) > 1
            state.advance(token)
            text += tok.token_bytes(token)
        assert regex.fullmatch(pattern, text.decode())
    if which == "bpe" and " " in pattern:
        assert crossings > 0          # multi-character tokens were taken across the pattern's parts


def test_a_token_crossing_the_end_of_a_choice_is_refused(bpe):
    tok = bpe.tokenizer
    state = compile_constraint(Choice([" ans"]), tok, tok.vocab_size).new_state()
    allowed = token_masks([state], tok.vocab_size)[0]
    for i in allowed.nonzero().flatten().tolist():
        assert b" ans".startswith(tok.token_bytes(i))
    longer = [i for i in range(tok.vocab_size) if tok.token_bytes(i).startswith(b" ans") and
              tok.token_bytes(i) != b" ans"]
    assert longer and not allowed[longer].any()       # " answer" runs past the choice's end: refused


def replay_distributions(model, prompt_ids, ids, params):
    """Each step's chain distribution from a plain forward over the whole text (no cache)."""
    chain = SamplerChain(params, model.config.vocab_size)
    full = torch.tensor([prompt_ids + ids])
    with torch.no_grad():
        logits = model(full).logits[0].float()                                 # (T, V)
    steps = logits[len(prompt_ids) - 1:len(prompt_ids) - 1 + len(ids) + 1]
    counts = None
    out = []
    for t in range(len(steps)):
        if params.uses_counts:
            counts = torch.zeros(1, model.config.vocab_size)
            for i in prompt_ids + ids[:t]:
                counts[0, i] += 1
        out.append((steps[t:t + 1], chain.probabilities(steps[t:t + 1], counts)[0]))
    return out


@pytest.mark.parametrize("which", ["bpe", "char"])
@pytest.mark.parametrize("sampling", [dict(temperature=0.7), dict(temperature=1.3, top_k=40, repetition_penalty=1.3),
                                      dict(temperature=1.0, top_p=0.9, min_p=0.01)])
def test_each_step_is_the_chain_renormalised_over_the_allowed_tokens(which, sampling, request):
    model = request.getfixturevalue(which)
    tok, V = model.tokenizer, model.config.vocab_size
    pattern = r"[0-9]{1,3} apples"
    prompt = tok.encode("12 apples, ")
    g = generate(model, prompt, constraint=Regex(pattern), seed=3, max_new_tokens=20, logprobs=V, **sampling)[0]
    params = SamplingParams(**sampling)
    replay = replay_distributions(model, prompt, g.ids, params)
    text = b""
    for t, record in enumerate(g.logprobs):
        _, chain_probs = replay[t]
        allowed = torch.zeros(V, dtype=torch.bool)
        allowed[sorted(oracle_allowed(tok, pattern, text))] = True
        kept = chain_probs[allowed].sum()
        if kept > 0:
            expected = torch.where(allowed, chain_probs, torch.zeros(())) / kept
        else:                                       # the filters kept no allowed token: chain without them
            unfiltered = SamplingParams(temperature=params.temperature, repetition_penalty=params.repetition_penalty)
            _, probs = replay_distributions(model, prompt, g.ids, unfiltered)[t]
            expected = torch.where(allowed, probs, torch.zeros(())) / probs[allowed].sum()
        got = torch.zeros(V)
        for alternative in record.top:
            got[alternative.id] = alternative.prob_after
            assert alternative.allowed == bool(allowed[alternative.id])
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
        assert record.constraint.mass_removed == pytest.approx(1 - float(kept), abs=1e-6)
        assert record.constraint.n_allowed == int(allowed.sum())
        text += tok.token_bytes(record.id)
    assert regex.fullmatch(pattern, g.text)


def test_greedy_takes_the_best_allowed_token(bpe):
    tok = bpe.tokenizer
    prompt = tok.encode("the answer is")
    g = generate(bpe, prompt, constraint=Choice([" yes", " no", " maybe"]), temperature=0, logprobs=3)[0]
    with torch.no_grad():
        logits = bpe(torch.tensor([prompt])).logits[0, -1]
    state = compile_constraint(Choice([" yes", " no", " maybe"]), tok, tok.vocab_size).new_state()
    allowed = token_masks([state], tok.vocab_size)[0]
    assert g.ids[0] == int(logits.masked_fill(~allowed, -math.inf).argmax())
    assert g.text in (" yes", " no", " maybe") and g.finish_reason == "constraint"
    removed = 1 - torch.softmax(logits, -1)[allowed].sum()
    assert g.logprobs[0].constraint.mass_removed_model == pytest.approx(float(removed), abs=1e-6)


def test_filters_that_keep_no_allowed_token_fall_back_to_the_unfiltered_chain(char):
    tok = char.tokenizer
    prompt = tok.encode("the answer is ")
    with torch.no_grad():
        best = tok.decode([int(char(torch.tensor([prompt])).logits[0, -1].argmax())])
    options = [o for o in ("bob", "pears", "maybe", "no") if not o.startswith(best)][:2]
    g = generate(char, prompt, constraint=Choice(options), top_k=1, seed=0, logprobs=2)[0]
    assert g.text in options
    assert g.logprobs[0].constraint.fell_back and g.logprobs[0].constraint.mass_removed == 1.0


def test_a_constraint_no_token_can_spell_is_an_error(char):
    with pytest.raises(GlassError, match=r"Choice\(\['zzz'\]\): no token may follow \(text so far: ''\)"):
        generate(char, "the answer is ", constraint=Choice(["zzz"]))


def check_output(constraint, text):
    if isinstance(constraint, Choice):
        assert text in constraint.options
    elif isinstance(constraint, Integer):
        assert regex.fullmatch(r"-?(0|[1-9][0-9]*)", text)
        assert (constraint.min is None or int(text) >= constraint.min)
        assert (constraint.max is None or int(text) <= constraint.max)
    elif isinstance(constraint, JSONSchema):
        jsonschema.validate(json.loads(text), constraint.schema)
    elif isinstance(constraint, Regex):
        assert regex.fullmatch(constraint.pattern, text)
    if constraint.max_chars is not None:
        assert len(text) <= constraint.max_chars


SCHEMA = {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99},
                                           "name": {"enum": ["bob", "al"]}},
          "required": ["a", "name"], "additionalProperties": False}
CONSTRAINTS = [Choice(["yes", "no", "maybe not"]), Regex(r"[0-9]{1,3} (apples|pears)"), Integer(min=-20, max=345),
               Integer(min=5), JSONSchema(SCHEMA), Regex(r"[a-z ]+", max_chars=12), Regex(r"[a-z]+\.", max_tokens=6)]


@PROPERTY
@given(seed=st.integers(0, 10_000), temperature=st.sampled_from([0, 0.5, 1.0, 2.0]),
       top_k=st.sampled_from([None, 3, 50]), top_p=st.sampled_from([None, 0.8]),
       which=st.sampled_from(["bpe", "char", "char_no_eot"]), constraint=st.sampled_from(CONSTRAINTS))
def test_every_output_satisfies_its_constraint(seed, temperature, top_k, top_p, which, constraint, request):
    model = request.getfixturevalue(which)
    g = generate(model, "the answer is ", constraint=constraint, seed=seed, temperature=temperature,
                 top_k=top_k, top_p=top_p, max_new_tokens=40)[0]
    check_output(constraint, g.text)
    assert g.finish_reason in ("eot", "constraint", "length")


def test_batches_streams_and_sessions_are_constrained(bpe):
    c = Integer(min=0, max=99)
    for g in generate_batch(bpe, ["the answer is ", "12 apples and "], constraint=c, num_samples=2, seed=1):
        check_output(c, g.text)
    events = list(stream(bpe, "maybe ", constraint=Choice(["yes.", "no."]), seed=2))
    assert "".join(e.text for e in events) in ("yes.", "no.")
    s = Session(bpe)
    s.append("the answer is ")
    g = s.generate(10, constraint=Regex(r"(yes|no)"), seed=0)
    assert g.text in ("yes", "no") and s.text.endswith(g.text)


def test_without_an_end_of_text_token_an_open_constraint_runs_to_the_limit(char_no_eot):
    g = generate(char_no_eot, "maybe ", constraint=Regex(r"[0-9]+"), max_new_tokens=5, seed=0)[0]
    assert regex.fullmatch(r"[0-9]{5}", g.text) and g.finish_reason == "length"
    g = generate(char_no_eot, "maybe ", constraint=Choice(["no", "yes"]), max_new_tokens=9, seed=0)[0]
    assert g.text in ("no", "yes") and g.finish_reason == "constraint"


@pytest.mark.parametrize("make, message", [
    (lambda: Choice([]), "empty"),
    (lambda: Choice("yes"), "list of strings"),
    (lambda: Integer(min=5, max=2), r"min \(5\) is greater than max \(2\)"),
    (lambda: Regex(r"[0-9"), "Regex"),
    (lambda: Grammar("start: foo"), "unknown name"),
    (lambda: JSONSchema({"type": "object", "if": {"type": "object"}}), "if"),
    (lambda: Regex(r"[a-z]+", max_chars=0), "max_chars"),
])
def test_bad_constraints_are_one_line_errors(make, message, bpe):
    with pytest.raises(GlassError, match=message) as e:
        generate(bpe, "the answer is ", constraint=make(), max_new_tokens=5)
    assert "\n" not in str(e.value)


def test_an_unsatisfiable_budget_names_the_constraint_and_the_text(char):
    with pytest.raises(GlassError, match=r"Choice.*within 3 tokens.*text so far"):
        generate(char, "the answer is ", constraint=Choice(["yes, certainly"]), max_new_tokens=3)


def test_speculative_decoding_refuses_a_constraint(bpe):
    with pytest.raises(GlassError, match="draft"):
        generate(bpe, "the", constraint=Choice(["yes"]), draft=bpe)


def test_constraint_from_fields():
    assert constraint_from_fields() is None
    assert constraint_from_fields(response_format={"type": "text"}) is None
    assert constraint_from_fields(guided_choice=["a", "b"]) == Choice(["a", "b"])
    assert constraint_from_fields(guided_regex="[0-9]+") == Regex("[0-9]+")
    schema = {"type": "object"}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    assert constraint_from_fields(response_format=fmt) == JSONSchema(schema)
    assert constraint_from_fields(response_format={"type": "json_object"}) == JSONSchema(schema)
    for fields, name in [(dict(guided_choice=[]), "guided_choice"), (dict(guided_choice="ab"), "guided_choice"),
                         (dict(guided_regex=3), "guided_regex"), (dict(guided_grammar=""), "guided_grammar"),
                         (dict(response_format={"type": "xml"}), "response_format"),
                         (dict(response_format={"type": "json_schema"}), "response_format"),
                         (dict(guided_choice=["a"], guided_regex="a"), "guided_regex")]:
        with pytest.raises(GlassError, match=f"^{name}"):
            constraint_from_fields(**fields)
