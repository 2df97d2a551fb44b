"""The logit lens: what would the model predict if it stopped after block L?

The residual stream is the one running sum every block adds into, and the last thing
the model does is final_norm -> unembed. Pushing the stream from any depth through
those same two steps reads it as a next-token guess. Watching that guess sharpen layer
by layer shows where in the network a prediction is formed (nostalgebraist, 2020).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .render import text_table, visible
from .trace import Trace, token_text, trace


@dataclass
class LogitLens:
    tokens: list[str]                # the T input tokens
    layers: list[str]                # "embed", "block 0", ..., one name per depth
    top_ids: torch.Tensor            # (L + 1, T) each depth's most likely next token
    top_probs: torch.Tensor          # (L + 1, T) its probability
    final_prob: torch.Tensor         # (L + 1, T) probability each depth gives the final prediction
    final_ids: torch.Tensor          # (T,) the model's actual (last-layer) top prediction
    top_tokens: list[list[str]]      # (L + 1) x T readable top tokens

    def table(self, positions: range | None = None) -> str:
        """One row per position, one column per depth: top token and p(final prediction)."""
        positions = positions if positions is not None else range(len(self.tokens))
        headers = ["pos", "token"] + self.layers
        rows = [[t, visible(self.tokens[t])] +
                [f"{visible(self.top_tokens[l][t])} {self.final_prob[l, t]:.2f}" for l in range(len(self.layers))]
                for t in positions]
        return text_table(headers, rows, right=[0])

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "layers": self.layers, "top_ids": self.top_ids.tolist(),
                "top_tokens": self.top_tokens, "top_probs": self.top_probs.tolist(),
                "final_prob": self.final_prob.tolist(), "final_ids": self.final_ids.tolist()}


def lens_logits(model, residual: torch.Tensor) -> torch.Tensor:
    """(..., C) residual stream -> (..., V) logits through the model's own final norm and unembed."""
    p = model.embed.weight
    with torch.no_grad():
        return model.unembed(model.final_norm(residual.to(p.device, p.dtype))).float().cpu()


def logit_lens(model, text_or_trace, *, tokenizer=None) -> LogitLens:
    """Read the residual stream at every depth as a next-token prediction.

    Accepts a text, ids, or a Trace that kept its residual stream (then no forward pass).
    """
    t = text_or_trace
    if not isinstance(t, Trace) or t.residual is None:
        t = trace(model, t.ids if isinstance(t, Trace) else t, tokenizer=tokenizer, attention=False)
    tokenizer = tokenizer if tokenizer is not None else t.tokenizer
    final_ids = t.logits.argmax(-1)                                           # (T,)
    top_ids, top_probs, final_prob = [], [], []
    for stream in t.residual:                                                 # one depth at a time: (T, C)
        probs = torch.softmax(lens_logits(model, stream), dim=-1)             # (T, V)
        p, i = probs.max(-1)
        top_ids.append(i)
        top_probs.append(p)
        final_prob.append(probs.gather(-1, final_ids[:, None])[:, 0])
    top_ids = torch.stack(top_ids)
    return LogitLens(
        tokens=t.tokens, layers=["embed"] + [f"block {i}" for i in range(len(t.residual) - 1)],
        top_ids=top_ids, top_probs=torch.stack(top_probs), final_prob=torch.stack(final_prob),
        final_ids=final_ids, top_tokens=[[token_text(tokenizer, i) for i in row] for row in top_ids.tolist()])
