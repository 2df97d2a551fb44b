"""prepare: corpus -> tokenizer -> token files the training loop can read without parsing.

    data/
      train.bin       every token id of the training split, back to back (uint16 or uint32)
      val.bin         the held-out tail of the token stream
      tokenizer.json  the tokenizer that made them
      meta.json       dtype, token counts, sources, tokenizer kind and vocabulary size

The .bin files are raw numpy arrays, read with `np.memmap`: training samples random
windows from them without ever loading the corpus into memory.

The four files are one set. They are written into a staging directory inside DATA_DIR
first; publishing removes meta.json, moves the other three into place and writes a new
meta.json last, with the tokenizer's fingerprint and the token counts. A kill at any point
leaves either the old set, the new set, or no meta.json ("run prepare again"), and
training checks the fingerprint and the file sizes, so token files are never read with
another tokenizer. The directory is locked while prepare works in it.
"""
from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import GlassError
from ..fileio import (atomic_path, atomic_write_text, check_writable, fault_point, file_error, fsync_dir, make_dirs,
                      remove_stale_temporaries, remove_tree)
from ..locks import DirectoryLock
from .corpora import load_corpus
from .directories import check_prepare_output

TRAIN, VAL, TOKENIZER, META = "train.bin", "val.bin", "tokenizer.json", "meta.json"
STAGING = ".staging-"


def prepare(inputs, out_dir, tokenizer="bpe", vocab_size: int = 2048, val_fraction: float = 0.1,
            progress: bool = True) -> dict:
    """Tokenize `inputs` (paths or built-in corpus names) into `out_dir`; returns the metadata.

    tokenizer: "bpe" (train a byte-level BPE of `vocab_size` ids), "char" (one id per
    character), a path to a tokenizer.json, or a tokenizer object.
    """
    if not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
        raise GlassError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 1:
        raise GlassError(f"vocab_size must be a positive whole number, got {vocab_size!r}")
    out_dir = Path(out_dir)
    check_prepare_output(out_dir)
    say = _printer(progress)
    with DirectoryLock(out_dir, "data directory", say):
        check_writable(out_dir)                       # before the long work
        _remove_leftovers(out_dir)
        return _prepare(inputs, out_dir, tokenizer, vocab_size, val_fraction, say)


def _prepare(inputs, out_dir: Path, tokenizer, vocab_size: int, val_fraction: float, say) -> dict:
    started = time.perf_counter()
    documents = load_corpus(inputs)
    say(f"corpus: {len(documents)} documents, {sum(map(len, documents)):,} characters")
    tok = make_tokenizer(tokenizer, documents, vocab_size, say)
    ids = encode_documents(tok, documents, say)
    n_val = max(1, int(len(ids) * val_fraction))
    if len(ids) - n_val < 1:
        raise GlassError(f"the corpus is only {len(ids)} tokens long: give more text")
    dtype = np.uint16 if tok.vocab_size <= 2**16 else np.uint32
    staging = make_dirs(out_dir / f"{STAGING}{secrets.token_hex(3)}")
    write_tokens(staging / TRAIN, ids[:-n_val], dtype)
    write_tokens(staging / VAL, ids[-n_val:], dtype)
    tok.save(staging / TOKENIZER)
    meta = {
        "dtype": np.dtype(dtype).name,
        "train_tokens": len(ids) - n_val,
        "val_tokens": n_val,
        "documents": len(documents),
        "characters": sum(map(len, documents)),
        "sources": [str(i) for i in ([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)],
        "tokenizer": {"kind": tok.kind, "vocab_size": tok.vocab_size, "eot_id": tok.eot_id,
                      "fingerprint": getattr(tok, "fingerprint", lambda: None)()},
    }
    publish(staging, out_dir, meta)
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


def publish(staging: Path, out_dir: Path, meta: dict) -> None:
    """Move a staged set into place: meta.json out first, written again last (the commit)."""
    try:
        (out_dir / META).unlink(missing_ok=True)
        fsync_dir(out_dir)
        fault_point("meta-removed", out_dir / META)
        for name in (TRAIN, VAL, TOKENIZER):
            os.replace(staging / name, out_dir / name)
            fault_point("moved", out_dir / name)
        fsync_dir(out_dir)
    except OSError as e:
        raise file_error(e, out_dir) from None
    atomic_write_text(out_dir / META, json.dumps(meta, indent=2))
    remove_tree(staging)


def _remove_leftovers(out_dir: Path) -> None:
    """Staging directories and temporary files of a prepare that was killed."""
    remove_stale_temporaries(out_dir)
    for path in out_dir.iterdir():
        if path.name.startswith(STAGING) and path.is_dir():
            remove_tree(path)


def check_data(data_dir, meta: dict, tokenizer) -> None:
    """The token files must be the ones meta.json describes, made with this tokenizer."""
    data_dir = Path(data_dir)
    redo = f"run `glassgpt prepare ... -o {data_dir}` again"
    try:
        itemsize = np.dtype(meta["dtype"]).itemsize
        expected = {TRAIN: int(meta["train_tokens"]) * itemsize, VAL: int(meta["val_tokens"]) * itemsize}
        made_with = meta.get("tokenizer", {}).get("fingerprint")
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise GlassError(f"{data_dir / META} is incomplete or corrupt ({type(e).__name__}): {redo}") from None
    for name, size in expected.items():
        if (data_dir / name).stat().st_size != size:
            raise GlassError(f"{data_dir / name} does not match {META} (another or an interrupted prepare): {redo}")
    if made_with is not None and made_with != tokenizer.fingerprint():
        raise GlassError(f"{data_dir}'s token files were made with another tokenizer than its {TOKENIZER}: {redo}")


def read_meta(data_dir) -> dict:
    """The metadata of a prepared directory, or a one-line error saying how to make one."""
    data_dir = Path(data_dir)
    missing = [name for name in (TRAIN, VAL, META, TOKENIZER) if not (data_dir / name).is_file()]
    if missing:
        raise GlassError(f"{data_dir} is not a prepared data directory (no {missing[0]}): "
                         f"run `glassgpt prepare INPUTS -o {data_dir}` first")
    try:
        meta = json.loads((data_dir / META).read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise GlassError(f"{data_dir / META} is unreadable ({e}): run `glassgpt prepare` again") from e
    if not isinstance(meta, dict):
        raise GlassError(f"{data_dir / META} is not a metadata record: run `glassgpt prepare` again")
    return meta


def _printer(progress: bool):
    return (lambda message: print(message, file=sys.stderr, flush=True)) if progress else (lambda message: None)
