"""The generation engine's speed, vocabulary 50,257, random weights (fp32):

- batch-1 decode, greedy vs the full sampler chain (repetition penalty, top-p 0.95 over
  all 50,257 entries, min-p, temperature): the chain's overhead per token
- batch 8 (prompts of different lengths, padded and masked) vs batch 1: tokens/s
- prompt cache: prefill of a 512-token prompt + 8-token suffix, first call vs a second
  call with another suffix
- speculative decoding, 256 tokens, 6-layer target: wall-clock speedup at T = 0 and 1

Side by side with Hugging Face transformers where it has the same feature (sampling
with top-p, batch 8), with identical weights. The greedy batch-1 comparison with
transformers is in bench_decode.

No trained models are available here, so the speculative draft is the target's own first
layer (embeddings, block 0, final norm and unembedding shared: "layer-skip" self-speculation).
With random weights its guesses agree with the target unusually often, so the acceptance
rate, and the speedup, are an upper bound for what a trained draft of that cost gives.
"""
from __future__ import annotations

import argparse
import os

import torch

from benchmarks.common import header, hf_gpt2_pair, ratio, table, timer
from glassgpt.generate import PromptCache, generate, generate_batch
from glassgpt.model import GPT

SHAPES = {"6x384": (6, 384, 6), "12x768": (12, 768, 12)}
CHAIN = dict(repetition_penalty=1.1, top_p=0.95, min_p=0.05, temperature=0.8)
HF_CHAIN = dict(do_sample=True, repetition_penalty=1.1, top_p=0.95, min_p=0.05, temperature=0.8, top_k=0)


def best_rate(fn, tokens: int, repeats: int) -> float:
    """Best tokens/s over `repeats` runs of fn() (which makes `tokens` tokens)."""
    best = 0.0
    for _ in range(repeats):
        with timer() as t:
            fn()
        best = max(best, tokens / t())
    return best


def random_prompts(n: int, lengths: list[int], seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 50257, (length,), generator=g).tolist() for length in lengths[:n]]


@torch.inference_mode()
def hf_generate(hf, prompts: list[list[int]], n: int, **kw):
    """transformers' generate on left-padded prompts with an attention mask."""
    P = max(map(len, prompts))
    ids = torch.tensor([[0] * (P - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (P - len(p)) + [1] * len(p) for p in prompts])
    return hf.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, pad_token_id=0, **kw)


def decode_rows(name, hf, ours, n, repeats) -> list[tuple]:
    one = random_prompts(1, [64])
    eight = random_prompts(8, [64, 40, 57, 33, 64, 48, 60, 25])
    greedy = best_rate(lambda: generate(ours, one[0], max_new_tokens=n, temperature=0), n, repeats)
    chain = best_rate(lambda: generate(ours, one[0], max_new_tokens=n, seed=0, **CHAIN), n, repeats)
    hf_greedy = best_rate(lambda: hf_generate(hf, one, n, do_sample=False), n, repeats)
    hf_chain = best_rate(lambda: hf_generate(hf, one, n, **HF_CHAIN), n, repeats)
    batch8 = best_rate(lambda: generate_batch(ours, eight, max_new_tokens=n, temperature=0), 8 * n, repeats)
    hf_batch8 = best_rate(lambda: hf_generate(hf, eight, n, do_sample=False), 8 * n, repeats)
    same = [g.ids for g in generate_batch(ours, eight[:2], max_new_tokens=8, temperature=0)] == \
        hf_generate(hf, eight[:2], 8, do_sample=False)[:, 64:].tolist()
    return [
        (f"{name} batch 1 greedy (tok/s)", greedy, hf_greedy, ratio(greedy, hf_greedy)),
        (f"{name} batch 1 full chain, top-p over 50,257 (tok/s)", chain, hf_chain, ratio(chain, hf_chain)),
        (f"{name} full chain overhead per token vs greedy", f"{100 * (greedy / chain - 1):+.1f}%",
         f"{100 * (hf_greedy / hf_chain - 1):+.1f}%", ""),
        (f"{name} batch 8, mixed lengths, greedy (tok/s{', same tokens as HF' if same else ', TOKENS DIFFER'})",
         batch8, hf_batch8, ratio(batch8, hf_batch8)),
        (f"{name} batch 8 / batch 1 throughput", f"{batch8 / greedy:.2f}x", f"{hf_batch8 / hf_greedy:.2f}x", ""),
    ]


