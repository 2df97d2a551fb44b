"""Scoring options: how likely is each of a few given continuations of a context?

    scores = option_logprobs(model, "Q: 2 + 2 =", [" 4", " 5", " four"])
    scores[0].logprob            # log P(" 4" | context): the sum of its tokens' log-probabilities
    score_choices(model, "Q: 2 + 2 =", [" 4", " 5", " four"]).probs   # normalised over the options

An option's probability is the probability that the model, continuing the context, writes
exactly the option's tokens: the product of one next-token probability per token
(temperature 1, no sampler chain). All options are scored in one batched forward pass.

The prompt/option boundary: a byte-level BPE tokenizer may join the context's last bytes
with the option's first ones (context "is " + option "yes" is read as "is" + " yes").
Scoring "yes" after a lone trailing-space token would ask the model about a token
sequence it almost never saw in training. So the context and each option are tokenised
together, as the model would see the whole text, and the split is placed where all the
texts still agree with the context's own tokens: the context tokens after that point
(here " ") are re-read as the start of every option (`OptionScore.prefix`), and every
option is scored from the same point, so their probabilities stay comparable. A
character tokenizer never merges: there the split is always the context's end.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch

from ..errors import GlassError
from .trace import evaluating


@dataclass
class OptionScore:
    text: str                        # the option as given
    ids: list[int]                   # its tokens as the model sees them after the context
    token_logprobs: list[float]      # natural-log probability of each of those tokens, in context
    prefix: str = ""                 # context text re-read as the option's start (boundary merge)
    n_chars: int = 0                 # characters of the option text

    @property
    def logprob(self) -> float:
        """log P(option | context): the sum of its tokens' log-probabilities."""
        return math.fsum(self.token_logprobs)

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)

    def to_dict(self) -> dict:
        return {"text": self.text, "ids": self.ids, "prefix": self.prefix, "token_logprobs": self.token_logprobs,
                "logprob": self.logprob, "n_tokens": self.n_tokens, "n_chars": self.n_chars}


def option_logprobs(model, context: str | list[int], options: list[str], tokenizer=None) -> list[OptionScore]:
    """Score each option as a continuation of `context` (text or token ids) in one batched
    forward pass; returns one OptionScore per option, in order."""
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise GlassError("scoring options needs a tokenizer: pass tokenizer=... or load the model with one")
    options = check_options(options)
    context_ids, rows, split = split_rows(tokenizer, context, options)
    logprobs = _row_logprobs(model, rows, split)
    scores = []
    for option, row, lps in zip(options, rows, logprobs):
        ids = row[split:]
        prefix = tokenizer.decode(context_ids[split:])
        scores.append(OptionScore(text=option, ids=ids, token_logprobs=lps, prefix=prefix, n_chars=len(option)))
    return scores


def check_options(options) -> list[str]:
    if isinstance(options, str):
        raise GlassError("options must be a list of strings, not one string")
    options = list(options)
    if not options:
        raise GlassError("the list of options is empty: give at least one option")
    for o in options:
        if not isinstance(o, str) or not o:
            raise GlassError(f"every option must be a non-empty string, got {o!r}")
    if len(set(options)) != len(options):
        raise GlassError(f"options repeat: {options}")
    return options


def split_rows(tokenizer, context, options: list[str]) -> tuple[list[int], list[list[int]], int]:
    """(context ids, one full token row per option, the split): row[:split] is the context
    every option is scored after; row[split:] are the tokens scored."""
    context_text = context if isinstance(context, str) else _round_trip_text(tokenizer, context)
    if context_text is None:     # ids that text cannot reproduce: no boundary to heal
        context_ids = [int(i) for i in context]
        rows = [context_ids + tokenizer.encode(o) for o in options]
        split = len(context_ids)
    else:
        context_ids = tokenizer.encode(context_text, allowed_special="all")
        rows = [_encode_context_option(tokenizer, context_text, o) for o in options]
        split = min(_common_prefix(context_ids, row) for row in rows)
        if split == 0:           # the context merged whole into an option: nothing would predict it
            rows = [context_ids + tokenizer.encode(o) for o in options]
            split = len(context_ids)
    if split == 0:
        raise GlassError("the context is empty: give at least one token of context "
                         "(e.g. '<|endoftext|>' if the tokenizer has it) before the options")
    if any(len(row) == split for row in rows):
        raise GlassError("an option adds no tokens to the context")
    return context_ids, rows, split


