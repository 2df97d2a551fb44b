"""Where one decode step spends its time: batch 1, one new token after a 64-token prompt,
inside `fast_decode` (as `generate` runs it), greedy sampling through the sampler chain.

    python -m benchmarks.profile_decode [--shape 6x384] [--threads 1] [--steps 64] [--model-forward] [--no-kernel]

--model-forward profiles each step through the model's own forward (the engine before its
op-by-op step), --no-kernel with PyTorch's one-row products in place of the compiled
kernel (generate/kernels), for the before/after.

torch.profiler's self time of every ATen op, summed into the pipeline's parts:

- matrix-vector products (every nn.Linear, the vocabulary projection included): their
  time against the bytes of weight they read, in GB/s, beside this machine's read
  bandwidth (a sum over 400 MB with the same threads)
- attention over the cache, KV-cache writes, LayerNorm / GELU / residual adds, the
  embedding lookup, sampling
- Python and dispatcher overhead: the wall time of a step (measured without the
  profiler) minus the ops' self time, and the wall time of the same step in a model of
  the same depth with tiny dimensions (d_model 64, vocab 64), where the ops cost ~nothing.

The profiler's own bookkeeping inflates the op times a little; the shares are what to read.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import defaultdict

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import header, table
from glassgpt.generate.fast import decode_logits, fast_decode
from glassgpt.generate.samplers import SamplerChain, SamplingParams
from glassgpt.model import GPT, GPTConfig

SHAPES = {"6x384": (6, 384, 6), "12x768": (12, 768, 12)}
PARTS = {   # ATen op -> part of the step (ops not listed count as "other tensor ops")
    "matrix-vector products": ("aten::mm", "aten::addmm", "aten::bmm", "aten::mv", "aten::addmv",
                               "mkldnn::_linear_pointwise", "aten::linear", "aten::matmul", "glassgpt::rowdot"),
    "attention over the cache": ("aten::_scaled_dot_product_flash_attention_for_cpu",
                                 "aten::scaled_dot_product_attention", "aten::_softmax", "aten::baddbmm"),
    "KV-cache writes (copy_)": ("aten::copy_",),
    "LayerNorm": ("aten::native_layer_norm", "aten::layer_norm"),
    "GELU": ("aten::gelu",),
    "residual and bias adds": ("aten::add", "aten::add_"),
    "embedding lookup": ("aten::embedding", "aten::index_select", "aten::index"),
    "sampling (argmax)": ("aten::argmax", "aten::max", "aten::topk", "aten::sort"),
}
PART_OF = {op: part for part, ops in PARTS.items() for op in ops}


def build(layers: int, d_model: int, heads: int, vocab: int) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab, context_length=1024, d_model=d_model, n_layer=layers, n_head=heads)).eval()


def weight_bytes(model: GPT) -> int:
    """Bytes of weight every linear product reads per token (a tied matrix once per use)."""
    return sum(m.weight.nbytes + (m.bias.nbytes if m.bias is not None else 0)
               for m in model.modules() if isinstance(m, nn.Linear))


class Stepper:
    """Prefill a 64-token prompt, then decode one token per call (model forward + greedy sample)."""

    def __init__(self, model: GPT, steps: int):
        self.model, self.steps = model, steps
        self.chain = SamplerChain(SamplingParams(temperature=0.0), model.config.vocab_size)
        self.generator = torch.Generator().manual_seed(0)
        self.prompt = torch.randint(0, model.config.vocab_size, (1, 64), generator=self.generator)

    def run(self) -> float:
        """Seconds per decode step over `steps` steps."""
        cache = self.model.new_kv_cache(1, 64 + self.steps + 1)
        logits = self.model(self.prompt, kv_cache=cache, last_only=True).logits[:, -1].float()
        start = time.perf_counter()
        for _ in range(self.steps):
            token = self.chain.sample(logits, None, self.generator)                       # (1,)
            logits = decode_logits(self.model, token[:, None], cache).float()           # the engine's step
        return (time.perf_counter() - start) / self.steps


def read_bandwidth() -> float:
    big = torch.ones(100_000_000)
    big.sum()
    start = time.perf_counter()
    for _ in range(3):
        big.sum()
    return 3 * big.nbytes / (time.perf_counter() - start) / 1e9


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="profile_decode")
    p.add_argument("--shape", choices=SHAPES, default="6x384")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5, help="timed runs without the profiler (median)")
    p.add_argument("--model-forward", action="store_true",
                   help="every step through the model's forward (fast_decode(op_by_op=False)), for before/after")
    p.add_argument("--no-kernel", action="store_true",
                   help="one-row products by PyTorch instead of the compiled kernel (fast_decode(kernel=False))")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    layers, d_model, heads = SHAPES[args.shape]
    header(f"decode step profile: {args.shape}, vocab 50257, batch 1, after a 64-token prompt, "
           f"{'model forward' if args.model_forward else 'op-by-op step'}, "
           f"{'PyTorch products' if args.no_kernel else 'compiled one-row kernel'}, "
           f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    model, tiny = build(layers, d_model, heads, 50257), build(layers, 64, 4, 64)
    real, small = Stepper(model, args.steps), Stepper(tiny, args.steps)
    op_by_op = not args.model_forward
    kernel = not args.no_kernel
    with (torch.inference_mode(), fast_decode(model, op_by_op=op_by_op, kernel=kernel),
          fast_decode(tiny, op_by_op=op_by_op, kernel=kernel)):
        real.run(), small.run()                                        # copies made, caches warm
        walls, tiny_walls = [], []
        for _ in range(args.repeats):                                   # interleaved: the load hits both alike
            walls.append(real.run())
            tiny_walls.append(small.run())
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            real.run()
    bandwidth = read_bandwidth()
    wall, tiny_wall = statistics.median(walls), statistics.median(tiny_walls)
    parts: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for event in prof.key_averages():
        part = PART_OF.get(event.key, "other tensor ops (views, reshapes, empty, ...)")
        parts[part] += event.self_cpu_time_total / 1e6 / args.steps      # seconds per step
        calls[part] += event.count // args.steps
    ops = sum(parts.values())
    rows = []
    products = parts["matrix-vector products"]
    moved = weight_bytes(model)
    for part in [*PARTS, "other tensor ops (views, reshapes, empty, ...)"]:
        if part not in parts:
            continue
        note = (f"{moved / 1e6:.0f} MB of weights: {moved / products / 1e9:.1f} GB/s "
                f"(read bandwidth {bandwidth:.1f})" if part == "matrix-vector products" else "")
        rows.append((part, parts[part] * 1e3, f"{parts[part] / wall:.0%}", calls[part], note))
    rows.append(("Python and dispatcher: wall - ops' self time", max(0.0, wall - ops) * 1e3,
                 f"{max(0.0, wall - ops) / wall:.0%}", "", ""))
    rows.append(("wall time of a step (no profiler, median)", wall * 1e3, "100%", "",
                 f"{1 / wall:.0f} tokens/s"))
    rows.append((f"same step, {layers} layers x d_model 64, vocab 64", tiny_wall * 1e3,
                 f"{tiny_wall / wall:.0%}", "", "what the ops' count costs when they do ~nothing"))
    table(rows, ("part of the step", "ms/step", "share", "ATen calls/step", "note"))


if __name__ == "__main__":
    main()
