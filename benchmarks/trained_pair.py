"""A trained target model and a small draft model for the speculative-decoding benchmark,
made with the library's own `prepare` and `train` on the built-in corpus and cached so that
a second run reuses them.

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

from glassgpt.errors import GlassError
from glassgpt.model import GPT, GPTConfig, load
from glassgpt.train import TrainConfig, prepare, train
from glassgpt.train.corpora import cache_dir

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


def trained(data_dir: Path, name: str, arch: dict, seconds: float) -> tuple[GPT, float]:
    """Train (or reuse) one model for `seconds`; trains into a scratch directory, then renames.
    Returns the model and its validation loss."""
    arch = dict(arch)
    preset = arch.pop("preset")
    tag = "-".join(f"{k}{v}" for k, v in arch.items())
    run_dir = data_dir.parent / f"{data_dir.name}--{name}-{preset}{'-' + tag if tag else ''}-{seconds:g}s"
    if not (run_dir / "config.json").is_file():
        scratch = run_dir.with_name(run_dir.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        print(f"   training the {name} ({preset} {tag}) for {seconds:g} s -> {run_dir}")
        config = GPTConfig.preset(preset, context_length=CONTEXT, **arch)
        settings = TrainConfig(max_seconds=seconds, max_iters=None, batch_size=8, eval_interval=100_000,
                               eval_iters=10, **SCHEDULE[name])
        train(data_dir, scratch, config, settings, progress=True)
        scratch.rename(run_dir)
    last = json.loads((run_dir / "log.jsonl").read_text().splitlines()[-1])
    print(f"   {name}: {run_dir.name}, {last['step']} steps, validation loss {last['val_loss']:.3f}")
    return load(run_dir), last["val_loss"]


def trained_pair(target_seconds: float = 1200, draft_seconds: float = 120,
                 tokenizer: str = "char") -> tuple[GPT, GPT, str]:
    """(target, draft, corpus name), both trained on the same tokenized corpus."""
    data_dir, corpus = prepared_data(tokenizer)
    target, target_loss = trained(data_dir, "target", TARGET, target_seconds)
    draft, draft_loss = trained(data_dir, "draft", DRAFT, draft_seconds)
    if target_loss >= draft_loss:
        print(f"   WARNING: the target (validation loss {target_loss:.3f}) is no better than its draft "
              f"({draft_loss:.3f}): the speedups below say little; train the target longer (--target-seconds)")
    return target, draft, corpus
