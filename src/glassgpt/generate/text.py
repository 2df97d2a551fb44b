"""Turning a growing list of token ids into text, piece by piece, and spotting stop strings.

Byte-level BPE tokens can split a character: one token holds the first bytes of "é",
the next the rest. Decoding those alone gives the replacement character, so a piece is
held back until it decodes cleanly. Text that could still become a stop string is held
back too, so a stream never prints the start of a stop string it later removes.
"""
from __future__ import annotations

REPLACEMENT = "\ufffd"
MAX_PENDING = 8        # a token run that never decodes cleanly is released anyway


class IncrementalText:
    def __init__(self, tokenizer, stops: tuple[str, ...] = ()):
        self.tokenizer = tokenizer
        self.stops = stops
        self.text = ""            # decoded so far (cut before a stop string once one is found)
        self.released = 0         # characters of `text` already handed out
        self.pending: list[int] = []
        self.stopped = False

    def add(self, token: int) -> None:
        """Append one token; afterwards `stopped` says whether a stop string appeared."""
        if self.tokenizer is None:
            return
        self.pending.append(token)
        piece = self.tokenizer.decode(self.pending)
        if piece.endswith(REPLACEMENT) and len(self.pending) < MAX_PENDING:
            return
        self.pending = []
        self._extend(piece)

    def _extend(self, piece: str) -> None:
        start = max(0, len(self.text) - max((len(s) for s in self.stops), default=0) + 1)
        self.text += piece
        hits = [i for i in (self.text.find(s, start) for s in self.stops) if i >= 0]
        if hits:
            self.text, self.stopped = self.text[:min(hits)], True

    def flush(self) -> None:
        """At the end: decode whatever is still pending."""
        if self.pending and not self.stopped:
            piece, self.pending = self.tokenizer.decode(self.pending), []
            self._extend(piece)

    def release(self, final: bool = False) -> str:
        """The text that is now certain and was not handed out yet."""
        end = len(self.text) if final or self.stopped else len(self.text) - self._holdback()
        piece = self.text[self.released:end]
        self.released = max(self.released, end)
        return piece

    def _holdback(self) -> int:
        """Length of the longest tail of `text` that is the start of a stop string."""
        longest = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.text)), longest, -1):
                if self.text.endswith(stop[:n]):
                    longest = n
                    break
        return longest
