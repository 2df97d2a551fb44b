"""The models the pruning study compares, and how each one is made.

    original           the trained run as it is
    pruned             the original with n blocks taken out (`inspect.ablation.without_blocks`)
    pruned + healed    a pruned model fine-tuned for a few steps by the normal trainer
                       (glassgpt.train, TrainConfig.init_from), in its own run directory
    baselines          smaller models trained from scratch by the same trainer on the same
                       corpus with the same token budget: one with the pruned model's exact
                       shape (as many parameters) and one about half as big (narrower)

Every training run lives in its own run directory and resumes like any run.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from ...errors import GlassError
from ...model import GPTConfig, load
from ...model.block import Block
from ...model.positional import make_positional
from ...train import TrainConfig, train
from ...train.config import load_run_config
from ...train.state import STATE, load_train_state, weights_metadata


def count_parameters(config: GPTConfig) -> int:
    """What GPT(config).num_parameters() says, from its parts built on the meta device:
    embedding, positions, the blocks, final norm, unembedding (once when tied)."""
    C, V = config.d_model, config.vocab_size
    with torch.device("meta"):
        block = sum(p.numel() for p in Block(config, 0).parameters())
        positional = make_positional(config)
    positions = sum(p.numel() for p in positional.parameters()) if positional is not None else 0
    final_norm = (C * (2 if config.bias else 1)) if config.norm == "pre" else 0
    unembed = 0 if config.tie_embeddings else V * C + (V if config.bias else 0)
    return V * C + positions + config.n_layer * block + final_norm + unembed


def narrower(config: GPTConfig, target: int) -> GPTConfig:
    """The config with the same depth and heads whose width gives the parameter count
    nearest `target` (d_ff scaled with d_model)."""
    step = config.n_head * (2 if config.positional == "rope" else 1)
    ratio = config.d_ff / config.d_model

    def shaped(d: int) -> GPTConfig:
        return config.replace(d_model=d, d_ff=max(1, round(ratio * d)))
    widths = range(step, config.d_model + 1, step)
    return min((shaped(d) for d in widths), key=lambda c: abs(count_parameters(c) - target))


def same_tokenizer(a: Path, b: Path) -> bool:
    files = [Path(a) / "tokenizer.json", Path(b) / "tokenizer.json"]
    if not all(f.is_file() for f in files):
        return False
    return json.loads(files[0].read_text(encoding="utf-8")) == json.loads(files[1].read_text(encoding="utf-8"))


def load_baseline(run: str, original: str) -> "object":
    """A given baseline run, checked to share the original's tokenizer."""
    if not same_tokenizer(Path(original), Path(run)):
        raise GlassError(f"the baseline {run} uses another tokenizer than {original} (or has no tokenizer.json): "
                         f"train it on the same prepared data")
    return load(run)


def training_budget(run: str) -> tuple[TrainConfig, int]:
    """The original's training settings and how many optimizer steps it took."""
    try:
        config, _ = load_run_config(Path(run))
    except GlassError:
        raise GlassError(f"{run} has no train_config.json, so its token budget is unknown: train the baselines "
                         f"yourself and give them with --baseline RUN") from None
    step = weights_metadata(Path(run)).get("step")
    if step is None or not str(step).isdigit() or int(step) < 1:
        raise GlassError(f"{run}'s weights do not record the training step: give baselines with --baseline RUN")
    return config, int(step)


def baseline_train_config(original: TrainConfig, steps: int) -> TrainConfig:
    """The original's settings with the same number of steps (the same token budget)."""
    return dataclasses.replace(original, max_iters=steps, max_seconds=None, teacher=None)


def heal_train_config(original: TrainConfig, steps: int, lr: float | None) -> TrainConfig:
    """A short fine-tune of the pruned model: warm up for a tenth of the steps, cosine to lr / 10."""
    lr = lr if lr is not None else original.lr / 4
    return dataclasses.replace(original, max_iters=steps, max_seconds=None, lr=lr, min_lr=lr / 10,
                               warmup_iters=max(1, min(original.warmup_iters, steps // 10)),
                               eval_interval=min(original.eval_interval, steps), teacher=None)


def train_or_resume(data_dir: Path, run_dir: Path, model_config: GPTConfig | None, config: TrainConfig,
                    init_from: Path | None = None, progress: bool = True):
    """Train into run_dir (from scratch, or from the weights in init_from), continue it when
    it stopped early, or only load it when done. run_dir belongs to the study: a run that
    crashed before its first checkpoint is started again."""
    if (run_dir / STATE).exists():
        if load_train_state(run_dir)["step"] < config.max_iters:
            train(None, run_dir, train_config=config, resume=True, progress=progress)
    else:
        train(data_dir, run_dir, model_config, config, progress=progress,
              init_from=str(init_from) if init_from is not None else None, force=True)
    return load(run_dir)
