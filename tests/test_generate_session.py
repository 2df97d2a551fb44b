"""Sessions: rewind + substitute + continue equals a fresh run on the rewritten text."""
from __future__ import annotations

import pytest
import torch

from helpers import ALPHABET, char_tokenizer, tiny_model
from glassgpt.errors import GlassError
from glassgpt.generate import Session, generate

NO_EOT = char_tokenizer(ALPHABET + "#", specials=())


@pytest.fixture(scope="module")
def model():
    return tiny_model(scale=4.0, tokenizer=NO_EOT)


def fresh_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].float()


def test_rewind_substitute_and_continue_equal_a_fresh_run_on_the_rewritten_text(model):
    s = Session(model, temperature=0)
    s.append("the cat sat on the")
    g = s.generate(10)
    assert s.ids == NO_EOT.encode("the cat sat on the") + g.ids
    s.rewind(10)
    s.substitute(4, "dog sat on a")
    rewritten = NO_EOT.encode("the dog sat on a")
    assert s.ids == rewritten
    assert torch.allclose(s.next_logits(), fresh_logits(model, rewritten), atol=1e-5)
    assert s.reused == 4 and s.computed == len(rewritten) - 4      # only what changed was recomputed
    continued = s.generate(12)
    assert continued.ids == generate(model, rewritten, max_new_tokens=12, temperature=0)[0].ids
    assert continued.stats.prefill_reused == len(rewritten) - 1


def test_generating_again_reuses_everything_before(model):
    s = Session(model, temperature=0)
    s.append("abc")
    s.generate(5)
    s.generate(5)
    assert s.reused == 3 + 5 - 1 and s.computed == 1
    assert s.ids[3:] == generate(model, "abc", max_new_tokens=10, temperature=0)[0].ids


def test_distribution_before_and_after_a_substitution(model):
    s = Session(model)
    s.append("the cat")
    before = s.distribution(top=5)
    assert len(before) == 5 and sum(p for *_, p in before) <= 1
    probs = torch.softmax(fresh_logits(model, NO_EOT.encode("the cat")), -1)
    assert before[0][0] == int(probs.argmax()) and before[0][2] == pytest.approx(float(probs.max()), abs=1e-5)
    assert before[0][1] == NO_EOT.id_to_str(before[0][0])
    s.substitute(4, "dog")
    after = s.distribution(top=5)
    assert after != before
    s.undo()
    again = s.distribution(top=5)
    assert s.text == "the cat" and [e[0] for e in again] == [e[0] for e in before]
    assert [e[2] for e in again] == pytest.approx([e[2] for e in before], abs=1e-6)


def test_rewind_to_and_undo_walk_back_through_changes(model):
    s = Session(model, seed=1)
    s.append("hello")
    s.append(" world")
    s.rewind_to(2)
    assert s.text == "he"
    s.undo()
    assert s.text == "hello world"
    s.undo()
    s.undo()
    assert s.ids == []
    with pytest.raises(GlassError, match="nothing to undo"):
        s.undo()


def test_bad_session_input_is_a_one_line_error(model):
    s = Session(model)
    with pytest.raises(GlassError, match="empty"):
        s.generate(3)
    with pytest.raises(GlassError, match="empty"):
        s.distribution()
    s.append("abc")
    with pytest.raises(GlassError, match="rewind"):
        s.rewind(4)
    with pytest.raises(GlassError, match="rewind"):
        s.rewind_to(-1)
    with pytest.raises(GlassError, match="substitute"):
        s.substitute(9, "x")
    with pytest.raises(GlassError, match="temperature"):
        s.generate(3, temperature=-1)
