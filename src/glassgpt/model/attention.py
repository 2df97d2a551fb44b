"""Multi-head causal self-attention.

Each position asks a question (query), offers a label (key) and a message (value).
Scores QK^T/sqrt(hd) say how well each earlier label answers each question; softmax
turns a row of scores into weights; the output mixes the messages by those weights.
Causal masking keeps every position from looking at later ones.

By default PyTorch's fused `scaled_dot_product_attention` computes this without ever
materialising the T x S weight matrix. When someone probes the scores or the pattern,
the explicit path below computes the same thing step by step (tests check they agree).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import GPTConfig
from .kv_cache import KVCache
from .positional import Rotary
from .probes import Probed


class CausalSelfAttention(Probed):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.layer, self.n_head, self.head_dim = layer, config.n_head, config.head_dim
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)   # q, k, v in one matmul
        self.proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)      # mix the heads back
        self.rotary = Rotary(config) if config.positional == "rope" else None
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None,
                kv_cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)                                   # 3 x (B, T, C)
        q = self.probe("q", q.view(B, T, self.n_head, self.head_dim).transpose(1, 2))  # (B, H, T, hd)
        k = self.probe("k", k.view(B, T, self.n_head, self.head_dim).transpose(1, 2))
        v = self.probe("v", v.view(B, T, self.n_head, self.head_dim).transpose(1, 2))
        if self.rotary is not None:
            q, k = self.rotary(q, positions), self.rotary(k, positions)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer, k, v)                            # (B, H, S, hd), S = past + T
        if self.probing_wants("scores", "pattern"):
            z = self.explicit_attention(q, k, v, mask)
        else:
            z = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=mask is None and T > 1,
                dropout_p=self.dropout if self.training else 0.0)
        z = self.probe("z", z)                                                  # (B, H, T, hd)
        out = z.transpose(1, 2).reshape(B, T, C)                                # (B, T, C): heads side by side
        return self.probe("out", self.resid_dropout(self.proj(out)))

    def explicit_attention(self, q, k, v, mask):
        """softmax(QK^T / sqrt(hd)) V, written out so the scores and weights can be seen."""
        T, S = q.shape[2], k.shape[2]
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))  # (B, H, T, S)
        if mask is None and T > 1:
            mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        scores = self.probe("scores", scores)
        pattern = self.probe("pattern", torch.softmax(scores.float(), dim=-1).to(q.dtype))
        pattern = F.dropout(pattern, self.dropout, self.training)
        return pattern @ v                                                      # (B, H, T, hd)
