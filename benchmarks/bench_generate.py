"""The generation engine's speed, vocabulary 50,257, random weights (fp32):

- batch-1 decode, greedy vs the full sampler chain (repetition penalty, top-p 0.95 over
  all 50,257 entries, min-p, temperature): the chain's overhead per token
- batch 8 (prompts of different lengths, padded and masked) vs batch 1: tokens/s
- prompt cache: prefill of a 512-token prompt + 8-token suffix, first call vs a second
  call with another suffix
- a batch of 8 prompts of very different lengths (500 and 7 x 10 tokens): time to the
  first token (ours packs them in one row, transformers pads them)

and, with trained models (see benchmarks/trained_pair.py):

- speculative decoding, 256 tokens from real corpus prompts: a 6x256 target trained on
  the built-in corpus (characters by default) and a 1x128 draft distilled from it on its
  own text (--draft-training plain: trained on the corpus instead); --target-seconds and
  --draft-seconds of training, default 1200 and 120 on 2 cores; trained on the first run,
  cached after: wall-clock speedup over plain decoding at T = 0 and 1

Side by side with Hugging Face transformers where it has the same feature (sampling
with top-p, batch 8), with identical weights. The greedy batch-1 comparison with
transformers is in bench_decode.
"""
from __future__ import annotations

import argparse
import os

import torch

from benchmarks.common import header, hf_gpt2_pair, ratio, table, timer
from benchmarks.trained_pair import trained_pair
from glassgpt.generate import PromptCache, generate, generate_batch
from glassgpt.model import GPT
from glassgpt.train import load_corpus

SHAPES = {"6x384": (6, 384, 6), "12x768": (12, 768, 12)}
CHAIN = dict(repetition_penalty=1.1, top_p=0.95, min_p=0.05, temperature=0.8)
HF_CHAIN = dict(do_sample=True, repetition_penalty=1.1, top_p=0.95, min_p=0.05, temperature=0.8, top_k=0)


def best_rates(runs: dict, repeats: int, rounds: list | None = None) -> dict:
    """{name: (fn, tokens)} -> {name: best tokens/s over `repeats` runs of fn()}; the runs are
    interleaved round by round so that a change in the machine's load hits all of them alike.
    rounds, if given, receives {name: seconds} of every round (for paired comparisons)."""
    best = dict.fromkeys(runs, 0.0)
    for _ in range(repeats):
        seconds = {}
        for name, (fn, tokens) in runs.items():
            with timer() as t:
                fn()
            seconds[name] = t()
            best[name] = max(best[name], tokens / seconds[name])
        if rounds is not None:
            rounds.append(seconds)
    return best


def median_ratio(rounds: list[dict], slow: str, fast: str) -> float:
    """The median over rounds of slow's time / fast's time measured back to back: steadier
    than the ratio of two best times on a machine whose speed drifts."""
    ratios = sorted(r[slow] / r[fast] for r in rounds)
    middle = len(ratios) // 2
    return ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2


