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
