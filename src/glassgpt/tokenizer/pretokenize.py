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
    """The compiled pattern; one of your own must also pass `check_pattern_speed`."""
    try:
        compiled = regex.compile(resolve_pattern(pattern))
    except (regex.error, TypeError) as e:
        raise GlassError(f"bad pre-tokenization pattern {pattern!r}: {e}") from None
    if compiled.groups:
        raise GlassError(f"the pre-tokenization pattern {pattern!r} has capturing groups, which would make "
                         f"findall return the groups instead of the pieces: write (?:...) instead of (...)")
    if not is_builtin(pattern):
        check_pattern_speed(compiled)
    return compiled


def is_builtin(pattern: str) -> bool:
    return resolve_pattern(pattern) in PATTERNS.values()


# A pattern read from a tokenizer file is data from somewhere else. One that backtracks
# catastrophically (`(a|a)+b`) would hang every encode, so a pattern of one's own is tried
# on short texts of each kind first, and every encode with it runs under a time limit.
PROBES = [c * 40 + end for c in ("a", "A", "1", " ", "\n", "!", "é", "ab", "a1", "a ", "x") for end in ("", "!", "a")]
PROBE_SECONDS = 0.2


def check_pattern_speed(compiled: regex.Pattern) -> None:
    """Refuse a pattern that takes too long on any short probe text."""
    for probe in PROBES:
        try:
            compiled.findall(probe, timeout=PROBE_SECONDS)
        except TimeoutError:
            raise GlassError(f"the pre-tokenization pattern {compiled.pattern[:60]!r} takes over {PROBE_SECONDS}s "
                             f"on the {len(probe)}-character text {probe[:12]!r}...: it backtracks "
                             f"catastrophically; use the gpt2 or gpt4 pattern") from None


def find_pieces(compiled: regex.Pattern, text: str) -> list[str]:
    """`compiled.findall(text)` under a time limit of 0.5 s plus 10 us per character (about
    30x what a sane pattern needs): a pattern of one's own can fail, never hang."""
    seconds = 0.5 + len(text) / 100_000
    try:
        return compiled.findall(text, timeout=seconds)
    except TimeoutError:
        raise GlassError(f"the pre-tokenization pattern {compiled.pattern[:60]!r} took over {seconds:.1f}s on a "
                         f"{len(text):,}-character text: it backtracks catastrophically; use the gpt2 or gpt4 "
                         f"pattern") from None


def special_splitter(specials) -> regex.Pattern | None:
    """A regex whose `split` separates the given special tokens (kept, as a capture group)
    from the text around them. Longest first, so '<|a|>' loses to '<|a|>x' if both exist."""
    if not specials:
        return None
    alternatives = "|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True))
    return regex.compile(f"({alternatives})")
