"""inspect: traces, logit lens, occlusion attribution and ablation, checked against
plain forward passes and hand-edited weights."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import ALPHABET, probe_model
from glassgpt.errors import GlassError
from glassgpt.inspect import trace
from glassgpt.inspect.ablation import (Ablation, ablation_study, ablations, find_data_dir,
                                       load_validation, measure, pruned)
from glassgpt.inspect.attribution import occlusion
from glassgpt.train.data import fixed_batches
from glassgpt.inspect.lens import lens_logits, logit_lens

TEXT = "the cat sat on the mat. the dog sat on the log."


@pytest.fixture(scope="module")
def model():
    return probe_model()


def plain_loss_per_token(model, ids):
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = model(x).logits[0]
    return F.cross_entropy(logits[:-1], x[0, 1:], reduction="none")


# -- traces ---------------------------------------------------------------------------------
def test_distributions_sum_to_one_at_any_temperature(model):
    t = trace(model, TEXT)
    for temperature in (0.0, 0.3, 1.0, 2.5):
        p = t.probs(temperature)
        assert p.shape == (len(TEXT), len(ALPHABET))
        torch.testing.assert_close(p.sum(-1), torch.ones(len(TEXT)))
    greedy = t.probs(0)
    assert torch.equal(greedy.argmax(-1), t.logits.argmax(-1)) and set(greedy.unique().tolist()) == {0.0, 1.0}
    assert torch.all(t.entropy(0) == 0) and torch.all(t.entropy(5.0) > t.entropy(1.0))
    top_p, top_i = t.top(5)
    torch.testing.assert_close(top_p, t.probs().gather(-1, top_i))


def test_trace_log_probs_equal_negative_cross_entropy(model):
    t = model.trace(TEXT)
    ids = model.tokenizer.encode(TEXT)
    assert t.ids == ids and "".join(t.tokens) == TEXT
    expected = -plain_loss_per_token(model, ids)
    torch.testing.assert_close(t.next_log_prob, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(t.surprisal_bits, -expected / np.log(2), rtol=0, atol=1e-5)
    assert t.perplexity == pytest.approx(float(torch.exp(-expected.mean())), rel=1e-5)
    ranks = (t.logits[:-1] > t.logits[:-1].gather(-1, t.next_ids[:, None])).sum(-1) + 1
    assert torch.equal(t.next_rank, ranks)
    rows = t.rows(k=3)
    assert rows[3]["next"]["rank"] == int(ranks[3]) and "next" not in rows[-1]
    assert [r["next"]["rank"] for r in t.rows(temperature=0)[:-1]] == ranks.tolist()
    assert rows[3]["next"]["log_prob"] == pytest.approx(float(expected[3]), abs=1e-5)


def test_attention_rows_sum_to_one_and_are_causal(model):
    t = trace(model, TEXT[:20])
    L, H, T = model.config.n_layer, model.config.n_head, 20
    assert t.attention.shape == (L, H, T, T)
    torch.testing.assert_close(t.attention.sum(-1), torch.ones(L, H, T))
    assert torch.all(t.attention.triu(1) == 0)
    assert t.residual.shape == (L + 1, T, model.config.d_model)


def test_trace_without_probes_gives_the_same_logits(model):
    full, bare = trace(model, TEXT), trace(model, TEXT, attention=False, residual=False)
    torch.testing.assert_close(full.logits, bare.logits, rtol=0, atol=1e-5)
    assert bare.attention is None and bare.residual is None


def test_text_longer_than_context_traces_the_last_window(model):
    text = "abcdefghijklmnopqrstuvwxyz" * 3            # 78 characters, context 64
    with pytest.warns(UserWarning, match="last 64"):
        t = trace(model, text)
    assert t.truncated and t.dropped == 14 and "".join(t.tokens) == text[-64:]
    assert "truncated" in t._repr_html_() and json.loads(t.to_json())["truncated"] is True


def test_trace_json_and_html(model):
    t = trace(model, "the cat")
    data = json.loads(t.to_json(temperature=0.5))
    assert data["tokens"] == list("the cat") and len(data["attention"]) == model.config.n_layer
    assert data["positions"][0]["next"]["token"] == "h" and len(data["positions"][0]["top"]) == 10
    html = t._repr_html_()
    assert "<table" in html and "perplexity" in html


def test_bad_input_is_one_line(model):
    with pytest.raises(GlassError, match="zero tokens"):
        trace(model, "")
    with pytest.raises(GlassError, match="tokenizer"):
        trace(_without_tokenizer(), "abc")
    with pytest.raises(GlassError, match=r"blocks\.L\.attn\.pattern"):   # lists the valid names
        with model.probing(read=["blocks.0.attn.patern"]):
            pass


def _without_tokenizer():
    m = probe_model()
    m.tokenizer = None
    return m


# -- logit lens -----------------------------------------------------------------------------
def test_logit_lens_at_the_last_block_equals_the_logits(model):
    t = trace(model, TEXT)
    torch.testing.assert_close(lens_logits(model, t.residual[-1]), t.logits, rtol=0, atol=1e-5)
    lens = logit_lens(model, t)
    assert lens.top_ids.shape == (model.config.n_layer + 1, len(TEXT))
    assert torch.equal(lens.top_ids[-1], t.logits.argmax(-1))
    torch.testing.assert_close(lens.final_prob[-1], t.probs().max(-1).values)
    assert lens.layers[0] == "embed" and "block 1" in lens.table()


# -- attribution ----------------------------------------------------------------------------
@pytest.mark.parametrize("baseline", [None, ALPHABET.index(" ")])
def test_occluding_a_later_token_changes_nothing(model, baseline):
    a = occlusion(model, TEXT, position=10, baseline=baseline, occlude=list(range(len(TEXT))))
    later = torch.tensor(a.occluded) >= 10
    assert torch.all(a.kl[later] == 0) and torch.all(a.delta_top_prob[later] == 0)
    assert torch.all(a.kl[~later] >= 0) and a.kl[~later].max() > 1e-4      # earlier tokens do matter


def test_occlusion_matches_separate_forward_passes(model):
    ids = model.tokenizer.encode(TEXT[:12])
    a = occlusion(model, ids, position=12)
    assert a.occluded == list(range(12))
    with torch.no_grad():
        original = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1], -1)
        removed = torch.log_softmax(model(torch.tensor([ids[:4] + ids[5:]])).logits[0, -1], -1)
    kl = (original.exp() * (original - removed)).sum()
    torch.testing.assert_close(a.kl[4], kl, rtol=1e-4, atol=1e-6)
    assert a.ansi(color=False).splitlines()[1] == TEXT[:12]
    later_text = occlusion(model, TEXT[:20], position=12).ansi(color=False).splitlines()[1]
    assert later_text == TEXT[:12] + "[" + TEXT[12] + "]"          # the predicted slot is marked
    assert a.to_dict()["occluded"][4]["token"] == TEXT[4]


def test_occlusion_bad_position(model):
    with pytest.raises(GlassError, match="out of range"):
        occlusion(model, "abc", position=0)
    with pytest.raises(GlassError, match="baseline"):
        occlusion(model, "a", position=1)


# -- ablation -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def batches():
    tokens = np.random.default_rng(0).integers(0, len(ALPHABET), 4000).astype(np.uint16)
    return fixed_batches(tokens, 3, 2, 32, torch.device("cpu"), seed=1)


def full_forward_losses(model, batches, edits):
    with torch.no_grad(), model.probing(edit=edits):
        return [model(x, y).loss.item() for x, y in batches]


def test_empty_ablation_gives_exactly_the_intact_loss(model, batches):
    intact, (nothing, last_norm) = measure(model, batches, [Ablation("nothing", "none"),
                                                           Ablation("nothing late", "none", {"logits": lambda x: x})])
    assert nothing == intact and last_norm == intact
    assert intact == full_forward_losses(model, batches, {})


def test_cached_prefix_equals_a_full_forward(model, batches):
    parts = ablations(model)
    _, losses = measure(model, batches, parts)
    for part, got in zip(parts, losses):
        if part.context is None:
            assert got == full_forward_losses(model, batches, part.edits), part.name   # bit for bit


def test_zeroing_a_head_equals_zeroing_its_weights(model, batches):
    layer, head, hd = 1, 2, model.config.head_dim
    by_probe = {a.name: a for a in ablations(model)}[f"head {layer}.{head}"]
    edited = probe_model()
    attn = edited.blocks[layer].attention
    cols = slice(head * hd, (head + 1) * hd)
    with torch.no_grad():
        attn.proj.weight[:, cols] = 0                              # the head's share of the output
        attn.qkv.bias[2 * model.config.d_model:][cols] = 0         # its value bias passes the pattern
    x, y = batches[0]
    with torch.no_grad(), model.probing(edit=by_probe.edits):
        probed = model(x).logits
    with torch.no_grad():
        by_hand, intact = edited(x).logits, model(x).logits
    torch.testing.assert_close(probed, by_hand, rtol=0, atol=1e-5)
    assert (probed - intact).abs().max() > 1e-3


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_norm_to_identity_equals_removing_the_layernorm(batches, norm):
    model = probe_model(norm=norm)
    names = {a.name: a for a in ablations(model)}
    x, y = batches[0]
    for name, module in [("attn_norm 1", "attn_norm"), ("ff_norm 0", "ff_norm")]:
        block = int(name[-1])
        edited = probe_model(norm=norm)
        setattr(edited.blocks[block], module, nn.Identity())
        with torch.no_grad(), model.probing(edit=names[name].edits):
            probed = model(x).logits
        with torch.no_grad():
            torch.testing.assert_close(probed, edited(x).logits, rtol=0, atol=1e-5)


def test_pruning_every_block_leaves_embeddings_and_unembed(model, batches):
    x, y = batches[0]
    _, (loss,) = measure(model, [(x, y)], [pruned(model, model.config.n_layer)])
    with torch.no_grad():
        positions = torch.arange(x.shape[1])
        h = model.final_norm(model.embed(x) + model.positional_encoding(positions))
        expected = F.cross_entropy(model.unembed(h).view(-1, model.config.vocab_size), y.reshape(-1))
    assert loss[0] == pytest.approx(expected.item(), abs=1e-5)


def test_positional_ablation_equals_zeroed_position_weights(model, batches):
    part = {a.name: a for a in ablations(model)}["positional encoding"]
    edited = probe_model()
    with torch.no_grad():
        edited.positional_encoding.weight.zero_()
    assert full_forward_losses(model, batches, part.edits) == pytest.approx(
        full_forward_losses(edited, batches, {}), abs=1e-6)


def test_ablation_study_tables(batches):
    model = probe_model(positional="rope")
    tokens = np.random.default_rng(0).integers(0, len(ALPHABET), 2000).astype(np.uint16)
    study = ablation_study(model, tokens, batches=3, batch_size=2, mean_ablate=True, progress=False)
    n, h = model.config.n_layer, model.config.n_head
    assert len(study.parts) == 1 + n * (1 + h + 1 + 2) + 1 and len(study.pruning) == n + 1
    increases = [inc for _, inc, _ in study.ranked()]
    assert increases == sorted(increases, reverse=True)
    data = study.to_dict()
    assert data["intact"]["increase"] == 0 and data["pruning"][0]["loss"] == study.intact.mean
    assert "positional encoding (rope)" in study.table()
    assert study.parts[0].mean != study.intact.mean                 # no rotation changes the loss


def test_validation_data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(GlassError, match="no validation data"):
        load_validation(data)
    np.arange(100, dtype=np.uint32).tofile(data / "val.bin")
    (data / "meta.json").write_text(json.dumps({"dtype": "uint32"}))
    tokens = load_validation(data)
    assert tokens.dtype == np.uint32 and tokens[99] == 99
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(GlassError, match="--data"):
        find_data_dir(run)
    (run / "train_config.json").write_text(json.dumps({"data_dir": str(data)}))
    assert find_data_dir(run) == data
    a, b = (fixed_batches(tokens, 2, 3, 10, torch.device("cpu"), seed=0) for _ in range(2))
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, b))
    assert torch.equal(a[0][1], a[0][0] + 1)                        # targets are the next tokens
