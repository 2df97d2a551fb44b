"""A trained target model and a small draft model for the speculative-decoding benchmark,
made with the library's own `prepare` and `train` on the built-in corpus and cached so that
a second run reuses them.

The draft is distilled from the target by default (`glassgpt train --teacher`) on text the
target wrote itself (continuations of corpus prompts, half greedy, half sampled): it learns
the target's next-token distributions, including the loops greedy decoding falls into,
which the corpus never shows, so it agrees with the target more often and speculative
decoding accepts more of its tokens. A draft trained on the corpus alone (plain or
distilled) agrees with this target on about 80% of ordinary text but on none of the
endless runs of newlines its greedy text ends in.

The target is 6 x 256 rather than 6 x 384: the point of a target is to be better than its
draft, and on a 2-core CPU a 6 x 384 one (one thread, lr 2e-3) was still at loss 2.55 after
20 minutes while the 1 x 128 draft reached 1.5 in 10.

Cache: $GLASSGPT_CACHE/bench (default ~/.cache/glassgpt/bench), one directory per data set
and per (architecture, time budget), so changing a budget trains afresh.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from glassgpt.errors import GlassError
from glassgpt.generate import generate_batch
from glassgpt.model import GPT, GPTConfig, load
from glassgpt.train import TrainConfig, prepare, train
from glassgpt.train.corpora import cache_dir
from glassgpt.train.data import fixed_batches, open_tokens
from glassgpt.train.prepare import META, TOKENIZER, TRAIN, VAL, read_meta

VOCAB_SIZE = 1024                                                    # for tokenizer="bpe"
CONTEXT = 256
TARGET = dict(preset="small", n_layer=6, d_model=256, n_head=8)     # 6 layers x 256
DRAFT = dict(preset="small", n_layer=1, d_model=128, n_head=4)       # 1 layer x 128
SCHEDULE = {"target": dict(lr=1e-3, warmup_iters=100), "draft": dict(lr=2e-3, warmup_iters=10)}


def bench_cache() -> Path:
    return cache_dir() / "bench"


def prepared_data(tokenizer: str = "char") -> tuple[Path, str]:
    """Tokenized Shakespeare (or the Python docs, offline), one id per character or with a
    1,024-id BPE; reused if present."""
    for corpus in ("shakespeare", "python-docs"):
        data_dir = bench_cache() / f"data-{corpus}-{'char' if tokenizer == 'char' else f'bpe{VOCAB_SIZE}'}"
        if (data_dir / "meta.json").is_file():
            return data_dir, corpus
        try:
            prepare([corpus], data_dir, tokenizer=tokenizer, vocab_size=VOCAB_SIZE, progress=False)
            return data_dir, corpus
        except GlassError as e:
            print(f"   {corpus} unavailable ({e}); trying the next corpus")
    raise GlassError("no built-in corpus could be prepared")


def trained(data_dir: Path, name: str, arch: dict, seconds: float,
            teacher: Path | None = None) -> tuple[GPT, float, Path]:
    """Train (or reuse) one model for `seconds` (distilled from `teacher` if given); trains into a
    scratch directory, then renames. Returns the model, its validation loss and its run directory."""
    arch = dict(arch)
    preset = arch.pop("preset")
    tag = "-".join(f"{k}{v}" for k, v in arch.items())
    student = f"-distilled-from-{teacher.name}" if teacher else ""
    run_dir = data_dir.parent / f"{data_dir.name}--{name}-{preset}{'-' + tag if tag else ''}-{seconds:g}s{student}"
    if not (run_dir / "config.json").is_file():
        scratch = run_dir.with_name(run_dir.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        print(f"   training the {name} ({preset} {tag}) for {seconds:g} s -> {run_dir}")
        config = GPTConfig.preset(preset, context_length=CONTEXT, **arch)
        settings = TrainConfig(max_seconds=seconds, max_iters=None, batch_size=8, eval_interval=100_000,
                               eval_iters=10, teacher=str(teacher) if teacher else None, **SCHEDULE[name])
        train(data_dir, scratch, config, settings, progress=True)
        scratch.rename(run_dir)
    last = json.loads((run_dir / "log.jsonl").read_text().splitlines()[-1])
    print(f"   {name}: {run_dir.name}, {last['step']} steps, validation loss {last['val_loss']:.3f}")
    return load(run_dir), last["val_loss"], run_dir


def evaluate_on(model: GPT, data_dir: Path, batches: int = 10) -> float:
    """The model's validation loss on data_dir's validation tokens (fixed batches of 8)."""
    tokens = open_tokens(data_dir / VAL, read_meta(data_dir)["dtype"])
    with torch.no_grad():
        losses = [model(x, y).loss for x, y in fixed_batches(tokens, batches, 8, CONTEXT, model.device, seed=0)]
    return torch.stack(losses).mean().item()


def self_written(target: GPT, target_dir: Path, data_dir: Path, n: int = 512, prompt_tokens: int = 32) -> Path:
    """The target's own continuations of n random training-text prompts (half greedy, half
    sampled at T=1) up to its context, tokenized like data_dir; reused if present."""
    out = data_dir.parent / f"{data_dir.name}--written-by-{target_dir.name}-{n}"
    if (out / META).is_file():
        return out
    tokens = open_tokens(data_dir / TRAIN, read_meta(data_dir)["dtype"])
    starts = np.random.default_rng(0).integers(0, len(tokens) - prompt_tokens, n)
    prompts = [tokens[s:s + prompt_tokens].tolist() for s in starts]
    texts = data_dir.parent / (out.name + ".texts")
    shutil.rmtree(texts, ignore_errors=True)
    texts.mkdir()
    print(f"   the target writes {n} continuations of {CONTEXT - prompt_tokens} tokens -> {out}")
    for i in range(0, n, 8):
        batch = prompts[i:i + 8]
        for j, g in enumerate(generate_batch(target, batch, max_new_tokens=CONTEXT - prompt_tokens,
                                             temperature=0.0 if i < n // 2 else 1.0, seed=i)):
            (texts / f"{i + j:05d}.txt").write_text(target.tokenizer.decode(batch[j] + g.ids), encoding="utf-8")
    prepare([texts], out, tokenizer=data_dir / TOKENIZER, progress=False)
    shutil.rmtree(texts)
    return out


def trained_pair(target_seconds: float = 1200, draft_seconds: float = 120,
                 tokenizer: str = "char", distil: bool = True) -> tuple[GPT, GPT, str]:
    """(target, draft, corpus name): the target trained on the tokenized corpus, the draft
    distilled from the target on the target's own text (or, distil=False, trained on the corpus)."""
    data_dir, corpus = prepared_data(tokenizer)
    target, target_loss, target_dir = trained(data_dir, "target", TARGET, target_seconds)
    if distil:
        draft, _, _ = trained(self_written(target, target_dir, data_dir), "draft", DRAFT, draft_seconds, target_dir)
        draft_loss = evaluate_on(draft, data_dir)
        print(f"   draft: validation loss {draft_loss:.3f} on the corpus")
    else:
        draft, draft_loss, _ = trained(data_dir, "draft", DRAFT, draft_seconds)
    if target_loss >= draft_loss:
        print(f"   WARNING: the target (validation loss {target_loss:.3f}) is no better than its draft "
              f"({draft_loss:.3f}): the speedups below say little; train the target longer (--target-seconds)")
    return target, draft, corpus
