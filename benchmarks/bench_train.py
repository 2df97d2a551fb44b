"""Training speed and quality: ours vs Hugging Face transformers' GPT2LMHeadModel, same run.

(a) char-level Shakespeare, 4 layers x 4 heads x 128 dims, context 64, batch 12, lr 1e-3,
    no dropout: tokens/s (same batches, same AdamW settings, interleaved rounds, best of
    each) and our validation loss after 2,000 iterations (issue target: <= 1.90).
(b) 6 layers x 6 heads x 384 dims, context 256, batch 64: tokens/s in fp32 and with bf16
    autocast, ours vs transformers, and the loss after the same few steps in both
    precisions from identical weights and batches. On CPUs without native bf16 (AVX2
    only) a bf16 step takes minutes, so the default measures few steps; see --help.

    python -m benchmarks.bench_train [--quick] [--iters N] [--ref-iters N] [--big-steps N]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from glassgpt.model import GPT, GPTConfig
from glassgpt.model.hf_gpt2 import from_hf_gpt2
from glassgpt.runtime import autocast, cpu_description
from glassgpt.train import TrainConfig, prepare, train
from glassgpt.train.corpora import cache_dir
from glassgpt.train.data import RandomBatches, open_tokens
from glassgpt.train.loop import make_optimizer
from glassgpt.train.prepare import read_meta
from glassgpt.train.schedule import learning_rate

CPU = torch.device("cpu")


def shakespeare_chars() -> Path:
    """Char-level Shakespeare token files, prepared once into the cache."""
    data = cache_dir() / "bench" / "shakespeare-char"
    if not (data / "meta.json").is_file():
        prepare(["shakespeare"], data, tokenizer="char", progress=False)
    return data


# -- two training steps, side by side -------------------------------------------------------------
class OursStep:
    def __init__(self, config: GPTConfig, settings: TrainConfig, precision: str, model: GPT | None = None):
        torch.manual_seed(0)
        self.model = model if model is not None else GPT(config)
        self.precision, self.settings = precision, settings
        self.optimizer = make_optimizer(self.model, settings, CPU)
        self.step = 0

    def loss(self, x, y) -> torch.Tensor:
        return self.model(x, y).loss

    def __call__(self, x, y) -> torch.Tensor:
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.settings, self.step, self.step / self.settings.max_iters)
        with autocast(CPU, self.precision):
            loss = self.loss(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss.detach()


class ReferenceStep(OursStep):
    """transformers' GPT-2 with a plain (foreach) AdamW: the textbook loop."""

    def __init__(self, config: GPTConfig, settings: TrainConfig, precision: str):
        from transformers import GPT2Config, GPT2LMHeadModel
        torch.manual_seed(0)
        hf = GPT2Config(vocab_size=config.vocab_size, n_positions=config.context_length, n_embd=config.d_model,
                        n_layer=config.n_layer, n_head=config.n_head, resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0)
        self.model, self.precision, self.settings, self.step = GPT2LMHeadModel(hf), precision, settings, 0
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            [{"params": [p for p in params if p.dim() >= 2], "weight_decay": settings.weight_decay},
             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
            lr=settings.lr, betas=settings.betas)

    def loss(self, x, y) -> torch.Tensor:
        logits = self.model(input_ids=x).logits
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1))


def tokens_per_second(step, batches: RandomBatches, steps: int) -> float:
    started = time.perf_counter()
    for _ in range(steps):
        step(*batches.next())
    return steps * batches.batch_size * batches.context_length / (time.perf_counter() - started)


def interleaved_speed(steps: dict, data: Path, meta: dict, batch: int, context: int, per_round: int,
                      rounds: int) -> dict[str, float]:
    """Best tokens/s of each contender over alternating rounds (a busy machine hurts both alike)."""
    best = {name: 0.0 for name in steps}
    for step in steps.values():                                        # warm-up: allocations, kernels
        tokens_per_second(step, RandomBatches(open_tokens(data / "train.bin", meta["dtype"]), batch, context,
                                              CPU, seed=1), 2)
    for r in range(rounds):
        for name, step in steps.items():
            batches = RandomBatches(open_tokens(data / "train.bin", meta["dtype"]), batch, context, CPU, seed=r)
            best[name] = max(best[name], tokens_per_second(step, batches, per_round))
    return best


@torch.no_grad()
def reference_val_loss(step: ReferenceStep, data: Path, meta: dict, context: int) -> float:
    from glassgpt.train.data import fixed_batches
    step.model.eval()
    losses = [F.cross_entropy(step.model(input_ids=x).logits.view(-1, meta["tokenizer"]["vocab_size"]),
                              y.reshape(-1)) for x, y in fixed_batches(
        open_tokens(data / "val.bin", meta["dtype"]), 20, 12, context, CPU, seed=1337)]
    step.model.train()
    return torch.stack(losses).mean().item()


def add(rows: list, row: tuple) -> None:
    """Keep a table row, and show it at once on stderr: a full run takes minutes."""
    rows.append(row)
    print("  ".join(map(str, row)), file=sys.stderr, flush=True)


