"""The GPT: a decoder-only transformer, read top to bottom in pipeline order.

    ids (B, T)
      -> embed: one learned vector per token                        (B, T, C)
      -> + positional encoding: where each token stands             (B, T, C)
      -> blocks: attention + feed-forward, with residuals and norms (B, T, C)
      -> final_norm                                                 (B, T, C)
      -> unembed: one logit per vocabulary entry                    (B, T, V)

softmax(logits / temperature) is the next-token distribution; sampling from it and
appending the token is generation (see glassgpt.generate).
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GlassError
from .block import Block
from .config import GPTConfig
from .kv_cache import KVCache
from .positional import make_positional
from .probes import Edit, Probed, Probes, expand_names


class GPTOutput(NamedTuple):
    logits: torch.Tensor                 # (B, T, V), or (B, 1, V) with last_only
    loss: torch.Tensor | None = None     # mean cross-entropy against targets


class GPT(Probed):
    def __init__(self, config: GPTConfig, tokenizer=None):
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer           # optional: lets generate/trace take text
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.positional_encoding = make_positional(config)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.final_norm = (nn.LayerNorm(config.d_model, eps=config.layer_norm_eps, bias=config.bias)
                           if config.norm == "pre" else nn.Identity())   # post-LN blocks end normalised
        self.unembed = nn.Linear(config.d_model, config.vocab_size, bias=config.bias and not config.tie_embeddings)
        if config.tie_embeddings:
            self.unembed.weight = self.embed.weight     # the same matrix reads tokens in and out
        self._name_probe_points()
        self._init_weights()

    # -- the forward pass, in pipeline order ---------------------------------------------
    def forward(self, ids: torch.Tensor, targets: torch.Tensor | None = None, *,
                kv_cache: KVCache | None = None, positions: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, documents: torch.Tensor | None = None,
                last_only: bool = False, logits_at: torch.Tensor | None = None) -> GPTOutput:
        """ids (B, T) -> logits (B, T, V) and, given targets (B, T), the loss.

        kv_cache: keys/values of earlier positions; ids are the continuation.
        positions: (T,) or (B, T) position of each token (default: continue the cache).
        key_padding_mask: (B, past + T) bool, False where a key is padding.
        documents: (B, T) which document each token belongs to, for several texts packed
            into one row: a token sees only earlier tokens of its own document (no cache before).
        last_only: compute logits for the last position only (generation).
        logits_at: (K,) compute logits for these positions only -> (B, K, V).
        """
        B, T = ids.shape
        past = kv_cache.length if kv_cache is not None else 0
        if past + T > self.config.context_length:
            raise GlassError(f"{past + T} tokens exceed the context length {self.config.context_length}: "
                             f"crop the input from the left")
        if positions is None:
            positions = torch.arange(past, past + T, device=ids.device)           # (T,)
        x = self.probe("embed", self.embed(ids))                                  # (B, T, C)
        if self.positional_encoding is not None:
            x = x + self.probe("positional_encoding", self.positional_encoding(positions))
        x = self.dropout(x)
        mask = attention_mask(T, past, key_padding_mask, ids.device, documents)
        for block in self.blocks:
            x = block(x, positions, mask, kv_cache)
        if kv_cache is not None:
            kv_cache.advance(T)
        if last_only:
            x = x[:, -1:]
        elif logits_at is not None:
            x = x[:, logits_at]
        logits = self.head(x)                                                     # (B, T, V)
        return GPTOutput(logits, None if targets is None else cross_entropy(logits, targets))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """The last two stages: final norm, then one logit per vocabulary entry. (B, T, C) -> (B, T, V)"""
        x = self.probe("final_norm", self.final_norm(x))
        return self.probe("logits", self.unembed(x))

    # -- probes ------------------------------------------------------------------------------
    def _name_probe_points(self) -> None:
        for name, module in self.named_modules():
            if isinstance(module, Probed):
                module.prefix = f"{name}." if name else ""
        for i, block in enumerate(self.blocks):   # shorter public names: blocks.L.attn.*, blocks.L.ff.*
            block.attention.prefix = f"blocks.{i}.attn."
            block.feed_forward.prefix = f"blocks.{i}.ff."

    def probe_names(self) -> list[str]:
        """Every probe point, in the order a forward pass meets them."""
        names = ["embed"] + (["positional_encoding"] if self.positional_encoding is not None else [])
        attn = ["attn." + p for p in ("q", "k", "v", "scores", "pattern", "z", "out")]
        ff = ["ff." + p for p in ("pre", "post", "out")]
        if self.config.norm == "pre":                   # each sublayer reads the normalised stream
            block = ["resid_pre", "attn_norm", *attn, "resid_mid", "ff_norm", *ff, "resid_post"]
        else:                                           # post-LN: normalise each sum
            block = ["resid_pre", *attn, "attn_norm", "resid_mid", *ff, "ff_norm", "resid_post"]
        for i in range(self.config.n_layer):
            names += [f"blocks.{i}.{point}" for point in block]
        return names + ["final_norm", "logits"]

    @contextlib.contextmanager
    def probing(self, read: Iterable[str] | str = (), edit: dict[str, Edit] | None = None, detach: bool = True):
        """Read and/or edit named activations in the forward passes run inside this block.

            with model.probing(read=["blocks.*.attn.pattern"]) as probes:
                model(ids)
            probes["blocks.0.attn.pattern"]          # (B, H, T, T)

            head = 3   # zero one head's output in block 1
            def zero_head(z): z = z.clone(); z[:, head] = 0; return z
            with model.probing(edit={"blocks.1.attn.z": zero_head}):
                model(ids)
        """
        valid = self.probe_names()
        read = expand_names([read] if isinstance(read, str) else read, valid)
        edits: dict[str, Edit] = {}
        for pattern, fn in (edit or {}).items():
            for name in expand_names([pattern], valid):
                edits[name] = fn
        probes = Probes(read, edits, detach)
        modules = [m for m in self.modules() if isinstance(m, Probed)]
        if any(m.probes is not None for m in modules):
            raise GlassError("probing() is already active on this model: nest reads in one probing() call")
        for m in modules:
            m.probes = probes
        try:
            yield probes
        finally:
            for m in modules:
                m.probes = None

    # -- conveniences: one model, three uses ---------------------------------------------
    def new_kv_cache(self, batch_size: int = 1, max_length: int | None = None) -> KVCache:
        p = self.embed.weight
        return KVCache(self.config, batch_size, max_length, device=p.device, dtype=p.dtype)

    @classmethod
    def from_pretrained(cls, name_or_path: str = "gpt2", **kwargs) -> "GPT":
        """A local Hugging Face GPT-2 directory or glassgpt run (`load`), or GPT-2 weights
        from the hub by name ("gpt2", "gpt2-medium", ...; needs network). See glassgpt.interop.hf."""
        import os

        from .checkpoint import load
        if os.path.isdir(name_or_path):
            return load(name_or_path, **kwargs)
        from ..interop.hf import from_pretrained   # upper layer, imported on use
        return from_pretrained(name_or_path)

    def generate(self, prompt, **kwargs):
        """Sample a continuation of `prompt` (text or ids); see glassgpt.generate.generate."""
        from ..generate import generate   # upper layer, imported on use: model/ does not depend on it
        return generate(self, prompt, **kwargs)

    def trace(self, prompt, **kwargs):
        """Keep what one forward pass over `prompt` computes; see glassgpt.inspect.trace."""
        from ..inspect import trace   # upper layer, imported on use
        return trace(self, prompt, **kwargs)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())    # tied weights are counted once

    def summary(self) -> str:
        c = self.config
        return (f"GPT: {self.num_parameters() / 1e6:.2f}M parameters ({c.n_layer} layers, {c.n_head} heads, "
                f"d_model {c.d_model}, context {c.context_length}, vocab {c.vocab_size})")

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    # -- GPT-2 initialisation ----------------------------------------------------------------
    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        # Residual projections add into the stream once per layer: scale them down so the
        # stream's variance does not grow with depth (GPT-2 paper, section 2.2).
        for block in self.blocks:
            for linear in (block.attention.proj, block.feed_forward.down):
                nn.init.normal_(linear.weight, mean=0.0, std=0.02 / math.sqrt(2 * self.config.n_layer))


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative log-probability of the targets: (B, T, V), (B, T) -> ()."""
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))


