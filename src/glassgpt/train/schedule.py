"""The learning-rate schedule: linear warmup, then a cosine from `lr` down to `min_lr`.

Progress through the run is max(step / max_iters, elapsed / max_seconds): whichever
budget runs out first sets the pace, so a run cut short by time still decays.
"""
from __future__ import annotations

import math

from .config import TrainConfig


def progress(config: TrainConfig, step: int, elapsed: float) -> float:
    """How far through the run we are, 0 at the start and >= 1 when it should stop."""
    fractions = []
    if config.max_iters is not None:
        fractions.append(step / config.max_iters)
    if config.max_seconds is not None:
        fractions.append(elapsed / config.max_seconds)
    return max(fractions)


def learning_rate(config: TrainConfig, step: int, fraction: float) -> float:
    """The rate for optimizer step `step` (0-based) at progress `fraction`."""
    warmup = min(1.0, (step + 1) / (config.warmup_iters + 1))
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, fraction)))        # 1 -> 0 over the run
    return warmup * (config.min_lr + cosine * (config.lr - config.min_lr))
