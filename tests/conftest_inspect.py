"""Helpers for the inspect tests: a tiny model and a char-level stand-in tokenizer
(the real Tokenizer lives on another branch; these tests need only its small API)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from glassgpt.model import GPT, GPTConfig


class CharTokenizer:
    """One id per character of a fixed alphabet; same methods as glassgpt's Tokenizer."""

    kind = "char"

    def __init__(self, alphabet: str):
        self.alphabet = alphabet
        self.index = {c: i for i, c in enumerate(alphabet)}
        self.special_tokens: dict[str, int] = {}
        self.eot_id = None

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet)

    def encode(self, text: str, allowed_special="none") -> list[int]:
        return [self.index[c] for c in text]

    def decode(self, ids) -> str:
        return "".join(self.alphabet[i] for i in ids)

    def id_to_str(self, i: int) -> str:
        return self.alphabet[i]

    def save(self, path) -> None:
        Path(path).write_text(json.dumps({"alphabet": self.alphabet}))

    @classmethod
    def load(cls, path) -> "CharTokenizer":
        return cls(json.loads(Path(path).read_text())["alphabet"])


ALPHABET = "abcdefghijklmnopqrstuvwxyz .,\n"


def tiny_model(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig.preset("tiny", **{"vocab_size": len(ALPHABET), "context_length": 64,
                                         "d_model": 32, **overrides})
    model = GPT(config, tokenizer=CharTokenizer(ALPHABET), verbose=False).eval()
    with torch.no_grad():   # larger than GPT-2's init so that every part matters measurably
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
    return model
