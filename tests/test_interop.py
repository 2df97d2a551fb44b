"""Interop: a trained run leaves as a Hugging Face model, a tokenizers file, a tiktoken file and
a GGUF, and comes back; each checked against the other tool itself (transformers, tokenizers,
tiktoken, TransformerLens, gguf's reader; llama.cpp in test_interop_llama.py), not against numbers written down here."""
from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from glassgpt import GPT, GPTConfig, Tokenizer, load
from glassgpt.cli import main as cli_main
from glassgpt.errors import CheckpointError, GlassError
from glassgpt.interop import (export_gguf, export_hf, hooked_transformer, import_tokenizer, read_tokenizers_json,
                              write_tokenizers_json)
from glassgpt.interop.tokenizer_files import token_to_text
from interop_helpers import CORPUS, MIXED, train_tiny_run


def tiny_model(tokenizer=None, seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    fields = dict(vocab_size=tokenizer.vocab_size if tokenizer else 97, context_length=64, d_model=32,
                  n_layer=2, n_head=4, d_ff=96)
    return GPT(GPTConfig(**{**fields, **overrides}), tokenizer=tokenizer).eval()


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(CORPUS, vocab_size=360, progress=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tok):
    return train_tiny_run(tmp_path_factory.mktemp("interop"), tok)


@pytest.fixture(scope="module")
def hf_dir(run):
    return export_hf(run, run.parent / "hf")


def mixed_ids(model: GPT) -> torch.Tensor:
    return torch.tensor([model.tokenizer.encode(MIXED, allowed_special="all")[:64]])


# --- Hugging Face: transformers reads the export -------------------------------------------

def test_transformers_logits_equal_ours(run, hf_dir):
    from transformers import AutoModelForCausalLM

    ours = load(run)
    theirs = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    x = mixed_ids(ours)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x).logits, ours(x).logits, atol=1e-5, rtol=0)


def test_autotokenizer_ids_and_text_equal_ours_on_mixed_text(run, hf_dir):
    from transformers import AutoTokenizer

    ours = load(run).tokenizer
    theirs = AutoTokenizer.from_pretrained(hf_dir)
    ids = ours.encode(MIXED, allowed_special="all")
    assert ours.eot_id in ids and len(ids) > 60
    assert theirs(MIXED)["input_ids"] == ids
    assert theirs.decode(ids) == MIXED == ours.decode(ids)
    assert theirs.eos_token_id == ours.eot_id


def test_transformers_greedy_generation_gives_our_40_tokens(run, hf_dir):
    from transformers import AutoModelForCausalLM

    ours = load(run)
    theirs = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    prompt = ours.tokenizer.encode("The king spoke")
    mine = ours.generate(prompt, max_new_tokens=40, temperature=0)[0].ids
    with torch.no_grad():
        out = theirs.generate(torch.tensor([prompt]), max_new_tokens=40, do_sample=False,
                              pad_token_id=ours.tokenizer.eot_id)[0, len(prompt):].tolist()
    # ours stops at <|endoftext|> (and leaves it out); transformers stops there too, keeping it
    assert out == mine + ([ours.tokenizer.eot_id] if len(mine) < 40 else [])
    assert len(mine) >= 20


def test_round_trip_glassgpt_hf_glassgpt_is_bit_identical(run, hf_dir, tmp_path):
    original, back = load(run), load(hf_dir)
    assert back.config == original.config
    for (name, a), (_, b) in zip(original.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), name
    x = mixed_ids(original)
    assert torch.equal(back(x).logits, original(x).logits)
    ids = original.tokenizer.encode(MIXED, allowed_special="all")
    assert back.tokenizer.encode(MIXED, allowed_special="all") == ids
    again = export_hf(back, tmp_path / "again")                                   # and out once more
    assert (again / "model.safetensors").read_bytes() == (hf_dir / "model.safetensors").read_bytes()
    assert GPT.from_pretrained(str(hf_dir)).config == original.config


