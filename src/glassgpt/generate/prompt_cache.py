"""A prompt cache: keys and values of prompts seen before, reused by prompts that share a prefix.

A transformer's keys and values at position t depend only on tokens 0..t, so a new
prompt that starts with the same tokens as an earlier one can take those positions'
keys/values as they are and compute only the rest. Entries are kept compact (only
the filled positions), evicted least-recently-used, bounded by count and bytes.

    cache = PromptCache(max_entries=8, max_bytes=512 * 2**20)
    generate(model, long_prompt + "question 1", prompt_cache=cache)
    generate(model, long_prompt + "question 2", prompt_cache=cache)   # prefills only the question
"""
from __future__ import annotations

import weakref
from collections import OrderedDict

import torch

from ..errors import GlassError
from ..model import GPT, KVCache


class PromptCache:
    def __init__(self, max_entries: int = 8, max_bytes: int | None = None):
        if max_entries < 1:
            raise GlassError(f"a prompt cache needs max_entries >= 1, got {max_entries}")
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._entries: OrderedDict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._model = None
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return sum(k.nbytes + v.nbytes for k, v in self._entries.values())

    def lookup(self, model: GPT, ids: list[int], max_length: int | None = None) -> tuple[KVCache, int]:
        """A fresh cache holding the longest cached prefix of `ids` (at most len(ids) - 1
        positions, so the last token is always computed and gives the next logits)."""
        self._check_model(model)
        best_key, best = None, 0
        for key in self._entries:
            n = common_prefix(key, ids, limit=len(ids) - 1)
            if n > best:
                best_key, best = key, n
        cache = model.new_kv_cache(1, max_length)
        if best_key is None:
            self.misses += 1
            return cache, 0
        self.hits += 1
        self._entries.move_to_end(best_key)
        keys, values = self._entries[best_key]
        cache.keys[:, :, :, :best] = keys[:, :, :, :best]            # (L, 1, H, n, hd)
        cache.values[:, :, :, :best] = values[:, :, :, :best]
        cache.advance(best)
        return cache, best

    def store(self, model: GPT, ids: list[int], cache: KVCache, row: int = 0, start: int = 0) -> None:
        """Remember positions start .. start + len(ids) of `cache`'s batch row `row` (by default
        the first len(ids) positions of row 0) as the keys/values of `ids`."""
        self._check_model(model)
        key = tuple(ids)
        if len(key) == 0 or start + len(key) > cache.length:
            return
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        end, rows = start + len(key), slice(row, row + 1)
        self._entries[key] = (cache.keys[:, rows, :, start:end].clone(), cache.values[:, rows, :, start:end].clone())
        while len(self._entries) > self.max_entries or (
                self.max_bytes is not None and len(self._entries) > 1 and self.nbytes > self.max_bytes):
            self._entries.popitem(last=False)
        if self.max_bytes is not None and self.nbytes > self.max_bytes:
            self._entries.clear()                 # a single entry larger than the budget is not kept

    def clear(self) -> None:
        self._entries.clear()

    def _check_model(self, model: GPT) -> None:
        owner = self._model() if self._model is not None else None
        if owner is None:
            self._model = weakref.ref(model)
            self._entries.clear()
        elif owner is not model:
            raise GlassError("this prompt cache belongs to another model: make one PromptCache per model")


def common_prefix(a, b, limit: int) -> int:
    """How many leading tokens a and b share (at most `limit`)."""
    n = 0
    for x, y in zip(a, b):
        if n >= limit or x != y:
            break
        n += 1
    return n
