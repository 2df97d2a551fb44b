"""One transformer block: attention, then a feed-forward network, each wrapped in a
residual connection and a LayerNorm.

Where the LayerNorm sits is a real choice:
- pre-LN (GPT-2):      x = x + attention(norm(x));  x = x + feed_forward(norm(x))
- post-LN (original):  x = norm(x + attention(x));  x = norm(x + feed_forward(x))
Pre-LN keeps an untouched residual path from input to output and trains stably
without warm-up tricks; post-LN normalises the stream itself after every step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import CausalSelfAttention
from .config import GPTConfig
from .kv_cache import KVCache
from .probes import Probed

ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x, approximate="tanh"),   # GPT-2's GELU
    "gelu_exact": F.gelu,
    "relu": F.relu,
}


class FeedForward(Probed):
    """Per-position MLP: widen to d_ff (linear with bias), activation, narrow back to d_model."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.up = nn.Linear(config.d_model, config.d_ff, bias=config.bias)
        self.activation = ACTIVATIONS[config.activation]
        self.down = nn.Linear(config.d_ff, config.d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.probe("pre", self.up(x))                        # (B, T, d_ff)
        h = self.probe("post", self.activation(h))
        return self.probe("out", self.dropout(self.down(h)))     # (B, T, C)


class Block(Probed):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.pre_norm = config.norm == "pre"
        self.attn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps, bias=config.bias)
        self.attention = CausalSelfAttention(config, layer)
        self.ff_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps, bias=config.bias)
        self.feed_forward = FeedForward(config)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None,
                kv_cache: KVCache | None = None) -> torch.Tensor:
        x = self.probe("resid_pre", x)                                          # (B, T, C)
        if self.pre_norm:
            x = x + self.attention(self.probe("attn_norm", self.attn_norm(x)), positions, mask, kv_cache)
            x = self.probe("resid_mid", x)
            x = x + self.feed_forward(self.probe("ff_norm", self.ff_norm(x)))
        else:
            x = self.probe("attn_norm", self.attn_norm(x + self.attention(x, positions, mask, kv_cache)))
            x = self.probe("resid_mid", x)
            x = self.probe("ff_norm", self.ff_norm(x + self.feed_forward(x)))
        return self.probe("resid_post", x)
