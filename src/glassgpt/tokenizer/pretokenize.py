r"""Pre-tokenization: split text into pieces before BPE sees it.

BPE never merges across piece boundaries, so the pattern decides what a token can
span: GPT-2's pattern keeps a leading space with the word (" the"), splits letters from
digits and punctuation, and keeps runs of whitespace apart from the words around them.
tiktoken writes the same patterns with possessive quantifiers (`\p{L}++`) and an extra
`\s++$`, which speed up its Rust engine; they split text identically (the tests check
our ids against tiktoken's patterns), and in the `regex` module these plain forms run
about 1.5x faster.
"""
from __future__ import annotations

import regex

from ..errors import GlassError

PATTERNS = {
    # GPT-2 (r50k): contractions, words and numbers with one optional leading space,
    # punctuation runs, then whitespace runs that leave their last space to the next word.
    "gpt2": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    # GPT-4 (cl100k): case-insensitive contractions, numbers in groups of at most 3 digits,
    # line breaks kept with the whitespace before them.
    "gpt4": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+""",  # noqa: E501
}


def resolve_pattern(pattern: str) -> str:
    """A pattern name from PATTERNS, or a regex of your own, as a regex string."""
    return PATTERNS.get(pattern, pattern)


def compile_pattern(pattern: str) -> regex.Pattern:
    try:
        return regex.compile(resolve_pattern(pattern))
    except regex.error as e:
        raise GlassError(f"bad pre-tokenization pattern {pattern!r}: {e}") from None


def special_splitter(specials) -> regex.Pattern | None:
    """A regex whose `split` separates the given special tokens (kept, as a capture group)
    from the text around them. Longest first, so '<|a|>' loses to '<|a|>x' if both exist."""
    if not specials:
        return None
    alternatives = "|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True))
    return regex.compile(f"({alternatives})")