def prompt_cache_rows(name, ours, repeats) -> list[tuple]:
    """Time to the first new token (prefill) for 512 shared tokens + an 8-token suffix."""
    shared = random_prompts(1, [512], seed=2)[0]
    suffixes = random_prompts(2 * repeats + 1, [8] * (2 * repeats + 1), seed=3)
    generate(ours, shared + suffixes[-1], max_new_tokens=1, temperature=0)        # warm up
    first = second = float("inf")
    for i in range(repeats):
        cache = PromptCache()
        with timer() as t1:
            a = generate(ours, shared + suffixes[2 * i], max_new_tokens=1, temperature=0, prompt_cache=cache)[0]
        with timer() as t2:
            b = generate(ours, shared + suffixes[2 * i + 1], max_new_tokens=1, temperature=0, prompt_cache=cache)[0]
        first, second = min(first, t1()), min(second, t2())
    return [
        (f"{name} prompt cache: first call, 520-token prefill (ms)", 1000 * first, None, ""),
        (f"{name} prompt cache: second call, {b.stats.prefill_tokens} computed + "
         f"{b.stats.prefill_reused} reused (ms)", 1000 * second, 1000 * first, ratio(second, first)),
    ]


def first_layers(model: GPT, n_layer: int) -> GPT:
    """A draft made of the model's first n_layer blocks (sharing embeddings and unembedding)."""
    draft = GPT(model.config.replace(n_layer=n_layer), verbose=False)
    draft.load_state_dict({k: v for k, v in model.state_dict().items()
                           if not k.startswith("blocks.") or int(k.split(".")[1]) < n_layer}, strict=False)
    return draft.eval()


def speculative_rows(name, ours, n, repeats) -> list[tuple]:
    prompt = random_prompts(1, [64], seed=4)[0]
    draft = first_layers(ours, 1)
    rows = []
    for temperature in (0.0, 1.0):
        plain = best_rate(lambda: generate(ours, prompt, max_new_tokens=n, temperature=temperature, seed=0),
                          n, repeats)
        for k in (4,):
            stats = {}

            def run():
                stats["s"] = generate(ours, prompt, max_new_tokens=n, temperature=temperature, seed=0,
                                      draft=draft, draft_tokens=k)[0].stats
            fast = best_rate(run, n, repeats)
            s = stats["s"]
            rows.append((f"{name} speculative T={temperature:g} k={k} (tok/s; acceptance {s.acceptance_rate:.2f}, "
                         f"{s.tokens_per_target_forward:.2f} tok/target fwd)", fast, plain, ratio(fast, plain)))
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="bench_generate")
    p.add_argument("--quick", action="store_true", help="6x384 only, fewer tokens, one repeat")
    args = p.parse_args(argv)
    n, n_spec, repeats = (16, 64, 1) if args.quick else (64, 256, 2)
    shapes = {"6x384": SHAPES["6x384"]} if args.quick else SHAPES
    header(f"generate: vocab 50257, random weights, fp32, prompt 64, {n} new tokens (speculative: {n_spec}), "
           f"best of {repeats}; {torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f}")
    rows = []
    for name, (layers, d_model, heads) in shapes.items():
        hf, ours = hf_gpt2_pair(layers, d_model, heads)
        rows += decode_rows(name, hf, ours, n, repeats)
        rows += prompt_cache_rows(name, ours, repeats)
        if layers == 6:
            rows += speculative_rows(name, ours, n_spec, repeats)
        del hf, ours
    table(rows, ("measure", "ours", "reference", "ours/ref"))
    print("reference = transformers' generate with the same weights; for the prompt cache the first call; "
          "for speculative decoding our plain decoding.")


if __name__ == "__main__":
    main()
