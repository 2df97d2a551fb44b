"""Hugging Face GPT-2 directories: write a glassgpt model as one, read any local one back.

    run/  ──export_hf──▶  hf/config.json            GPT-2's config (model_type "gpt2")
                          hf/model.safetensors      the weights under GPT-2's names
                          hf/tokenizer.json         the tokenizer as a `tokenizers` file
                          hf/tokenizer_config.json  tells transformers to read it as it is
    hf/   ──load_hf──▶   GPT (config, weights, tokenizer), bit-identical to what was exported

`AutoModelForCausalLM.from_pretrained("hf")` and `AutoTokenizer.from_pretrained("hf")` load
the directory without glassgpt. Writing needs neither transformers nor tokenizers.

GPT-2 is one point of glassgpt's design space: learned positions, LayerNorm before each
sublayer, biases everywhere, the unembedding tied to the embedding. A model elsewhere in
that space is refused with a message naming the field (`gpt2_incompatibilities`), never
exported wrong. transformers' GPT-2 reads its activation from the config, so GPT-2's
tanh-GELU, exact GELU and ReLU all export.

HF's GPT-2 stores each linear layer as `Conv1D`, weight transposed (in x out); ours are
`nn.Linear` (out x in).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import CheckpointError, GlassError
from ..fileio import atomic_write_text
from ..model import GPT, GPTConfig
from ..model import load as load_run
from .output import new_directory
from .tokenizer_files import from_tokenizers_json, read_tokenizers_json, tokenizer_config, write_tokenizers_json

CONFIG, WEIGHTS, TOKENIZER, TOKENIZER_CONFIG = "config.json", "model.safetensors", "tokenizer.json", \
    "tokenizer_config.json"

# ours -> theirs (per block) and whether the weight is transposed (Conv1D vs nn.Linear)
BLOCK_NAMES = {
    "attn_norm.weight": ("ln_1.weight", False), "attn_norm.bias": ("ln_1.bias", False),
    "attention.qkv.weight": ("attn.c_attn.weight", True), "attention.qkv.bias": ("attn.c_attn.bias", False),
    "attention.proj.weight": ("attn.c_proj.weight", True), "attention.proj.bias": ("attn.c_proj.bias", False),
    "ff_norm.weight": ("ln_2.weight", False), "ff_norm.bias": ("ln_2.bias", False),
    "feed_forward.up.weight": ("mlp.c_fc.weight", True), "feed_forward.up.bias": ("mlp.c_fc.bias", False),
    "feed_forward.down.weight": ("mlp.c_proj.weight", True), "feed_forward.down.bias": ("mlp.c_proj.bias", False),
}
MODEL_NAMES = {"embed.weight": "wte.weight", "positional_encoding.weight": "wpe.weight",
               "final_norm.weight": "ln_f.weight", "final_norm.bias": "ln_f.bias"}

# our activation <-> transformers' activation_function
ACTIVATION_TO_HF = {"gelu": "gelu_new", "gelu_exact": "gelu", "relu": "relu"}
ACTIVATION_FROM_HF = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu_fast": "gelu",
                      "gelu": "gelu_exact", "relu": "relu"}
DTYPES = {"f32": torch.float32, "float32": torch.float32, "f16": torch.float16, "float16": torch.float16}


# --- what GPT-2 can express -------------------------------------------------------------

def gpt2_incompatibilities(config: GPTConfig, activations=("gelu", "gelu_exact", "relu")) -> list[str]:
    """One message per field of `config` that GPT-2's architecture cannot express."""
    problems = []
    if config.positional != "learned":
        problems.append(f"positional={config.positional!r}: GPT-2 adds a learned vector per position "
                        "(positional='learned')")
    if config.norm != "pre":
        problems.append(f"norm={config.norm!r}: GPT-2 normalises before each sublayer (norm='pre')")
    if not config.bias:
        problems.append("bias=False: GPT-2 has biases in every linear layer and LayerNorm (bias=True)")
    if not config.tie_embeddings:
        problems.append("tie_embeddings=False: GPT-2's unembedding is the token embedding, without a bias "
                        "(tie_embeddings=True)")
    if config.activation not in activations:
        problems.append(f"activation={config.activation!r}: this format's GPT-2 runs "
                        f"{' or '.join(repr(a) for a in activations)} only")
    return problems


def check_gpt2(config: GPTConfig, target: str, activations=("gelu", "gelu_exact", "relu")) -> None:
    problems = gpt2_incompatibilities(config, activations)
    if problems:
        raise GlassError(f"cannot export to {target}: {'; '.join(problems)}")


