"""A trace: everything one forward pass over a text computes, kept for looking at.

For every position t the model outputs logits for the token at t + 1. A trace stores
those logits (T, V), so the *whole* next-token distribution can be recomputed at any
temperature, and derives from them what a person wants to read:

    top-k alternatives      the most likely next tokens and their probabilities
    entropy                 how unsure the model is, in nats and bits
    next-token stats        probability, log-probability, rank and surprisal of the
                            token that actually comes next in the text
    perplexity              exp(mean negative log-probability) over the text

With `attention=True` the pattern of every layer and head is read from the probes
(`blocks.L.attn.pattern`, stacked to (L, H, T, T)); with `residual=True` the residual
stream after every block (`blocks.L.resid_post`, stacked to (L, T, C)).
"""
from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from functools import cached_property

import torch

from ..errors import GlassError
from ..jsonsafe import json_safe
from ..model.inputs import crop_to_context, to_ids

LN2 = math.log(2.0)


@dataclass
class Trace:
    ids: list[int]                       # the T traced token ids
    tokens: list[str]                    # their readable text
    logits: torch.Tensor                 # (T, V) float32: row t scores the token at t + 1
    top_k: int = 10
    attention: torch.Tensor | None = None    # (L, H, T, T) attention weights
    residual: torch.Tensor | None = None     # (L + 1, T, C): [i] enters block i, [-1] leaves the last
    truncated: bool = False              # the text was longer than the context
    dropped: int = 0                     # tokens cut from the left to fit the context
    tokenizer: object = field(default=None, repr=False)   # names the top alternatives

    # -- distributions, at any temperature ------------------------------------------------
    def log_probs(self, temperature: float = 1.0) -> torch.Tensor:
        """(T, V) log of the next-token distribution at `temperature` (0 = greedy)."""
        if temperature == 0:
            return self.probs(0).log()
        return torch.log_softmax(self.logits / temperature, dim=-1)

    def probs(self, temperature: float = 1.0) -> torch.Tensor:
        """(T, V) next-token distribution; temperature 0 puts all mass on the argmax."""
        if temperature < 0:
            raise GlassError(f"temperature must be >= 0, got {temperature}")
        if temperature == 0:
            return torch.nn.functional.one_hot(self.logits.argmax(-1), self.logits.size(-1)).float()
        return torch.softmax(self.logits / temperature, dim=-1)

    def entropy(self, temperature: float = 1.0) -> torch.Tensor:
        """(T,) entropy of each next-token distribution in nats (divide by ln 2 for bits)."""
        p = self.probs(temperature)
        return -(p * self.log_probs(temperature)).nan_to_num().sum(-1) + 0.0   # 0 log 0 = 0; no -0

    def top(self, k: int | None = None, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, k) probabilities and ids of the k most likely next tokens."""
        return self.probs(temperature).topk(min(k or self.top_k, self.logits.size(-1)), dim=-1)

    # -- the token that actually comes next ----------------------------------------------------
    @property
    def next_ids(self) -> torch.Tensor:
        """(T - 1,) the id following each position (the last position has none)."""
        return torch.tensor(self.ids[1:], dtype=torch.long)

    @cached_property
    def next_log_prob(self) -> torch.Tensor:
        """(T - 1,) natural-log probability the model gave the token that came next."""
        return self.log_probs()[:-1].gather(-1, self.next_ids[:, None])[:, 0]

    @property
    def next_prob(self) -> torch.Tensor:
        return self.next_log_prob.exp()

    @property
    def surprisal_bits(self) -> torch.Tensor:
        """(T - 1,) -log2 p(next token): bits of surprise."""
        return -self.next_log_prob / LN2 + 0.0

    @cached_property
    def next_rank(self) -> torch.Tensor:
        """(T - 1,) rank of the actual next token (1 = the model's top choice)."""
        actual = self.logits[:-1].gather(-1, self.next_ids[:, None])
        return (self.logits[:-1] > actual).sum(-1) + 1

    @property
    def perplexity(self) -> float:
        """exp of the mean negative log-probability of the text's tokens (nan for one token)."""
        if len(self.ids) < 2:
            return float("nan")
        return math.exp(-self.next_log_prob.mean().item())

    # -- for reading and saving -----------------------------------------------------------------
    def rows(self, temperature: float = 1.0, k: int | None = None) -> list[dict]:
        """One dict per position: the token, the distribution's summary, what came next."""
        top_p, top_i = self.top(k, temperature)
        entropy = self.entropy(temperature)
        log_p = self.log_probs(temperature)
        ranks = self.next_rank.tolist()            # from the logits: the same at every temperature > 0
        rows = []
        for t, token in enumerate(self.tokens):
            row = {"position": t, "id": self.ids[t], "token": token,
                   "entropy_nats": entropy[t].item(), "entropy_bits": entropy[t].item() / LN2,
                   "top": [{"id": i, "token": token_text(self.tokenizer, i), "prob": p}
                           for p, i in zip(top_p[t].tolist(), top_i[t].tolist())]}
            if t + 1 < len(self.ids):
                nxt = self.ids[t + 1]
                lp = log_p[t, nxt].item()
                row["next"] = {"id": nxt, "token": self.tokens[t + 1], "prob": math.exp(lp),
                               "log_prob": lp, "rank": ranks[t],
                               "surprisal_bits": -lp / LN2 + 0.0}
            rows.append(row)
        return rows

    def to_dict(self, temperature: float = 1.0, attention: bool = True, residual: bool = False) -> dict:
        """Everything machine-readable (the full (T, V) logits are left out: too big)."""
        out = {"ids": self.ids, "tokens": self.tokens, "temperature": temperature,
               "perplexity": self.perplexity, "truncated": self.truncated, "dropped": self.dropped,
               "positions": self.rows(temperature)}
        if attention and self.attention is not None:
            out["attention"] = self.attention.round(decimals=5).tolist()   # [layer][head][query][key]
        if residual and self.residual is not None:
            out["residual"] = self.residual.tolist()          # [layer][position][channel]
        return out

    def to_json(self, **kwargs) -> str:
        return json.dumps(json_safe(self.to_dict(**kwargs)))

    def _repr_html_(self) -> str:
        from .render import trace_html
        return trace_html(self)

    def __repr__(self) -> str:
        return (f"Trace({len(self.ids)} tokens, perplexity {self.perplexity:.2f}"
                f"{', truncated' if self.truncated else ''})")


def trace(model, text_or_ids, *, tokenizer=None, top_k: int = 10, attention: bool = True,
          residual: bool = True, edit: dict | None = None) -> Trace:
    """Run one forward pass over a text (or ids) and keep what it computed.

        t = trace(model, "The cat sat on the")
        t.rows()[-1]["top"]          # what the model expects next
        t.probs(temperature=0.5)     # the whole distribution at another temperature

    edit: probe edits applied during the pass (`model.probing(edit=...)`), e.g. the edits
    of an ablation (`glassgpt.inspect.ablation.removal`): the trace of the model without a part.
    """
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    ids = to_ids(text_or_ids, tokenizer, model.config.vocab_size)
    ids, dropped = crop_to_context(ids, model.config.context_length)
    n_layer = model.config.n_layer
    read = (["blocks.*.attn.pattern"] if attention else []) + \
           (["blocks.0.resid_pre", "blocks.*.resid_post"] if residual else [])
    x = torch.tensor([ids], dtype=torch.long, device=model.device)
    with torch.no_grad(), evaluating(model), model.probing(read=read, edit=edit) as probes:
        logits = model(x).logits[0].float()                                     # (T, V)
    pattern = (torch.stack([probes[f"blocks.{i}.attn.pattern"][0] for i in range(n_layer)]).float()
               if attention else None)                                          # (L, H, T, T)
    stream = (torch.stack([probes["blocks.0.resid_pre"][0]] +
                          [probes[f"blocks.{i}.resid_post"][0] for i in range(n_layer)]).float()
              if residual else None)                                            # (L + 1, T, C)
    return Trace(ids=ids, tokens=[token_text(tokenizer, i) for i in ids], logits=logits.cpu(),
                 top_k=top_k, attention=None if pattern is None else pattern.cpu(),
                 residual=None if stream is None else stream.cpu(),
                 truncated=dropped > 0, dropped=dropped, tokenizer=tokenizer)


def token_text(tokenizer, token_id: int) -> str:
    """Readable text of one token, or its id in angle brackets without a tokenizer."""
    return tokenizer.id_to_str(token_id) if tokenizer is not None else f"<{token_id}>"


@contextlib.contextmanager
def evaluating(model):
    """Run in eval mode (no dropout) and restore the previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