def _encode_context_option(tokenizer, context_text: str, option: str) -> list[int]:
    # Special-token names count in the context (as in `trace`), never in the option.
    specials = [name for name in getattr(tokenizer, "special_tokens", {}) if name in context_text]
    if not specials:
        return tokenizer.encode(context_text + option)
    # Cut the context after its last special token: that part cannot merge with the option.
    cut = max(context_text.rfind(name) + len(name) for name in specials)
    return tokenizer.encode(context_text[:cut], allowed_special="all") + tokenizer.encode(
        context_text[cut:] + option)


def _round_trip_text(tokenizer, ids) -> str | None:
    ids = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
    try:
        text = tokenizer.decode_bytes(ids).decode("utf-8")
    except (UnicodeDecodeError, GlassError, AttributeError):
        return None
    return text if tokenizer.encode(text, allowed_special="all") == ids else None


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _row_logprobs(model, rows: list[list[int]], split: int) -> list[list[float]]:
    """One forward pass over all rows (right-padded; causal attention never reads the
    padding). A row longer than the context keeps its last tokens, as `trace` does."""
    n_ctx = model.config.context_length
    crops = [max(0, len(row) - n_ctx) for row in rows]
    if any(crops):
        if any(len(row) - split >= n_ctx for row in rows):
            raise GlassError(f"an option is longer than the model's context ({n_ctx} tokens)")
        warnings.warn(f"context and option exceed the context length {n_ctx}: scoring after the last "
                      f"{n_ctx} tokens", stacklevel=3)
    kept = [row[c:] for row, c in zip(rows, crops)]
    width = max(map(len, kept))
    ids = torch.zeros(len(kept), width, dtype=torch.long)                       # (B, T)
    for b, row in enumerate(kept):
        ids[b, :len(row)] = torch.tensor(row)
    with torch.no_grad(), evaluating(model):
        logits = model(ids.to(model.device)).logits.float()                     # (B, T, V)
    logp = torch.log_softmax(logits, dim=-1).cpu()
    out = []
    for b, (row, c) in enumerate(zip(rows, crops)):
        positions = torch.arange(split - c, len(row) - c)                        # where each scored token sits
        targets = torch.tensor(row[split:])
        out.append(logp[b, positions - 1, targets].tolist())                    # row t - 1 predicts token t
    return out


# -- LMQL's `distribution`: normalise over the options ------------------------------------------
@dataclass
class ChoiceScores:
    options: list[str]
    scores: list[OptionScore]
    logprobs: list[float]            # log P(option | prompt), raw sums
    probs: list[float]               # exp(logprobs) normalised over the options
    per_token_logprobs: list[float]  # logprob / n_tokens: the length-normalised score
    per_token_probs: list[float]     # softmax of the per-token scores over the options
    mass_outside: float              # probability that the continuation starts with none of the options
    extra: dict = field(default_factory=dict)

    @property
    def best(self) -> str:
        return self.options[max(range(len(self.options)), key=self.probs.__getitem__)]

    def rows(self) -> list[dict]:
        return [{"option": o, "prob": p, "logprob": lp, "per_token_logprob": ptl, "per_token_prob": ptp,
                 "n_tokens": s.n_tokens, "tokens": s.ids}
                for o, s, p, lp, ptl, ptp in zip(self.options, self.scores, self.probs, self.logprobs,
                                                 self.per_token_logprobs, self.per_token_probs)]

    def to_dict(self) -> dict:
        return {"options": self.rows(), "mass_outside": self.mass_outside, "best": self.best}


def score_choices(model, prompt: str | list[int], options: list[str], tokenizer=None) -> ChoiceScores:
    """The probability of each option as the continuation of `prompt`, normalised over the
    options (LMQL's `distribution` clause), with the length-normalised scores beside the raw
    ones and the probability mass the options leave out.

    `mass_outside` = 1 - P(the continuation starts with one of the options' token
    sequences); an option whose tokens extend another option's is inside that one's mass and
    not counted twice. Other tokenisations of the same text count as outside."""
    scores = option_logprobs(model, prompt, options, tokenizer)
    logprobs = [s.logprob for s in scores]
    per_token = [s.logprob / s.n_tokens for s in scores]
    return ChoiceScores(options=list(options), scores=scores, logprobs=logprobs, probs=_normalise(logprobs),
                        per_token_logprobs=per_token, per_token_probs=_normalise(per_token),
                        mass_outside=_mass_outside(scores))


def _normalise(logprobs: list[float]) -> list[float]:
    return torch.softmax(torch.tensor(logprobs, dtype=torch.float64), dim=0).tolist()


def _mass_outside(scores: list[OptionScore]) -> float:
    sequences = [tuple(s.ids) for s in scores]
    minimal = [s for s, seq in zip(scores, sequences)
               if not any(other != seq and seq[:len(other)] == other for other in sequences)]
    return max(0.0, 1.0 - math.fsum(s.prob for s in minimal))