def sampler_step_ms(settings: dict, vocab_size: int, steps: int = 300) -> float:
    """ms per call of the sampler chain alone on one row of logits (with a 300-token context
    for the penalties): the chain's cost without the forward pass's run-to-run noise."""
    from glassgpt.generate.samplers import SamplerChain, SamplingParams

    chain = SamplerChain(SamplingParams(**settings), vocab_size)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, vocab_size, generator=g) * 2
    counts = torch.zeros(1, vocab_size).index_add_(1, torch.randint(0, vocab_size, (300,), generator=g),
                                                   torch.ones(1, 300))
    best = float("inf")
    for _ in range(3):
        with timer() as t:
            for _ in range(steps):
                chain.sample(logits, counts, g)
        best = min(best, t() / steps)
    return 1000 * best


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
    rounds: list[dict] = []
    rates = best_rates({
        "greedy": (lambda: generate(ours, one[0], max_new_tokens=n, temperature=0), n),
        "chain": (lambda: generate(ours, one[0], max_new_tokens=n, seed=0, **CHAIN), n),
        "hf_greedy": (lambda: hf_generate(hf, one, n, do_sample=False), n),
        "hf_chain": (lambda: hf_generate(hf, one, n, **HF_CHAIN), n),
        "batch8": (lambda: generate_batch(ours, eight, max_new_tokens=n, temperature=0), 8 * n),
        "hf_batch8": (lambda: hf_generate(hf, eight, n, do_sample=False), 8 * n),
    }, repeats, rounds)
    greedy, chain, hf_greedy, hf_chain, batch8, hf_batch8 = rates.values()
    chain_ms, pick_ms = sampler_step_ms(CHAIN, 50257), sampler_step_ms(dict(temperature=0), 50257)
    same = [g.ids for g in generate_batch(ours, eight[:2], max_new_tokens=8, temperature=0)] == \
        hf_generate(hf, eight[:2], 8, do_sample=False)[:, 64:].tolist()
    return [
        (f"{name} batch 1 greedy (tok/s)", greedy, hf_greedy, ratio(greedy, hf_greedy)),
        (f"{name} batch 1 full chain, top-p over 50,257 (tok/s)", chain, hf_chain, ratio(chain, hf_chain)),
        (f"{name} full chain overhead per token vs greedy", f"{100 * (greedy / chain - 1):+.1f}%",
         f"{100 * (hf_greedy / hf_chain - 1):+.1f}%", ""),
        (f"{name} the same, median of the {len(rounds)} back-to-back rounds",
         f"{100 * (median_ratio(rounds, 'chain', 'greedy') - 1):+.1f}%",
         f"{100 * (median_ratio(rounds, 'hf_chain', 'hf_greedy') - 1):+.1f}%", ""),
        (f"{name} the same from the sampler step alone: ({chain_ms:.2f} - {pick_ms:.2f} ms) / greedy token time",
         f"{100 * (chain_ms - pick_ms) * greedy / 1000:+.1f}%", "", ""),
        (f"{name} batch 8, mixed lengths, greedy (tok/s{', same tokens as HF' if same else ', TOKENS DIFFER'})",
         batch8, hf_batch8, ratio(batch8, hf_batch8)),
        (f"{name} batch 8 / batch 1 throughput", f"{batch8 / greedy:.2f}x", f"{hf_batch8 / hf_greedy:.2f}x", ""),
        (f"{name} the same, median of the {len(rounds)} rounds",
         f"{8 * median_ratio(rounds, 'greedy', 'batch8'):.2f}x",
         f"{8 * median_ratio(rounds, 'hf_greedy', 'hf_batch8'):.2f}x", ""),
    ]


def prompt_cache_rows(name, hf, ours, repeats) -> list[tuple]:
    """Time to the first new token (prefill) for 512 shared tokens + an 8-token suffix:
    ours with a PromptCache, transformers with its documented prefix reuse (a copy of a
    DynamicCache filled with the shared tokens, passed as past_key_values)."""
    shared = random_prompts(1, [512], seed=2)[0]
    suffixes = random_prompts(2 * repeats + 1, [8] * (2 * repeats + 1), seed=3)
    generate(ours, shared + suffixes[-1], max_new_tokens=1, temperature=0)        # warm up
    first = second = hf_first = hf_second = float("inf")
    for i in range(repeats):
        cache = PromptCache()
        with timer() as t1:
            generate(ours, shared + suffixes[2 * i], max_new_tokens=1, temperature=0, prompt_cache=cache)[0]
        with timer() as t2:
            b = generate(ours, shared + suffixes[2 * i + 1], max_new_tokens=1, temperature=0, prompt_cache=cache)[0]
        first, second = min(first, t1()), min(second, t2())
        hf_first_i, hf_second_i, hf_token = hf_prefix_reuse(hf, shared, suffixes[2 * i + 1])
        hf_first, hf_second = min(hf_first, hf_first_i), min(hf_second, hf_second_i)
        assert hf_token == b.ids[0], "transformers and ours disagree on the first token"
    return [
        (f"{name} prompt cache: first call, 520-token prefill (ms)", 1000 * first, 1000 * hf_first,
         ratio(first, hf_first)),
        (f"{name} prompt cache: second call, {b.stats.prefill_tokens} computed + "
         f"{b.stats.prefill_reused} reused (ms)", 1000 * second, 1000 * hf_second, ratio(second, hf_second)),
        (f"{name} prompt cache: second call / first call", f"{second / first:.2f}", f"{hf_second / hf_first:.2f}",
         ""),
    ]


