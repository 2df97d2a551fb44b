"""Decoding speed: batch 1, 64-token prompt, 256 new tokens, greedy, vocabulary 50,257,
random weights: ours beside llama.cpp (llama-cpp-python, on a GGUF of the same weights
written by glassgpt.interop.export_gguf) and Hugging Face transformers' GPT-2.

fp32 decoding of these shapes is bound by memory bandwidth: every weight is read once
per token. The table prints that ceiling (this machine's measured read bandwidth over
the bytes read per token) beside the speeds, and rows for our half-precision decode
weights (`fast_decode(model, dtype=...)`), which read half the bytes, against llama.cpp's
f16 GGUF (its default f16 KV cache), and the same decoding with PyTorch's products for
one row in place of the compiled kernel (`fast_decode(..., kernel=False)`). Every call
enters its own fast-decoding scope, as `glassgpt generate` does: the copies' cost is in
the figures. Time to first token: a 512-token prompt, prefill and the first token.

The runs are interleaved round by round (ours, llama.cpp, transformers, ours, ...) so a
change in the machine's load hits them alike; each figure is the median over the rounds.
"same tokens" compares greedy tokens with ours in fp32; otherwise the row says how many
of the first tokens agree (greedy runs part at their first near-tie of two logits).
llama.cpp is optional (`pip install -e '.[llama]'` compiles it); without it the table
has no llama.cpp column and one line says so.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import header, hf_gpt2_pair, ratio, table, timer
from glassgpt.generate import generate
from glassgpt.generate.fast import fast_decode

SHAPES = {"6x384": (6, 384, 6), "gpt2-small 12x768": (12, 768, 12)}
GGML_F32 = 0              # llama.cpp's type number for a float32 KV cache (its default is f16)

try:
    import llama_cpp
except ImportError:
    llama_cpp = None


def decode_ours(model, prompt: list[int], n: int, dtype=None, op_by_op: bool = True, kernel: bool = True
                ) -> list[int]:
    with fast_decode(model, dtype=dtype, op_by_op=op_by_op, kernel=kernel):
        return generate(model, prompt, max_new_tokens=n, temperature=0)[0].ids


@torch.inference_mode()
def decode_hf(hf, prompt: list[int], n: int) -> list[int]:
    out = hf.generate(torch.tensor([prompt]), max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def decode_llama(llm, prompt: list[int], n: int) -> list[int]:
    """Greedy decoding in llama.cpp: evaluate the prompt, then one token at a time."""
    llm.reset()
    llm.eval(prompt)
    out, vocab = [], llm.n_vocab()
    for _ in range(n):                          # the last position's logits (llm.scores needs logits_all)
        out.append(int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocab,)))))
        if len(out) < n:
            llm.eval(out[-1:])
    return out


def llama_models(model, directory: Path) -> dict:
    """llama.cpp on GGUF exports of `model`: {"float32": f32 file + f32 KV cache, "float16": f16 file}."""
    from glassgpt import Tokenizer
    from glassgpt.interop import export_gguf

    # GGUF carries a tokenizer; ids it does not use are padding, and the benchmark feeds ids.
    model.tokenizer = Tokenizer.train("the quick brown fox jumps over the lazy dog. " * 8, vocab_size=300,
                                      progress=False)
    threads = torch.get_num_threads()
    common = dict(n_ctx=model.config.context_length, n_batch=512, n_threads=threads, n_threads_batch=threads,
                  verbose=False)
    f32 = llama_cpp.Llama(str(export_gguf(model, directory / "f32.gguf")), type_k=GGML_F32, type_v=GGML_F32,
                          **common)
    f16 = llama_cpp.Llama(str(export_gguf(model, directory / "f16.gguf", dtype="f16")), **common)
    model.tokenizer = None
    return {"float32": f32, "float16": f16}


def read_bandwidth() -> float:
    """GB/s at which this machine reads a 400 MB tensor (sum), with the current threads."""
    big = torch.ones(100_000_000)
    big.sum()
    with timer() as t:
        for _ in range(3):
            big.sum()
    return 3 * big.numel() * 4 / t() / 1e9


def agreement(ids: list[int], ref: list[int]) -> str:
    if ids == ref:
        return "same tokens"
    first = next(i for i, (a, b) in enumerate(zip(ids, ref)) if a != b) if ids[:len(ref)] != ref else len(ref)
    return f"first {first}/{len(ref)} tokens same"


def interleaved(runs: dict, rounds: int) -> tuple[dict, dict]:
    """{name: fn} -> ({name: median seconds}, {name: output of the last run}), round by round."""
    seconds: dict = {name: [] for name in runs}
    outputs = {}
    for _ in range(rounds):
        for name, fn in runs.items():
            with timer() as t:
                outputs[name] = fn()
            seconds[name].append(t())
    return {name: statistics.median(s) for name, s in seconds.items()}, outputs


def measure(name: str, layers: int, d_model: int, heads: int, n: int, rounds: int, bandwidth: float) -> list:
    """The table's rows for one shape."""
    hf, ours = hf_gpt2_pair(layers, d_model, heads)
    prompt = torch.randint(0, 50257, (64,), generator=torch.Generator().manual_seed(1)).tolist()
    long_prompt = torch.randint(0, 50257, (512,), generator=torch.Generator().manual_seed(2)).tolist()
    with tempfile.TemporaryDirectory() as tmp:
        llms = llama_models(ours, Path(tmp)) if llama_cpp is not None else {}
        runs = {"hf": lambda: decode_hf(hf, prompt, n),
                "ours model forward": lambda: decode_ours(ours, prompt, n, op_by_op=False)}
        for dtype in ("float32", "float16", "bfloat16"):
            runs[f"ours {dtype}"] = lambda dtype=dtype: decode_ours(ours, prompt, n, dtype)
            if dtype != "bfloat16":
                runs[f"ours {dtype} no kernel"] = lambda dtype=dtype: decode_ours(ours, prompt, n, dtype, kernel=False)
            if dtype in llms:
                runs[f"llama {dtype}"] = lambda llm=llms[dtype]: decode_llama(llm, prompt, n)
        first = {"ours": lambda: decode_ours(ours, long_prompt, 1)}
        if "float32" in llms:
            first["llama"] = lambda: decode_llama(llms["float32"], long_prompt, 1)
        decode_ours(ours, prompt, 4), decode_hf(hf, prompt, 4)                # warm up
        for llm in llms.values():
            decode_llama(llm, prompt, 4)
        seconds, outputs = interleaved(runs, rounds)
        first_seconds, _ = interleaved(first, max(rounds, 3))
        for llm in llms.values():
            llm.close()
    reference, rows = outputs["ours float32"], []
    fp32_mb = sum(p.numel() * p.element_size() for p in ours.parameters()) / 1e6
    for dtype, bytes_per_weight in (("float32", 4), ("float16", 2), ("bfloat16", 2)):
        tps = n / seconds[f"ours {dtype}"]
        llama_tps = n / seconds[f"llama {dtype}"] if f"llama {dtype}" in seconds else None
        same = [f"ours {agreement(outputs[f'ours {dtype}'], outputs['hf'])} as transformers fp32"]
        if llama_tps:
            same.append(f"llama.cpp {agreement(outputs[f'llama {dtype}'], reference)} as ours fp32")
        rows.append((f"{name} {dtype} decode weights", tps, llama_tps, ratio(tps, llama_tps),
                     n / seconds["hf"] if dtype == "float32" else None,
                     ratio(tps, n / seconds["hf"]), "; ".join(same)))
        if f"ours {dtype} no kernel" in seconds:
            plain = n / seconds[f"ours {dtype} no kernel"]
            rows.append((f"  {dtype}, one-row products by PyTorch (kernel=False)", plain, llama_tps,
                         ratio(plain, llama_tps), None, ratio(plain, n / seconds["hf"]),
                         agreement(outputs[f"ours {dtype} no kernel"], reference) + " as ours fp32"))
        if dtype == "float32":
            forward = n / seconds["ours model forward"]
            rows.append(("  float32, every step through the model's forward (op_by_op=False)", forward, llama_tps,
                         ratio(forward, llama_tps), None, ratio(forward, n / seconds["hf"]),
                         agreement(outputs["ours model forward"], reference) + " as ours fp32"))
        mb = fp32_mb * bytes_per_weight / 4
        rows.append((f"  {dtype}: ceiling = bandwidth / {mb:.0f} MB per token", bandwidth * 1e3 / mb,
                     None, "", None, "", ""))
    llama_first = first_seconds.get("llama")
    rows.append((f"{name} time to first token, 512-token prompt (ms; ratio = llama.cpp / ours)",
                 first_seconds["ours"] * 1e3, llama_first * 1e3 if llama_first else None,
                 ratio(llama_first, first_seconds["ours"]) if llama_first else "n/a", None, "", ""))
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="bench_decode")
    p.add_argument("--quick", action="store_true", help="64 new tokens, one round, 6x384 only")
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for all three (default: torch's)")
    p.add_argument("--shapes", nargs="+", choices=[s.split()[-1] for s in SHAPES], default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    n, rounds = (64, 1) if args.quick else (args.new_tokens, args.rounds)
    wanted = args.shapes or (["6x384"] if args.quick else [k.split()[-1] for k in SHAPES])
    shapes = {k: v for k, v in SHAPES.items() if k.split()[-1] in wanted}
    header(f"decode: batch 1, prompt 64, {n} new tokens, greedy, vocab 50257, {torch.get_num_threads()} threads "
           f"(tokens/s, median of {rounds} interleaved rounds; load average {os.getloadavg()[0]:.1f})")
    if llama_cpp is None:
        print("   llama.cpp not installed (pip install -e '.[llama]' compiles it): no llama.cpp column")
    bandwidth = read_bandwidth()
    print(f"   memory read bandwidth {bandwidth:.1f} GB/s ({torch.get_num_threads()} threads)")
    rows = []
    for name, (layers, d_model, heads) in shapes.items():
        rows += measure(name, layers, d_model, heads, n, rounds, bandwidth)
    table(rows, ("measure", "ours tok/s", "llama.cpp", "ours/llama.cpp", "transformers fp32", "ours/transformers",
                 "greedy tokens"))


if __name__ == "__main__":
    main()
