"""The sampler chain: small steps that turn the model's logits into the next token.

Every step takes logits (B, V) and returns logits (B, V); a token a step rules out
gets -inf. The chain always runs in this order (as in llama.cpp, each step skipped
when its setting is a no-op):

    1. repetition_penalty   tokens already in the context: positive logits / r, negative * r
    2. frequency_penalty    minus f x (how often the token occurs in the context)
    3. presence_penalty     minus p if the token occurs in the context at all
    4. logit_bias           add a fixed number to chosen tokens (-inf bans one)
    5. top_k                keep the k most likely tokens
    6. top_p                keep the smallest set of most likely tokens with mass >= p
    7. min_p                keep tokens at least min_p times as likely as the best one
    8. temperature          divide by T: T < 1 sharpens, T > 1 flattens
    9. draw                 sample from softmax(logits); T = 0 means argmax (greedy)

The filters (5-7) look at the distribution at temperature 1, so temperature only
reshapes what they kept. "The context" for the penalties is every token the model
sees: the prompt and what was generated so far.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import torch

from ..errors import GlassError
from .samplers_fast import FAST_VOCAB, min_p_fast, top_k_fast, top_p_fast

NEG_INF = float("-inf")


# -- the steps, in chain order ------------------------------------------------------------
def repetition_penalty(logits: torch.Tensor, counts: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty (Keskar et al. 2019): make tokens already seen less likely (r > 1).

    Dividing a positive logit and multiplying a negative one both push it down: a seen
    token's logit is multiplied by 1/r if positive, by r if negative (-inf stays -inf).
    All in float arithmetic over the row (no boolean masks: on a CPU those kernels are
    several times slower over 50k entries)."""
    seen = counts.clamp(max=1)                                                 # (B, V): 1 if seen, else 0
    factor = torch.sign(logits).mul_((1 / penalty - penalty) / 2).add_((1 / penalty + penalty) / 2)
    return logits * factor.sub_(1).mul_(seen).add_(1)                          # unseen: x * 1


def frequency_penalty(logits: torch.Tensor, counts: torch.Tensor, penalty: float) -> torch.Tensor:
    """Subtract penalty x count: the more often a token occurred, the less likely it gets."""
    return logits - penalty * counts


def presence_penalty(logits: torch.Tensor, counts: torch.Tensor, penalty: float) -> torch.Tensor:
    """Subtract a flat penalty from every token that occurred at least once."""
    return logits - penalty * (counts > 0).to(logits.dtype)


def logit_bias(logits: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Add a fixed bias (V,) to the logits; -inf bans a token outright."""
    return logits + bias


def top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k highest logits per row (ties with the k-th are kept too)."""
    if k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]                     # (B, 1)
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering (Holtzman et al. 2019): keep the most likely tokens until their
    probabilities add up to at least p (ties with the last one kept are kept too).

    Sort by probability, add up, cut where the mass before a token reaches p."""
    if p >= 1.0:
        return logits
    probs, order = torch.softmax(logits, dim=-1).sort(dim=-1, descending=True)   # (B, V) most likely first
    mass_before = probs.cumsum(dim=-1) - probs
    n_kept = (mass_before < p).sum(dim=-1, keepdim=True)                         # (B, 1), at least 1
    floor = logits.gather(-1, order).gather(-1, n_kept - 1)                      # the last kept token's logit
    return logits.masked_fill(logits < floor, NEG_INF)


def min_p(logits: torch.Tensor, m: float) -> torch.Tensor:
    """Min-p (Nguyen et al. 2024): keep tokens with probability >= m x the top token's,
    i.e. with logit >= the top logit + log m."""
    if m <= 0:
        return logits
    return logits.masked_fill(logits < logits.amax(dim=-1, keepdim=True) + math.log(m), NEG_INF)


def temperature(logits: torch.Tensor, t: float) -> torch.Tensor:
    """Divide by T > 0: T < 1 sharpens the distribution, T > 1 flattens it."""
    return logits / t


def draw(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample one token per row from softmax(logits): (B, V) -> (B,)."""
    return draw_from(torch.softmax(logits, dim=-1), generator)


