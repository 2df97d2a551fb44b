"""Tokenizer files: our versioned JSON, and tiktoken's rank format.

JSON: {"format": "glassgpt-tokenizer", "version": 1, "kind": ..., ...}. A BPE vocabulary
is stored as one string per id whose code points are the token's bytes (latin-1), so
ASCII tokens read as themselves: " the", "ing".

Rank file (tiktoken): one `base64(token) rank` per line, ranks 0..n-1 with no gaps.

Every problem with a file (missing, truncated, corrupt, gaps, duplicates) is a GlassError
naming the file, and writes go through glassgpt.fileio's atomic writer, so a crash never
leaves half a file behind.
"""
from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

from ..errors import GlassError
from ..fileio import atomic_write_text

FORMAT = "glassgpt-tokenizer"
VERSION = 1


def write_json(path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def read_json(path):
    text = _read_text(path, "tokenizer")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise GlassError(f"{path}: truncated or corrupt JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None


def write_ranks(path, vocab: list[bytes]) -> None:
    atomic_write_text(path, "".join(f"{base64.b64encode(token).decode()} {rank}\n" for rank, token in enumerate(vocab)))


def read_ranks(path) -> list[bytes]:
    """The tokens of a tiktoken rank file, in rank order."""
    by_rank: dict[int, bytes] = {}
    for lineno, line in enumerate(_read_text(path, "rank").splitlines(), 1):
        if not line.strip():
            continue
        try:
            token_b64, rank_text = line.split()
            token, rank = base64.b64decode(token_b64, validate=True), int(rank_text)
        except (ValueError, binascii.Error):
            raise GlassError(f"{path}:{lineno}: expected 'base64(token) rank', got {line[:60]!r}") from None
        if rank in by_rank:
            raise GlassError(f"{path}:{lineno}: rank {rank} appears twice")
        by_rank[rank] = token
    if not by_rank:
        raise GlassError(f"{path}: the rank file is empty")
    gaps = sorted(set(range(len(by_rank))) - set(by_rank))
    if gaps:
        raise GlassError(f"{path}: ranks must run 0..{len(by_rank) - 1} without gaps; rank {gaps[0]} is missing")
    vocab = [by_rank[rank] for rank in range(len(by_rank))]
    if len(set(vocab)) != len(vocab):
        raise GlassError(f"{path}: a token appears with two ranks")
    return vocab


def _read_text(path, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GlassError(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise GlassError(f"{path}: is a directory, not a {what} file") from None
    except UnicodeDecodeError:
        raise GlassError(f"{path}: not a {what} file (not UTF-8 text)") from None
    except OSError as e:
        raise GlassError(f"{path}: cannot read ({e.strerror})") from None
