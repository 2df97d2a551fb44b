"""prepare: corpus -> tokenizer -> token files the training loop can read without parsing.

    data/
      train.bin       every token id of the training split, back to back (uint16 or uint32)
      val.bin         the held-out tail of the token stream
      tokenizer.json  the tokenizer that made them
      meta.json       dtype, token counts, sources, tokenizer kind and vocabulary size

The .bin files are raw numpy arrays, read with `np.memmap`: training samples random
windows from them without ever loading the corpus into memory.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import GlassError
from ..fileio import atomic_path, atomic_write_text
from .corpora import load_corpus

TRAIN, VAL, TOKENIZER, META = "train.bin", "val.bin", "tokenizer.json", "meta.json"


def prepare(inputs, out_dir, tokenizer="bpe", vocab_size: int = 2048, val_fraction: float = 0.1,
            progress: bool = True) -> dict:
    """Tokenize `inputs` (paths or built-in corpus names) into `out_dir`; returns the metadata.

    tokenizer: "bpe" (train a byte-level BPE of `vocab_size` ids), "char" (one id per
    character), a path to a tokenizer.json, or a tokenizer object.
    """
    if not 0.0 < val_fraction < 1.0:
        raise GlassError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    say = _printer(progress)
    started = time.perf_counter()
    documents = load_corpus(inputs)
    say(f"corpus: {len(documents)} documents, {sum(map(len, documents)):,} characters")
    tok = make_tokenizer(tokenizer, documents, vocab_size, say)
    ids = encode_documents(tok, documents, say)
    n_val = max(1, int(len(ids) * val_fraction))
    if len(ids) - n_val < 1:
        raise GlassError(f"the corpus is only {len(ids)} tokens long: give more text")
    dtype = np.uint16 if tok.vocab_size <= 2**16 else np.uint32
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_tokens(out_dir / TRAIN, ids[:-n_val], dtype)
    write_tokens(out_dir / VAL, ids[-n_val:], dtype)
    tok.save(out_dir / TOKENIZER)
    meta = {
        "dtype": np.dtype(dtype).name,
        "train_tokens": len(ids) - n_val,
        "val_tokens": n_val,
        "documents": len(documents),
        "characters": sum(map(len, documents)),
        "sources": [str(i) for i in ([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)],
        "tokenizer": {"kind": tok.kind, "vocab_size": tok.vocab_size, "eot_id": tok.eot_id},
    }
    atomic_write_text(out_dir / META, json.dumps(meta, indent=2))
    say(f"wrote {out_dir}: {meta['train_tokens']:,} train + {n_val:,} val tokens "
        f"({tok.kind}, vocab {tok.vocab_size}) in {time.perf_counter() - started:.1f}s")
    return meta


def make_tokenizer(spec, documents: list[str], vocab_size: int, say):
    """The tokenizer named by `spec`: trained on `documents`, loaded from a file, or given."""
    if not isinstance(spec, (str, os.PathLike)):
        return spec                                   # already a tokenizer object
    from ..tokenizer import Tokenizer
    from ..tokenizer.base import EOT
    if spec == "bpe":
        say(f"training a byte-level BPE tokenizer, vocab {vocab_size} ...")
        return Tokenizer.train(documents, vocab_size, special_tokens=(EOT,), progress=None)
    if spec == "char":
        return Tokenizer.chars("".join(documents), special_tokens=(EOT,))
    if not Path(spec).is_file():
        raise GlassError(f"tokenizer {str(spec)!r} is neither 'bpe', 'char' nor a tokenizer.json file")
    return Tokenizer.load(spec)


def encode_documents(tok, documents: list[str], say) -> np.ndarray:
    """All documents as one id stream, each followed by <|endoftext|> when the tokenizer has it."""
    say("encoding ...")
    if hasattr(tok, "encode_batch"):
        encoded = tok.encode_batch(documents)          # parallel over documents for big corpora
    else:
        encoded = [tok.encode(d) for d in documents]
    eot = [tok.eot_id] if tok.eot_id is not None else []
    return np.concatenate([np.asarray([*doc, *eot], dtype=np.int64) for doc in encoded])


def write_tokens(path: Path, ids: np.ndarray, dtype) -> None:
    with atomic_path(path) as tmp:
        ids.astype(dtype).tofile(tmp)


def read_meta(data_dir) -> dict:
    """The metadata of a prepared directory, or a one-line error saying how to make one."""
    data_dir = Path(data_dir)
    missing = [name for name in (TRAIN, VAL, META, TOKENIZER) if not (data_dir / name).is_file()]
    if missing:
        raise GlassError(f"{data_dir} is not a prepared data directory (no {missing[0]}): "
                         f"run `glassgpt prepare INPUTS -o {data_dir}` first")
    try:
        return json.loads((data_dir / META).read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise GlassError(f"{data_dir / META} is unreadable ({e}): run `glassgpt prepare` again") from e


def _printer(progress: bool):
    return (lambda message: print(message, file=sys.stderr, flush=True)) if progress else (lambda message: None)