def attention_mask(T: int, past: int, key_padding_mask: torch.Tensor | None, device,
                   documents: torch.Tensor | None = None) -> torch.Tensor | None:
    """Which keys each query may attend to: (T, S) or (B, 1, T, S) bool, or None.

    None means the plain causal case the fused kernel handles itself: a fresh sequence
    (is_causal), or a single new token that may see everything before it.
    """
    if documents is not None:                                                    # packed texts: causal and
        if past or key_padding_mask is not None:                                 # within one's own document
            raise GlassError("documents pack several texts into one fresh row: no cache or padding with them")
        causal = torch.ones(T, T, dtype=torch.bool, device=device).tril()
        return (causal & (documents[:, :, None] == documents[:, None, :]))[:, None]   # (B, 1, T, T)
    if key_padding_mask is None and (past == 0 or T == 1):
        return None
    S = past + T
    query_pos = torch.arange(past, S, device=device)[:, None]
    key_pos = torch.arange(S, device=device)[None, :]
    allowed = key_pos <= query_pos                                               # (T, S) causal
    if key_padding_mask is not None:
        # padding keys are hidden; a query always sees itself so no row is empty
        allowed = allowed & (key_padding_mask[:, None, :S] | (key_pos == query_pos))  # (B, T, S)
        allowed = allowed[:, None]                                               # (B, 1, T, S)
    return allowed
