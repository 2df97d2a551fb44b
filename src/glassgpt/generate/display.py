"""Plain-text tables for the terminal: per-token log-probabilities and a distribution as bars."""
from __future__ import annotations

import math

from ..tokenizer.base import visible
from .outputs import TokenLogprob

BAR = "█"


def logprob_table(records: list[TokenLogprob]) -> str:
    """One line per generated token: its probability before/after the chain, the entropy,
    and the alternatives the model liked (probability before -> after the chain)."""
    lines = [f"{'#':>3}  {'token':<12} {'p model':>8} {'p sampled':>9} {'entropy':>7}  alternatives (model -> sampled)"]
    for i, r in enumerate(records):
        alts = "  ".join(f"{visible(a.text)} {a.prob:.2f}->{a.prob_after:.2f}" for a in r.top)
        lines.append(f"{i:>3}  {visible(r.text):<12} {math.exp(r.logprob):>8.3f} "
                     f"{math.exp(r.logprob_after):>9.3f} {r.entropy:>7.2f}  {alts}")
    return "\n".join(lines)


def constraint_table(records: list[TokenLogprob], n: int = 3) -> str:
    """One line per constrained token: the probability mass the constraint removed, the
    model's favourite tokens (x = not allowed), and the allowed tokens it was drawn among
    (probability under the model -> after the chain and the constraint)."""
    lines = [f"{'#':>3}  {'token':<12} {'p sampled':>9} {'removed':>7}  model's top (x = not allowed)"
             f"{'':<14}| allowed top (model -> sampled)"]
    for i, r in enumerate(records):
        c = r.constraint
        if c is None:
            continue
        best = "  ".join(f"{'' if a.allowed else 'x'}{visible(a.text)} {a.prob:.2f}" for a in r.top[:n])
        allowed = "  ".join(f"{visible(a.text)} {a.prob:.2f}->{a.prob_after:.2f}" for a in c.top_allowed[:n])
        lines.append(f"{i:>3}  {visible(r.text):<12} {math.exp(r.logprob_after):>9.3f} {c.mass_removed:>7.1%}  "
                     f"{best:<42}| {allowed}{'  (filters fell back)' if c.fell_back else ''}")
    return "\n".join(lines)


def distribution_table(entries: list[tuple[int, str, float]], width: int = 30) -> str:
    """(id, text, probability) rows as a small bar chart, most likely first."""
    top = max((p for _, _, p in entries), default=0.0) or 1.0
    lines = []
    for token, text, p in entries:
        bar = BAR * max(0, round(width * p / top))
        lines.append(f"{visible(text):<14} {token:>6} {p:>7.2%} {bar}")
    return "\n".join(lines)
