"""Moving weights between Hugging Face transformers' GPT-2 and ours.

HF's GPT-2 stores its linear layers as `Conv1D` with the weight transposed
(in_features x out_features); ours are `nn.Linear` (out x in).
"""
from __future__ import annotations

import torch

from .config import GPTConfig
from .gpt import GPT

# ours <- theirs (per block; {i} is the layer), and whether the weight is transposed
_BLOCK = {
    "attn_norm.weight": ("ln_1.weight", False), "attn_norm.bias": ("ln_1.bias", False),
    "attention.qkv.weight": ("attn.c_attn.weight", True), "attention.qkv.bias": ("attn.c_attn.bias", False),
    "attention.proj.weight": ("attn.c_proj.weight", True), "attention.proj.bias": ("attn.c_proj.bias", False),
    "ff_norm.weight": ("ln_2.weight", False), "ff_norm.bias": ("ln_2.bias", False),
    "feed_forward.up.weight": ("mlp.c_fc.weight", True), "feed_forward.up.bias": ("mlp.c_fc.bias", False),
    "feed_forward.down.weight": ("mlp.c_proj.weight", True), "feed_forward.down.bias": ("mlp.c_proj.bias", False),
}


def config_from_hf(hf_config) -> GPTConfig:
    return GPTConfig(vocab_size=hf_config.vocab_size, context_length=hf_config.n_positions,
                     d_model=hf_config.n_embd, n_layer=hf_config.n_layer, n_head=hf_config.n_head,
                     d_ff=hf_config.n_inner or 4 * hf_config.n_embd, layer_norm_eps=hf_config.layer_norm_epsilon,
                     activation="gelu" if hf_config.activation_function in ("gelu_new", "gelu_pytorch_tanh")
                     else "gelu_exact" if hf_config.activation_function == "gelu" else "relu")


@torch.no_grad()
def from_hf_gpt2(hf_model, tokenizer=None) -> GPT:
    """Our GPT with the weights of a transformers `GPT2LMHeadModel` (any size)."""
    config = config_from_hf(hf_model.config)
    model = GPT(config, tokenizer=tokenizer)
    theirs = {k.removeprefix("transformer."): v for k, v in hf_model.state_dict().items()}
    ours = model.state_dict()
    ours["embed.weight"].copy_(theirs["wte.weight"])
    ours["positional_encoding.weight"].copy_(theirs["wpe.weight"])
    ours["final_norm.weight"].copy_(theirs["ln_f.weight"])
    ours["final_norm.bias"].copy_(theirs["ln_f.bias"])
    for i in range(config.n_layer):
        for mine, (their, transpose) in _BLOCK.items():
            w = theirs[f"h.{i}.{their}"]
            ours[f"blocks.{i}.{mine}"].copy_(w.t() if transpose else w)
    return model.eval()


def from_pretrained(name: str = "gpt2") -> GPT:
    """Download GPT-2 weights (gpt2, gpt2-medium, ...) from the Hugging Face hub, with
    GPT-2's tokenizer taken from tiktoken. Needs network access, `transformers` and `tiktoken`.
    """
    import tiktoken
    from transformers import GPT2LMHeadModel

    from ..tokenizer.bpe import BPETokenizer

    encoding = tiktoken.get_encoding("gpt2")
    ranks = encoding._mergeable_ranks                       # bytes -> rank
    tokenizer = BPETokenizer(sorted(ranks, key=ranks.get), "gpt2", {"<|endoftext|>": encoding.eot_token})
    return from_hf_gpt2(GPT2LMHeadModel.from_pretrained(name), tokenizer=tokenizer)
