"""The interpretability lab (activation patching, direct logit attribution, head roles)
against TransformerLens on the same random GPT-2 weights, and its exact identities."""
from __future__ import annotations

import warnings

import pytest
import torch

from glassgpt.errors import GlassError
from glassgpt.inspect import direct_logit_attribution, head_roles, logit_diff, patch, probability
from glassgpt.inspect.heads import repeated_random_tokens
from glassgpt.inspect.lens import lens_logits
from glassgpt.inspect.patching import patch_all_positions
from glassgpt.inspect.trace import trace
from glassgpt.model import GPT, GPTConfig
from glassgpt.model.hf_gpt2 import from_hf_gpt2

L, C, H, V, CTX = 2, 48, 4, 200, 32
ATOL = 1e-4
CLEAN = [5, 17, 33, 2, 90, 17, 61, 8, 44, 150]
CORRUPT = [5, 17, 33, 2, 90, 121, 61, 8, 44, 150]       # one token differs
A, B = 17, 121                                           # the answer each prompt favours


@pytest.fixture(scope="module")
def hf():
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=V, n_positions=CTX, n_embd=C, n_layer=L, n_head=H, initializer_range=0.1)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def ours(hf):
    return from_hf_gpt2(hf)


def hooked(hf, **processing):
    """TransformerLens's HookedTransformer with the same weights, built offline from the
    transformers model with TransformerLens's own GPT-2 weight conversion."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights
    cfg = HookedTransformerConfig(n_layers=L, d_model=C, n_ctx=CTX, d_head=C // H, n_heads=H, d_mlp=4 * C,
                                  d_vocab=V, act_fn="gelu_new", normalization_type="LN", eps=1e-5,
                                  positional_embedding_type="standard", original_architecture="GPT2LMHeadModel",
                                  default_prepend_bos=False, device="cpu")
    with warnings.catch_warnings():                        # "deprecated, removed in 4.0": we pin < 4
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(cfg)
    model.load_and_process_state_dict(convert_gpt2_weights(hf, cfg), **processing)
    return model.eval()


@pytest.fixture(scope="module")
def tl(hf):
    """No weight processing: every activation is the model's own."""
    return hooked(hf, fold_ln=False, center_writing_weights=False, center_unembed=False, fold_value_biases=False)


@pytest.fixture(scope="module")
def tl_folded(hf):
    """LayerNorm folded into the unembedding and writing weights centred, as TransformerLens
    needs for its direct logit attribution (value biases left in the heads, as ours are)."""
    return hooked(hf, fold_ln=True, center_writing_weights=True, center_unembed=False, fold_value_biases=False)


def tl_metric(a=A, b=B):
    return lambda logits: logits[0, -1, a] - logits[0, -1, b]


def test_same_logits(ours, tl):
    ids = torch.tensor([CLEAN])
    assert torch.allclose(ours(ids).logits, tl(ids), atol=ATOL)


def test_logit_lens_matches_accumulated_resid(ours, tl):
    t = trace(ours, CLEAN, attention=False)
    mine = lens_logits(ours, t.residual)                                          # (L + 1, T, V)
    _, cache = tl.run_with_cache(torch.tensor([CLEAN]))
    stack = cache.accumulated_resid(apply_ln=True)[:, 0]                          # (L + 1, T, C)
    theirs = stack @ tl.W_U + tl.b_U
    assert torch.allclose(mine, theirs, atol=ATOL)


TL_FUNCTIONS = {"resid_pre": "get_act_patch_resid_pre", "attn_out": "get_act_patch_attn_out",
                "ff_out": "get_act_patch_mlp_out", "head": "get_act_patch_attn_head_out_all_pos",
                "head_position": "get_act_patch_attn_head_out_by_pos"}


@pytest.mark.parametrize("over", list(TL_FUNCTIONS))
def test_patching_matches_transformer_lens(ours, tl, over):
    from transformer_lens import patching
    mine = patch(ours, CLEAN, CORRUPT, logit_diff(A, B), over=over, batch_size=3)   # batches split mid-layer
    _, clean_cache = tl.run_with_cache(torch.tensor([CLEAN]))
    theirs = getattr(patching, TL_FUNCTIONS[over])(tl, torch.tensor([CORRUPT]), clean_cache, tl_metric())
    if over == "head_position":
        theirs = theirs.permute(0, 2, 1)                                          # (layer, pos, head) -> ours
    with torch.no_grad():
        clean_m, corrupt_m = (float(tl_metric()(tl(torch.tensor([ids])))) for ids in (CLEAN, CORRUPT))
    assert mine.values.shape == theirs.shape
    assert abs(mine.clean_metric - clean_m) < ATOL and abs(mine.corrupt_metric - corrupt_m) < ATOL
    assert torch.allclose(mine.raw, theirs, atol=ATOL)
    assert torch.allclose(mine.values, (theirs - corrupt_m) / (clean_m - corrupt_m), atol=ATOL)
    assert mine.values.abs().max() > 0.05                                         # the grid is not trivially flat