def test_f16_export_loads_with_half_the_weights(run, hf_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    half = export_hf(run, tmp_path / "f16", dtype="f16")
    theirs = AutoModelForCausalLM.from_pretrained(half, dtype=torch.float32).eval()
    ours = load(run)
    x = mixed_ids(ours)
    with torch.no_grad():
        error = (theirs(x).logits - ours(x).logits).abs().max().item()
    assert 0 < error < 0.05
    size = (half / "model.safetensors").stat().st_size
    assert size < 0.55 * (hf_dir / "model.safetensors").stat().st_size


@pytest.mark.parametrize("activation", ["gelu_exact", "relu"])
def test_other_activations_export_exactly(activation, tmp_path):
    from transformers import AutoModelForCausalLM

    ours = tiny_model(activation=activation)
    theirs = AutoModelForCausalLM.from_pretrained(export_hf(ours, tmp_path / "hf")).eval()
    x = torch.randint(0, 97, (2, 40))
    with torch.no_grad():
        torch.testing.assert_close(theirs(x).logits, ours(x).logits, atol=1e-5, rtol=0)
    assert load(tmp_path / "hf").config.activation == activation


REFUSED = [(dict(positional="rope"), "positional='rope'"), (dict(positional="sinusoidal"), "positional='sinusoidal'"),
           (dict(positional="none"), "positional='none'"), (dict(norm="post"), "norm='post'"),
           (dict(bias=False), "bias=False"), (dict(tie_embeddings=False), "tie_embeddings=False")]


# transformers' GPT-2 runs ReLU and exact GELU (tested above); llama.cpp's gpt2 only tanh-GELU
GGUF_REFUSED = REFUSED + [(dict(activation="relu"), "activation='relu'"),
                          (dict(activation="gelu_exact"), "activation='gelu_exact'")]


@pytest.mark.parametrize("to, change, field", [("hf", *c) for c in REFUSED] + [("gguf", *c) for c in GGUF_REFUSED])
def test_configs_gpt2_cannot_express_are_refused_by_name(change, field, to, tok, tmp_path):
    model = tiny_model(tok, **change)
    with pytest.raises(GlassError) as error:
        (export_hf if to == "hf" else export_gguf)(model, tmp_path / "out")
    message = str(error.value)
    assert field in message and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_any_local_gpt2_directory_loads(tmp_path):
    """A directory made by transformers and tokenizers themselves, not by glassgpt."""
    import tokenizers
    import transformers
    from tokenizers import decoders, models, pre_tokenizers, trainers

    hf_tok = tokenizers.Tokenizer(models.BPE())
    hf_tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf_tok.decoder = decoders.ByteLevel()
    hf_tok.train_from_iterator([CORPUS], trainers.BpeTrainer(vocab_size=330, initial_alphabet=
                                                             pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    hf_tok.add_special_tokens(["<|endoftext|>"])
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=48, vocab_size=hf_tok.get_vocab_size(),
                                     bos_token_id=None, eos_token_id=None)
    hf = transformers.GPT2LMHeadModel(config).eval()
    hf.save_pretrained(tmp_path / "gpt2")
    hf_tok.save(str(tmp_path / "gpt2" / "tokenizer.json"))

    ours = load(tmp_path / "gpt2")
    ids = hf_tok.encode(MIXED).ids
    assert ours.tokenizer.encode(MIXED, allowed_special="all") == ids
    x = torch.tensor([ids[:48]])
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, hf(x).logits, atol=1e-5, rtol=0)

    # GPT-2's older pair of tokenizer files, vocab.json + merges.txt, read the same way
    data = json.loads((tmp_path / "gpt2" / "tokenizer.json").read_text(encoding="utf-8"))
    eot = {t["content"]: t["id"] for t in data["added_tokens"]}
    (tmp_path / "gpt2" / "vocab.json").write_text(json.dumps({**data["model"]["vocab"], **eot}))
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    (tmp_path / "gpt2" / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (tmp_path / "gpt2" / "tokenizer.json").unlink()
    assert load(tmp_path / "gpt2").tokenizer.encode(MIXED, allowed_special="all") == ids


def test_hf_directories_glassgpt_cannot_run_are_refused(hf_dir, tmp_path):
    for change, words in [({"model_type": "llama"}, "GPT-2 directories only"),
                          ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
                          ({"activation_function": "silu"}, "activation_function='silu'")]:
        d = tmp_path / "bad"
        shutil.copytree(hf_dir, d, dirs_exist_ok=True)
        config = json.loads((hf_dir / "config.json").read_text())
        (d / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(CheckpointError, match=words):
            load(d)
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"pickle")
    (d / "config.json").write_text((hf_dir / "config.json").read_text())
    with pytest.raises(CheckpointError, match="no model.safetensors .pytorch_model.bin is a pickle"):
        load(d)


# --- tokenizer files: tokenizers and tiktoken read ours, ours read theirs -------------------

@pytest.mark.parametrize("kind", ["gpt2", "gpt4", "char"])
def test_tokenizers_file_round_trip_gives_identical_ids(kind, tmp_path):
    import tokenizers

    if kind == "char":
        tok = Tokenizer.chars(CORPUS + MIXED.replace("<|endoftext|>", ""), special_tokens=["<|endoftext|>"])
    else:
        tok = Tokenizer.train(CORPUS, vocab_size=400, pattern=kind, progress=False)
    path = write_tokenizers_json(tok, tmp_path / "tokenizer.json")
    theirs = tokenizers.Tokenizer.from_file(str(path))
    ids = tok.encode(MIXED, allowed_special="all")
    assert theirs.encode(MIXED).ids == ids
    assert theirs.decode(ids, skip_special_tokens=False) == MIXED
    back = read_tokenizers_json(path)
    assert type(back) is type(tok) and back.special_tokens == tok.special_tokens
    assert back.encode(MIXED, allowed_special="all") == ids
    assert import_tokenizer(path).encode(MIXED, allowed_special="all") == ids


def test_tokenizers_agree_on_many_random_texts(tok, tmp_path):
    """The merge list derived from ranks must reproduce rank-ordered BPE, not just on one text."""
    import random

    import tokenizers

    theirs = tokenizers.Tokenizer.from_file(str(write_tokenizers_json(tok, tmp_path / "t.json")))
    rng = random.Random(0)
    alphabet = list("the king sea aàé日本語😀 \n\t12.,'") + ["the ", " sea", "ing", "  "]
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
        assert theirs.encode(text).ids == tok.encode(text), repr(text)


def test_tiktoken_rank_file_round_trip_gives_identical_ids(tok, tmp_path):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    path = tmp_path / "tok.tiktoken"
    assert cli_main(["tokenizer", "export", str(_saved(tok, tmp_path)), "--to", "tiktoken", "-o", str(path)]) == 0
    theirs = tiktoken.Encoding("ours", pat_str=tok.pattern, mergeable_ranks=load_tiktoken_bpe(str(path)),
                               special_tokens=tok.special_tokens)
    ids = tok.encode(MIXED, allowed_special="all")
    assert theirs.encode(MIXED, allowed_special="all") == ids
    assert cli_main(["tokenizer", "import", str(path), "-o", str(tmp_path / "back.json")]) == 0
    assert Tokenizer.load(tmp_path / "back.json").encode(MIXED, allowed_special="all") == ids


def test_a_tokenizers_file_made_by_its_own_trainer_imports_exactly(tmp_path):
    import tokenizers
    from tokenizers import models, pre_tokenizers, trainers

    theirs = tokenizers.Tokenizer(models.BPE())
    theirs.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    theirs.train_from_iterator([CORPUS], trainers.BpeTrainer(vocab_size=400, show_progress=False,
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    theirs.add_special_tokens(["<|endoftext|>"])
    theirs.save(str(tmp_path / "tokenizer.json"))
    ours = read_tokenizers_json(tmp_path / "tokenizer.json")
    assert ours.encode(MIXED, allowed_special="all") == theirs.encode(MIXED).ids


@pytest.mark.parametrize("model, words", [
    ({"type": "WordPiece", "vocab": {"[UNK]": 0}, "unk_token": "[UNK]"}, "a WordPiece tokenizer"),
    ({"type": "Unigram", "vocab": [["a", 0.0]]}, "a Unigram tokenizer"),
    ({"type": "BPE", "vocab": {"a": 0}, "merges": [], "byte_fallback": True}, "byte_fallback"),
])
def test_tokenizers_files_of_other_kinds_are_refused_in_one_line(model, words, tmp_path, capsys):
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps({"model": model, "pre_tokenizer": None, "added_tokens": []}))
    with pytest.raises(GlassError, match=words):
        read_tokenizers_json(path)
    assert cli_main(["tokenizer", "import", str(path), "-o", str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1
    assert not (tmp_path / "t.json").exists()


def _saved(tok, tmp_path):
    tok.save(tmp_path / "tok.json")
    return tmp_path / "tok.json"


# --- TransformerLens, through the HF export --------------------------------------------------

def test_transformer_lens_runs_the_same_model(run, hf_dir):
    ours = load(run)
    x = mixed_ids(ours)
    exact = hooked_transformer(hf_dir, fold_ln=False, center_writing_weights=False, center_unembed=False)
    with torch.no_grad():
        logits, cache = exact.run_with_cache(x)
        with ours.probing(read=["blocks.1.attn.pattern", "blocks.1.resid_post"]) as probes:
            mine = ours(x).logits
    torch.testing.assert_close(logits, mine, atol=1e-5, rtol=0)
    torch.testing.assert_close(cache["pattern", 1], probes["blocks.1.attn.pattern"], atol=1e-6, rtol=0)
    torch.testing.assert_close(cache["resid_post", 1], probes["blocks.1.resid_post"], atol=1e-5, rtol=0)
    folded = hooked_transformer(run)                 # TransformerLens's defaults: same distribution
    assert folded.to_tokens(MIXED[:40]).tolist()[0] == ours.tokenizer.encode(MIXED[:40])
    with torch.no_grad():
        torch.testing.assert_close(folded(x).log_softmax(-1), mine.log_softmax(-1), atol=1e-4, rtol=0)


# --- GGUF: the file as gguf's own reader sees it ---------------------------------------------

@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_gguf_holds_our_weights_and_tokenizer(run, hf_dir, dtype, tmp_path):
    import gguf

    ours = load(run)
    path = export_gguf(run, tmp_path / "run.gguf", dtype=dtype)
    reader = gguf.GGUFReader(path)
    field = lambda name: reader.fields[name].contents()
    assert field("general.architecture") == "gpt2" and field("gpt2.block_count") == 2
    assert field("gpt2.feed_forward_length") == 144 and field("tokenizer.ggml.pre") == "gpt-2"
    vocab = json.loads((hf_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    tokens = field("tokenizer.ggml.tokens")
    assert tokens[:len(vocab)] == sorted(vocab, key=vocab.get) and tokens[ours.tokenizer.eot_id] == "<|endoftext|>"
    assert field("tokenizer.ggml.eos_token_id") == ours.tokenizer.eot_id
    tensors = {t.name: t for t in reader.tensors}
    assert "output.weight" not in tensors                       # tied: llama.cpp reuses token_embd
    qkv = tensors["blk.1.attn_qkv.weight"]
    want = ours.blocks[1].attention.qkv.weight.detach()
    got = torch.from_numpy(qkv.data.astype("float32").reshape(want.shape))
    if dtype == "f32":
        assert torch.equal(got, want)
    else:
        assert qkv.tensor_type == gguf.GGMLQuantizationType.F16 and torch.equal(got, want.half().float())
        assert tensors["blk.1.attn_qkv.bias"].tensor_type == gguf.GGMLQuantizationType.F32


def test_gguf_pads_ids_the_tokenizer_does_not_use(tok, tmp_path):
    import gguf

    model = tiny_model(tok, vocab_size=tok.vocab_size + 3)        # e.g. a vocabulary rounded up for speed
    reader = gguf.GGUFReader(export_gguf(model, tmp_path / "padded.gguf"))
    tokens, types = (reader.fields[f"tokenizer.ggml.{k}"].contents() for k in ("tokens", "token_type"))
    assert len(tokens) == tok.vocab_size + 3 and tokens[-1] == f"[PAD{tok.vocab_size + 2}]"
    assert types[-3:] == [gguf.TokenType.UNUSED] * 3 and types[tok.eot_id] == gguf.TokenType.CONTROL


def test_gguf_refuses_what_llama_cpp_cannot_tokenize(tmp_path):
    chars = Tokenizer.chars("abc")
    with pytest.raises(GlassError, match="not a char tokenizer"):
        export_gguf(tiny_model(chars), tmp_path / "c.gguf")
    custom = Tokenizer.train(CORPUS, vocab_size=300, pattern=r"\S+|\s+", progress=False)
    with pytest.raises(GlassError, match="custom regex"):
        export_gguf(tiny_model(custom), tmp_path / "c.gguf")
    with pytest.raises(GlassError, match="has none"):
        export_gguf(tiny_model(), tmp_path / "c.gguf")
    assert not (tmp_path / "c.gguf").exists()


# --- the command line and bad input ---------------------------------------------------------

def test_export_command_writes_refuses_and_forces(run, tmp_path, capsys):
    out = tmp_path / "hf"
    assert cli_main(["export", str(run), "--to", "hf", "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    before = (out / "model.safetensors").read_bytes()
    assert cli_main(["export", str(run), "--to", "hf", "-o", str(out)]) == 2           # exists
    assert "already exists" in capsys.readouterr().err
    assert cli_main(["export", str(run), "--to", "hf", "-o", str(out), "--force", "--dtype", "f16"]) == 0
    assert (out / "model.safetensors").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]                      # no temporaries left
    assert cli_main(["export", str(run), "--to", "gguf", "-o", str(tmp_path / "m.gguf")]) == 0
    assert cli_main(["export", str(run), "--to", "gguf", "-o", str(tmp_path / "m.gguf")]) == 2


@pytest.mark.parametrize("case", ["not-a-run", "missing", "force-over-run", "force-over-other-files", "gguf-dir"])
def test_export_command_bad_input_is_one_line_exit_2(case, run, tmp_path, capsys):
    target, extra, source = tmp_path / "out", [], str(run)
    if case == "not-a-run":
        (tmp_path / "empty").mkdir()
        source = str(tmp_path / "empty")
    elif case == "missing":
        source = str(tmp_path / "nothing")
    elif case == "force-over-run":
        target, extra = run, ["--force"]
    elif case == "force-over-other-files":
        target.mkdir()
        (target / "notes.txt").write_text("keep me")
        extra = ["--force"]
    to = "gguf" if case == "gguf-dir" else "hf"
    if case == "gguf-dir":
        target.mkdir()
        extra = ["--force"]
    listing = sorted(os.listdir(run))
    assert cli_main(["export", source, "--to", to, "-o", str(target), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert sorted(os.listdir(run)) == listing and load(run) is not None                 # the run is untouched
    if case == "force-over-other-files":
        assert (target / "notes.txt").read_text() == "keep me"


def test_a_failed_export_leaves_the_earlier_one_whole(run, hf_dir, tmp_path, monkeypatch):
    from glassgpt.interop import hf as hf_module

    out = shutil.copytree(hf_dir, tmp_path / "hf")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def crash(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(hf_module, "save_file", crash)
    with pytest.raises(OSError):
        export_hf(run, out, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_token_text_is_gpt2_byte_level():
    assert token_to_text(b" the") == "Ġthe" and token_to_text(b"\n") == "Ċ" and token_to_text("é".encode()) == "Ã©"
