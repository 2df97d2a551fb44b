"""Positional encodings: how the model is told where each token stands.

- learned:    a trained vector per position, added to the token embedding (GPT-2).
- sinusoidal: fixed sines and cosines of geometrically spaced frequencies, added
              (the original Transformer).
- rope:       nothing is added; queries and keys are rotated by an angle proportional
              to their position, so attention scores depend on relative distance
              (applied inside attention, see `Rotary`).
- none:       no position information at all; causal masking alone leaks some.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import GPTConfig


class LearnedPositions(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(config.context_length, config.d_model) * 0.02)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.weight[positions]                    # (T,) -> (T, C) or (B, T) -> (B, T, C)


class SinusoidalPositions(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.register_buffer("table", sinusoidal_table(config.context_length, config.d_model), persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.table[positions]


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(...)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


class Rotary(nn.Module):
    """Rotary position embedding (RoPE), rotate-half layout as in GPT-NeoX and Llama."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        half = config.head_dim // 2
        inv_freq = config.rope_base ** (-torch.arange(half, dtype=torch.float32) / half)
        angles = torch.arange(config.context_length, dtype=torch.float32)[:, None] * inv_freq  # (T, hd/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        # x: (B, H, T, hd); positions: (T,) or (B, T)
        cos, sin = self.cos[positions], self.sin[positions]      # (..., T, hd/2)
        if positions.dim() == 2:
            cos, sin = cos[:, None], sin[:, None]                # (B, 1, T, hd/2)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).to(x.dtype)


def make_positional(config: GPTConfig) -> nn.Module | None:
    """The module that makes the vectors added to token embeddings (None for rope/none)."""
    kinds = {"learned": LearnedPositions, "sinusoidal": SinusoidalPositions}
    return kinds[config.positional](config) if config.positional in kinds else None
