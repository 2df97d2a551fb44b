"""Named probe points: read or edit any activation during a forward pass.

Every interesting activation in the model passes through `self.probe("name", x)`.
When nobody is probing, that is one attribute check and the tensor goes on unchanged,
so probes cost nothing in training or generation. Inside `model.probing(...)` the
activations whose names match are cached (`read`) or replaced (`edit`).

Names are dotted and say where the activation sits (see `GPT.probe_names()`):

    embed                       token embeddings                         (B, T, C)
    positional_encoding         the positional vectors added to them     (T, C) or (B, T, C)
    blocks.L.resid_pre          residual stream entering block L         (B, T, C)
    blocks.L.attn_norm          LayerNorm before (pre-LN) / after (post-LN) attention
    blocks.L.attn.q / .k / .v   per-head queries, keys, values           (B, H, T, hd)
    blocks.L.attn.scores        QK^T/sqrt(hd), masked, before softmax     (B, H, T, S)
    blocks.L.attn.pattern       attention weights (rows sum to 1)        (B, H, T, S)
    blocks.L.attn.z             per-head weighted values                 (B, H, T, hd)
    blocks.L.attn.out           attention output after its projection    (B, T, C)
    blocks.L.resid_mid          residual stream between attention and feed-forward
    blocks.L.ff_norm            LayerNorm around the feed-forward
    blocks.L.ff.pre / .post     feed-forward hidden layer before / after the activation (B, T, d_ff)
    blocks.L.ff.out             feed-forward output                      (B, T, C)
    blocks.L.resid_post         residual stream leaving block L          (B, T, C)
    final_norm                  the final LayerNorm's output             (B, T, C)
    logits                      one score per vocabulary entry           (B, T, V)

Reading `attn.scores` or `attn.pattern` switches that layer from the fused attention
kernel to the explicit softmax(QK^T/sqrt(d))V path, which computes the same thing.
"""
from __future__ import annotations

import fnmatch
from typing import Callable, Iterable

import torch
from torch import nn

from ..errors import GlassError

Edit = Callable[[torch.Tensor], torch.Tensor]


class Probes:
    """What to read and what to edit during the forward passes run inside `model.probing()`."""

    def __init__(self, read: Iterable[str] = (), edit: dict[str, Edit] | None = None, detach: bool = True):
        self.read = set(read)
        self.edit = dict(edit or {})
        self.detach = detach
        self.cache: dict[str, torch.Tensor] = {}

    def wants(self, name: str) -> bool:
        return name in self.read or name in self.edit

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        edit = self.edit.get(name)
        if edit is not None:
            x = edit(x)
        if name in self.read:
            self.cache[name] = x.detach() if self.detach else x
        return x

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.cache[name]


class Probed(nn.Module):
    """A module with probe points. `prefix` is its dotted place in the model."""

    prefix: str = ""
    probes: Probes | None = None

    def probe(self, point: str, x: torch.Tensor) -> torch.Tensor:
        probes = self.probes
        if probes is None:
            return x
        return probes(self.prefix + point, x)

    def probing_wants(self, *points: str) -> bool:
        probes = self.probes
        return probes is not None and any(probes.wants(self.prefix + p) for p in points)


def expand_names(patterns: Iterable[str], valid: list[str]) -> list[str]:
    """Resolve names and shell-style patterns ('blocks.*.attn.pattern') to probe names."""
    names: list[str] = []
    for pattern in patterns:
        matched = [n for n in valid if fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            raise GlassError(f"unknown probe {pattern!r}: valid names look like "
                             f"{', '.join(_examples(valid))} (see GPT.probe_names())")
        names.extend(m for m in matched if m not in names)
    return names


def _examples(valid: list[str]) -> list[str]:
    seen, out = set(), []
    for name in valid:
        generic = ".".join("L" if part.isdigit() else part for part in name.split("."))
        if generic not in seen:
            seen.add(generic)
            out.append(generic)
    return out
