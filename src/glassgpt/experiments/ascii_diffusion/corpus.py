"""A training corpus of diffusion sequences, so a small model can learn the task itself.

Each document has the prompt's layout: the instruction, then several complete sequences
of procedurally drawn pictures of the training kinds (never the held-out kinds), each
with its own random picture and noise.
"""
from __future__ import annotations

import random
from pathlib import Path

from tqdm import tqdm

from ...errors import GlassError
from ...fileio import atomic_write_text
from .builder import Schedule, build_frames, format_sequence
from .pictures import HELD_OUT_KINDS, KINDS, TRAIN_KINDS, draw
from .prompt import INSTRUCTION


def build_corpus(documents: int, schedule: Schedule, sequences_per_document: int = 2,
                 kinds: tuple[str, ...] = TRAIN_KINDS, seed: int = 0, progress: bool = True) -> str:
    """`documents` documents of `sequences_per_document` sequences each, as one text."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise GlassError(f"unknown picture kind(s) {', '.join(unknown)}: choose from {', '.join(KINDS)}")
    rng = random.Random(seed)
    parts = []
    for _ in tqdm(range(documents), desc="corpus", unit="doc", disable=not progress):
        parts.append(INSTRUCTION)
        for _ in range(sequences_per_document):
            art = draw(rng.choice(kinds), rng)
            parts.append(format_sequence(build_frames(art, schedule, seed=rng.randrange(2 ** 31))))
    return "".join(parts)


def write_corpus(path: str | Path, documents: int, schedule: Schedule, sequences_per_document: int = 2,
                 kinds: tuple[str, ...] = TRAIN_KINDS, seed: int = 0, progress: bool = True) -> Path:
    leaked = sorted(set(kinds) & set(HELD_OUT_KINDS))
    if leaked:
        print(f"note: the corpus includes held-out kind(s) {', '.join(leaked)}: tests on them are not "
              f"on unseen kinds")
    atomic_write_text(path, build_corpus(documents, schedule, sequences_per_document, kinds, seed, progress))
    return Path(path)


def train_diffusion_model(run_dir: str | Path, schedule: Schedule, *, documents: int = 3000, sequences: int = 2,
                          kinds: tuple[str, ...] = TRAIN_KINDS, seed: int = 0, minutes: float = 5.0,
                          max_iters: int = 5000, d_model: int = 128, n_layer: int = 4, n_head: int = 4,
                          context_length: int = 512, batch_size: int = 8, positional: str = "rope",
                          lr: float = 2e-3, progress: bool = True) -> Path:
    """Corpus -> char-level token files -> a small GPT trained for at most `minutes`.

    The corpus and token files go to run_dir/data; the model is a normal run directory.
    RoPE by default: the task is local and relative (a row ends w characters after the
    previous one; a frame follows its header), the same at every offset in the context."""
    from ...model import GPTConfig
    from ...train import TrainConfig, prepare, train

    run_dir = Path(run_dir)
    corpus = write_corpus(run_dir / "data" / "corpus.txt", documents, schedule, sequences, kinds, seed, progress)
    prepare([str(corpus)], run_dir / "data" / "tokens", tokenizer="char", progress=progress)
    config = GPTConfig(vocab_size=256, context_length=context_length, d_model=d_model, n_layer=n_layer,
                       n_head=n_head, positional=positional)      # vocab_size is replaced by the data's tokenizer
    train(run_dir / "data" / "tokens", run_dir, config,
          TrainConfig(max_iters=max_iters, max_seconds=minutes * 60, batch_size=batch_size, lr=lr,
                      min_lr=lr / 10, warmup_iters=50,
                      eval_interval=100, seed=seed), progress=progress)
    return run_dir
