"""Activation patching: glassgpt's patch() vs TransformerLens's patching functions, on the
same random GPT-2 weights (6 layers x 384, 6 heads, vocabulary 50,257), 64-token prompts.

    python -m benchmarks.bench_patching [--quick] [--threads N]

Grids: resid_pre (6 layers x 64 positions = 384 patched runs) and layer x head (36 runs,
every position). Both sides include their clean and corrupted runs. TransformerLens runs
one full forward per cell; glassgpt starts each patched run from the corrupted residual
stream entering the patched block and runs a block's cells together as one batch.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")          # TransformerLens's per-cell progress bars

import torch  # noqa: E402

from benchmarks.common import header, hf_gpt2_pair, ratio, table  # noqa: E402
from glassgpt.inspect.patching import logit_diff, patch  # noqa: E402

LAYERS, D_MODEL, HEADS, VOCAB, TOKENS = 6, 384, 6, 50257, 64


def hooked_transformer(hf):
    """TransformerLens's HookedTransformer with the transformers model's weights, unprocessed."""
    import warnings

    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights
    c = hf.config
    cfg = HookedTransformerConfig(
        n_layers=c.n_layer, d_model=c.n_embd, n_ctx=c.n_positions, d_head=c.n_embd // c.n_head, n_heads=c.n_head,
        d_mlp=4 * c.n_embd, d_vocab=c.vocab_size, act_fn="gelu_new", normalization_type="LN",
        eps=c.layer_norm_epsilon, positional_embedding_type="standard", original_architecture="GPT2LMHeadModel",
        default_prepend_bos=False, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HookedTransformer(cfg)
    model.load_and_process_state_dict(convert_gpt2_weights(hf, cfg), fold_ln=False, center_writing_weights=False,
                                      center_unembed=False, fold_value_biases=False)
    return model.eval()


def span(grid: torch.Tensor) -> str:
    return f"{float(grid.min()):.4f} .. {float(grid.max()):.4f}"


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="bench_patching")
    p.add_argument("--quick", action="store_true", help="one timed run per measure instead of the best of 3")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else 3
    from transformer_lens import patching

    header(f"activation patching: {LAYERS} layers x {D_MODEL}, vocab {VOCAB:,}, {TOKENS}-token prompts, "
           f"{torch.get_num_threads()} threads")
    hf, ours = hf_gpt2_pair(LAYERS, D_MODEL, HEADS, VOCAB, context=1024)
    tl = hooked_transformer(hf)
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(VOCAB, (TOKENS,), generator=g)
    corrupt = clean.clone()
    corrupt[[5, 20, 40]] = torch.randint(VOCAB, (3,), generator=g)
    answer, wrong = int(clean[20]), int(corrupt[20])                  # a token the prompts differ in
    metric = logit_diff(answer, wrong)

    def tl_metric(logits):
        return logits[0, -1, answer] - logits[0, -1, wrong]

    def theirs(function):
        def run():
            with torch.no_grad():
                _, cache = tl.run_with_cache(clean[None])
                return function(tl, corrupt[None], cache, tl_metric)
        return run

    rows = []
    with torch.no_grad():
        ours(clean[None])                                                 # warm-up
        tl(clean[None])
    for over, function, cells in (("resid_pre", patching.get_act_patch_resid_pre, LAYERS * TOKENS),
                                  ("head", patching.get_act_patch_attn_head_out_all_pos, LAYERS * HEADS)):
        t_ours, mine = timed(lambda over=over: patch(ours, clean, corrupt, metric, over=over), repeats)
        t_tl, grid = timed(theirs(function), repeats)
        error = float((mine.raw - grid).abs().max())
        rows.append((f"{over} grid ({cells} cells), s", t_ours, t_tl, ratio(t_tl, t_ours)))
        rows.append((f"{over}: max |ours - TL| over the grid", f"{error:.1e}", "", ""))
        rows.append((f"{over}: metric range over the grid", span(mine.raw), span(grid), ""))
    table(rows, columns=("measure", "glassgpt", "TransformerLens", "speed-up"))
    print(f"   metric logit({answer}) - logit({wrong}) at the last position: clean {mine.clean_metric:.4f}, "
          f"corrupted {mine.corrupt_metric:.4f}")


if __name__ == "__main__":
    main()
