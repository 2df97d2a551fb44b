"""The model's equivalences: causality, fused = explicit attention, cached = uncached,
saved = loaded, and our `gpt2` preset = Hugging Face transformers' GPT-2."""
import itertools
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from glassgpt.errors import CheckpointError, ConfigError, GlassError
from glassgpt.model import GPT, GPTConfig, load, save

VARIANTS = [
    dict(positional=p, norm=n, activation=a, bias=b, tie_embeddings=t)
    for p, n, a, b, t in itertools.product(
        ("learned", "sinusoidal", "rope", "none"), ("pre", "post"), ("gelu", "relu"), (True, False), (True, False))
    # keep the grid small but cover every value of every switch
    if (b, t) in {(True, True), (False, False)} and (a == "gelu") == (n == "pre")
]


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig.preset("tiny", vocab_size=97, context_length=32, d_model=32, n_head=4, **kw)).eval()


def ids(batch=2, T=24, vocab=97, seed=1):
    return torch.randint(0, vocab, (batch, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(str(x) for x in v.values()))
def test_causal_and_fused_equals_explicit_and_cached_equals_uncached(variant):
    model, x = tiny(**variant), ids()
    logits = model(x).logits

    # causality: changing a later token never changes an earlier position's logits
    changed = x.clone()
    changed[:, 15] = (changed[:, 15] + 1) % 97
    later = model(changed).logits
    assert torch.equal(logits[:, :15], later[:, :15])
    assert not torch.allclose(logits[:, 15:], later[:, 15:])

    # the explicit softmax(QK^T/sqrt(d))V path (switched on by probing the pattern) agrees
    with model.probing(read=["blocks.*.attn.pattern"]) as probes:
        explicit = model(x).logits
    torch.testing.assert_close(explicit, logits, atol=1e-5, rtol=1e-5)
    assert probes["blocks.0.attn.pattern"].shape == (2, 4, 24, 24)

    # KV cache: prefill 10 positions, then one token at a time
    cache = model.new_kv_cache(batch_size=2)
    steps = [model(x[:, :10], kv_cache=cache).logits]
    steps += [model(x[:, t:t + 1], kv_cache=cache).logits for t in range(10, 24)]
    torch.testing.assert_close(torch.cat(steps, 1), logits, atol=1e-5, rtol=1e-5)
    assert cache.length == 24


def test_chunked_prefill_and_rewind_reuse_the_cache():
    model, x = tiny(), ids(batch=1)
    full = model(x).logits
    cache = model.new_kv_cache()
    model(x[:, :16], kv_cache=cache)
    cache.crop(9)   # rewind, then continue from position 9
    rest = model(x[:, 9:], kv_cache=cache).logits
    torch.testing.assert_close(rest, full[:, 9:], atol=1e-5, rtol=1e-5)


def test_padded_batch_matches_each_row_alone():
    model = tiny(positional="rope")
    a, b = ids(batch=1, T=12, seed=3), ids(batch=1, T=7, seed=4)
    pad = torch.zeros(1, 5, dtype=torch.long)
    batch = torch.cat([a, torch.cat([pad, b], 1)])                         # left-padded
    keep = torch.ones(2, 12, dtype=torch.bool)
    keep[1, :5] = False
    positions = (keep.cumsum(1) - 1).clamp(min=0)
    out = model(batch, positions=positions, key_padding_mask=keep).logits
    torch.testing.assert_close(out[0], model(a).logits[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1, 5:], model(b).logits[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("positional", ["learned", "rope"])
def test_packed_documents_match_each_alone_fused_and_explicit(positional):
    model = tiny(positional=positional)
    a, b, c = ids(batch=1, T=12, seed=3), ids(batch=1, T=7, seed=4), ids(batch=1, T=1, seed=5)
    row = torch.cat([a, b, c], 1)                                          # (1, 20): three texts
    documents = torch.tensor([[0] * 12 + [1] * 7 + [2]])
    positions = torch.cat([torch.arange(12), torch.arange(7), torch.arange(1)])[None]
    alone = torch.cat([model(x).logits[0] for x in (a, b, c)])             # (20, V)
    torch.testing.assert_close(model(row, positions=positions, documents=documents).logits[0], alone,
                               atol=1e-5, rtol=1e-5)
    ends = torch.tensor([11, 18, 19])
    picked = model(row, positions=positions, documents=documents, logits_at=ends).logits[0]   # (3, V)
    torch.testing.assert_close(picked, alone[ends], atol=1e-5, rtol=1e-5)
    with model.probing(read=["blocks.0.attn.pattern"]) as probes:        # the explicit path masks alike
        explicit = model(row, positions=positions, documents=documents).logits[0]
    torch.testing.assert_close(explicit, alone, atol=1e-5, rtol=1e-5)
    assert probes["blocks.0.attn.pattern"][0, :, 12:, :12].abs().max() == 0   # b never looks at a
    with pytest.raises(GlassError, match="documents"):
        model(row[:, 19:], documents=documents[:, 19:], kv_cache=filled_cache(model, row[:, :19]))


def filled_cache(model, prefix):
    cache = model.new_kv_cache(1)
    model(prefix, kv_cache=cache)
    return cache


def test_loss_is_cross_entropy_of_logits():
    model, x = tiny(), ids()
    out = model(x[:, :-1], targets=x[:, 1:])
    manual = torch.nn.functional.cross_entropy(out.logits.reshape(-1, 97), x[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, manual)


def test_last_only_gives_the_last_position():
    model, x = tiny(), ids()
    torch.testing.assert_close(model(x, last_only=True).logits[:, 0], model(x).logits[:, -1])


def test_gpt2_initialisation_scales_residual_projections():
    model = tiny()
    std = model.blocks[0].attention.proj.weight.std().item()
    assert abs(std - 0.02 / (2 * 2) ** 0.5) < 0.003
    assert abs(model.blocks[0].attention.qkv.weight.std().item() - 0.02) < 0.003


def test_gpt2_preset_is_gpt2_small():
    config = GPTConfig.preset("gpt2")
    assert (config.n_layer, config.d_model, config.n_head, config.vocab_size, config.context_length) == \
        (12, 768, 12, 50257, 1024)
    with torch.device("meta"):
        model = GPT(config)
    assert model.num_parameters() == 124_439_808     # GPT-2 small, tied embeddings


def test_our_gpt2_reproduces_transformers_logits():
    import transformers

    from glassgpt.model.hf_gpt2 import from_hf_gpt2

    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(n_layer=3, n_embd=96, n_head=4, vocab_size=211, n_positions=64,
                                        bos_token_id=0, eos_token_id=0)
    hf = transformers.GPT2LMHeadModel(hf_config).eval()
    ours = from_hf_gpt2(hf)
    x = ids(batch=2, T=40, vocab=211)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, hf(x).logits, atol=1e-5, rtol=1e-5)


def test_save_then_load_gives_identical_logits(tmp_path):
    model, x = tiny(positional="rope", norm="post", tie_embeddings=False), ids()
    save(model, tmp_path / "run")
    loaded = load(tmp_path / "run")
    assert loaded.config == model.config
    assert torch.equal(loaded(x).logits, model(x).logits)


def test_tied_weights_stay_tied_after_load(tmp_path):
    save(tiny(), tmp_path / "run")
    loaded = load(tmp_path / "run")
    assert loaded.unembed.weight is loaded.embed.weight


@pytest.mark.parametrize("bad, match", [
    (dict(n_head=5), "must divide d_model"),
    (dict(positional="alibi"), "positional must be one of"),
    (dict(norm="sandwich"), "'pre' or 'post'"),
    (dict(d_model=0), "positive integer"),
    (dict(dropout=1.5), "dropout"),
])
def test_bad_configs_say_what_to_do(bad, match):
    with pytest.raises(ConfigError, match=match):
        GPTConfig.preset("tiny", **bad)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'huge': choose one of gpt2, classic"):
        GPTConfig.preset("huge")


def test_config_round_trips_through_json():
    config = GPTConfig.preset("classic", vocab_size=300)
    assert GPTConfig.from_dict(json.loads(config.to_json())) == config


def test_input_longer_than_context_is_refused_with_advice():
    with pytest.raises(GlassError, match="exceed the context length 32: crop"):
        tiny()(ids(T=33))


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not a directory"):
        load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load(tmp_path / "empty")


def test_truncated_weights_are_reported_and_left_in_place(tmp_path):
    run = save(tiny(), tmp_path / "run")
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load(run)
    assert weights.stat().st_size == 1000


def test_corrupt_config(tmp_path):
    run = save(tiny(), tmp_path / "run")
    (run / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load(run)


def test_weights_from_another_model_are_refused(tmp_path):
    run = save(tiny(), tmp_path / "run")
    save(tiny(tie_embeddings=False), tmp_path / "other")
    (run / "model.safetensors").write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="config.json: tie_embeddings is True but the weights were trained "
                                              "with False: set it back to False"):
        load(run)


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, x = tiny(), ids()
    run = save(model, tmp_path / "run")
    import glassgpt.model.checkpoint as checkpoint

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_model", crash)
    with pytest.raises(OSError):
        save(tiny(positional="none"), run)
    assert torch.equal(load(run)(x).logits, model(x).logits)
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "model.safetensors"]


def test_probe_names_are_listed_and_unknown_ones_refused():
    model = tiny()
    names = model.probe_names()
    assert names[0] == "embed" and names[-1] == "logits" and "blocks.1.attn.pattern" in names
    with pytest.raises(GlassError, match="unknown probe 'blocks.9.attn.q'.*blocks.L.attn.q"):
        with model.probing(read=["blocks.9.attn.q"]):
            pass


def test_probes_cost_nothing_when_unused_and_edit_when_asked():
    model, x = tiny(), ids()
    plain = model(x).logits
    with model.probing(edit={"blocks.*.ff.out": torch.zeros_like}):
        no_ff = model(x).logits
    assert not torch.allclose(plain, no_ff)
    assert all(m.probes is None for m in model.modules() if hasattr(m, "probes"))
    assert torch.equal(model(x).logits, plain)


def test_decoding_unembedding_copy_follows_weight_changes():
    model, x = tiny(tie_embeddings=False), ids(batch=1, T=3)
    with torch.no_grad():
        first = model(x, last_only=True).logits                      # the fast (C, V) copy is made
        torch.testing.assert_close(first, _plain_unembed(model, x))
        model.unembed.weight.mul_(2.0)                               # e.g. an optimiser step
        model.unembed.bias.add_(1.0)
        second = model(x, last_only=True).logits
    torch.testing.assert_close(second, _plain_unembed(model, x))
    assert not torch.allclose(first, second)


def _plain_unembed(model, x):
    h = model.final_norm(_hidden(model, x))
    return F.linear(h, model.unembed.weight, model.unembed.bias).detach()


def _hidden(model, x):
    with model.probing(read=["blocks.1.resid_post"]) as probes:
        model(x)
    return probes["blocks.1.resid_post"][:, -1:]


@pytest.mark.parametrize("variant", [
    dict(), dict(positional="sinusoidal"), dict(positional="rope"), dict(positional="none"),
    dict(norm="post"), dict(activation="relu", bias=False), dict(tie_embeddings=False), dict(n_layer=3),
])
def test_probe_names_are_exactly_the_names_a_forward_pass_emits(variant):
    from glassgpt.model.probes import Probed, Probes

    class Every(Probes):                                   # records every name that passes, in order
        def __init__(self):
            super().__init__(read=["*"])
            self.seen = []

        def wants(self, name):
            return True                                    # the explicit attention path: scores and pattern too

        def __call__(self, name, x):
            self.seen.append(name)
            return x

    config = GPTConfig.preset("tiny", **{"vocab_size": 40, "context_length": 16, "d_model": 32, **variant})
    model = GPT(config).eval()
    every = Every()
    for m in model.modules():
        if isinstance(m, Probed):
            m.probes = every
    with torch.no_grad():
        model(torch.randint(0, 40, (1, 7)))
    assert every.seen == model.probe_names()
    for m in model.modules():
        if isinstance(m, Probed):
            m.probes = None
    with model.probing(read="*") as probes, torch.no_grad():
        model(torch.randint(0, 40, (1, 7)))
    assert list(probes.cache) == model.probe_names()


def test_building_a_model_prints_nothing(capsys):
    GPT(GPTConfig.preset("tiny", vocab_size=40))
    assert capsys.readouterr() == ("", "")


def test_glassgpt_leaves_the_users_matplotlib_backend_alone(tmp_path):
    import os
    import subprocess
    import sys

    code = ("import matplotlib; before = matplotlib.get_backend()\n"
            "import glassgpt, glassgpt.inspect.plots, glassgpt.train.plot, glassgpt.experiments.temperature\n"
            "from glassgpt.train.plot import plot_losses\n"
            "records = [{'step': 1, 'train_loss': 2.0}, {'step': 2, 'val_loss': 1.5}]\n"
            f"plot_losses(records, {str(tmp_path / 'l.png')!r})\n"
            "assert matplotlib.get_backend() == before, (before, matplotlib.get_backend())\n"
            "import matplotlib.pyplot as plt; assert plt.get_fignums() == []\n"
            "print(before)")
    src = str(Path(__file__).resolve().parents[1] / "src")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "MPLBACKEND": "svg", "PYTHONPATH": src})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "svg" and (tmp_path / "l.png").stat().st_size > 1000
