"""What seeing inside costs: a trace vs a plain forward, and a full ablation study.

    python -m benchmarks.bench_inspect            (or: make bench)

The model is glassgpt's "medium" preset (6 layers x 384 dims, 6 heads, context 256) with
random weights: speed does not depend on what the weights learned.
"""
from __future__ import annotations

import argparse

import time

import numpy as np
import torch

from glassgpt.inspect import trace
from glassgpt.inspect.ablation import ablation_study
from glassgpt.inspect.lens import logit_lens
from glassgpt.model import GPT, GPTConfig
from glassgpt.runtime import cpu_description


def best_of(fn, repeats: int = 5) -> float:
    fn()                                                       # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="bench_inspect")
    p.add_argument("--quick", action="store_true", help="ablation study on 4 batches instead of 20")
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=4)
    args = p.parse_args(argv)
    ablation_batches, batch_size = (4 if args.quick else args.batches), args.batch_size
    print(f"CPU: {cpu_description()}")
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("medium")).eval()
    cfg = model.config
    ids = torch.randint(0, cfg.vocab_size, (1, 256))

    def plain():
        with torch.no_grad():
            model(ids)

    t_plain = best_of(plain)
    t_trace = best_of(lambda: trace(model, ids[0]))
    t_bare = best_of(lambda: trace(model, ids[0], attention=False, residual=False))
    t_lens = best_of(lambda: logit_lens(model, trace(model, ids[0], attention=False)))

    val = np.random.default_rng(0).integers(0, cfg.vocab_size, 200_000).astype(np.uint16)
    t_batch = best_of(lambda: plain_batch(model, val, batch_size), repeats=3)
    start = time.perf_counter()
    study = ablation_study(model, val, batches=ablation_batches, batch_size=batch_size, progress=False)
    t_ablation = time.perf_counter() - start
    measurements = 1 + len(study.parts) + cfg.n_layer
    # the reference is the best plain forward seen before or after: a conservative ratio
    t_batch = min(t_batch, best_of(lambda: plain_batch(model, val, batch_size), repeats=3))

    rows = [
        ("trace, 256 tokens, attention + residual (s)", t_trace, t_plain),
        ("trace, 256 tokens, distributions only (s)", t_bare, t_plain),
        ("trace + logit lens, 256 tokens (s)", t_lens, t_plain),
        (f"ablation study: {measurements} measurements x {ablation_batches} batches of "
         f"{batch_size}x256 (s)", t_ablation, t_batch * measurements * ablation_batches),
    ]
    print(f"model: {cfg.n_layer} layers x {cfg.d_model} dims, {cfg.n_head} heads, context {cfg.context_length}, "
          f"vocab {cfg.vocab_size}; {torch.get_num_threads()} threads")
    print("reference: a plain forward pass of the same input; for the ablation study, one full "
          "forward per measurement and batch (what it would cost without reusing the intact prefix)")
    header = f"{'measure':<78} {'ours':>9} {'reference':>10} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for name, ours, ref in rows:
        print(f"{name:<78} {ours:>9.3f} {ref:>10.3f} {ours / ref:>6.2f}x")


def plain_batch(model, val, batch_size):
    x = torch.from_numpy(val[: batch_size * 257].astype(np.int64)).view(batch_size, 257)
    with torch.no_grad():
        model(x[:, :-1], x[:, 1:])


if __name__ == "__main__":
    main()
