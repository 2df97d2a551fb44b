"""Faster versions of the sampler chain's filters, for large vocabularies.

Each one returns what its textbook sibling in `samplers` returns (tests check it); the
chain picks these when the vocabulary has at least FAST_VOCAB entries, where the
textbook's full sort and boolean masks cost more than the rest of a decode step's
sampling together on a CPU.
"""
from __future__ import annotations

import math
import struct

import torch
import torch.nn.functional as F

NEG_INF = float("-inf")
FAST_VOCAB = 4096                          # the chain uses these filters from this vocabulary size on
BUCKETS_PER_NAT, N_BUCKETS = 256, 8192     # top_p_fast's buckets: 1/256 nat wide, 32 nats deep


def top_k_fast(logits: torch.Tensor, k: int) -> torch.Tensor:
    """`samplers.top_k`, with the k-th value as each row's floor for `drop_below`."""
    if k >= logits.shape[-1]:
        return logits
    return drop_below(logits, torch.topk(logits, k, dim=-1).values[..., -1:])


def top_p_fast(logits: torch.Tensor, p: float) -> torch.Tensor:
    """`samplers.top_p` without sorting the vocabulary: put tokens in buckets by how far
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
        cols = (bucket[row] == c).nonzero().flatten()      # the crossing bucket's few tokens, most likely first
        for w, logit in sorted(zip(weight[row, cols].tolist(), logits[row, cols].tolist()), reverse=True):
            if ahead >= goal:                              # first: kept, as the mass ahead is below p
                break
            floor, ahead = logit, ahead + w
        floors.append(floor)
    return drop_below(logits, floors)


def min_p_fast(logits: torch.Tensor, m: float) -> torch.Tensor:
    """`samplers.min_p` through `drop_below`."""
    return drop_below(logits, logits.amax(dim=-1, keepdim=True) + math.log(m)) if m > 0 else logits


def drop_below(logits: torch.Tensor, floor: torch.Tensor | list[float] | float) -> torch.Tensor:
    """logits.masked_fill(logits < floor, -inf) for a floor per row (a number, a list, or (B, 1)),
    in one vectorised pass per row: F.threshold keeps what is above the next float32 below
    the floor. On a CPU the boolean-mask kernel of masked_fill is several times slower over
    50k entries."""
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
