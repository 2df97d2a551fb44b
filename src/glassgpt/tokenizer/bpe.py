"""Encoding with byte-level BPE ranks, exactly as tiktoken does.

A vocabulary is a list of byte strings; a token's id is its rank. To encode one piece,
start from its bytes and repeatedly join the adjacent pair whose concatenation has the
lowest rank (leftmost on a tie), until no adjacent pair is in the vocabulary.

Most pieces of real text repeat (" the", " of"), so each piece's ids are cached: a
typical encode is a regex scan plus one dict lookup per piece.
"""
from __future__ import annotations

import heapq
from collections import Counter

from ..errors import GlassError
from . import files
from .base import Tokenizer, utf8
from .pretokenize import compile_pattern, find_pieces, is_builtin, resolve_pattern

CACHE_LIMIT = 200_000


class BPETokenizer(Tokenizer):
    """Byte-level BPE over a pre-tokenization pattern (see `Tokenizer` for the interface)."""

    kind = "bpe"

    def __init__(self, vocab: list[bytes], pattern: str = "gpt2", special_tokens: dict[str, int] | None = None):
        self.vocab = list(vocab)
        self.pattern = resolve_pattern(pattern)
        self._ranks = {token: rank for rank, token in enumerate(self.vocab)}
        _check_vocab(self.vocab, self._ranks)
        self._regex = compile_pattern(self.pattern)
        self._trusted = is_builtin(self.pattern)        # gpt2/gpt4 need no time limit (it costs 3x)
        self._cache: dict[str, list[int]] = {}
        super().__init__(self.vocab, special_tokens or {})

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids for `text`, treating special-token names as plain text."""
        cache = self._cache
        ids: list[int] = []
        extend = ids.extend
        pieces = self._regex.findall(text) if self._trusted else find_pieces(self._regex, text)
        for piece in pieces:
            piece_ids = cache.get(piece)
            if piece_ids is None:
                piece_ids = self._encode_piece(piece)
                if len(cache) >= CACHE_LIMIT:
                    cache.clear()
                cache[piece] = piece_ids
            extend(piece_ids)
        return ids

    def _encode_piece(self, piece: str) -> list[int]:
        data = utf8(piece)
        rank = self._ranks.get(data)
        if rank is not None:
            return [rank]
        return [self._ranks[part] for part in merge_piece(data, self._ranks)]

    def to_tiktoken(self, path) -> None:
        """Write the ranks as a tiktoken file. Specials are not part of that format: give
        them to `tiktoken.Encoding(special_tokens=tok.special_tokens)` separately."""
        files.write_ranks(path, self.vocab)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "pattern": self.pattern, "special_tokens": self.special_tokens,
                "vocab": [token.decode("latin-1") for token in self.vocab]}

    @classmethod
    def from_dict(cls, data: dict) -> BPETokenizer:
        return cls([token.encode("latin-1") for token in data["vocab"]], data["pattern"], data["special_tokens"])

    def __getstate__(self):
        # Worker processes rebuild their own cache; shipping it would only cost time.
        return {**self.__dict__, "_cache": {}}


def merge_piece(data: bytes, ranks: dict[bytes, int]) -> list[bytes]:
    """BPE on one piece: join the lowest-ranked adjacent pair (leftmost on a tie) until no
    adjacent pair is a token.

    Done in O(n log n), so a run of 100,000 spaces is no problem: the parts form a linked
    list (`nxt`, `prv`, indexed by the byte where each part starts) and the candidate pairs
    sit in a heap of (rank, position). An entry whose pair changed after it was pushed is
    skipped when popped: its rank no longer matches."""
    n = len(data)
    parts: list[bytes | None] = [data[i:i + 1] for i in range(n)]  # part starting at byte i
    nxt, prv = list(range(1, n + 1)), list(range(-1, n - 1))
    heap = [(r, i) for i in range(n - 1) if (r := ranks.get(data[i:i + 2])) is not None]
    heapq.heapify(heap)
    while heap:
        rank, i = heapq.heappop(heap)
        j = nxt[i]
        if parts[i] is None or j >= n or ranks.get(parts[i] + parts[j]) != rank:
            continue
        parts[i] += parts[j]
        parts[j] = None
        nxt[i] = nxt[j]
        if nxt[i] < n:
            prv[nxt[i]] = i
            if (r := ranks.get(parts[i] + parts[nxt[i]])) is not None:
                heapq.heappush(heap, (r, i))
        if prv[i] >= 0 and (r := ranks.get(parts[prv[i]] + parts[i])) is not None:
            heapq.heappush(heap, (r, prv[i]))
    return [part for part in parts if part is not None]


def _check_vocab(vocab: list[bytes], ranks: dict[bytes, int]) -> None:
    if len(ranks) != len(vocab):
        dup = next(token for token, n in Counter(vocab).items() if n > 1)
        raise GlassError(f"vocabulary lists the token {dup!r} twice")
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise GlassError(f"vocabulary lacks {len(missing)} of the 256 single bytes (first: {missing[0]}); "
                         "byte-level BPE needs all of them to encode any text")
