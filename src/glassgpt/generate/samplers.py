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
import struct
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import GlassError

NEG_INF = float("-inf")
BUCKETS_PER_NAT, N_BUCKETS = 256, 8192     # top_p's buckets: 1/256 nat wide, 32 nats deep


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
    return drop_below(logits, kth)


def top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering (Holtzman et al. 2019): keep the most likely tokens until their
    probabilities add up to at least p (ties with the last one kept are kept too).

    The textbook version sorts the whole vocabulary every token, which costs more than
    the rest of the chain together. Exact and cheaper: put tokens in buckets by how far
    below the best token they are (1/256 nat wide), find the bucket where the running
    mass crosses p, and sort only that bucket's few tokens. The last token kept gives
    the row's floor. Masses are exp(logit - best), p x their sum: no softmax needed."""
    if p >= 1.0:
        return logits
    best = logits.amax(dim=-1, keepdim=True)                                   # (B, 1)
    weight = torch.sub(logits, best).exp_()                                    # (B, V): probability x sum
    bucket = (torch.sub(best, logits).mul_(BUCKETS_PER_NAT)                    # (B, V): 0 = most likely
              .clamp_(max=N_BUCKETS - 1).to(torch.int64))
    mass = weight.new_zeros(logits.shape[0], N_BUCKETS).scatter_add_(-1, bucket, weight)
    running = mass.cumsum(dim=-1)
    above = running - mass                              # mass of all more likely buckets (B, N_BUCKETS)
    needed = running[:, -1:] * p                        # p x the total mass (B, 1)
    cut = (above < needed).sum(dim=-1, keepdim=True) - 1   # the bucket where the mass crosses p (B, 1)
    floors = []
    for row, (c, ahead, goal) in enumerate(zip(cut.flatten().tolist(), above.gather(-1, cut).flatten().tolist(),
                                               needed.flatten().tolist())):
        cols = (bucket[row] == c).nonzero().flatten()      # the crossing bucket's few tokens, most likely
        for w, logit in sorted(zip(weight[row, cols].tolist(), logits[row, cols].tolist()), reverse=True):
            if ahead >= goal:                              # first: kept, as the mass ahead is below p
                break
            floor, ahead = logit, ahead + w
        floors.append(floor)
    return drop_below(logits, floors)


def min_p(logits: torch.Tensor, m: float) -> torch.Tensor:
    """Min-p (Nguyen et al. 2024): keep tokens with probability >= m x the top token's,
    i.e. with logit >= the top logit + log m."""
    return drop_below(logits, logits.amax(dim=-1, keepdim=True) + math.log(m)) if m > 0 else logits


def drop_below(logits: torch.Tensor, floor: torch.Tensor | list[float] | float) -> torch.Tensor:
    """Every logit below its row's floor (a number, one per row, or (B, 1)) becomes -inf;
    the others stay as they are.

    The same as logits.masked_fill(logits < floor, -inf), but one vectorised pass per row
    (F.threshold keeps what is above the next float below the floor): on a CPU the
    boolean-mask kernel of masked_fill is several times slower over 50k entries."""
    floors = floor.flatten().tolist() if isinstance(floor, torch.Tensor) else floor
    below = [float32_below(f) for f in ([floors] if isinstance(floors, (int, float)) else floors)]
    if len(set(below)) == 1:                                                   # one floor for every row
        return F.threshold(logits, below[0], NEG_INF)
    out = torch.empty_like(logits)
    for row, b, kept in zip(logits, below, out):
        torch.threshold(row, b, NEG_INF, out=kept)
    return out


def float32_below(x: float) -> float:
    """The largest float32 below x (x itself a float32 value; -inf and nan stay as they are):
    torch.nextafter for one number, without making tensors."""
    if x != x or x == NEG_INF:
        return x
    if x == 0:
        return -1.401298464324817e-45                                          # the smallest negative float32
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    return struct.unpack("<f", struct.pack("<I", bits - 1 if x > 0 else bits + 1))[0]


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


# -- settings and the chain ------------------------------------------------------------------
@dataclass(frozen=True)
class SamplingParams:
    """Every sampler setting; the defaults change nothing (plain sampling at T = 1)."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: dict[int, float] | None = field(default=None, hash=False)

    def validate(self, vocab_size: int) -> "SamplingParams":
        def number(name, value):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise GlassError(f"{name} must be a number, got {value!r}")

        number("temperature", self.temperature)
        if self.temperature < 0:
            raise GlassError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 1):
            raise GlassError(f"top_k must be a whole number >= 1, got {self.top_k!r}")
        if self.top_p is not None:
            number("top_p", self.top_p)
            if not 0 < self.top_p <= 1:
                raise GlassError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.min_p is not None:
            number("min_p", self.min_p)
            if not 0 <= self.min_p <= 1:
                raise GlassError(f"min_p must be in [0, 1], got {self.min_p}")
        number("repetition_penalty", self.repetition_penalty)
        if self.repetition_penalty <= 0 or math.isinf(self.repetition_penalty):
            raise GlassError(f"repetition_penalty must be > 0 (1 = off), got {self.repetition_penalty}")
        for name in ("frequency_penalty", "presence_penalty"):
            value = getattr(self, name)
            number(name, value)
            if not -2 <= value <= 2:
                raise GlassError(f"{name} must be in [-2, 2] (0 = off), got {value}")
        for token, bias in (self.logit_bias or {}).items():
            if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < vocab_size:
                raise GlassError(f"logit_bias token {token!r} is not an id in the vocabulary (0..{vocab_size - 1})")
            number(f"logit_bias[{token}]", bias)
            if bias == math.inf:
                raise GlassError(f"logit_bias[{token}] is +inf: use a large finite number to force a token")
        return self

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0

    @property
    def uses_counts(self) -> bool:
        """Whether a step needs the token counts of the context (the penalties)."""
        return self.repetition_penalty != 1 or self.frequency_penalty != 0 or self.presence_penalty != 0


class SamplerChain:
    """The documented chain for one set of `SamplingParams`, with no-op steps left out.

        chain = SamplerChain(params, vocab_size=V)
        chain.steps                            # [("top_k", ...), ("top_p", ...), ...]
        chain.process(logits, counts)          # logits after every step up to temperature
        chain.probabilities(logits, counts)    # the distribution the token is drawn from
        chain.sample(logits, counts, generator)
    """

    def __init__(self, params: SamplingParams, vocab_size: int, device: torch.device | str = "cpu"):
        self.params = params.validate(vocab_size)
        p = params
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
                steps.append(("top_k", lambda x, c: top_k(x, p.top_k)))
            if p.top_p is not None and p.top_p < 1:
                steps.append(("top_p", lambda x, c: top_p(x, p.top_p)))
            if p.min_p:
                steps.append(("min_p", lambda x, c: min_p(x, p.min_p)))
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
