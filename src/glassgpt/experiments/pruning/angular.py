"""Which blocks to drop: the angular distance between residual streams.

The layer-pruning paper (Gromov et al., "The Unreasonable Ineffectiveness of the Deeper
Layers", 2024) measures how much n consecutive blocks change the residual stream by the
angle between the stream entering block l and the stream entering block l + n:

    d(x_l, x_{l+n}) = arccos(x_l . x_{l+n} / (|x_l| |x_{l+n}|)) / pi        in [0, 1]

0 means the blocks l .. l+n-1 only rescale the stream (they could go), 0.5 means they
turn it orthogonal, 1 means they reverse it. Averaged over every position of some
validation text, the start l* that minimises d for a given n names the n blocks whose
removal should hurt least: drop blocks l* .. l*+n-1. The naive choice drops the last n.

The stream "entering block N" (past the last block) is the last block's output, before
the final norm.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import GlassError
from ...inspect.trace import evaluating


def angular_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """arccos(cosine similarity) / pi along the last dimension: (..., C), (..., C) -> (...)."""
    cos = F.cosine_similarity(a.double(), b.double(), dim=-1).clamp(-1.0, 1.0)
    return torch.arccos(cos) / math.pi


def stream_names(n_layer: int) -> list[str]:
    """Probe names of the residual stream entering blocks 0 .. N (N: after the last block)."""
    return [f"blocks.{i}.resid_pre" for i in range(n_layer)] + [f"blocks.{n_layer - 1}.resid_post"]


def angular_distances(model, batches) -> np.ndarray:
    """D[n - 1, l] = mean over every token of d(stream entering l, stream entering l + n),
    for n = 1 .. N and l = 0 .. N - n; NaN where l + n > N. Shape (N, N)."""
    n_layer = model.config.n_layer
    names = stream_names(n_layer)
    total = torch.zeros(n_layer, n_layer, dtype=torch.float64)
    count = 0
    with torch.no_grad(), evaluating(model):
        for x, _ in batches:
            with model.probing(read=names) as probes:
                model(x.to(model.device))
            streams = [probes[name] for name in names]                       # N + 1 x (B, T, C)
            for n in range(1, n_layer + 1):
                for start in range(0, n_layer - n + 1):
                    total[n - 1, start] += angular_distance(streams[start], streams[start + n]).sum().cpu()
            count += x.numel()
    if count == 0:
        raise GlassError("no validation text to measure the residual stream on")
    distances = (total / count).numpy()
    for n in range(1, n_layer + 1):
        distances[n - 1, n_layer - n + 1:] = np.nan
    return distances


def best_start(distances: np.ndarray, n: int) -> int:
    """The paper's choice for dropping n blocks: the start l minimising d(x_l, x_{l+n})."""
    n_layer = distances.shape[0]
    check_drop(n, n_layer)
    row = distances[n - 1, :n_layer - n + 1]
    return int(np.argmin(row))


def paper_blocks(distances: np.ndarray, n: int) -> list[int]:
    start = best_start(distances, n)
    return list(range(start, start + n))


def naive_blocks(n_layer: int, n: int) -> list[int]:
    """The naive choice: the last n blocks."""
    check_drop(n, n_layer)
    return list(range(n_layer - n, n_layer))


def check_drop(n: int, n_layer: int) -> None:
    if not 1 <= n < n_layer:
        raise GlassError(f"cannot drop {n} of {n_layer} blocks: choose n from 1 to {n_layer - 1}")
