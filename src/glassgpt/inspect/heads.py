"""Head roles: what does each attention head look at?

Three scores per head, each the attention weight a head puts where the role says, averaged
over positions and over a batch of sequences:

    previous token    attention from each token to the one just before it
    duplicate token   attention to earlier copies of the same token
    induction         attention to the token right AFTER an earlier copy of the current
                      token: "A B ... A" looks at B, the first half of the induction
                      circuit that then predicts B (Olsson et al., 2022)

They are measured on repeated random token sequences [r1 .. rn r1 .. rn]: random tokens
have no meaning to lean on, so the only way to predict the second half is to copy from
the first, and heads that do are plainly visible.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..errors import GlassError
from .render import text_table
from ..jsonsafe import json_safe
from .trace import evaluating

ROLES = ("previous_token", "duplicate_token", "induction")


@dataclass
class HeadRoles:
    scores: dict[str, torch.Tensor]      # role -> (L, H) mean attention weight where the role says
    settings: dict = field(default_factory=dict)

    def table(self, sort_by: str = "induction", top: int | None = None) -> str:
        L, H = self.scores[sort_by].shape
        order = sorted(((l, h) for l in range(L) for h in range(H)), key=lambda lh: -self.scores[sort_by][lh])
        rows = [[f"{l}.{h}"] + [f"{self.scores[r][l, h]:.3f}" for r in ROLES] for l, h in order[:top]]
        return text_table(["head", "previous token", "duplicate token", "induction"], rows, right=[1, 2, 3])

    def heatmap(self, path=None):
        """The three scores as layer x head heatmaps side by side (saved as PNG when `path` is given)."""
        from .heatmaps import heatmap_figure, save_png
        L, H = self.scores["induction"].shape
        fig = heatmap_figure(torch.stack([self.scores[r] for r in ROLES]), [str(l) for l in range(L)],
                             [str(h) for h in range(H)], title=[r.replace("_", " ") for r in ROLES],
                             xlabel="head", ylabel="layer", colorbar="attention weight", diverging=False,
                             panels=len(ROLES))
        if path is not None:
            save_png(fig, path)
        return fig

    def to_dict(self) -> dict:
        return json_safe({"settings": self.settings, **{r: self.scores[r].tolist() for r in ROLES}})

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def repeated_random_tokens(vocab_size: int, length: int, batch: int, seed: int = 0,
                           tokens: Sequence[int] | None = None) -> torch.Tensor:
    """(batch, 2 * length) ids: `length` distinct random tokens, then the same again. They are
    drawn from `tokens` when given (e.g. only letters, or no special tokens), else from the
    whole vocabulary."""
    pool = torch.arange(vocab_size) if tokens is None else torch.tensor(sorted(set(int(t) for t in tokens)))
    if len(pool) and not 0 <= int(pool.min()) <= int(pool.max()) < vocab_size:
        raise GlassError(f"the tokens to draw from must be ids in 0 .. {vocab_size - 1}")
    if length > len(pool):
        raise GlassError(f"a sequence of {length} distinct tokens needs at least that many to draw from "
                         f"(there are {len(pool)}): pass a shorter length")
    g = torch.Generator().manual_seed(seed)
    first = torch.stack([pool[torch.randperm(len(pool), generator=g)[:length]] for _ in range(batch)])  # (B, n)
    return torch.cat([first, first], dim=1)                                                        # (B, 2n)


def role_masks(ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """For each role, (B, T, T) bool: which key each query position would attend to."""
    B, T = ids.shape
    earlier = torch.ones(T, T, dtype=torch.bool).tril(-1)                                    # key < query
    same = (ids[:, :, None] == ids[:, None, :]) & earlier                                    # (B, T, T)
    after_same = torch.zeros_like(same)
    after_same[:, :, 1:] = (ids[:, :, None] == ids[:, None, :-1]) & earlier[:, :-1]          # key-1 is a copy
    previous = torch.eye(T, dtype=torch.bool).roll(-1, dims=1).tril(-1).expand(B, T, T)      # key = query - 1
    return {"previous_token": previous, "duplicate_token": same, "induction": after_same}


def role_scores(pattern: torch.Tensor, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """pattern: (L, B, H, T, T) attention weights on `ids` (B, T) -> role -> (L, H) scores:
    the weight on the role's keys, summed per query, averaged over the queries where the role
    has a key at all."""
    out = {}
    for role, mask in role_masks(ids.cpu()).items():
        mask = mask.to(pattern.dtype)                                                        # (B, T, T)
        per_query = (pattern * mask[None, :, None]).sum(-1)                                  # (L, B, H, T)
        has_key = mask.sum(-1) > 0                                                           # (B, T)
        out[role] = (per_query * has_key[None, :, None]).sum((1, 3)) / has_key.sum()        # (L, H)
    return out


def head_roles(model, *, length: int | None = None, batch: int = 8, seed: int = 0,
               tokens: Sequence[int] | None = None) -> HeadRoles:
    """Previous-token, duplicate-token and induction scores of every head, on `batch`
    repeated random sequences of `length` tokens each (default: as long as the context
    allows, at most 50), drawn from `tokens` (default: the whole vocabulary)."""
    cfg = model.config
    pool = cfg.vocab_size if tokens is None else len(set(tokens))
    length = length if length is not None else min(50, cfg.context_length // 2, pool)
    if length < 2 or 2 * length > cfg.context_length:
        raise GlassError(f"length must be 2 .. {cfg.context_length // 2} (twice it must fit the context "
                         f"of {cfg.context_length}), got {length}")
    if batch < 1:
        raise GlassError(f"batch must be at least 1, got {batch}")
    ids = repeated_random_tokens(cfg.vocab_size, length, batch, seed, tokens)
    with torch.no_grad(), evaluating(model), model.probing(read="blocks.*.attn.pattern") as probes:
        model(ids.to(model.device))
    pattern = torch.stack([probes[f"blocks.{l}.attn.pattern"] for l in range(cfg.n_layer)]).float().cpu()
    return HeadRoles(role_scores(pattern, ids),
                     {"length": length, "batch": batch, "seed": seed,
                      "drawn_from": "vocabulary" if tokens is None else sorted(set(int(t) for t in tokens))})