def skewed_batch_rows(name, hf, ours, repeats) -> list[tuple]:
    """Time to the first new token of 8 prompts of very different lengths (one of 500 tokens,
    seven of 10): ours computes them packed in one row, transformers left-pads all to 500."""
    prompts = random_prompts(8, [500] + [10] * 7, seed=4)
    first = hf_first = float("inf")
    for _ in range(repeats):
        with timer() as t:
            ours_first = [g.ids for g in generate_batch(ours, prompts, max_new_tokens=1, temperature=0)]
        with timer() as t_hf:
            theirs = hf_generate(hf, prompts, 1, do_sample=False)[:, 500:].tolist()
        first, hf_first = min(first, t()), min(hf_first, t_hf())
    same = ", same tokens" if ours_first == theirs else ", TOKENS DIFFER"
    return [(f"{name} batch 8 prefill, lengths 500 + 7 x 10 (ms{same})", 1000 * first, 1000 * hf_first,
             ratio(first, hf_first))]


@torch.inference_mode()
def hf_prefix_reuse(hf, shared: list[int], suffix: list[int]) -> tuple[float, float, int]:
    """transformers: (full prefill s, prefill reusing a cached prefix s, first token)."""
    import copy

    from transformers import DynamicCache

    ids = torch.tensor([shared + suffix])
    with timer() as t1:
        hf.generate(ids, max_new_tokens=1, do_sample=False, pad_token_id=0)
    prefix = DynamicCache()
    hf(torch.tensor([shared]), past_key_values=prefix)
    with timer() as t2:
        out = hf.generate(ids, past_key_values=copy.deepcopy(prefix), max_new_tokens=1, do_sample=False,
                          pad_token_id=0)
    return t1(), t2(), int(out[0, -1])


