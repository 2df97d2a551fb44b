"""Shared helpers for the generation tests: a tiny model and a stand-in character tokenizer
with the Tokenizer API (encode/decode/id_to_str/eot_id/save/load), so these tests do not
depend on the real tokenizer."""
from __future__ import annotations

import json

import torch

from glassgpt.model import GPT, GPTConfig

EOT = "<|endoftext|>"
ALPHABET = "abcdefghijklmnopqrstuvwxyz .,\n"


class CharTokenizer:
    kind = "char"

    def __init__(self, chars: str = ALPHABET, specials=(EOT,)):
        self.chars = list(chars)
        self.special_tokens = {s: len(self.chars) + i for i, s in enumerate(specials)}
        self.index = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + len(self.special_tokens)

    @property
    def eot_id(self):
        return self.special_tokens.get(EOT)

    def encode(self, text: str, allowed_special="none") -> list[int]:
        ids, i = [], 0
        while i < len(text):
            if allowed_special != "none" and text.startswith(EOT, i) and EOT in self.special_tokens:
                ids.append(self.special_tokens[EOT])
                i += len(EOT)
            else:
                ids.append(self.index[text[i]])
                i += 1
        return ids

    def decode(self, ids) -> str:
        names = {v: k for k, v in self.special_tokens.items()}
        return "".join(names.get(i) or self.chars[i] for i in ids)

    def id_to_str(self, i: int) -> str:
        return self.decode([i])

    def save(self, path) -> None:
        with open(path, "w") as f:
            json.dump({"chars": "".join(self.chars), "specials": list(self.special_tokens)}, f)

    @classmethod
    def load(cls, path) -> "CharTokenizer":
        with open(path) as f:
            data = json.load(f)
        return cls(data["chars"], tuple(data["specials"]))


def tiny_model(seed: int = 0, vocab_size: int | None = None, tokenizer=None, scale: float = 1.0, **overrides) -> GPT:
    """A 2-layer, 32-dim model; `scale` multiplies the weights so distributions are far from uniform."""
    torch.manual_seed(seed)
    tokenizer = tokenizer if tokenizer is not None or vocab_size is not None else CharTokenizer()
    V = vocab_size or tokenizer.vocab_size
    fields = dict(vocab_size=V, context_length=64, d_model=32, n_layer=2, n_head=4)
    model = GPT(GPTConfig.preset("tiny", **{**fields, **overrides}), tokenizer=tokenizer, verbose=False)
    if scale != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() > 1:
                    p.mul_(scale)
    return model.eval()
