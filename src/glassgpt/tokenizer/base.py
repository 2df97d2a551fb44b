"""What every glassgpt tokenizer shares: text in, ids out, ids back to text, files.

A tokenizer is a table of token byte strings indexed by id, plus special tokens such as
`<|endoftext|>` that sit above the ordinary ids. Subclasses say how text becomes
ordinary ids (`encode_ordinary`): byte-level BPE (`bpe.py`) or one id per character
(`chars.py`). Everything else lives here: specials, decoding, batches, saving, loading.

Lone surrogates ('\\ud800' without its partner) are rejected with a GlassError: they
have no UTF-8 encoding, so no byte-level id sequence could give them back.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import operator
import os
from functools import partial

from ..errors import GlassError
from . import files
from .pretokenize import special_splitter

EOT = "<|endoftext|>"
# Below this many characters a batch is encoded in-process: starting workers costs more.
PARALLEL_MIN_CHARS = 1_000_000


class Tokenizer:
    """A tokenizer; build one with `Tokenizer.train`, `Tokenizer.chars`, `Tokenizer.load`
    or `Tokenizer.from_tiktoken`.

    `encode(text)` treats special-token names in `text` as ordinary text (like tiktoken's
    `encode_ordinary`), so user text can never inject `<|endoftext|>`; pass
    `allowed_special="all"` (or a set of names) to turn them into their ids.
    """

    kind: str  # "bpe" or "char"

    def __init__(self, base_tokens: list[bytes], special_tokens: dict[str, int]):
        self.special_tokens = _check_specials(special_tokens, len(base_tokens))
        self._id_bytes: list[bytes | None] = list(base_tokens)
        for name, i in sorted(self.special_tokens.items(), key=lambda item: item[1]):
            self._id_bytes += [None] * (i - len(self._id_bytes)) + [utf8(name)]
        self._specials_regex = special_splitter(self.special_tokens)

    # --- building -------------------------------------------------------------------------

    @classmethod
    def train(cls, texts, vocab_size: int, special_tokens=(EOT,), pattern: str = "gpt2",
              progress: bool | None = None) -> Tokenizer:
        """Learn a byte-level BPE tokenizer with `vocab_size` ids in all (256 bytes, the
        learned merges, then the specials) from a string or an iterable of strings.

        Each step merges the most frequent adjacent pair; ties go to the pair whose
        (left bytes, right bytes) sorts first. Special-token names in the corpus are cut
        out, so no merge learns part of one. Stops early, with a smaller vocabulary, if the
        corpus runs out of pairs. `pattern`: "gpt2", "gpt4" or a regex of your own.
        `progress`: True/False, or None for bars only when a step is slow."""
        from .train_bpe import train_bpe

        return train_bpe(texts, vocab_size, special_tokens, pattern, progress)

    @classmethod
    def chars(cls, text: str, special_tokens=()) -> Tokenizer:
        """A character-level tokenizer: one id per distinct character of `text`, in sorted
        order, then the specials."""
        from .chars import CharTokenizer

        return CharTokenizer.from_text(text, special_tokens)

    @classmethod
    def from_tiktoken(cls, path, pattern: str = "gpt2", special_tokens=(EOT,)) -> Tokenizer:
        """Read a tiktoken rank file (`base64(token) rank` per line). `special_tokens` is a
        dict name -> id, or names to number after the last rank."""
        from .bpe import BPETokenizer

        vocab = files.read_ranks(path)
        if not isinstance(special_tokens, dict):
            special_tokens = {name: len(vocab) + i for i, name in enumerate(unique_names(special_tokens))}
        return BPETokenizer(vocab, pattern, special_tokens)

    @classmethod
    def load(cls, path) -> Tokenizer:
        """Read a file written by `save`."""
        from .bpe import BPETokenizer
        from .chars import CharTokenizer

        data = files.read_json(path)
        kinds = {"bpe": BPETokenizer, "char": CharTokenizer}
        if not isinstance(data, dict) or data.get("format") != files.FORMAT:
            raise GlassError(f"{path}: not a glassgpt tokenizer file")
        if data.get("version") != files.VERSION:
            raise GlassError(f"{path}: tokenizer file version {data.get('version')!r} is not supported "
                             f"(this glassgpt reads version {files.VERSION})")
        if data.get("kind") not in kinds:
            raise GlassError(f"{path}: unknown tokenizer kind {data.get('kind')!r}")
        try:
            return kinds[data["kind"]].from_dict(data)
        except GlassError as e:
            raise GlassError(f"{path}: {e}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise GlassError(f"{path}: corrupt tokenizer file ({type(e).__name__}: {e})") from None

    # --- saving ---------------------------------------------------------------------------

    def save(self, path) -> None:
        """Write one JSON file (never a partial one: a temporary file is renamed into place)."""
        files.write_json(path, {"format": files.FORMAT, "version": files.VERSION, **self.to_dict()})

    def to_tiktoken(self, path) -> None:
        raise GlassError(f"a {self.kind} tokenizer has no tiktoken rank file; only BPE tokenizers do")

    def to_dict(self) -> dict:
        """Everything `save` writes besides the format and version: kind, vocab, specials."""
        raise NotImplementedError

    # --- encoding -------------------------------------------------------------------------

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids for `text` with special-token names treated as plain text."""
        raise NotImplementedError

    def encode(self, text: str, allowed_special="none") -> list[int]:
        """Ids for `text`. allowed_special: "none" (default: special names are plain text),
        "all", or a set of special-token names to recognise."""
        if not isinstance(text, str):
            raise GlassError(f"encode takes a str, not {type(text).__name__}")
        allowed = self._allowed(allowed_special)
        if not allowed:
            return self.encode_ordinary(text)
        splitter = self._specials_regex if len(allowed) == len(self.special_tokens) else special_splitter(allowed)
        ids: list[int] = []
        for i, chunk in enumerate(splitter.split(text)):
            if i % 2:
                ids.append(self.special_tokens[chunk])
            elif chunk:
                ids += self.encode_ordinary(chunk)
        return ids

    def encode_batch(self, texts, allowed_special="none", workers: int | None = None) -> list[list[int]]:
        """`encode` for many texts, across `workers` processes (default: all cores) when the
        batch is large. Work is shared out text by text, so split a big corpus into documents."""
        texts = list(texts)
        workers = workers or os.cpu_count() or 1
        if workers == 1 or sum(map(len, texts)) < PARALLEL_MIN_CHARS:
            return [self.encode(text, allowed_special) for text in texts]
        chunksize = max(1, len(texts) // (workers * 8))
        with multiprocessing.get_context().Pool(workers, _start_worker, (self,)) as pool:
            return pool.map(partial(_encode_in_worker, allowed_special=allowed_special), texts, chunksize)

    def _allowed(self, allowed_special) -> set[str]:
        if allowed_special == "all":
            return set(self.special_tokens)
        if allowed_special == "none" or not allowed_special:
            return set()
        if isinstance(allowed_special, str):
            allowed_special = {allowed_special}
        unknown = set(allowed_special) - set(self.special_tokens)
        if unknown:
            raise GlassError(f"unknown special token(s) {sorted(unknown)}; this tokenizer has "
                             f"{sorted(self.special_tokens) or 'none'}")
        return set(allowed_special)

    # --- decoding -------------------------------------------------------------------------

    def decode_bytes(self, ids) -> bytes:
        """The bytes behind `ids`, concatenated (a token may hold part of a character)."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        try:
            if ids and min(ids) < 0:  # a negative index would silently read from the end
                raise IndexError
            return b"".join(map(self._id_bytes.__getitem__, ids))
        except (IndexError, TypeError):
            raise GlassError(self._bad_id(ids)) from None

    def decode(self, ids) -> str:
        """The text behind `ids`. Bytes that do not form whole UTF-8 characters (a cut in
        the middle of a character) become U+FFFD; `decode_bytes` gives them exactly."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        return self.decode_bytes([token_id])

    def id_to_str(self, token_id: int) -> str:
        """One token as readable text: bytes that are not whole UTF-8 characters show as
        \\xNN escapes, so b'\\xe2\\x80' does not masquerade as an ordinary character."""
        return self.token_bytes(token_id).decode("utf-8", errors="backslashreplace")

    def _bad_id(self, ids) -> str:
        for i in ids:
            try:
                i = operator.index(i)
            except TypeError:
                return f"ids must be integers, got {i!r}"
            if not 0 <= i < self.vocab_size or self._id_bytes[i] is None:
                return f"id {i} is not in the vocabulary (valid ids: 0..{self.vocab_size - 1})"
        return "ids must be integers"

    # --- facts ----------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """A hash of everything that decides the ids (kind, vocabulary, pattern, specials):
        prepared data and runs record it, so token files are never read with another tokenizer."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=True)
        return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:16]

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included (ids run from 0 to vocab_size - 1)."""
        return len(self._id_bytes)

    @property
    def eot_id(self) -> int | None:
        """The id of `<|endoftext|>`, or None if this tokenizer has no such token."""
        return self.special_tokens.get(EOT)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} kind={self.kind} vocab_size={self.vocab_size} "
                f"specials={list(self.special_tokens)}>")


def visible(token: str) -> str:
    """A token written so its spaces and control characters show: ' the' -> '·the', '\n' -> '↵'."""
    return token.replace(" ", "·").replace("\n", "↵").replace("\t", "⇥").replace("\r", "␍")


def utf8(text: str) -> bytes:
    """`text` as UTF-8, or a GlassError naming the lone surrogate that has no encoding."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise GlassError(
            f"text contains a lone surrogate {text[e.start]!r}, which has no UTF-8 encoding: "
            "clean the text first, e.g. text.encode('utf-8', 'replace').decode()") from None


def unique_names(names) -> list[str]:
    """Special-token names as a list (one name alone is fine), refusing repeats."""
    names = [names] if isinstance(names, str) else list(names or ())
    if len(set(names)) != len(names):
        raise GlassError(f"special tokens repeat a name: {names}")
    return names


def _check_specials(special_tokens: dict, n_base: int) -> dict[str, int]:
    specials = dict(special_tokens)
    for name, i in specials.items():
        if not isinstance(name, str) or not name:
            raise GlassError(f"special token names must be non-empty strings, got {name!r}")
        if not isinstance(i, int) or i < n_base:
            raise GlassError(f"special token {name!r} has id {i!r}; it must be an integer >= {n_base}, "
                             "above the ordinary tokens")
    if len(set(specials.values())) != len(specials):
        raise GlassError(f"two special tokens share an id: {specials}")
    return specials


_worker_tokenizer: Tokenizer | None = None


def _start_worker(tokenizer: Tokenizer) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer


def _encode_in_worker(text: str, allowed_special) -> list[int]:
    return _worker_tokenizer.encode(text, allowed_special)
