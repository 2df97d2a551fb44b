"""Character-level tokenizer: one id per distinct character, the classic tiny-LM setup.

Ids follow the sorted characters of the training text, so the same text always gives the
same vocabulary. A character never seen in training cannot be encoded (GlassError).
"""
from __future__ import annotations

from ..errors import GlassError
from .base import Tokenizer, unique_names, utf8
from .pretokenize import special_splitter


class CharTokenizer(Tokenizer):
    """One id per character (see `Tokenizer` for the interface)."""

    kind = "char"

    def __init__(self, chars: list[str], special_tokens: dict[str, int] | None = None):
        self.chars = list(chars)
        self._ids = {c: i for i, c in enumerate(self.chars)}
        if len(self._ids) != len(self.chars) or any(len(c) != 1 for c in self.chars):
            raise GlassError("a character vocabulary must list distinct single characters")
        super().__init__([utf8(c) for c in self.chars], special_tokens or {})

    @classmethod
    def from_text(cls, text: str, special_tokens=()) -> CharTokenizer:
        names = unique_names(special_tokens)
        splitter = special_splitter(names)
        chars = sorted(set("".join(splitter.split(text)[::2]) if splitter else text))
        if not chars:
            raise GlassError("the training text is empty: a character tokenizer needs at least one character")
        return cls(chars, {name: len(chars) + i for i, name in enumerate(names)})

    def encode_ordinary(self, text: str) -> list[int]:
        try:
            return list(map(self._ids.__getitem__, text))
        except KeyError as e:
            c = e.args[0]
            raise GlassError(f"character {c!r} (U+{ord(c):04X}) is not in this character vocabulary") from None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "special_tokens": self.special_tokens, "vocab": self.chars}

    @classmethod
    def from_dict(cls, data: dict) -> CharTokenizer:
        return cls(data["vocab"], data["special_tokens"])