def as_model(model_or_run, device="cpu") -> GPT:
    """A GPT given as itself or as a run directory."""
    if isinstance(model_or_run, GPT):
        return model_or_run
    if isinstance(model_or_run, (str, os.PathLike)):
        return load_run(model_or_run, device=device)
    raise GlassError(f"expected a GPT or a run directory, got {type(model_or_run).__name__}")


def parse_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in (torch.float32, torch.float16):
        return dtype
    if dtype in DTYPES:
        return DTYPES[dtype]
    raise GlassError(f"unknown export dtype {dtype!r}: choose f32 or f16")


# --- export -----------------------------------------------------------------------------

def hf_config(model: GPT, dtype: torch.dtype = torch.float32) -> dict:
    """GPT-2's config.json for `model`."""
    c, tok = model.config, model.tokenizer
    eot = tok.eot_id if tok is not None else None
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": c.vocab_size, "n_positions": c.context_length, "n_ctx": c.context_length, "n_embd": c.d_model,
        "n_layer": c.n_layer, "n_head": c.n_head, "n_inner": c.d_ff,
        "activation_function": ACTIVATION_TO_HF[c.activation], "layer_norm_epsilon": c.layer_norm_eps,
        "resid_pdrop": c.dropout, "embd_pdrop": c.dropout, "attn_pdrop": c.dropout,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True, "initializer_range": 0.02, "use_cache": True,
        "bos_token_id": eot, "eos_token_id": eot, "torch_dtype": str(dtype).removeprefix("torch."),
    }


@torch.no_grad()
def hf_state_dict(model: GPT, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """`model`'s weights under GPT-2's names (`transformer.h.0.attn.c_attn.weight`, ...)."""
    ours = model.state_dict()
    theirs = {f"transformer.{hf}": ours[name] for name, hf in MODEL_NAMES.items()}
    for i in range(model.config.n_layer):
        for name, (hf, transpose) in BLOCK_NAMES.items():
            w = ours[f"blocks.{i}.{name}"]
            theirs[f"transformer.h.{i}.{hf}"] = w.t() if transpose else w
    return {k: v.detach().to("cpu", dtype).contiguous() for k, v in theirs.items()}


def export_hf(model_or_run, path, dtype="f32", force: bool = False) -> Path:
    """Write `model_or_run` (a GPT or a run directory) as a Hugging Face GPT-2 directory.

    dtype: "f32" (exact) or "f16". An existing `path` is refused unless `force`; the
    directory appears whole or not at all."""
    model = as_model(model_or_run)
    check_gpt2(model.config, "a Hugging Face GPT-2")
    dtype = parse_dtype(dtype)
    tok = model.tokenizer
    if tok is not None and tok.vocab_size > model.config.vocab_size:
        raise GlassError(f"the tokenizer has {tok.vocab_size} ids but the model only {model.config.vocab_size}")
    with new_directory(path, force) as tmp:
        save_file(hf_state_dict(model, dtype), str(tmp / WEIGHTS), metadata={"format": "pt"})
        atomic_write_text(tmp / CONFIG, json.dumps(hf_config(model, dtype), indent=2) + "\n")
        if tok is not None:
            write_tokenizers_json(tok, tmp / TOKENIZER)
            config = tokenizer_config(tok, model.config.context_length)
            atomic_write_text(tmp / TOKENIZER_CONFIG, json.dumps(config, indent=2) + "\n")
    return Path(path)


# --- import -----------------------------------------------------------------------------

def config_from_hf(hf) -> GPTConfig:
    """Our GPTConfig for a transformers GPT-2 config (a dict or a `GPT2Config`), or a
    GlassError naming the setting glassgpt cannot run."""
    hf = hf if isinstance(hf, dict) else hf.to_dict()
    if hf.get("model_type") != "gpt2":
        raise CheckpointError(f"a {hf.get('model_type')!r} model: glassgpt reads GPT-2 directories only")
    refused = {"scale_attn_by_inverse_layer_idx": True, "add_cross_attention": True,
               "scale_attn_weights": False, "tie_word_embeddings": False}
    for field, bad in refused.items():
        if hf.get(field, not bad) == bad:
            raise CheckpointError(f"GPT-2 with {field}={bad}: glassgpt's model does not run this variant")
    activation = ACTIVATION_FROM_HF.get(hf.get("activation_function", "gelu_new"))
    if activation is None:
        raise CheckpointError(f"activation_function={hf.get('activation_function')!r}: glassgpt runs "
                              f"{', '.join(ACTIVATION_FROM_HF)}")
    try:
        return GPTConfig(vocab_size=hf["vocab_size"], context_length=hf["n_positions"], d_model=hf["n_embd"],
                         n_layer=hf["n_layer"], n_head=hf["n_head"], d_ff=hf.get("n_inner") or 4 * hf["n_embd"],
                         layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5), activation=activation,
                         dropout=hf.get("resid_pdrop", 0.1))
    except KeyError as e:
        raise CheckpointError(f"the GPT-2 config lacks {e.args[0]!r}") from None


