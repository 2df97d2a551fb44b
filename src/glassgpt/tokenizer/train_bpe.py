"""Learning BPE merges from a corpus, incrementally.

The corpus is first reduced to its distinct pieces and how often each occurs (a piece is
one pre-tokenization match, e.g. " the"). Each piece starts as its UTF-8 bytes; a merge
replaces every adjacent (left, right) pair with one new token. Pairs are counted inside
pieces, weighted by how often the piece occurs.

Incremental: a merge only visits the pieces that contain the merged pair (found through
`where`) and adjusts the counts of the few pairs around each occurrence. The next pair to
merge comes from a max-heap with lazy invalidation: when a count drops, its old heap entry
is left in place and corrected when it reaches the top; when a count grows (only pairs
touching the new token can), a fresh entry is pushed.

Ties are broken deterministically: the most frequent pair wins; among equally frequent
pairs, the one whose (left bytes, right bytes) sorts first, so (b"a", b"b") beats
(b"a", b"c") and (b"b", b"a").
"""
from __future__ import annotations

import heapq
from collections import Counter, defaultdict

from tqdm.auto import tqdm

from ..errors import GlassError
from .base import unique_names, utf8
from .bpe import BPETokenizer
from .pretokenize import compile_pattern, special_splitter


def train_bpe(texts, vocab_size: int, special_tokens, pattern: str, progress=None) -> BPETokenizer:
    """`Tokenizer.train`: count the pieces, learn the merges, number the specials last."""
    specials = unique_names(special_tokens)
    n_new = vocab_size - 256 - len(specials)
    if n_new < 0:
        raise GlassError(f"vocab_size {vocab_size} is too small: byte-level BPE needs the 256 bytes "
                         f"plus {len(specials)} special token(s), at least {256 + len(specials)}")
    texts = [texts] if isinstance(texts, str) else texts
    counts = count_pieces(texts, compile_pattern(pattern), special_splitter(specials), progress)
    if not counts:
        raise GlassError("the training corpus is empty (no text besides special tokens)")
    learned = learn_tokens({utf8(piece): n for piece, n in counts.items()}, n_new, progress)
    vocab = [bytes([b]) for b in range(256)] + learned
    return BPETokenizer(vocab, pattern, {name: len(vocab) + i for i, name in enumerate(specials)})


def count_pieces(texts, pattern, specials_splitter=None, progress=None) -> Counter:
    """How often each pre-tokenized piece occurs in `texts` (an iterable of strings).

    Special tokens written in the text are cut out first, so no merge learns a part of one.
    """
    counts: Counter = Counter()
    with _bar(progress, desc="counting pieces", unit="text") as bar:
        for text in texts:
            if not isinstance(text, str):
                raise GlassError(f"training texts must be strings, got {type(text).__name__}")
            chunks = specials_splitter.split(text)[::2] if specials_splitter else (text,)
            for chunk in chunks:
                counts.update(pattern.findall(chunk))
            bar.update()
    return counts


def learn_tokens(piece_counts: dict[bytes, int], n_new: int, progress=None) -> list[bytes]:
    """The byte strings of up to `n_new` new tokens, in the order they were learned.

    Fewer come back when the corpus runs out of pairs (every piece is a single token).
    A merge whose bytes already are a token (b"a"+b"bc" after b"ab"+b"c") reuses that
    token, so token bytes stay unique, as a rank file requires.
    """
    vocab = [bytes([b]) for b in range(256)]
    id_of = {token: i for i, token in enumerate(vocab)}
    words = [list(piece) for piece in piece_counts]
    weights = list(piece_counts.values())
    pair_counts, where = _count_pairs(words, weights)
    heap = [(-c, vocab[a], vocab[b], a, b) for (a, b), c in pair_counts.items()]
    heapq.heapify(heap)
    learned: list[bytes] = []
    with _bar(progress, desc="learning merges", total=n_new, unit="token") as bar:
        while heap and len(learned) < n_new:
            neg_count, _, _, a, b = heapq.heappop(heap)
            count = pair_counts.get((a, b), 0)
            if count != -neg_count:  # stale entry: the count fell since it was pushed
                if count > 0:
                    heapq.heappush(heap, (-count, vocab[a], vocab[b], a, b))
                continue
            token = vocab[a] + vocab[b]
            new = id_of.get(token)
            if new is None:
                new = id_of[token] = len(vocab)
                vocab.append(token)
                learned.append(token)
                bar.update()
            for pair in _merge_pair(words, weights, where, pair_counts, (a, b), new):
                if pair_counts[pair] > 0:
                    heapq.heappush(heap, (-pair_counts[pair], vocab[pair[0]], vocab[pair[1]], *pair))
    return learned


def _count_pairs(words, weights):
    """Weighted counts of adjacent pairs, and for each pair the words that contain it."""
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for wi, (word, weight) in enumerate(zip(words, weights)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += weight
            where[pair].add(wi)
    return pair_counts, where


def _merge_pair(words, weights, where, pair_counts, pair, new) -> set[tuple[int, int]]:
    """Replace `pair` by token `new` in every word that holds it; update the pair counts.

    Returns the pairs whose count grew (they all contain `new`). Around each occurrence
    (left, a, b, right) becomes (left, new, right): the pairs (left, a), (a, b), (b, right)
    lose the word's weight and (left, new), (new, right) gain it.
    """
    a, b = pair
    grown = set()
    for wi in where.pop(pair):
        word, weight = words[wi], weights[wi]
        out = []
        i, n = 0, len(word)
        while i < n:
            if word[i] == a and i + 1 < n and word[i + 1] == b:
                pair_counts[pair] -= weight
                if out:
                    left = out[-1]
                    pair_counts[left, a] -= weight
                    pair_counts[left, new] += weight
                    grown.add((left, new))
                    where[left, new].add(wi)
                if i + 2 < n:
                    right = word[i + 2]
                    pair_counts[b, right] -= weight
                    pair_counts[new, right] += weight
                    grown.add((new, right))
                    where[new, right].add(wi)
                out.append(new)
                i += 2
            else:
                out.append(word[i])
                i += 1
        words[wi] = out
    del pair_counts[pair]
    return grown


def _bar(progress, **kwargs):
    """A tqdm bar: always (True), never (False), or only once a step takes over a second (None)."""
    return tqdm(disable=progress is False, delay=0 if progress else 1.0, leave=False, **kwargs)
