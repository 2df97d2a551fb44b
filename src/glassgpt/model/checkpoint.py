"""Checkpoints: a directory a person can open, loadable in one call.

    run/
      config.json          the GPTConfig
      model.safetensors    the weights (safetensors: no pickle, safe to load from anyone)
      tokenizer.json       the tokenizer, when the model has one

Every file is written to a temporary name and renamed into place, so a crash while
saving leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_path, atomic_write_text
from .config import GPTConfig
from .gpt import GPT

CONFIG, WEIGHTS, TOKENIZER = "config.json", "model.safetensors", "tokenizer.json"


def save(model: GPT, path: str | os.PathLike, tokenizer=None, metadata: dict | None = None) -> Path:
    """Write config, weights and tokenizer into directory `path` (created if needed)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    with atomic_path(path / WEIGHTS) as tmp:
        save_model(model, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
    if tokenizer is not None:
        tokenizer.save(path / TOKENIZER)
    atomic_write_text(path / CONFIG, model.config.to_json())
    return path


def load(path: str | os.PathLike, device: str | torch.device = "cpu", tokenizer: bool = True) -> GPT:
    """Load a checkpoint directory written by `save` (or by training) as a GPT in eval mode."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory: give a run directory made by `glassgpt train`")
    for needed in (CONFIG, WEIGHTS):
        if not (path / needed).is_file():
            raise CheckpointError(f"{path} is not a checkpoint (no {needed}): give a run directory "
                                  f"made by `glassgpt train`")
    config = read_config(path)
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


def read_config(path: str | os.PathLike) -> GPTConfig:
    file = Path(path) / CONFIG
    try:
        return GPTConfig.from_dict(json.loads(file.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as e:
        raise CheckpointError(f"{file} is not valid JSON ({_first_line(e)}): restore it or re-train") from e
    except ConfigError as e:
        raise CheckpointError(f"{file}: {e}") from e


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
