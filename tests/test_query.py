"""Templates (glassgpt.query): holes filled in order, token healing at a fixed text that
ends mid-token, scored holes equal to score_choices, what each constraint removed."""
import math

import pytest

from glassgpt.errors import GlassError
from glassgpt.generate import generate
from glassgpt.generate.constraints import Choice, Integer, JSONSchema, Regex
from glassgpt.generate.query import Distribution, Prefixed, Text, query
from glassgpt.generate.token_masks import compile_constraint, token_masks
from glassgpt.inspect.choices import score_choices
from helpers import corpus_model

CORPUS = ("the answer is yes. the answer is no. 12 apples, 345 pears, 7 apples.\n"
          '{"a": 1, "name": "bob"} {"a": 23, "name": "al"} maybe -5 or 42?\n'
          "q: how quickly did the brown fox jump over the lazy dog?\n") * 25


@pytest.fixture(scope="module")
def bpe():
    return corpus_model(CORPUS, "bpe", 128, vocab_size=420)


@pytest.fixture(scope="module")
def char():
    return corpus_model(CORPUS, "char", 128)


def test_fixed_text_ending_mid_token_is_healed(bpe):
    tok = bpe.tokenizer
    r = query(bpe, "the answer is [X]", where={"X": Choice(["yes", "no"])}, temperature=0)
    hole = r.holes["X"]
    assert hole.healed == " " and hole.value in ("yes", "no") and r.text == "the answer is " + hole.value
    assert tok.decode(hole.ids) == " " + hole.value
    state = compile_constraint(Prefixed(" ", Choice(["yes", "no"])), tok, tok.vocab_size).new_state()
    allowed = token_masks([state], tok.vocab_size)[0]
    merged = [tok.encode(" yes")[0], tok.encode(" no")[0]]
    assert len(tok.encode(" yes")) == 1 and allowed[merged].all()    # the tokens the model reads " yes" as
    # the same greedy choice as a constrained generate after the text without its last token
    prompt = tok.encode("the answer is")
    g = generate(bpe, prompt, constraint=Choice([" yes", " no"]), temperature=0)[0]
    assert g.ids == hole.ids


def test_character_tokenizers_need_no_healing(char):
    r = query(char, "the answer is [X].", where={"X": Regex(r"(yes|no)")}, seed=0)
    assert r.holes["X"].healed == "" and r["X"] in ("yes", "no") and r.text == f"the answer is {r['X']}."


@pytest.mark.parametrize("which", ["bpe", "char"])
def test_holes_fill_in_order_and_later_ones_see_earlier_values(which, request):
    model = request.getfixturevalue(which)
    r = query(model, "q: {q}\na: [N] apples.\nso {N} it is: [OK]. [WHY]",
              where={"N": Integer(min=1, max=99), "OK": Choice(["yes", "no"]), "WHY": Text(stop=".", max_tokens=8)},
              inputs={"q": "how many apples?"}, seed=3)
    n = r["N"]
    assert isinstance(n, int) and 1 <= n <= 99
    assert r.text.startswith(f"q: how many apples?\na: {n} apples.\nso {n} it is: {r['OK']}. ")
    assert r.text.endswith(r["WHY"]) and "." not in r["WHY"]
    for hole in r.holes.values():
        assert len(hole.mass_removed) == len(hole.token_logprobs) == len(hole.ids)
        assert all(0 <= m <= 1 for m in hole.mass_removed)
        assert hole.logprob == pytest.approx(math.fsum(hole.token_logprobs))
    assert sum(r.holes["OK"].mass_removed) > 0          # the constraint removed some probability


def test_a_scored_hole_equals_score_choices(bpe):
    r = query(bpe, "is it? [A] then [B]", where={"A": Choice(["yes", "no"]), "B": Distribution([" maybe", " no"])},
              seed=0)
    before = f"is it? {r['A']} then"
    scores = score_choices(bpe, before + " ", [" maybe", " no"])
    assert r.holes["B"].scores.probs == pytest.approx(scores.probs)
    assert r["B"] == scores.best and r.text == before + " " + scores.best


def test_json_schema_hole_gives_an_object(bpe):
    schema = {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}},
              "required": ["a"], "additionalProperties": False}
    r = query(bpe, "data: [D]", where={"D": JSONSchema(schema)}, seed=1)
    assert isinstance(r["D"], dict) and r["D"]["a"] in range(10)


@pytest.mark.parametrize("template, where, message", [
    ("no holes here", {}, "no holes"), ("[A] and [A]", {}, "twice"), ("x [A]", {"B": Choice(["y"])}, "does not have"),
    ("x [A]", {"A": 3}, "must be a constraint"), ("x [A]", lambda: {"A": Distribution([])}, "empty"),
])
def test_bad_templates(bpe, template, where, message):
    with pytest.raises(GlassError, match=message):
        query(bpe, template, where=where() if callable(where) else where)


def test_importable_from_glassgpt():
    import importlib

    import glassgpt
    constraints = importlib.import_module("glassgpt.generate.constraints")
    query_module = importlib.import_module("glassgpt.generate.query")
    choices = importlib.import_module("glassgpt.inspect.choices")

    for name, module in [("Choice", constraints), ("Regex", constraints), ("Integer", constraints),
                         ("JSONSchema", constraints), ("Grammar", constraints), ("score_choices", choices),
                         ("query", query_module)]:
        assert getattr(glassgpt, name) is getattr(module, name)