@torch.no_grad()
def load_gpt2_weights(model: GPT, theirs: dict[str, torch.Tensor], where: str = "the weights") -> GPT:
    """Copy GPT-2 weights (names with or without `transformer.`) into `model`."""
    theirs = {k.removeprefix("transformer."): v for k, v in theirs.items()}
    ours = model.state_dict()
    wanted = {f"blocks.{i}.{name}": (f"h.{i}.{hf}", t) for i in range(model.config.n_layer)
              for name, (hf, t) in BLOCK_NAMES.items()}
    wanted.update({name: (hf, False) for name, hf in MODEL_NAMES.items()})
    for name, (hf, transpose) in wanted.items():
        if hf not in theirs:
            raise CheckpointError(f"{where} lack {hf}: not a GPT-2 of this config")
        w = theirs[hf].t() if transpose else theirs[hf]
        if w.shape != ours[name].shape:
            raise CheckpointError(f"{where}: {hf} has shape {tuple(theirs[hf].shape)}, config.json says "
                                  f"{tuple(ours[name].shape)}")
        ours[name].copy_(w)
    return model


def load_hf(path, device: str | torch.device = "cpu", tokenizer: bool = True) -> GPT:
    """Load a local Hugging Face GPT-2 directory (config.json + model.safetensors, and the
    tokenizer from tokenizer.json or vocab.json + merges.txt) as a GPT in eval mode."""
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise CheckpointError(f"{path} has no {CONFIG}: give a Hugging Face GPT-2 directory")
    try:
        config = config_from_hf(json.loads((path / CONFIG).read_text(encoding="utf-8")))
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path / CONFIG} is not valid JSON ({e})") from None
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if not (path / WEIGHTS).is_file():
        other = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.safetensors.index.json")]
        hint = (f" ({other[0]} is a pickle or sharded file glassgpt does not read: re-save with "
                "save_pretrained(dir, safe_serialization=True, max_shard_size='100GB'))") if other else ""
        raise CheckpointError(f"{path} has no {WEIGHTS}{hint}")
    tok = hf_tokenizer(path) if tokenizer else None
    model = GPT(config, tokenizer=tok)
    try:
        with safe_open(str(path / WEIGHTS), "pt") as f:
            theirs = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(f"{path / WEIGHTS} is corrupt or truncated ({str(e)[:120]})") from None
    load_gpt2_weights(model, theirs, str(path / WEIGHTS))
    return model.to(device).eval()


def hf_tokenizer(path):
    """The tokenizer of a Hugging Face directory, or None if it has none."""
    path = Path(path)
    if (path / TOKENIZER).is_file():
        return read_tokenizers_json(path / TOKENIZER)
    if (path / "vocab.json").is_file() and (path / "merges.txt").is_file():     # GPT-2's older pair of files
        try:
            vocab = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
            lines = (path / "merges.txt").read_text(encoding="utf-8").splitlines()
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{path}: unreadable vocab.json/merges.txt ({e})") from None
        merges = [line for line in lines if line and not line.startswith("#version")]
        specials = [{"id": vocab[name], "content": name} for name in ("<|endoftext|>",) if name in vocab]
        data = {"model": {"type": "BPE", "vocab": vocab, "merges": merges}, "added_tokens": specials,
                "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}}
        return from_tokenizers_json(data, str(path / "vocab.json"))
    return None


# --- transformers objects and the hub -----------------------------------------------------

def from_hf_gpt2(hf_model, tokenizer=None) -> GPT:
    """Our GPT with the weights of a transformers `GPT2LMHeadModel` (any size)."""
    model = GPT(config_from_hf(hf_model.config), tokenizer=tokenizer)
    return load_gpt2_weights(model, hf_model.state_dict(), "the transformers model").eval()


def from_pretrained(name: str = "gpt2") -> GPT:
    """GPT-2 weights (gpt2, gpt2-medium, ...) from the Hugging Face hub, or a local GPT-2
    directory. A hub name needs network access, `transformers` and `tiktoken` (for GPT-2's
    tokenizer)."""
    if Path(name).is_dir():
        return load_hf(name)
    import tiktoken
    from transformers import GPT2LMHeadModel

    from ..tokenizer.bpe import BPETokenizer

    encoding = tiktoken.get_encoding("gpt2")
    ranks = encoding._mergeable_ranks                       # bytes -> rank
    tokenizer = BPETokenizer(sorted(ranks, key=ranks.get), "gpt2", {"<|endoftext|>": encoding.eot_token})
    return from_hf_gpt2(GPT2LMHeadModel.from_pretrained(name), tokenizer=tokenizer)
