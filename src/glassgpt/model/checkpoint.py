"""Checkpoints: a directory a person can open, loadable in one call.

    run/
      config.json          the GPTConfig
      model.safetensors    the weights (safetensors: no pickle, safe to load from anyone),
                           with the architecture and its hash in the metadata
      tokenizer.json       the tokenizer, when the model has one

Every file goes through glassgpt.fileio's atomic writer (temporary file, fsync, rename),
weights first: if the config cannot follow, the weights' own copy of it says so at load.

Loading trusts nothing: config.json's fields are type-checked, then compared with the
architecture stored in the weights (an edited n_head is caught, though every shape still
fits) and with the tensor shapes in the safetensors header, all before the model is built,
so a wrong vocab_size never allocates anything and the error names config.json and the field.

`load` also reads a local Hugging Face GPT-2 directory (its config.json says
"model_type": "gpt2"), through `glassgpt.interop.hf`.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model

from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_path, atomic_write_text, make_dirs
from .config import GPTConfig
from .gpt import GPT

CONFIG, WEIGHTS, TOKENIZER = "config.json", "model.safetensors", "tokenizer.json"


def save(model: GPT, path: str | os.PathLike, tokenizer=None, metadata: dict | None = None) -> Path:
    """Write config, tokenizer and weights into directory `path` (created if needed)."""
    path = make_dirs(path)
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    metadata = {**{k: str(v) for k, v in (metadata or {}).items()},
                "config": json.dumps(model.config.architecture(), sort_keys=True),
                "config_sha256": model.config.fingerprint()}
    with atomic_path(path / WEIGHTS) as tmp:
        save_model(model, str(tmp), metadata=metadata)
    if tokenizer is not None:
        tokenizer.save(path / TOKENIZER)
    atomic_write_text(path / CONFIG, model.config.to_json())
    return path


def load(path: str | os.PathLike, device: str | torch.device = "cpu", tokenizer: bool = True) -> GPT:
    """Load a checkpoint directory written by `save` (or by training), or a local Hugging
    Face GPT-2 directory, as a GPT in eval mode."""
    path = Path(path)
    if path.is_dir() and _is_hf_directory(path):
        from ..interop.hf import load_hf   # the interop layer, imported on use: it builds on this module
        return load_hf(path, device=device, tokenizer=tokenizer)
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory: give a run directory made by `glassgpt train`")
    for needed in (CONFIG, WEIGHTS):
        if not (path / needed).is_file():
            raise CheckpointError(f"{path} is not a checkpoint (no {needed}): give a run directory "
                                  f"made by `glassgpt train`")
    config = read_config(path)
    check_weights_fit(path, config)
    tok = None
    if tokenizer and (path / TOKENIZER).is_file():
        from ..tokenizer import Tokenizer
        tok = Tokenizer.load(path / TOKENIZER)
    model = GPT(config, tokenizer=tok)
    try:
        missing, unexpected = load_model(model, str(path / WEIGHTS), strict=False)
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{path / WEIGHTS} is corrupt or truncated ({_first_line(e)}): "
                              f"restore it from a backup or re-train") from e
    # the unembedding shares the embedding matrix when tied: it is stored once
    missing = [m for m in missing if not (config.tie_embeddings and m == "unembed.weight")]
    if missing or unexpected:
        raise CheckpointError(f"{path / WEIGHTS} does not match config.json (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}): the files come from different models")
    return model.to(device).eval()


def _is_hf_directory(path: Path) -> bool:
    try:
        data = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "model_type" in data


def read_config(path: str | os.PathLike) -> GPTConfig:
    file = Path(path) / CONFIG
    try:
        return GPTConfig.from_dict(json.loads(file.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file} is not valid JSON ({_first_line(e)}): restore it or re-train") from e
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{file}: {_first_line(e)}: restore it or re-train") from e
    except OSError as e:
        raise CheckpointError(f"{file} cannot be read ({e.strerror}): check its permissions") from e


# -- checking config.json against the weights, before anything is built --------------------------
def read_header(file: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Tensor shapes and metadata from a safetensors header (the tensors are not read)."""
    try:
        with safe_open(str(file), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}, f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{file} is corrupt or truncated ({_first_line(e)}): "
                              f"restore it from a backup or re-train") from e


def check_weights_fit(path: Path, config: GPTConfig) -> None:
    """config.json must be the architecture the weights were trained with: compared with the
    copy in the weights' metadata, then shape by shape with the safetensors header."""
    shapes, metadata = read_header(path / WEIGHTS)
    file = path / CONFIG
    try:
        trained = json.loads(metadata.get("config", "null"))
    except ValueError:
        trained = None
    if isinstance(trained, dict):
        for name, value in config.architecture().items():
            if name in trained and trained[name] != value:
                raise CheckpointError(f"{file}: {name} is {value!r} but the weights were trained with "
                                      f"{trained[name]!r}: set it back to {trained[name]!r}")
    expected = expected_shapes(config.replace(dropout=0.0))
    if expected == shapes:
        return
    inferred = fields_from_shapes(shapes)
    for name, value in inferred.items():
        if getattr(config, name) != value:
            raise CheckpointError(f"{file}: {name} is {getattr(config, name)!r} but {WEIGHTS} holds a model "
                                  f"with {name} {value!r}: fix config.json (or use the weights it belongs to)")
    for name in sorted(set(expected) | set(shapes)):
        if expected.get(name) != shapes.get(name):
            raise CheckpointError(f"{file} does not describe {WEIGHTS}: tensor {name} is "
                                  f"{list(shapes[name]) if name in shapes else 'missing'} in the weights but "
                                  f"config.json implies {list(expected[name]) if name in expected else 'none'}: "
                                  f"fix config.json (or use the weights it belongs to)")


@functools.lru_cache(maxsize=16)
def expected_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """The tensors `save` writes for `config`, from a model built on the meta device (no memory)."""
    with torch.device("meta"):
        model = GPT(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if config.tie_embeddings:
        shapes.pop("unembed.weight", None)
    return shapes


def fields_from_shapes(shapes: dict[str, tuple[int, ...]]) -> dict:
    """The config fields that can be read off the tensor shapes alone."""
    fields: dict = {}
    if len(shapes.get("embed.weight", ())) == 2:
        fields["vocab_size"], fields["d_model"] = shapes["embed.weight"]
    layers = {int(k.split(".")[1]) for k in shapes if k.startswith("blocks.") and k.split(".")[1].isdigit()}
    fields["n_layer"] = max(layers) + 1 if layers else 0
    if len(shapes.get("blocks.0.feed_forward.up.weight", ())) == 2:
        fields["d_ff"] = shapes["blocks.0.feed_forward.up.weight"][0]
    if len(shapes.get("positional_encoding.weight", ())) == 2:
        fields["context_length"] = shapes["positional_encoding.weight"][0]
    fields["tie_embeddings"] = "unembed.weight" not in shapes
    if layers:
        fields["bias"] = "blocks.0.attention.qkv.bias" in shapes
    return fields


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
