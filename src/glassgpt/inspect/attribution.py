"""Attribution by occlusion: which earlier tokens does a prediction depend on?

Take the prediction for the token at `position` (made from tokens 0 .. position-1).
Remove one context token (or replace it with a baseline token), run the model again,
and measure how far the predicted distribution moved:

    KL(original || occluded)    how much the whole distribution changed, in nats
    delta top prob              change in the probability of the originally top token

Tokens whose removal moves the prediction most are the ones it rests on. All occluded
variants of the text run as one batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import GlassError
from .render import ansi_legend, ansi_tokens, html_tokens, scale, text_table, visible
from ..model.inputs import crop_to_context, to_ids
from .trace import evaluating, token_text


@dataclass
class Attribution:
    tokens: list[str]               # the input tokens
    position: int                   # index of the predicted token (the prediction is made at position - 1)
    occluded: list[int]             # which token indices were occluded
    kl: torch.Tensor                # (len(occluded),) KL(original || occluded) in nats
    delta_top_prob: torch.Tensor    # (len(occluded),) p_occluded(top) - p_original(top)
    top_id: int                     # the original top prediction
    top_token: str
    top_prob: float
    baseline: int | None            # None: tokens were removed; else the replacement id

    def kl_per_token(self) -> list[float]:
        """KL for every input token (nan where a token was not occluded)."""
        out = [float("nan")] * len(self.tokens)
        for j, v in zip(self.occluded, self.kl.tolist()):
            out[j] = v
        return out

    def ansi(self, color: bool = True) -> str:
        """The context coloured by KL; the predicted slot is underlined (or [bracketed])."""
        kl = self.kl_per_token()
        top = max([v for v in kl if v == v] or [0.0])
        shown = self.tokens[: self.position + 1] if self.position < len(self.tokens) else self.tokens
        text = ansi_tokens(shown, scale(kl[: len(shown)], top), color, mark=self.position)
        head = (f"prediction for position {self.position}: {visible(self.top_token)!r} "
                f"p={self.top_prob:.3f}; {'removing' if self.baseline is None else 'replacing'} each earlier token")
        return f"{head}\n{text}\n{ansi_legend('KL(original || occluded), nats', top, color)}"

    def table(self) -> str:
        rows = sorted(zip(self.occluded, self.kl.tolist(), self.delta_top_prob.tolist()), key=lambda r: -r[1])
        return text_table(["pos", "token", "KL (nats)", "Δ p(top)"],
                          [[j, visible(self.tokens[j]), f"{k:.4f}", f"{d:+.4f}"] for j, k, d in rows], right=[0, 2, 3])

    def _repr_html_(self) -> str:
        kl = self.kl_per_token()
        return (f"<p>prediction for position {self.position}: <b>{visible(self.top_token)!r}</b> "
                f"p={self.top_prob:.3f} (darker = the prediction depends more on that token)</p>"
                + html_tokens(self.tokens, scale(kl), [f"KL {v:.4f} nats" for v in kl], mark=self.position))

    def to_dict(self) -> dict:
        return {"position": self.position, "baseline": self.baseline, "top_id": self.top_id,
                "top_token": self.top_token, "top_prob": self.top_prob,
                "occluded": [{"index": j, "token": self.tokens[j], "kl": k, "delta_top_prob": d}
                             for j, k, d in zip(self.occluded, self.kl.tolist(), self.delta_top_prob.tolist())]}


def occlusion(model, text_or_ids, position: int | None = None, *, baseline: int | None = None,
              occlude: list[int] | None = None, tokenizer=None, batch_size: int = 64) -> Attribution:
    """How much each token changes the prediction of the token at `position`.

    position: index of the predicted token, 1 .. T (default T: the token after the text).
    baseline: None removes the occluded token; an id replaces it instead.
    occlude: token indices to occlude (default: every context token, 0 .. position-1).
    """
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    ids, _ = crop_to_context(to_ids(text_or_ids, tokenizer, model.config.vocab_size), model.config.context_length)
    T = len(ids)
    position = T if position is None else position
    if not 1 <= position <= T:
        raise GlassError(f"position {position} is out of range: give 1 .. {T} (the token being predicted)")
    if baseline is None and T == 1:
        raise GlassError("removing the only token leaves nothing to run: pass a baseline token id instead")
    if baseline is not None and not 0 <= baseline < model.config.vocab_size:
        raise GlassError(f"baseline id {baseline} is not in the vocabulary (0 .. {model.config.vocab_size - 1})")
    occlude = list(range(position)) if occlude is None else list(occlude)
    if any(not 0 <= j < T for j in occlude):
        raise GlassError(f"occluded indices must be in 0 .. {T - 1}")
    # Later tokens cannot change the prediction, so the text is cut after the last one we need.
    end = max([position] + [j + 1 for j in occlude])
    variants, read_at = [ids[:end]], [position - 1]                      # row 0: the original
    for j in occlude:
        if baseline is None:
            variants.append(ids[:j] + ids[j + 1:end] + [ids[0]])          # pad to equal length; never read
            read_at.append(position - 1 if j >= position else position - 2)
        else:
            variants.append(ids[:j] + [baseline] + ids[j + 1:end])
            read_at.append(position - 1)
    log_p = predicted_log_probs(model, variants, read_at, batch_size)    # (1 + n, V)
    original, occluded = log_p[0], log_p[1:]
    kl = (original.exp() * (original - occluded)).sum(-1).clamp_min(0)   # KL(original || occluded)
    top_id = int(original.argmax())
    top_prob = original[top_id].exp().item()
    return Attribution(tokens=[token_text(tokenizer, i) for i in ids], position=position, occluded=occlude,
                       kl=kl, delta_top_prob=occluded[:, top_id].exp() - top_prob, top_id=top_id,
                       top_token=token_text(tokenizer, top_id), top_prob=top_prob, baseline=baseline)


def predicted_log_probs(model, variants: list[list[int]], read_at: list[int], batch_size: int) -> torch.Tensor:
    """Run equal-length id lists in batches; the log-distribution at one position of each."""
    out = []
    with torch.no_grad(), evaluating(model):
        for start in range(0, len(variants), batch_size):
            x = torch.tensor(variants[start:start + batch_size], dtype=torch.long, device=model.device)  # (b, T)
            at = torch.tensor(read_at[start:start + batch_size], device=model.device)
            logits = model(x).logits[torch.arange(len(x), device=model.device), at]                     # (b, V)
            out.append(torch.log_softmax(logits.float(), dim=-1).cpu())
    return torch.cat(out)
