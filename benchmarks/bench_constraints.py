"""Constrained decoding: what a token mask costs beside a decode step, and the two engines
side by side.

The model: 6 layers x 384, vocabulary 50,257, random weights, fp32, batch 1. The
tokenizer: a byte-level BPE with 50,257 ids trained here on Python's standard library
and its docs (cached in ~/.cache/glassgpt; the first run trains it, a few minutes).
Constraints: a regex, a JSON schema and a 20-way choice.

Rows:
  decode step                    one greedy token, unconstrained (median gap between streamed tokens)
  <constraint> compile           constraint -> a ready matcher (our vocabulary view built once, apart)
  <constraint> mask per step     the engine's mask for one step + applying it to the logits,
                                 along the tokens of a text the constraint accepts
  <constraint> sampling step      the whole extra cost of a constrained sampling step (mask, renormalise,
                                 draw at T = 0.8, top-p 0.95, advance) over the chain's own draw
  <constraint> generate          time per token of a constrained stream against unconstrained
                                 (median gaps): the overhead the issue bounds at 10% per token
  exact (oracle)                 steps whose allowed set equals a brute-force oracle's (Python
                                 `regex` partial matching over every token), for llguidance as
                                 glassgpt runs it, llguidance's default (forcing on) and outlines-core

outlines-core is optional (pip install 'glassgpt[bench-constraints]'); without it its
columns say so.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import header, table, timer

CACHE = Path(os.environ.get("GLASSGPT_CACHE", Path.home() / ".cache" / "glassgpt"))
SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "maxItems": 3}},
    "required": ["name", "age", "tags"], "additionalProperties": False}
CHOICES = [f"option {w}" for w in ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi "
                                   "omicron pi rho sigma tau upsilon").split()]
REGEX = r"[A-Z][a-z]{2,8} [0-9]{1,4}(, [A-Z][a-z]{2,8} [0-9]{1,4}){0,3}\."
SAMPLES = {"regex": "Monday 12, Tuesday 345, Friday 7.",
           "json schema": '{"name": "Ada Lovelace", "age": 36, "tags": ["maths", "engines"]}',
           "20-way choice": "option upsilon"}


def bpe_50k():
    from glassgpt import Tokenizer

    path = CACHE / "bench_constraints_bpe50257.json"
    if path.exists():
        return Tokenizer.load(path), 0.0
    from benchmarks.bench_tokenizer import english_prose, stdlib_sources

    start = time.perf_counter()
    tok = Tokenizer.train(stdlib_sources(16_000_000) + english_prose(), 50257, progress=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    tok.save(path)
    return tok, time.perf_counter() - start


def constraints():
    from glassgpt import Choice, JSONSchema, Regex
    return {"regex": Regex(REGEX), "json schema": JSONSchema(SCHEMA), "20-way choice": Choice(CHOICES)}


def outlines_regex(name: str) -> str:
    from outlines_core.json_schema import build_regex_from_schema
    if name == "regex":
        return REGEX
    if name == "json schema":   # the same layout as ours: one space after ':' and ','
        return build_regex_from_schema(json.dumps(SCHEMA), whitespace_pattern=" ?")
    return "(" + "|".join(re.escape(c) for c in CHOICES) + ")"


# -- the two engines behind one small interface -----------------------------------------------------
class Ours:
    name = "llguidance"

    def __init__(self, tok, V, forcing=False):
        from glassgpt.generate import token_masks as tm
        self.tm, self.tok, self.V, self.forcing = tm, tok, V, forcing
        with timer() as t:
            self.vocab = tm.engine_vocabulary(tok, V)
        self.vocab_seconds = t()

    def compile(self, constraint):
        tm = self.tm
        tm._COMPILED.pop(self.tok, None)                      # time a real compile, not the cache
        if not self.forcing:
            return tm.compile_constraint(constraint, self.tok, self.V)
        import llguidance
        matcher = llguidance.LLMatcher(self.vocab.lltokenizer, constraint.grammar(), log_level=0)
        return tm.CompiledConstraint(constraint, self.vocab, matcher, 0.0)

    def start(self, compiled):
        return compiled.new_state()

    def allowed(self, state) -> torch.Tensor:
        return self.tm.token_masks([state], self.V)[0]

    def advance(self, state, token):
        state.advance(token)


class Outlines:
    name = "outlines-core"

    def __init__(self, tok, V):
        import outlines_core as oc
        self.oc, self.V = oc, V
        specials = set(tok.special_tokens.values())
        with timer() as t:
            table_ = {}
            for i in range(tok.vocab_size):
                if i not in specials:
                    table_.setdefault(tok.token_bytes(i), []).append(i)
            self.vocab = oc.Vocabulary(tok.eot_id, table_)
        self.vocab_seconds = t()
        self.words = (V + 1 + 31) // 32

    def compile(self, name):
        return self.oc.Index(outlines_regex(name), self.vocab)

    def start(self, index):
        return self.oc.Guide(index)

    def allowed(self, guide) -> torch.Tensor:
        bits = torch.zeros(1, self.words, dtype=torch.int32)
        guide.write_mask_into(bits.data_ptr(), bits.numel(), bits.element_size())
        shifts = torch.arange(32, dtype=torch.int32)
        return ((bits.unsqueeze(-1) >> shifts) & 1).view(-1)[:self.V].bool()

    def advance(self, guide, token):
        guide.advance(token, return_tokens=False)


# -- measurements -------------------------------------------------------------------------------------
def decode_step_seconds(model, prompt, n, constraint=None, rounds: int = 3) -> tuple[float, int]:
    """Median time between consecutive tokens of greedy streams (prefill and set-up left
    out, so runs of different lengths compare), pooled over `rounds` runs; and the tokens
    per run."""
    from glassgpt.generate import stream

    gaps = []
    for _ in range(rounds):
        stamps = [time.perf_counter() for _ in stream(model, prompt, max_new_tokens=n, temperature=0,
                                                       constraint=constraint)]
        gaps += [b - a for a, b in zip(stamps, stamps[1:])]
    return statistics.median(gaps), len(stamps)


def mask_step_seconds(engine, compiled, ids, logits) -> float:
    """Median time of mask + apply along `ids`."""
    state, times = engine.start(compiled), []
    for token in ids:
        start = time.perf_counter()
        allowed = engine.allowed(state)
        logits.masked_fill(~allowed, float("-inf")).argmax()
        times.append(time.perf_counter() - start)
        if not allowed[token]:
            raise AssertionError(f"{engine.name} refused token {token} of a valid text")
        engine.advance(state, token)
    return statistics.median(times)


def sampling_overhead_seconds(model, tok, constraint, ids) -> float:
    """Median extra time of one constrained sampling step (mask, renormalise, draw, advance)
    over the plain chain's draw, along `ids` (each the best of 5): the whole per-token cost
    a constraint adds outside the forward pass, measured without the forward's noise."""
    from glassgpt.generate.decode import Request, constrained_sample
    from glassgpt.generate.samplers import SamplingParams

    request = Request.build(model, [ids[:1]], SamplingParams.of(temperature=0.8, top_p=0.95, seed=0), tok,
                            constraint)
    state, extra = request.constraint.new_state(), []
    logits = torch.randn(1, model.config.vocab_size)
    def best(fn, repeat=5):
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    for token in ids:
        plain = best(lambda: request.chain.sample(logits, None, request.generator))
        constrained = best(lambda: constrained_sample(request, logits, None, [state]))
        start = time.perf_counter()
        state.advance(token)
        extra.append(constrained + time.perf_counter() - start - plain)
    return statistics.median(extra)


