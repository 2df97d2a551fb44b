"""The KV cache: keys and values of positions already seen, so each new token costs
one position's work instead of recomputing the whole context.

Storage is allocated once for `max_length` positions; `length` says how many are
filled. Rewinding (`crop`) only moves `length` back, so a generation can be rewound
and continued without recomputing the prefix.
"""
from __future__ import annotations

import torch

from ..errors import GlassError
from .config import GPTConfig


class KVCache:
    def __init__(self, config: GPTConfig, batch_size: int = 1, max_length: int | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.max_length = max_length or config.context_length
        shape = (config.n_layer, batch_size, config.n_head, self.max_length, config.head_dim)
        # never read beyond `length`, so left uninitialised (zeroing a batch cache costs ms)
        self.keys = torch.empty(shape, device=device, dtype=dtype)     # (L, B, H, Tmax, hd)
        self.values = torch.empty(shape, device=device, dtype=dtype)
        self.length = 0

    @property
    def batch_size(self) -> int:
        return self.keys.shape[1]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's k, v (B, H, T, hd) for `layer`; return all keys/values so far."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.max_length:
            raise GlassError(f"KV cache holds {self.max_length} positions; {end} were needed: "
                             f"crop the context or create a larger cache")
        self.keys[layer, :, :, start:end] = k
        self.values[layer, :, :, start:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, n: int) -> None:
        """Called by the model once every layer has stored the same n new positions."""
        self.length += n

    def store_packed(self, packed: "KVCache", lengths: list[int]) -> None:
        """Lay out texts computed packed one after another in row 0 of `packed` (lengths[b]
        positions each) as row b of this cache, right-aligned to the longest: left padding,
        zeroed (attention masks it; zeros keep the masked products finite)."""
        longest, start = max(lengths), 0
        for b, n in enumerate(lengths):
            for mine, theirs in ((self.keys, packed.keys), (self.values, packed.values)):
                mine[:, b, :, :longest - n] = 0
                mine[:, b, :, longest - n:longest] = theirs[:, 0, :, start:start + n]
            start += n
        self.length = longest

    def crop(self, length: int) -> None:
        """Forget every position from `length` on (rewind)."""
        if not 0 <= length <= self.length:
            raise GlassError(f"cannot rewind the cache to {length}: it holds {self.length} positions")
        self.length = length

    def clone(self) -> "KVCache":
        other = object.__new__(KVCache)
        other.max_length, other.length = self.max_length, self.length
        other.keys, other.values = self.keys.clone(), self.values.clone()
        return other