def test_patching_any_function_of_the_logits(ours):
    fn = tl_metric()
    by_function = patch(ours, CLEAN, CORRUPT, fn, over="resid_pre")
    by_metric = patch(ours, CLEAN, CORRUPT, logit_diff(A, B), over="resid_pre")
    assert torch.allclose(by_function.raw, by_metric.raw, atol=1e-5)
    p = patch(ours, CLEAN, CORRUPT, probability(A), over="attn_out")
    with torch.no_grad():
        expected = torch.softmax(ours(torch.tensor([CLEAN])).logits[0, -1], -1)[A]
    assert abs(p.clean_metric - float(expected)) < 1e-6


def test_patching_identities(ours):
    r = patch(ours, CLEAN, CLEAN, logit_diff(A, B), over="resid_pre")          # nothing to restore
    assert not r.normalised and "same metric" in r.note and torch.isnan(r.values).all()
    assert torch.allclose(r.raw, torch.full_like(r.raw, r.clean_metric), atol=1e-5)
    r = patch(ours, CLEAN, CORRUPT, logit_diff(A, B), over="resid_pre")
    assert abs(patch_all_positions(ours, CLEAN, CORRUPT, logit_diff(A, B), 0) - r.clean_metric) < 1e-5
    differs = CLEAN.index(17, 2)                                                  # the one changed position
    assert torch.allclose(r.values[0], torch.eye(len(CLEAN))[differs], atol=1e-5)   # layer 0: only it matters
    # positions after the last one the metric reads can be patched without effect, before it
    assert torch.allclose(patch(ours, CLEAN, CORRUPT, logit_diff(A, B, position=3), over="ff_out").raw,
                          torch.full((L, len(CLEAN)), patch(ours, CLEAN, CORRUPT, logit_diff(A, B, position=3),
                                                             over="ff_out").corrupt_metric), atol=1e-5)


def test_direct_logit_attribution_matches_transformer_lens(ours, tl_folded):
    _, cache = tl_folded.run_with_cache(torch.tensor([CLEAN]))
    # logit_attrs applies the final norm's frozen scale itself: the stacks go in raw
    heads, labels = cache.stack_head_results(layer=-1, pos_slice=-1, return_labels=True)
    parts, part_labels = cache.decompose_resid(layer=-1, pos_slice=-1, return_labels=True)
    for versus in (None, B):
        mine = direct_logit_attribution(ours, CLEAN, -1, A, versus=versus)
        theirs = cache.logit_attrs(heads, tokens=A, incorrect_tokens=versus, pos_slice=-1)[:, 0]   # (L*H,)
        assert labels[0] == "L0H0" and torch.allclose(mine.heads.flatten().float(), theirs, atol=ATOL)
        rest = dict(zip(part_labels, cache.logit_attrs(parts, tokens=A, incorrect_tokens=versus, pos_slice=-1)[:, 0]))
        assert abs(mine.pieces["embed"] - rest["embed"]) < ATOL
        assert abs(mine.pieces["positional encoding"] - rest["pos_embed"]) < ATOL
        for l in range(L):
            attn = sum(mine.pieces[f"head {l}.{h}"] for h in range(H)) + mine.pieces[f"attention bias {l}"]
            assert abs(attn - rest[f"{l}_attn_out"]) < ATOL
            assert abs(mine.pieces[f"feed-forward {l}"] - rest[f"{l}_mlp_out"]) < ATOL
        assert abs(mine.total - mine.logit) < ATOL


@pytest.mark.parametrize("overrides", [{}, {"positional": "rope", "bias": False},
                                        {"tie_embeddings": False, "positional": "sinusoidal"}])
