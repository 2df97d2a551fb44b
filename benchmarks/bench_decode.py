"""Decoding speed: batch 1, 64-token prompt, 256 new tokens, greedy, vocabulary 50,257,
random weights, ours vs Hugging Face transformers' GPT-2 with identical weights.

fp32 decoding of these shapes is bound by memory bandwidth: every weight is read once
per token. The table prints that ceiling (this machine's measured read bandwidth over
the bytes read per token) beside the speeds, and rows for our half-precision decode
weights (`fast_decode(model, dtype=...)`), which read half the bytes. Every call enters
its own fast-decoding scope, as `glassgpt generate` does: the copies' cost is in the figures. "same tokens" compares
the greedy tokens with transformers' fp32 ones; otherwise the row says how many of the
first tokens agree (greedy runs diverge after their first difference).
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.common import header, hf_gpt2_pair, ratio, table, timer
from glassgpt.generate import generate
from glassgpt.generate.fast import fast_decode

SHAPES = {"6x384": (6, 384, 6), "gpt2-small 12x768": (12, 768, 12)}


def decode_ours(model, prompt, n, dtype=None):
    with fast_decode(model, dtype=dtype):
        return torch.tensor(generate(model, prompt[0].tolist(), max_new_tokens=n, temperature=0)[0].ids)


@torch.inference_mode()
def decode_hf(hf, prompt, n):
    out = hf.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[0, prompt.shape[1]:]


def read_bandwidth() -> float:
    """GB/s at which this machine reads a 400 MB tensor (sum), with the current threads."""
    big = torch.ones(100_000_000)
    big.sum()
    with timer() as t:
        for _ in range(3):
            big.sum()
    return 3 * big.numel() * 4 / t() / 1e9


def agreement(ours: torch.Tensor, ref: torch.Tensor) -> str:
    if torch.equal(ours, ref):
        return "same tokens"
    first = int((ours != ref).nonzero()[0, 0])
    return f"first {first}/{len(ref)} tokens same"


def tokens_per_second(fn, *args, repeats: int) -> tuple[float, torch.Tensor]:
    best, out = 0.0, None
    for _ in range(repeats):
        with timer() as t:
            out = fn(*args)
        best = max(best, len(out) / t())
    return best, out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="bench_decode")
    p.add_argument("--quick", action="store_true", help="64 new tokens, one repeat")
    p.add_argument("--new-tokens", type=int, default=256)
    args = p.parse_args(argv)
    n, repeats = (64, 1) if args.quick else (args.new_tokens, 2)
    header(f"decode: batch 1, prompt 64, {n} new tokens, greedy, vocab 50257 (tokens/s, best of {repeats})")
    bandwidth = read_bandwidth()
    print(f"   memory read bandwidth {bandwidth:.1f} GB/s ({torch.get_num_threads()} threads)")
    rows = []
    for name, (layers, d_model, heads) in SHAPES.items():
        hf, ours = hf_gpt2_pair(layers, d_model, heads)
        prompt = torch.randint(0, 50257, (1, 64), generator=torch.Generator().manual_seed(1))
        decode_ours(ours, prompt, 4), decode_hf(hf, prompt, 4)            # warm up
        hf_tps, hf_ids = tokens_per_second(decode_hf, hf, prompt, n, repeats=repeats)
        fp32_mb = sum(p.numel() * p.element_size() for p in ours.parameters()) / 1e6
        for dtype, bytes_per_weight in (("float32", 4), ("float16", 2), ("bfloat16", 2)):
            tps, ids = tokens_per_second(decode_ours, ours, prompt, n, dtype, repeats=repeats)
            rows.append((f"{name} {dtype} decode weights ({agreement(ids, hf_ids)})", tps, hf_tps,
                         ratio(tps, hf_tps)))
            ceiling = bandwidth * 1e3 / (fp32_mb * bytes_per_weight / 4)
            rows.append((f"  {dtype}: ceiling = bandwidth / {fp32_mb * bytes_per_weight / 4:.0f} MB per token",
                         ceiling, None, ""))
        del hf, ours
    table(rows, ("measure", "ours tok/s", "transformers fp32 tok/s", "ours/ref"))


if __name__ == "__main__":
    main()
