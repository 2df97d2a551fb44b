"""Decoding speed: batch 1, 64-token prompt, 256 new tokens, greedy, vocabulary 50,257,
random weights, ours vs Hugging Face transformers' GPT-2 with identical weights.

Both produce the same tokens (checked); the table gives tokens/s and the ratio.
fp32 decoding of these shapes is bound by memory bandwidth (every weight is read once
per token), so the bandwidth ceiling is printed too; `--bf16` adds a row with our
weights held in bf16 (half the bytes per token).
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.common import header, hf_gpt2_pair, ratio, table, timer
from glassgpt.generate import generate

SHAPES = {"6x384": (6, 384, 6), "gpt2-small 12x768": (12, 768, 12)}


def decode_ours(model, prompt, n):
    return torch.tensor(generate(model, prompt[0].tolist(), max_new_tokens=n, temperature=0)[0].ids)


@torch.inference_mode()
def decode_hf(hf, prompt, n):
    out = hf.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[0, prompt.shape[1]:]


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
    p.add_argument("--bf16", action="store_true", help="also time our model with bf16 weights")
    args = p.parse_args(argv)
    n, repeats = (64, 1) if args.quick else (args.new_tokens, 2)
    header(f"decode: batch 1, prompt 64, {n} new tokens, greedy, vocab 50257 (tokens/s, best of {repeats})")
    rows = []
    for name, (layers, d_model, heads) in SHAPES.items():
        hf, ours = hf_gpt2_pair(layers, d_model, heads)
        prompt = torch.randint(0, 50257, (1, 64), generator=torch.Generator().manual_seed(1))
        decode_ours(ours, prompt, 4), decode_hf(hf, prompt, 4)            # warm up
        ours_tps, ours_ids = tokens_per_second(decode_ours, ours, prompt, n, repeats=repeats)
        hf_tps, hf_ids = tokens_per_second(decode_hf, hf, prompt, n, repeats=repeats)
        same = "same tokens" if torch.equal(ours_ids, hf_ids) else "TOKENS DIFFER"
        weight_mb = sum(p.numel() * p.element_size() for p in ours.parameters()) / 1e6
        rows.append((f"{name} fp32 ({same})", ours_tps, hf_tps, ratio(ours_tps, hf_tps)))
        rows.append((f"{name} weights read per token (MB)", weight_mb, None, ""))
        if args.bf16:
            ours_bf16 = ours.to(torch.bfloat16)
            bf16_tps, _ = tokens_per_second(decode_ours, ours_bf16, prompt, n, repeats=repeats)
            rows.append((f"{name} ours bf16 weights vs HF fp32", bf16_tps, hf_tps, ratio(bf16_tps, hf_tps)))
        del hf, ours
    table(rows, ("measure", "ours tok/s", "transformers tok/s", "ours/ref"))


if __name__ == "__main__":
    main()