def test_attribution_adds_up_to_the_logit(overrides):
    torch.manual_seed(1)
    model = GPT(GPTConfig.preset("tiny", vocab_size=60, context_length=16, d_model=32, **overrides)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    ids = [3, 1, 4, 1, 5, 9, 2, 6]
    for position, token, versus in ((-1, 7, None), (3, 11, 12), (0, None, None)):
        a = direct_logit_attribution(model, ids, position, token, versus=versus)
        assert abs(a.total - a.logit) < 1e-4 * max(1.0, abs(a.logit))
    assert "positional encoding" in a.pieces or overrides.get("positional") == "rope"


def test_attribution_refuses_post_ln():
    model = GPT(GPTConfig.preset("tiny", vocab_size=60, context_length=16, d_model=32, norm="post")).eval()
    with pytest.raises(GlassError, match="post-LN"):
        direct_logit_attribution(model, [1, 2, 3], -1, 4)


def test_head_roles_against_brute_force_on_transformer_lens(ours, tl):
    roles = head_roles(ours, length=12, batch=3, seed=5)
    ids = repeated_random_tokens(V, 12, 3, seed=5)
    _, cache = tl.run_with_cache(ids)
    n, T = 12, 24
    for l in range(L):
        pattern = cache["pattern", l]                                             # (B, H, T, T)
        for h in range(H):
            prev = [float(pattern[b, h, i, i - 1]) for b in range(3) for i in range(1, T)]
            dup = [float(pattern[b, h, i, i - n]) for b in range(3) for i in range(n, T)]
            ind = [float(pattern[b, h, i, i - n + 1]) for b in range(3) for i in range(n, T)]
            for role, values in (("previous_token", prev), ("duplicate_token", dup), ("induction", ind)):
                assert abs(roles.scores[role][l, h] - sum(values) / len(values)) < ATOL
    assert "induction" in roles.table() and roles.to_dict()["induction"]


def test_head_roles_draw_from_the_given_tokens(ours):
    ids = repeated_random_tokens(V, 6, 4, seed=1, tokens=range(10, 20))
    assert ids.shape == (4, 12) and set(ids.flatten().tolist()) <= set(range(10, 20))
    assert all(len(set(row[:6].tolist())) == 6 and row[:6].tolist() == row[6:].tolist() for row in ids)
    roles = head_roles(ours, batch=2, tokens=[3, 4, 5])
    assert roles.settings["length"] == 3 and roles.settings["drawn_from"] == [3, 4, 5]
    with pytest.raises(GlassError, match="needs at least that many to draw from"):
        head_roles(ours, length=4, tokens=[3, 4, 5])


def test_bad_input(ours):
    with pytest.raises(GlassError, match="clean has 10, corrupt has 9"):
        patch(ours, CLEAN, CORRUPT[:-1], logit_diff(A, B))
    with pytest.raises(GlassError, match="unknown over='mlp'"):
        patch(ours, CLEAN, CORRUPT, logit_diff(A, B), over="mlp")
    with pytest.raises(GlassError, match="not in the vocabulary"):
        patch(ours, CLEAN, CORRUPT, logit_diff(A, V + 3))
    with pytest.raises(GlassError, match="position 12 is out of range"):
        direct_logit_attribution(ours, CLEAN, 12, A)
    with pytest.raises(GlassError, match="length must be"):
        head_roles(ours, length=CTX)


def test_answer_of_several_tokens_says_how_it_tokenises():
    from glassgpt import Tokenizer
    tok = Tokenizer.chars("abcdefgh ")
    model = GPT(GPTConfig.preset("tiny", vocab_size=tok.vocab_size, context_length=16, d_model=32),
                tokenizer=tok).eval()
    with pytest.raises(GlassError, match=r"the answer ' ab' is 3 tokens \('·' 'a' 'b'\)"):
        patch(model, "abc", "abd", logit_diff(" ab", "a"))
    r = patch(model, "abc", "abd", logit_diff("a", "b"), over="head")
    assert r.values.shape == (2, 4) and r.labels["head"] == ["0", "1", "2", "3"]


def test_layer_head_position_grid_draws_and_tabulates(ours, tmp_path):
    r = patch(ours, CLEAN, CORRUPT, logit_diff(A, B), over="head_position")
    assert r.values.shape == (L, H, len(CLEAN)) and r.axes == ("layer", "head", "position")
    assert r.table().splitlines()[1].startswith("layer.head") and len(r.table().splitlines()) == 3 + L * H
    fig = r.heatmap(tmp_path / "grid.png")
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG" and len(fig.axes) == 2   # the grid and its colour bar
    assert r.to_dict()["values"][0][0] == r.values[0, 0].tolist()