def oracle_agreement(engine, compiled, tok, pattern: str, ids, max_steps: int) -> str:
    """Steps whose allowed set equals the brute-force oracle's, along `ids`."""
    import regex

    specials = set(tok.special_tokens.values())
    pieces = {i: tok.token_bytes(i) for i in range(tok.vocab_size) if i not in specials}
    state, text, agree, steps = engine.start(compiled), b"", 0, 0
    for token in ids[:max_steps]:
        got = set(engine.allowed(state).nonzero().flatten().tolist()) - specials
        want = set()
        for i, piece in pieces.items():
            try:
                candidate = (text + piece).decode("utf-8")
            except UnicodeDecodeError:
                continue
            if regex.fullmatch(pattern, candidate, partial=True):
                want.add(i)
        agree += got == want
        steps += 1
        engine.advance(state, token)
        text += tok.token_bytes(token)
    return f"{agree}/{steps}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks constraints")
    parser.add_argument("--quick", action="store_true", help="fewer tokens per measurement")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a loaded machine, several threads spin-wait on "
                             "each small op and a 0.1 ms mask takes 100 ms)")
    args = parser.parse_args(argv)
    from glassgpt.model import GPT, GPTConfig

    torch.set_num_threads(args.threads)
    header("constrained decoding: mask cost per step against a 6x384, vocabulary 50,257 decode step")
    print(f"   load average before the run: {os.getloadavg()[0]:.1f} (ratios are fairest near 0); "
          f"torch threads: {args.threads}")
    tok, trained = bpe_50k()
    if trained:
        print(f"   trained the 50,257-id BPE in {trained:.0f} s (cached in {CACHE})")
    V = tok.vocab_size
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, context_length=256, n_layer=6, d_model=384, n_head=6), tokenizer=tok).eval()
    n = 16 if args.quick else 48
    prompt = tok.encode("The record reads: ")
    from glassgpt.generate.fast import fast_decode
    scope = fast_decode(model)          # one decoding scope for every run, as a server holds it
    scope.__enter__()
    step, _ = decode_step_seconds(model, prompt, n)
    step = min(step, decode_step_seconds(model, prompt, n)[0])
    engines = [Ours(tok, V)]
    try:
        engines.append(Outlines(tok, V))
    except ImportError:
        print("   outlines-core is not installed (pip install 'glassgpt[bench-constraints]'): its columns are n/a")
    rows = [("decode step, unconstrained (ms)", step * 1e3, None, None),
            ("vocabulary view, built once (ms)", engines[0].vocab_seconds * 1e3,
             engines[1].vocab_seconds * 1e3 if len(engines) > 1 else None, None)]
    logits = torch.randn(V)
    for name, constraint in constraints().items():
        ids = tok.encode(SAMPLES[name])
        compiled = {}
        compile_ms, mask_ms = [], []
        for engine in engines:
            with timer() as t:
                compiled[engine.name] = engine.compile(constraint if isinstance(engine, Ours) else name)
            compile_ms.append(t() * 1e3)
            mask_ms.append(mask_step_seconds(engine, compiled[engine.name], ids, logits) * 1e3)
        other = lambda xs: xs[1] if len(xs) > 1 else None   # noqa: E731
        rows.append((f"{name}: compile (ms)", compile_ms[0], other(compile_ms), None))
        rows.append((f"{name}: mask per step (ms)", mask_ms[0], other(mask_ms),
                     f"{mask_ms[0] / (step * 1e3):.1%} of a step"))
        overhead = sampling_overhead_seconds(model, tok, constraint, ids)
        rows.append((f"{name}: sampling step, extra over the chain (ms)", overhead * 1e3, None,
                     f"{overhead / step:.1%} of a step"))
        per_token, count = decode_step_seconds(model, prompt, 96, constraint)   # room to complete the text
        free, _ = decode_step_seconds(model, prompt, count)         # unconstrained, run just after (same load)
        rows.append((f"{name}: generate, ms per token ({count} tokens)", per_token * 1e3, free * 1e3,
                     f"overhead {per_token / free - 1:+.1%} vs unconstrained"))
    scope.__exit__(None, None, None)
    table(rows, columns=("measure", "ours (llguidance)", "outlines-core / unconstrained", "note"))

    print("\n   exactness: steps whose allowed set equals a brute-force oracle's (Python regex partial matching)")
    exact_rows = []
    char_tok = char_tokenizer()
    for tokenizer, label in ((tok, "BPE 50,257"), (char_tok, f"chars {char_tok.vocab_size}")):
        engines_here = [Ours(tokenizer, tokenizer.vocab_size), Ours(tokenizer, tokenizer.vocab_size, forcing=True)]
        try:
            engines_here.append(Outlines(tokenizer, tokenizer.vocab_size))
        except ImportError:
            pass
        for name in ("regex", "20-way choice"):
            pattern = REGEX if name == "regex" else "(" + "|".join(re.escape(c) for c in CHOICES) + ")"
            ids = tokenizer.encode(SAMPLES[name])[:6 if args.quick else None]
            cells = [oracle_agreement(e, e.compile(constraints()[name] if isinstance(e, Ours) else name),
                                      tokenizer, pattern, ids, len(ids)) for e in engines_here]
            exact_rows.append((f"{label}: {name}", *cells))
    table(exact_rows, columns=("tokenizer: constraint", "llguidance, forcing off (ours)",
                               "llguidance default (forcing on)", "outlines-core"))


def char_tokenizer():
    from glassgpt import Tokenizer
    return Tokenizer.chars("".join(chr(c) for c in range(32, 127)) + "\n", special_tokens=["<|endoftext|>"])


if __name__ == "__main__":
    main()
