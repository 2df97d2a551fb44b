"""Direct logit attribution: how much does each part of the model write the answer directly?

In a pre-LN model the residual stream leaving the last block is a plain sum of what every
part wrote into it:

    resid = embed + positional encoding + sum over blocks of (each head's output
            + attention's output bias + the feed-forward's output)

Then final_norm -> unembed. The final LayerNorm divides by the stream's standard deviation
sigma; freeze sigma at its value in the real run and the norm is affine, so the logit of a
token splits into one term per piece plus a bias term:

    logit(token) = sum over pieces of ((piece - mean(piece)) / sigma * gamma) . W_U[token]
                   + beta . W_U[token] + b_U[token]

Each term is that piece's direct contribution (through later parts it may also act
indirectly: that is what patching measures). With `versus`, the direction is
W_U[token] - W_U[versus] and the terms add up to the logit difference.

A post-LN model re-normalises the stream after every block, so its logits are not a sum
of the pieces: attribution is not defined there.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch

from ..errors import GlassError
from .patching import one_token
from ..jsonsafe import json_safe
from ..model.inputs import crop_to_context, to_ids
from .render import text_table, visible
from .trace import evaluating, token_text


@dataclass
class LogitAttribution:
    tokens: list[str]                    # the input tokens
    position: int                        # the position whose next-token logits are decomposed
    token: int                           # the token whose logit is explained
    versus: int | None                   # with it: logit(token) - logit(versus)
    token_text: str
    versus_text: str | None
    pieces: dict[str, float]             # name -> direct contribution, in pipeline order
    kinds: dict[str, str]                # name -> embed | positional | head | attn_bias | ff
    bias: float                          # beta . direction (+ the unembed's own bias)
    total: float                         # sum of the pieces plus the bias term
    logit: float                         # the real logit (or difference) of the model
    scale: float                         # the final norm's sigma, frozen from the real run
    heads: torch.Tensor = field(repr=False)   # (L, H) the heads' contributions

    @property
    def target(self) -> str:
        a = f"logit({visible(self.token_text)!r})"
        return a if self.versus is None else f"{a} - logit({visible(self.versus_text)!r})"

    def ranked(self) -> list[tuple[str, float]]:
        return sorted(self.pieces.items(), key=lambda kv: -abs(kv[1]))

    def table(self, top: int | None = None) -> str:
        rows = [[name, self.kinds[name], f"{value:+.4f}"] for name, value in self.ranked()[:top]]
        rows.append(["(final norm bias)", "bias", f"{self.bias:+.4f}"])
        head = (f"direct logit attribution at position {self.position} "
                f"({visible(self.tokens[self.position])!r}): {self.target}\n"
                f"sum of pieces + bias = {self.total:.4f}; the model's value = {self.logit:.4f}; "
                f"final norm sigma frozen at {self.scale:.4f}\n")
        return head + text_table(["piece", "kind", "contribution"], rows, right=[2])

    def bars(self, path=None, top: int = 30):
        """A bar chart of the largest contributions (saved as PNG when `path` is given)."""
        from .heatmaps import bar_figure, save_png
        ranked = self.ranked()[:top]
        fig = bar_figure([n for n, _ in ranked], [v for _, v in ranked],
                         title=f"direct logit attribution: {self.target} at position {self.position}",
                         xlabel="direct contribution")
        if path is not None:
            save_png(fig, path)
        return fig

    def heatmap(self, path=None):
        """Each head's contribution, layer x head (saved as PNG when `path` is given)."""
        from .heatmaps import heatmap_figure, save_png
        L, H = self.heads.shape
        fig = heatmap_figure(self.heads, [str(l) for l in range(L)], [str(h) for h in range(H)],
                             title=f"heads' direct contribution to {self.target}", xlabel="head", ylabel="layer",
                             colorbar="contribution")
        if path is not None:
            save_png(fig, path)
        return fig

    def to_dict(self) -> dict:
        return json_safe({"tokens": self.tokens, "position": self.position, "token": self.token,
                          "token_text": self.token_text, "versus": self.versus, "versus_text": self.versus_text,
                          "pieces": [{"name": n, "kind": self.kinds[n], "contribution": v}
                                     for n, v in self.pieces.items()],
                          "bias": self.bias, "total": self.total, "logit": self.logit, "scale": self.scale,
                          "heads": self.heads.tolist()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def direct_logit_attribution(model, text_or_ids, position: int = -1, token: str | int | None = None,
                             versus: str | int | None = None, *, tokenizer=None) -> LogitAttribution:
    """Split the logit of `token` at `position` into every piece's direct contribution.

        a = direct_logit_attribution(model, "When Mary and John went to the store, John gave a drink to",
                                     -1, " Mary", versus=" John")
        a.pieces["head 3.0"], a.total, a.logit       # total == logit

    position: the token whose next-token logits are explained (0 .. T-1; negative from the end).
    token / versus: single-token texts or ids (token defaults to the model's top prediction).
    """
    cfg = model.config
    if cfg.norm != "pre":
        raise GlassError("direct logit attribution needs a pre-LN model with a final norm: this model is post-LN, "
                         "so every block re-normalises the stream and the logits are not a sum of its pieces")
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    ids, _ = crop_to_context(to_ids(text_or_ids, tokenizer, cfg.vocab_size), cfg.context_length)
    T = len(ids)
    if not -T <= position < T:
        raise GlassError(f"position {position} is out of range: the text has {T} tokens (give 0 .. {T - 1}, "
                         f"or negative from the end)")
    position %= T
    n = cfg.n_layer
    read = ["embed"] + (["positional_encoding"] if model.positional_encoding is not None else []) + \
        [f"blocks.{l}.{p}" for l in range(n) for p in ("attn.z", "ff.out")] + [f"blocks.{n - 1}.resid_post"]
    with torch.no_grad(), evaluating(model), model.probing(read=read) as probes:
        logits = model(torch.tensor([ids], dtype=torch.long, device=model.device)).logits[0, position]  # (V,)
    token = int(logits.argmax()) if token is None else one_token(tokenizer, token, cfg.vocab_size, "token")
    if versus is not None:
        versus = one_token(tokenizer, versus, cfg.vocab_size, "versus token")

    # The pieces of the final residual stream at `position`, in float64 so that they add up exactly.
    d = torch.float64
    pieces: dict[str, torch.Tensor] = {"embed": probes["embed"][0, position].to(d)}      # (C,)
    kinds = {"embed": "embed"}
    if "positional_encoding" in read:
        pe = probes["positional_encoding"]                                               # (T, C) or (1, T, C)
        pieces["positional encoding"] = pe.reshape(-1, pe.shape[-1])[position].to(d)
        kinds["positional encoding"] = "positional"
    H, hd = cfg.n_head, cfg.head_dim
    for l, block in enumerate(model.blocks):
        z = probes[f"blocks.{l}.attn.z"][0, :, position].to(d)                          # (H, hd)
        W_O = block.attention.proj.weight.detach().to(d).view(cfg.d_model, H, hd)       # (C, H, hd)
        per_head = torch.einsum("chd,hd->hc", W_O, z)                                   # (H, C)
        for h in range(H):
            pieces[f"head {l}.{h}"], kinds[f"head {l}.{h}"] = per_head[h], "head"
        if block.attention.proj.bias is not None:
            pieces[f"attention bias {l}"] = block.attention.proj.bias.detach().to(d)
            kinds[f"attention bias {l}"] = "attn_bias"
        pieces[f"feed-forward {l}"] = probes[f"blocks.{l}.ff.out"][0, position].to(d)
        kinds[f"feed-forward {l}"] = "ff"

    resid = probes[f"blocks.{n - 1}.resid_post"][0, position].to(d)                     # (C,)
    norm = model.final_norm
    sigma = torch.sqrt(resid.var(unbiased=False) + norm.eps)                            # frozen from the real run
    W_U = model.unembed.weight.detach().to(d)                                           # (V, C)
    direction = W_U[token] - (W_U[versus] if versus is not None else 0)                 # (C,)
    gamma = norm.weight.detach().to(d) if norm.weight is not None else torch.ones_like(direction)
    read_out = gamma * direction / sigma                                                # (C,)
    contributions = {name: float((v - v.mean()) @ read_out) for name, v in pieces.items()}
    bias = float(norm.bias.detach().to(d) @ direction) if norm.bias is not None else 0.0
    if model.unembed.bias is not None:
        b_U = model.unembed.bias.detach().to(d)
        bias += float(b_U[token] - (b_U[versus] if versus is not None else 0))
    logit = float(logits[token] - (logits[versus] if versus is not None else 0))
    heads = torch.tensor([[contributions[f"head {l}.{h}"] for h in range(H)] for l in range(n)])
    return LogitAttribution(
        tokens=[token_text(tokenizer, i) for i in ids], position=position, token=token, versus=versus,
        token_text=token_text(tokenizer, token),
        versus_text=None if versus is None else token_text(tokenizer, versus), pieces=contributions,
        kinds=kinds, bias=bias, total=sum(contributions.values()) + bias, logit=logit, scale=float(sigma),
        heads=heads)
