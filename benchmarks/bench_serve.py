"""`glassgpt serve` under load: continuous batching over loopback HTTP.

A random-weight GPT of 6 layers x 384 with GPT-2's vocabulary of 50,257 is served by a
real uvicorn in a subprocess (so the server's memory can be read on its own); an async
client streams completions of 64-token prompts (different random ids per request, so no
prefix is reused) with 64 new tokens, greedy, at 1, 4, 8 and 16 concurrent clients:

- generated tokens/s over the run, p50/p95 time to first token, p50/p95 time between tokens
- throughput at 8 clients against 1 client (continuous batching at work; target >= 3x)
- 1 client over HTTP against in-process `generate` of the same prompts (target within 10%),
  measured in the same run, the server idle meanwhile
- memory: the server's resident size after request 100 and after request N (default 2,000;
  short requests of 8 tokens, 16 clients; target within 5%)

    python -m benchmarks.bench_serve [--quick] [--memory-requests N] [--max-batch 16]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time

from benchmarks.common import header, ratio, table

LAYERS, D_MODEL, HEADS, VOCAB, CONTEXT = 6, 384, 6, 50257, 1024
PROMPT_TOKENS, NEW_TOKENS = 64, 64


def build_model():
    """The benchmark model; the same seed gives the same weights in every process."""
    import torch

    from glassgpt.model import GPT, GPTConfig
    from glassgpt.tokenizer import CharTokenizer

    torch.manual_seed(0)
    # one character per id (no end-of-text token, so greedy decoding always runs the full length)
    chars = [chr(c) for c in range(0x100, 0x100 + VOCAB + 2048) if not 0xD800 <= c < 0xE000][:VOCAB]
    config = GPTConfig.preset("small", n_layer=LAYERS, d_model=D_MODEL, n_head=HEADS, vocab_size=VOCAB,
                              context_length=CONTEXT)
    return GPT(config, tokenizer=CharTokenizer(chars, {})).eval()


def serve(port: int, max_batch: int) -> None:
    """The server process: the benchmark model behind glassgpt's app on 127.0.0.1:port."""
    import uvicorn

    from glassgpt.serve import create_app

    app = create_app({"bench": build_model()}, max_batch=max_batch, max_queue=4096)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def prompts(n: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(VOCAB) for _ in range(PROMPT_TOKENS)] for _ in range(n)]


async def one_request(http, ids: list[int], max_tokens: int) -> tuple[float, list[float], int]:
    """Stream one completion: (time to first token, gaps between tokens, tokens)."""
    body = {"model": "bench", "prompt": ids, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    stamps, tokens = [], 0
    async with http.stream("POST", "/v1/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {(await r.aread())[:200]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            elif chunk["choices"] and chunk["choices"][0]["text"]:
                stamps.append(time.perf_counter())
    return stamps[0] - start, [b - a for a, b in zip(stamps, stamps[1:])], tokens


async def load(url: str, clients: int, requests_each: int, max_tokens: int, seed: int,
               on_done=None) -> dict:
    """`clients` concurrent clients, each sending `requests_each` requests one after another."""
    import httpx

    work = prompts(clients * requests_each, seed)
    ttft, gaps, total = [], [], [0]
    done = [0]

    async def client(c: int, http):
        for r in range(requests_each):
            first, between, tokens = await one_request(http, work[c * requests_each + r], max_tokens)
            ttft.append(first)
            gaps.extend(between)
            total[0] += tokens
            done[0] += 1
            if on_done is not None:
                on_done(done[0])

    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(c, http) for c in range(clients)))
        seconds = time.perf_counter() - start
    return {"tokens_per_s": total[0] / seconds, "ttft": ttft, "gaps": gaps, "requests": len(ttft)}


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def in_process_rate(ids_list: list[list[int]]) -> float:
    """Tokens/s of in-process `generate` over the same requests one after another (prefill included)."""
    from glassgpt.generate import generate
    from glassgpt.generate.fast import fast_decode

    model = build_model()
    tokens = 0
    with fast_decode(model):                # held as the server holds it
        generate(model, ids_list[0], max_new_tokens=8, temperature=0)    # warm-up
        start = time.perf_counter()
        for ids in ids_list:
            (g,) = generate(model, ids, max_new_tokens=NEW_TOKENS, temperature=0)
            tokens += len(g.ids)
    return tokens / (time.perf_counter() - start)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_serve")
    p.add_argument("--quick", action="store_true", help="fewer requests per level, 300 for the memory check")
    p.add_argument("--memory-requests", type=int, default=None, metavar="N")
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads in the server and the in-process run (on a loaded machine 1 is steadier)")
    p.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.serve:
        serve(args.serve, args.max_batch)
        return
    header(f"glassgpt serve: {LAYERS}x{D_MODEL}, vocab {VOCAB:,}, prompts of {PROMPT_TOKENS} tokens, "
           f"{NEW_TOKENS} new, greedy, loopback HTTP, streamed; max batch {args.max_batch}")
    import torch

    print(f"   torch threads: {torch.get_num_threads()}; load average before: {os.getloadavg()[0]:.1f} "
          f"(a machine shared with other jobs gives noisy figures)")
    memory_requests = 16 * max(8, (args.memory_requests or (304 if args.quick else 2000)) // 16)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_serve", "--serve", str(port),
                               "--max-batch", str(args.max_batch)]
                              + (["--threads", str(args.threads)] if args.threads else []))
    try:
        wait_up(url, server)
        asyncio.run(load(url, 1, 1, 8, seed=99))                           # warm-up
        rows, rates = [], {}
        for clients in (1, 4, 8, 16):
            each = (1 if args.quick else 2) if clients > 1 else (2 if args.quick else 4)
            r = asyncio.run(load(url, clients, each, NEW_TOKENS, seed=clients))
            rates[clients] = r["tokens_per_s"]
            rows.append((f"{clients} client{'s' * (clients > 1)}: tokens/s", r["tokens_per_s"],
                         f"TTFT p50 {pct(r['ttft'], .5) * 1e3:.0f} / p95 {pct(r['ttft'], .95) * 1e3:.0f} ms",
                         f"between tokens p50 {pct(r['gaps'], .5) * 1e3:.1f} / p95 {pct(r['gaps'], .95) * 1e3:.1f} ms"))
        table(rows, columns=("load", "generated tokens/s", "time to first token", "time between tokens"))
        one = asyncio.run(load(url, 1, 3, NEW_TOKENS, seed=7))
        local = in_process_rate(prompts(3, 7))
        marks = {}

        def on_done(n):
            if n in (100, memory_requests):
                marks[n] = rss_mb(server.pid)

        asyncio.run(load(url, 16, memory_requests // 16, 8, seed=5, on_done=on_done))
        print()
        table([
            ("throughput, 8 clients vs 1 (target >= 3x)", rates[8], rates[1], ratio(rates[8], rates[1])),
            ("1 client over HTTP vs in-process generate, tokens/s (target >= 0.9x)", one["tokens_per_s"], local,
             ratio(one["tokens_per_s"], local)),
            (f"server resident MB at request 100 vs {memory_requests} (target within 5%)",
             marks.get(memory_requests), marks.get(100), ratio(marks.get(memory_requests, 0), marks.get(100))),
        ])
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_up(url: str, server: subprocess.Popen) -> None:
    import httpx

    deadline = time.time() + 120
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit("the benchmark server exited")
        try:
            if httpx.get(url + "/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the benchmark server did not start in 120 s")


if __name__ == "__main__":
    main(sys.argv[1:])