# -- the two benchmarks ---------------------------------------------------------------------------
def bench_small(args, rows: list) -> None:
    data = shakespeare_chars()
    meta = read_meta(data)
    config = GPTConfig(vocab_size=meta["tokenizer"]["vocab_size"], context_length=64, d_model=128, n_layer=4,
                       n_head=4, dropout=0.0)
    settings = TrainConfig(batch_size=12, max_iters=args.iters, lr=1e-3, min_lr=1e-4, warmup_iters=100,
                           eval_interval=10**9, eval_iters=20, log_interval=100, device="cpu", precision="fp32")
    speed = interleaved_speed({"ours": OursStep(config, settings, "fp32"),
                               "reference": ReferenceStep(config, settings, "fp32")},
                              data, meta, 12, 64, per_round=args.speed_steps, rounds=3)
    add(rows, ("(a) train tokens/s, 4x128, ctx 64, batch 12", f"{speed['ours']:,.0f}",
                 f"{speed['reference']:,.0f}", f"{speed['ours'] / speed['reference']:.2f}x"))
    with tempfile.TemporaryDirectory() as tmp:
        result = train(data, Path(tmp) / "run", config, settings, progress=args.progress)
    reference = ""
    if args.ref_iters:
        ref = ReferenceStep(config, settings.replace(max_iters=args.ref_iters), "fp32")
        batches = RandomBatches(open_tokens(data / "train.bin", meta["dtype"]), 12, 64, CPU, seed=2337)
        for _ in range(args.ref_iters):
            ref(*batches.next())
        reference = f"{reference_val_loss(ref, data, meta, 64):.3f} @{args.ref_iters}"
    add(rows, (f"(a) val loss after {args.iters} iters (target <= 1.90 @2000)", f"{result.val_loss:.3f}",
                 reference or "not run", ""))
    add(rows, (f"(a) our full {args.iters}-iter run, tokens/s incl. overhead",
                 f"{result.tokens_per_second:,.0f}", "", ""))


def bench_big(args, rows: list) -> None:
    data = shakespeare_chars()
    meta = read_meta(data)
    config = GPTConfig(vocab_size=meta["tokenizer"]["vocab_size"], context_length=256, d_model=384, n_layer=6,
                       n_head=6, dropout=0.0)
    settings = TrainConfig(batch_size=args.big_batch, max_iters=1000, lr=1e-3, warmup_iters=0, device="cpu")
    for precision, steps in (("fp32", args.big_steps), ("bf16", args.bf16_steps)):
        if not steps:
            continue
        speed = interleaved_speed({"ours": OursStep(config, settings, precision),
                                   "reference": ReferenceStep(config, settings, precision)},
                                  data, meta, args.big_batch, 256, per_round=steps, rounds=1)
        add(rows, (f"(b) train tokens/s {precision}, 6x384, ctx 256, batch {args.big_batch}",
                     f"{speed['ours']:,.0f}", f"{speed['reference']:,.0f}",
                     f"{speed['ours'] / speed['reference']:.2f}x"))
        reference = ReferenceStep(config, settings, precision)
        ours = OursStep(config, settings, precision, model=from_hf_gpt2(reference.model))   # identical weights
        losses = {}
        for name, step in (("ours", ours), ("reference", reference)):
            batches = RandomBatches(open_tokens(data / "train.bin", meta["dtype"]), args.big_batch, 256, CPU, seed=5)
            losses[name] = [step(*batches.next()).item() for _ in range(steps)][-1]
        add(rows, (f"(b) loss after {steps} steps, {precision} (same init + batches)",
                     f"{losses['ours']:.4f}", f"{losses['reference']:.4f}", ""))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="300 iterations for (a), 1 step each for (b)")
    p.add_argument("--iters", type=int, default=2000, help="our training iterations for (a)")
    p.add_argument("--ref-iters", type=int, default=0, help="also train the reference this long for (a)'s loss")
    p.add_argument("--speed-steps", type=int, default=50, help="steps per speed round in (a)")
    p.add_argument("--big-batch", type=int, default=64)
    p.add_argument("--big-steps", type=int, default=2, help="fp32 steps measured in (b)")
    p.add_argument("--bf16-steps", type=int, default=1, help="bf16 steps in (b) (0 skips; minutes each on AVX2)")
    p.add_argument("--skip-big", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--progress", action="store_true", help="show the training progress bar")
    args = p.parse_args(argv)
    if args.quick:
        args.iters, args.big_steps, args.bf16_steps, args.speed_steps = 300, 1, 1, 20
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# bench_train: {cpu_description()}")
    print(f"# threads {torch.get_num_threads()}, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    rows: list = []
    bench_small(args, rows)
    if not args.skip_big:
        bench_big(args, rows)
    widths = [max(len(str(r[i])) for r in rows + [HEADER]) for i in range(4)]
    for row in [HEADER, tuple("-" * w for w in widths), *rows]:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    sys.stdout.flush()


HEADER = ("measure", "ours", "reference (HF transformers)", "ratio")

if __name__ == "__main__":
    main()
