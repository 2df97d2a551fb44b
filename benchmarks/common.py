"""Shared pieces of the benchmarks: the header, the comparison table, timing, and a
Hugging Face GPT-2 with random weights copied into our model."""
from __future__ import annotations

import time
from contextlib import contextmanager

from glassgpt.runtime import cpu_description


def header(title: str) -> None:
    print(f"\n== {title}")
    print(f"   {cpu_description()}")


def table(rows: list[tuple], columns=("measure", "ours", "reference", "ours/ref")) -> None:
    """Print rows of (measure, ours, reference[, ratio]); floats get 3 significant digits."""
    cells = [[_fmt(c) for c in row] + [""] * (len(columns) - len(row)) for row in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(columns, *cells)]
    line = lambda xs: "| " + " | ".join(str(x).ljust(w) for x, w in zip(xs, widths)) + " |"
    print(line(columns))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print(line(row))


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    return "" if x is None else str(x)


def ratio(ours: float, reference: float | None) -> str:
    return f"{ours / reference:.2f}x" if reference else "n/a"


@contextmanager
def timer():
    """`with timer() as t: ...` then t() is the elapsed seconds."""
    start = time.perf_counter()
    elapsed = [None]
    yield lambda: elapsed[0] if elapsed[0] is not None else time.perf_counter() - start
    elapsed[0] = time.perf_counter() - start


def hf_gpt2_pair(n_layer: int, d_model: int, n_head: int, vocab_size: int = 50257, context: int = 1024, seed: int = 0):
    """A transformers GPT2LMHeadModel with random weights and our GPT with the same weights."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    from glassgpt.model.hf_gpt2 import from_hf_gpt2

    hf_logging.set_verbosity_error()
    torch.manual_seed(seed)
    hf = GPT2LMHeadModel(GPT2Config(n_layer=n_layer, n_embd=d_model, n_head=n_head, vocab_size=vocab_size,
                                    n_positions=context, bos_token_id=0, eos_token_id=0)).eval()
    return hf, from_hf_gpt2(hf)