def draw_from(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Inverse-CDF sampling: a uniform number in [0, total) lands in one token's slice of
    the running sum (B, V) -> (B,). Exact, and much faster than torch.multinomial on 50k
    entries."""
    cdf = probs.cumsum(dim=-1)                                                 # (B, V)
    u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.shape[-1] - 1).squeeze(-1)


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """Temperature 0: the most likely token, (B, V) -> (B,)."""
    return logits.argmax(dim=-1)


# -- settings ----------------------------------------------------------------------------------
def _finite(name, value, low=-math.inf, high=math.inf, low_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GlassError(f"{name} must be a finite number, got {value!r}")
    if value < low or (low_open and value == low) or value > high:
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise GlassError(f"{name} must be in {bounds}, got {value!r}")


def _whole(name, value, low):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise GlassError(f"{name} must be a whole number >= {low}, got {value!r}")


def _check_stop(name, value):
    if any(not isinstance(s, str) or not s for s in value):
        raise GlassError(f"{name}: stop sequences must be non-empty strings, got {list(value)!r}")


def _check_logit_bias(name, value):
    if not isinstance(value, dict):
        raise GlassError(f"{name} must map token ids to numbers, got {type(value).__name__}")
    for token, bias in value.items():
        _whole(f"{name} token id", token, 0)
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or math.isnan(bias) or bias == math.inf:
            raise GlassError(f"{name}[{token}] must be a number (-inf bans the token; +inf is not allowed: "
                             f"use a large finite number to force a token), got {bias!r}")


def setting(default, help: str, check=None, metavar: str | None = None, cli: bool = True, hash: bool | None = None):
    """A declared setting: its default, help text and check live here, once; the CLI flags
    (glassgpt generate / play) and the server's request fields are built from them."""
    return field(default=default, hash=hash, metadata=dict(help=help, check=check, metavar=metavar, cli=cli))


@dataclass(frozen=True, kw_only=True)
class SamplingParams:
    """Every setting of one generation request; the defaults change nothing (plain sampling
    at T = 1). Construct with keywords; a bad value raises GlassError naming the field."""

    temperature: float = setting(1.0, "divide the logits by T before the draw; 0 = greedy", metavar="T",
                                 check=lambda n, v: _finite(n, v, 0))
    top_k: int | None = setting(None, "keep the K most likely tokens", metavar="K",
                                check=lambda n, v: _whole(n, v, 1))
    top_p: float | None = setting(None, "keep the most likely tokens until their mass reaches P", metavar="P",
                                  check=lambda n, v: _finite(n, v, 0, 1, low_open=True))
    min_p: float | None = setting(None, "keep tokens at least P times as likely as the best", metavar="P",
                                  check=lambda n, v: _finite(n, v, 0, 1))
    repetition_penalty: float = setting(1.0, "seen tokens' logits: positive / R, negative x R (1 = off)",
                                        metavar="R", check=lambda n, v: _finite(n, v, 0, low_open=True))
    frequency_penalty: float = setting(0.0, "subtract F x (how often a token occurred) (0 = off)", metavar="F",
                                       check=lambda n, v: _finite(n, v, -2, 2))
    presence_penalty: float = setting(0.0, "subtract P from every token that occurred (0 = off)", metavar="P",
                                      check=lambda n, v: _finite(n, v, -2, 2))
    logit_bias: dict[int, float] | None = setting(None, "token id -> number added to its logit (-inf bans it)",
                                                  check=_check_logit_bias, cli=False, hash=False)
    max_new_tokens: int = setting(128, "the most tokens to generate", metavar="N",
                                  check=lambda n, v: _whole(n, v, 0))
    stop: tuple[str, ...] = setting((), "stop when one of these texts appears (cut from the text)", metavar="STR",
                                    check=_check_stop)
    seed: int | None = setting(None, "same seed, same settings: same text", metavar="S",
                               check=lambda n, v: _whole(n, v, -2**63))
    num_samples: int = setting(1, "samples per prompt", metavar="N", check=lambda n, v: _whole(n, v, 1))
    logprobs: int | None = setting(None, "per token: its log-probability and the N most likely alternatives",
                                   metavar="N", check=lambda n, v: _whole(n, v, 0))

    def __post_init__(self):
        if isinstance(self.stop, str) or self.stop is None:
            object.__setattr__(self, "stop", (self.stop,) if self.stop else ())
        elif not isinstance(self.stop, tuple):
            object.__setattr__(self, "stop", tuple(self.stop))
        for f in fields(self):
            value, check = getattr(self, f.name), f.metadata["check"]
            if value is not None and check is not None:
                check(f.name, value)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def of(cls, params: "SamplingParams | None" = None, **settings) -> "SamplingParams":
        """params with some settings replaced (unknown names are a GlassError listing the known ones)."""
        unknown = sorted(set(settings) - set(cls.names()))
        if unknown:
            raise GlassError(f"unknown setting {unknown[0]!r}: choose from {', '.join(cls.names())}")
        return replace(params, **settings) if params is not None else cls(**settings)

    def validate(self, vocab_size: int) -> "SamplingParams":
        """The checks that need the model: logit_bias ids inside the vocabulary."""
        for token in self.logit_bias or {}:
            if not 0 <= token < vocab_size:
                raise GlassError(f"logit_bias token {token!r} is not an id in the vocabulary (0..{vocab_size - 1})")
        return self

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0

    @property
    def uses_counts(self) -> bool:
        """Whether a step needs the token counts of the context (the penalties)."""
        return self.repetition_penalty != 1 or self.frequency_penalty != 0 or self.presence_penalty != 0


# -- the chain -------------------------------------------------------------------------------
class SamplerChain:
    """The documented chain for one set of `SamplingParams`, with no-op steps left out.

        chain = SamplerChain(params, vocab_size=V)
        chain.steps                            # [("top_k", ...), ("top_p", ...), ...]
        chain.process(logits, counts)          # logits after every step up to temperature
        chain.probabilities(logits, counts)    # the distribution the token is drawn from
        chain.sample(logits, counts, generator)

    From FAST_VOCAB entries on, the filters run as their `samplers_fast` siblings (the same
    result, without sorting the vocabulary)."""

    def __init__(self, params: SamplingParams, vocab_size: int, device: torch.device | str = "cpu"):
        self.params = params.validate(vocab_size)
        p = params
        fast = vocab_size >= FAST_VOCAB
        k_step, p_step, m_step = (top_k_fast, top_p_fast, min_p_fast) if fast else (top_k, top_p, min_p)
        steps = []
        if p.repetition_penalty != 1:
            steps.append(("repetition_penalty", lambda x, c: repetition_penalty(x, c, p.repetition_penalty)))
        if p.frequency_penalty != 0:
            steps.append(("frequency_penalty", lambda x, c: frequency_penalty(x, c, p.frequency_penalty)))
        if p.presence_penalty != 0:
            steps.append(("presence_penalty", lambda x, c: presence_penalty(x, c, p.presence_penalty)))
        if p.logit_bias:
            bias = torch.zeros(vocab_size, device=device)
            bias[list(p.logit_bias)] = torch.tensor(list(p.logit_bias.values()), dtype=torch.float32, device=device)
            steps.append(("logit_bias", lambda x, c: logit_bias(x, bias)))
        # filtering only changes the argmax through ties, so greedy skips it
        if not p.is_greedy:
            if p.top_k is not None and p.top_k < vocab_size:
                steps.append(("top_k", lambda x, c: k_step(x, p.top_k)))
            if p.top_p is not None and p.top_p < 1:
                steps.append(("top_p", lambda x, c: p_step(x, p.top_p)))
            if p.min_p:
                steps.append(("min_p", lambda x, c: m_step(x, p.min_p)))
            if p.temperature != 1:
                steps.append(("temperature", lambda x, c: temperature(x, p.temperature)))
        self.steps = steps

    def process(self, logits: torch.Tensor, counts: torch.Tensor | None = None) -> torch.Tensor:
        """Raw logits (B, V) -> logits after every step of the chain (before the draw)."""
        for _, step in self.steps:
            logits = step(logits, counts)
        return logits

    def probabilities(self, logits: torch.Tensor, counts: torch.Tensor | None = None) -> torch.Tensor:
        """The distribution the next token is drawn from (B, V); one-hot at T = 0."""
        processed = self.process(logits, counts)
        if self.params.is_greedy:
            return torch.zeros_like(processed).scatter_(-1, greedy(processed)[:, None], 1.0)
        return torch.softmax(processed, dim=-1)

    def sample(self, logits: torch.Tensor, counts: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Raw logits (B, V) -> one token id per row (B,)."""
        processed = self.process(logits, counts)
        return greedy(processed) if self.params.is_greedy else draw(processed, generator)