def corpus_prompts(model: GPT, corpus: str, n: int, length: int = 32) -> list[list[int]]:
    """n real prompts: `length` tokens from the middle of n documents of the training corpus."""
    documents = sorted(load_corpus([corpus]), key=len, reverse=True)[:n]
    return [model.tokenizer.encode(d[len(d) // 2:len(d) // 2 + 20 * length])[:length] for d in documents]


def speculative_rows(target: GPT, draft: GPT, prompts: list[list[int]], n: int, repeats: int,
                     ks=(2, 4, 6)) -> list[tuple]:
    """Plain vs speculative decoding of n tokens from each prompt, interleaved run by run so
    that the machine's load hits both alike; best of `repeats` for each."""
    rows = []
    for temperature in (0.0, 1.0):
        def run(k, temperature=temperature):
            out = [generate(target, p, max_new_tokens=n, temperature=temperature, seed=i,
                            **(dict(draft=draft, draft_tokens=k) if k else {}))[0] for i, p in enumerate(prompts)]
            return out
        best, last = {}, {}
        for _ in range(repeats):
            for k in (0, *ks):
                with timer() as t:
                    last[k] = run(k)
                best[k] = max(best.get(k, 0.0), sum(len(g.ids) for g in last[k]) / t())
        plain = best[0]
        rows.append((f"T={temperature:g} plain decoding (tok/s)", plain, plain, "1.00x"))
        for k in ks:
            stats = [g.stats for g in last[k]]
            acceptance = sum(s.accepted for s in stats) / max(1, sum(s.drafted for s in stats))
            per_forward = sum(s.new_tokens for s in stats) / sum(s.new_tokens / s.tokens_per_target_forward
                                                                 for s in stats)
            same = ""
            if temperature == 0:
                same = ", same tokens" if [g.ids for g in last[k]] == [g.ids for g in last[0]] else ", TOKENS DIFFER"
            rows.append((f"T={temperature:g} speculative k={k} (tok/s; acceptance {acceptance:.2f}, "
                         f"{per_forward:.2f} tok/target fwd{same})", best[k], plain, ratio(best[k], plain)))
    return rows


def speculative_main(quick: bool, target_seconds: float | None, draft_seconds: float | None,
                     tokenizer: str = "char", distil: bool = True) -> None:
    """The trained 6-layer target and 1-layer draft (trained once, then cached)."""
    target_seconds = target_seconds or (40 if quick else 1200)
    draft_seconds = draft_seconds or (20 if quick else 120)
    target, draft, corpus = trained_pair(target_seconds, draft_seconds, tokenizer, distil)
    n, repeats, n_prompts = (64, 1, 1) if quick else (256, 2, 4)
    prompts = corpus_prompts(target, corpus, n_prompts)
    header(f"speculative decoding: {target.config.n_layer}x{target.config.d_model} target "
           f"({target_seconds:g} s of training) and {draft.config.n_layer}x{draft.config.d_model} draft "
           f"({draft_seconds:g} s{', distilled from the target' if distil else ''}), {corpus}, "
           f"{tokenizer} tokenizer of {target.config.vocab_size} ids, fp32; {n} new tokens from "
           f"{len(prompts)} corpus prompts of 32 tokens, interleaved, best of {repeats}; "
           f"{torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f}")
    table(speculative_rows(target, draft, prompts, n, repeats), ("measure", "ours", "plain", "speedup"))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="bench_generate")
    p.add_argument("--quick", action="store_true", help="6x384 only, fewer tokens, one repeat, less training")
    p.add_argument("--target-seconds", type=float, help="training budget of the speculative target (default 1200)")
    p.add_argument("--draft-seconds", type=float, help="training budget of the speculative draft (default 120)")
    p.add_argument("--pair-tokenizer", choices=("char", "bpe"), default="char",
                   help="tokenizer of the speculative pair (default char; bpe: 1,024 ids)")
    p.add_argument("--draft-training", choices=("distil", "plain"), default="distil",
                   help="train the draft on the target's distributions (default) or on the text alone")
    p.add_argument("--speculative-only", action="store_true", help="only the speculative-decoding table")
    args = p.parse_args(argv)
    if not args.speculative_only:
        random_weight_tables(args.quick)
    speculative_main(args.quick, args.target_seconds, args.draft_seconds, args.pair_tokenizer,
                     args.draft_training == "distil")


def random_weight_tables(quick: bool) -> None:
    n, repeats = (16, 1) if quick else (64, 5)
    shapes = {"6x384": SHAPES["6x384"]} if quick else SHAPES
    header(f"generate: vocab 50257, random weights, fp32, prompt 64, {n} new tokens, "
           f"best of {repeats}; {torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f}")
    rows = []
    for name, (layers, d_model, heads) in shapes.items():
        hf, ours = hf_gpt2_pair(layers, d_model, heads)
        rows += decode_rows(name, hf, ours, n, repeats)
        rows += prompt_cache_rows(name, hf, ours, repeats)
        rows += skewed_batch_rows(name, hf, ours, min(repeats, 3))
        del hf, ours
    table(rows, ("measure", "ours", "reference", "ours/ref"))
    print("reference = transformers' generate with the same weights (prompt cache: a copied DynamicCache prefix).")


if __name__ == "__main__":
    main()
