"""GGUF: one file that llama.cpp (and the tools built on it) runs, tokenizer inside.

Written with `gguf`, the GGUF project's own Python writer, in llama.cpp's `gpt2`
architecture: the same tensors as GPT-2 under llama.cpp's names (`token_embd`,
`position_embd`, `blk.N.attn_qkv`, ...), the tied unembedding left out (llama.cpp reuses
the token embedding), and the vocabulary as byte-level BPE text with the merge list that
makes llama.cpp's merge-ordered BPE give our ids (see tokenizer_files.py).

    f32   every tensor in float32: the same numbers as glassgpt
    f16   matrices in float16 (half the file), norms and biases in float32

Only what llama.cpp's GPT-2 runs is written: tanh-GELU (its only activation), and a
byte-level BPE split with GPT-2's pattern (`tokenizer.ggml.pre` "gpt-2") or GPT-4's
(llama.cpp's "llama-bpe", which, like tiktoken, takes a whole piece that is a token).
Anything else is refused with the field to change.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import GlassError
from ..tokenizer import BPETokenizer
from ..tokenizer.pretokenize import PATTERNS
from .hf import as_model, check_gpt2, parse_dtype
from .output import new_file
from .tokenizer_files import merges_from_ranks, token_to_text

ARCH = "gpt2"
# our split pattern -> llama.cpp's name for the same pre-tokenizer
PRE_TOKENIZERS = {PATTERNS["gpt2"]: "gpt-2", PATTERNS["gpt4"]: "llama-bpe"}


def export_gguf(model_or_run, path, dtype="f32", force: bool = False) -> Path:
    """Write `model_or_run` (a GPT or a run directory) as a GGUF file llama.cpp runs.

    dtype: "f32" (exact) or "f16" (matrices in half precision). An existing `path` is
    refused unless `force`; the file appears whole or not at all."""
    try:
        import gguf
    except ImportError:
        raise GlassError("GGUF export needs the `gguf` package: pip install gguf") from None
    model = as_model(model_or_run)
    check_gpt2(model.config, "GGUF (llama.cpp's gpt2)", activations=("gelu",))
    dtype = parse_dtype(dtype)
    tokens, types, merges, pre = gguf_vocab(model)
    c = model.config
    with new_file(path, force) as tmp:
        writer = gguf.GGUFWriter(str(tmp), ARCH)
        writer.add_name(Path(path).stem)
        writer.add_context_length(c.context_length)
        writer.add_embedding_length(c.d_model)
        writer.add_feed_forward_length(c.d_ff)
        writer.add_block_count(c.n_layer)
        writer.add_head_count(c.n_head)
        writer.add_layer_norm_eps(c.layer_norm_eps)
        writer.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == torch.float32 else gguf.LlamaFileType.MOSTLY_F16)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges(merges)
        eot = model.tokenizer.eot_id
        if eot is not None:
            writer.add_bos_token_id(eot)
            writer.add_eos_token_id(eot)
        writer.add_add_bos_token(False)
        for name, tensor in gguf_tensors(model, gguf).items():
            array = tensor.detach().to("cpu", torch.float32).numpy()
            if dtype == torch.float16 and array.ndim == 2:       # matrices; 1-D norms and biases stay f32
                array = array.astype(np.float16)
            writer.add_tensor(name, np.ascontiguousarray(array))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return Path(path)


def gguf_tensors(model, gguf) -> dict[str, torch.Tensor]:
    """`model`'s weights under llama.cpp's GPT-2 tensor names, in (out, in) order as
    PyTorch keeps them (the writer records the dimensions in ggml's reversed order)."""
    T, names = gguf.MODEL_TENSOR, gguf.TENSOR_NAMES
    ours = model.state_dict()
    tensors = {f"{names[T.TOKEN_EMBD]}.weight": ours["embed.weight"],
               f"{names[T.POS_EMBD]}.weight": ours["positional_encoding.weight"]}
    per_block = {"attn_norm": T.ATTN_NORM, "attention.qkv": T.ATTN_QKV, "attention.proj": T.ATTN_OUT,
                 "ff_norm": T.FFN_NORM, "feed_forward.up": T.FFN_UP, "feed_forward.down": T.FFN_DOWN}
    for i in range(model.config.n_layer):
        for mine, theirs in per_block.items():
            for part in ("weight", "bias"):
                tensors[f"{names[theirs].format(bid=i)}.{part}"] = ours[f"blocks.{i}.{mine}.{part}"]
    for part in ("weight", "bias"):
        tensors[f"{names[T.OUTPUT_NORM]}.{part}"] = ours[f"final_norm.{part}"]
    return tensors


def gguf_vocab(model) -> tuple[list[str], list[int], list[str], str]:
    """Token texts, token types, merges and llama.cpp's pre-tokenizer name for `model`'s
    tokenizer; ids the tokenizer does not use (the model may have more) are padding."""
    tok = model.tokenizer
    if tok is None:
        raise GlassError("GGUF carries the tokenizer, and this model has none: save the run with its tokenizer")
    if not isinstance(tok, BPETokenizer):
        raise GlassError(f"tokenizer: llama.cpp reads byte-level BPE vocabularies, not a {tok.kind} tokenizer; "
                         "export to hf instead, or train with a BPE tokenizer")
    pre = PRE_TOKENIZERS.get(tok.pattern)
    if pre is None:
        raise GlassError("tokenizer pattern: llama.cpp knows GPT-2's and GPT-4's split patterns (gpt2, gpt4), "
                         "not a custom regex; export to hf instead")
    vocab_size = model.config.vocab_size
    if tok.vocab_size > vocab_size:
        raise GlassError(f"the tokenizer has {tok.vocab_size} ids but the model only {vocab_size}")
    normal, control, unused = 1, 3, 5                 # gguf.TokenType
    tokens = [token_to_text(t) for t in tok.vocab]
    types = [normal] * len(tokens)
    specials = {i: name for name, i in tok.special_tokens.items()}
    for i in range(len(tokens), vocab_size):
        tokens.append(specials.get(i, f"[PAD{i}]"))
        types.append(control if i in specials else unused)
    merges = [f"{token_to_text(a)} {token_to_text(b)}" for a, b in merges_from_ranks(tok.vocab)]
    return tokens, types, merges, pre
