"""Into TransformerLens: a glassgpt model as a `HookedTransformer`, through the HF export.

    from glassgpt.interop import hooked_transformer
    lens_model = hooked_transformer("run")              # a run, a GPT, or an export_hf directory
    logits, cache = lens_model.run_with_cache("ROMEO: I will not speak of it")
    cache["pattern", 0]                                 # == model.probing(read=["blocks.0.attn.pattern"])

The steps, for anyone who wants them by hand:

    glassgpt export run --to hf -o run-hf                        # 1. a GPT-2 directory
    hf = AutoModelForCausalLM.from_pretrained("run-hf")         # 2. transformers reads it
    cfg = HookedTransformerConfig(..., d_mlp=hf.config.n_inner)  # 3. the shape, from config.json
    model = HookedTransformer(cfg, AutoTokenizer.from_pretrained("run-hf"))
    model.load_and_process_state_dict(convert_gpt2_weights(hf, cfg))   # 4. TransformerLens's own conversion

`HookedTransformer.from_pretrained` only takes the names of models on its list, and its
GPT-2 config reader assumes d_mlp = 4 * d_model; building the config from config.json
handles any GPT-2 shape. By default TransformerLens folds the LayerNorms and centres the
weights, as its `from_pretrained` does: the logits then differ from ours by a constant per
position (the softmax is the same); pass `fold_ln=False, center_writing_weights=False,
center_unembed=False` for the same logits. It prepends no BOS token, as glassgpt does not.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

from ..errors import GlassError
from ..model import GPT
from .hf import as_model, export_hf


def hooked_transformer(model_or_path, *, fold_ln: bool = True, center_writing_weights: bool = True,
                       center_unembed: bool = True, device: str = "cpu", **processing):
    """A TransformerLens `HookedTransformer` with the weights and tokenizer of a glassgpt GPT,
    a run directory, or a directory written by `export_hf`. Needs `transformer_lens`."""
    if isinstance(model_or_path, (str, os.PathLike)) and _is_hf_export(model_or_path):
        return _from_hf_directory(Path(model_or_path), fold_ln, center_writing_weights, center_unembed,
                                  device, processing)
    model = as_model(model_or_path) if not isinstance(model_or_path, GPT) else model_or_path
    with tempfile.TemporaryDirectory(prefix="glassgpt-hf-") as tmp:
        export_hf(model, Path(tmp) / "hf")
        return _from_hf_directory(Path(tmp) / "hf", fold_ln, center_writing_weights, center_unembed,
                                  device, processing)


def _from_hf_directory(path: Path, fold_ln, center_writing_weights, center_unembed, device, processing):
    try:
        from transformer_lens import HookedTransformer, HookedTransformerConfig
        from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        raise GlassError(f"loading into TransformerLens needs {e.name}: pip install transformer-lens") from None
    hf = AutoModelForCausalLM.from_pretrained(path).eval()
    c = hf.config
    cfg = HookedTransformerConfig(
        d_model=c.n_embd, d_head=c.n_embd // c.n_head, n_heads=c.n_head, d_mlp=c.n_inner or 4 * c.n_embd,
        n_layers=c.n_layer, n_ctx=c.n_positions, d_vocab=c.vocab_size, act_fn=c.activation_function,
        eps=c.layer_norm_epsilon, normalization_type="LN", positional_embedding_type="standard",
        original_architecture="GPT2LMHeadModel", model_name=path.name, default_prepend_bos=False,
        device=device)
    tokenizer = AutoTokenizer.from_pretrained(path) if (path / "tokenizer.json").is_file() else None
    with warnings.catch_warnings():      # TransformerLens 3 points to its TransformerBridge; we ask for the classic
        warnings.filterwarnings("ignore", "HookedTransformer is deprecated", DeprecationWarning)
        model = HookedTransformer(cfg, tokenizer, move_to_device=False)
    model.load_and_process_state_dict(convert_gpt2_weights(hf, cfg), fold_ln=fold_ln,
                                      center_writing_weights=center_writing_weights,
                                      center_unembed=center_unembed, **processing)
    return model.to(device).eval()


def _is_hf_export(path) -> bool:
    from ..model.checkpoint import _is_hf_directory
    return Path(path).is_dir() and _is_hf_directory(Path(path))
