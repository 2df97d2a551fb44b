"""Tokenizers in other tools' files: Hugging Face `tokenizers` JSON and tiktoken rank files.

glassgpt's BPE is tiktoken's: a token's id is its rank, and encoding a piece joins the
adjacent pair whose concatenation has the lowest rank. Hugging Face's BPE instead reads
an ordered list of merges, `(left, right)`, and joins the pair listed first. The two agree
when the merge list holds, for every token, each split of it into two tokens, ordered by
the rank of the token they make (the same conversion transformers uses for tiktoken
files); `ignore_merges` makes tokenizers take a whole piece that is a token at once, as
tiktoken does.

Byte-level BPE stores tokens as text: each byte is shown as one printable character
(GPT-2's `bytes_to_unicode` table, so a space is 'Ġ'). A character tokenizer needs no
bytes: its file is a BPE without merges over a split into single characters. (One
difference remains there: a character outside the vocabulary is a GlassError in glassgpt,
while `tokenizers`, having no unknown token to give it, leaves it out.)

Reading a `tokenizers` file back accepts byte-level BPE (GPT-2's own files, files made by
`tokenizers`' trainer, ours) and our character files; anything else (WordPiece, Unigram,
normalizers, byte fallback) is refused with a message, never read approximately.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from ..errors import GlassError
from ..fileio import atomic_write_text
from ..tokenizer import BPETokenizer, CharTokenizer, Tokenizer
from ..tokenizer import files as tok_files
from ..tokenizer.pretokenize import PATTERNS

# A split into single characters (Oniguruma's '.' does not match a newline; this does).
CHAR_SPLIT = r"[\s\S]"


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table: byte -> one printable character. Printable latin-1 bytes stand for
    themselves; the others (control bytes, space, ...) get the code points from 256 on."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


def token_to_text(token: bytes) -> str:
    """A token's bytes as byte-level BPE text (b' the' -> 'Ġthe')."""
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def text_to_token(text: str) -> bytes:
    table = unicode_to_bytes()
    try:
        return bytes(table[c] for c in text)
    except KeyError as e:
        raise GlassError(f"token {text!r} has the character {e.args[0]!r}, which is not in byte-level BPE's "
                         "alphabet: not a byte-level tokenizer") from None


def merges_from_ranks(vocab: list[bytes]) -> list[tuple[bytes, bytes]]:
    """The merge list that makes rank-ordered BPE of `vocab` (id = rank) a merge-ordered one:
    every split of every token into two tokens, ordered by the rank of the token they make
    (then by the ranks of the parts)."""
    ranks = {token: rank for rank, token in enumerate(vocab)}
    merges = []
    for rank, token in enumerate(vocab):
        splits = [(token[:i], token[i:]) for i in range(1, len(token))
                  if token[:i] in ranks and token[i:] in ranks]
        splits.sort(key=lambda pair: (ranks[pair[0]], ranks[pair[1]]))
        merges += [(rank, left, right) for left, right in splits]
    merges.sort(key=lambda m: m[0])     # stable: splits of one token stay in their order
    return [(left, right) for _, left, right in merges]


# --- export ---------------------------------------------------------------------------

def to_tokenizers_json(tok: Tokenizer) -> dict:
    """`tok` as the dict of a Hugging Face `tokenizers` file (tokenizer.json)."""
    added = [{"id": i, "content": name, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True}
             for name, i in sorted(tok.special_tokens.items(), key=lambda item: item[1])]
    if isinstance(tok, BPETokenizer):
        split = {"type": "Split", "pattern": {"Regex": tok.pattern}, "behavior": "Isolated", "invert": False}
        byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
        vocab = {token_to_text(token): rank for rank, token in enumerate(tok.vocab)}
        merges = [f"{token_to_text(a)} {token_to_text(b)}" for a, b in merges_from_ranks(tok.vocab)]
        pre_tokenizer = {"type": "Sequence", "pretokenizers": [split, byte_level]}
        decoder = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    elif isinstance(tok, CharTokenizer):
        vocab = {c: i for i, c in enumerate(tok.chars)}
        merges = []
        pre_tokenizer = {"type": "Split", "pattern": {"Regex": CHAR_SPLIT}, "behavior": "Isolated", "invert": False}
        decoder = {"type": "Fuse"}
    else:
        raise GlassError(f"a {tok.kind} tokenizer has no tokenizers-file form")
    model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
             "vocab": vocab, "merges": merges}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
            "pre_tokenizer": pre_tokenizer, "post_processor": None, "decoder": decoder, "model": model}


def write_tokenizers_json(tok: Tokenizer, path) -> Path:
    """Write `tok` as a `tokenizers` file (one JSON file, written whole or not at all)."""
    atomic_write_text(path, json.dumps(to_tokenizers_json(tok), ensure_ascii=False, indent=1) + "\n")
    return Path(path)


def tokenizer_config(tok: Tokenizer, model_max_length: int | None = None) -> dict:
    """transformers' tokenizer_config.json: read tokenizer.json as it is (no class of
    transformers rebuilds it), never add or strip spaces."""
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
              "add_prefix_space": False, "added_tokens_decoder": {}}
    for name, i in tok.special_tokens.items():
        config["added_tokens_decoder"][str(i)] = {"content": name, "lstrip": False, "normalized": False,
                                                 "rstrip": False, "single_word": False, "special": True}
    if tok.eot_id is not None:
        config["eos_token"] = config["bos_token"] = "<|endoftext|>"
    if model_max_length:
        config["model_max_length"] = model_max_length
    return config


def export_tokenizer(tok: Tokenizer, to: str, path) -> Path:
    """Write `tok` for another tool: to="hf" (a `tokenizers` JSON file) or "tiktoken" (a rank
    file; tiktoken keeps special tokens outside it, see `BPETokenizer.to_tiktoken`)."""
    if to == "hf":
        return write_tokenizers_json(tok, path)
    if to == "tiktoken":
        tok.to_tiktoken(path)
        return Path(path)
    raise GlassError(f"unknown tokenizer format {to!r}: choose hf or tiktoken")


# --- import ---------------------------------------------------------------------------

def from_tokenizers_json(data: dict, where: str = "tokenizer.json") -> Tokenizer:
    """A glassgpt tokenizer from the dict of a `tokenizers` file: byte-level BPE, or a
    character vocabulary as `to_tokenizers_json` writes it."""
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise GlassError(f"{where}: not a tokenizers file (no 'model' object)")
    model = data["model"]
    kind = model.get("type", "BPE" if "merges" in model else None)
    if kind != "BPE":
        raise GlassError(f"{where}: a {kind} tokenizer; glassgpt reads byte-level BPE tokenizers only")
    if data.get("normalizer"):
        raise GlassError(f"{where}: has a normalizer ({data['normalizer'].get('type')}); glassgpt's BPE "
                         "reads text unnormalised, so the ids would differ")
    for field in ("byte_fallback", "continuing_subword_prefix", "end_of_word_suffix", "dropout"):
        if model.get(field):
            raise GlassError(f"{where}: BPE with {field}={model[field]!r} is not byte-level BPE as glassgpt "
                             "runs it")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or not vocab:
        raise GlassError(f"{where}: the BPE model has no vocabulary")
    # Added tokens (<|endoftext|>, ...) are split out of the text before BPE: our specials.
    specials = {}
    for entry in data.get("added_tokens") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int):
            raise GlassError(f"{where}: an added token without an id: {str(entry)[:60]}")
        specials[entry.get("content")] = entry["id"]
    base = {text: i for text, i in vocab.items() if text not in specials}
    if sorted(base.values()) != list(range(len(base))):
        raise GlassError(f"{where}: ordinary token ids must run 0..{len(base) - 1} without gaps, below the "
                         "special tokens (glassgpt numbers specials after the vocabulary)")
    texts = sorted(base, key=base.get)
    merges = [m.split(" ") if isinstance(m, str) else list(m) for m in model.get("merges") or []]
    pattern = _pattern(data.get("pre_tokenizer"), where)
    if pattern is None and merges:
        raise GlassError(f"{where}: a BPE with merges but no byte-level step is not supported")
    if pattern is not None:
        _check_merge_order(merges, vocab, where)
    try:
        if pattern is None:                       # a character vocabulary (as we write it)
            return CharTokenizer(texts, specials)
        return BPETokenizer([text_to_token(t) for t in texts], pattern, specials)
    except GlassError as e:
        raise GlassError(f"{where}: {e}") from None


def read_tokenizers_json(path) -> Tokenizer:
    """Read a `tokenizers` file (tokenizer.json) as a glassgpt tokenizer."""
    return from_tokenizers_json(tok_files.read_json(path), str(path))


def import_tokenizer(path, pattern: str = "gpt2", special_tokens=("<|endoftext|>",)) -> Tokenizer:
    """A glassgpt tokenizer from another tool's file: a `tokenizers` JSON file, our own JSON
    file, or a tiktoken rank file (`pattern` and `special_tokens` apply to the latter only:
    the rank format stores neither)."""
    path = Path(path)
    text = tok_files._read_text(path, "tokenizer")
    if text.lstrip().startswith("{"):
        data = tok_files.read_json(path)
        if isinstance(data, dict) and data.get("format") == tok_files.FORMAT:
            return Tokenizer.load(path)
        return from_tokenizers_json(data, str(path))
    return Tokenizer.from_tiktoken(path, pattern=pattern, special_tokens=special_tokens)


def _pattern(pre: dict | None, where: str) -> str | None:
    """The split regex of a byte-level pre-tokenizer, or None for our character split."""
    steps = pre.get("pretokenizers", []) if isinstance(pre, dict) and pre.get("type") == "Sequence" else [pre]
    steps = [s for s in steps if s]
    regex, byte_level = None, None
    for step in steps:
        if step.get("type") == "Split":
            pattern = step.get("pattern", {})
            if step.get("behavior") != "Isolated" or step.get("invert") or "Regex" not in pattern or regex:
                raise GlassError(f"{where}: a pre-tokenizer split glassgpt does not run ({json.dumps(step)[:80]})")
            regex = pattern["Regex"]
        elif step.get("type") == "ByteLevel":
            if step.get("add_prefix_space"):
                raise GlassError(f"{where}: the byte-level step adds a prefix space; glassgpt never does")
            byte_level = step
        else:
            raise GlassError(f"{where}: a {step.get('type')} pre-tokenizer; glassgpt reads byte-level BPE")
    if byte_level is None:
        if regex == CHAR_SPLIT:
            return None
        raise GlassError(f"{where}: not a byte-level BPE (no ByteLevel pre-tokenizer)")
    if byte_level.get("use_regex", True):
        if regex:
            raise GlassError(f"{where}: two split patterns in a row are not supported")
        return PATTERNS["gpt2"]                    # ByteLevel's own regex is GPT-2's
    if not regex:
        raise GlassError(f"{where}: a byte-level BPE without a split pattern is not supported")
    return regex


def _check_merge_order(merges: list, vocab: dict[str, int], where: str) -> None:
    """glassgpt ranks merges by the id of the token they make: the file's merge order must
    agree, or its ids would come out differently."""
    last = -1
    for n, pair in enumerate(merges):
        if len(pair) != 2:
            raise GlassError(f"{where}: merge {n} is not a pair: {pair!r}")
        made = vocab.get(pair[0] + pair[1])
        if made is None or pair[0] not in vocab or pair[1] not in vocab:
            raise GlassError(f"{where}: merge {n} ({pair[0]!r}, {pair[1]!r}) joins or makes a token "
                             "missing from the vocabulary")
        if made < last:
            raise GlassError(f"{where}: merge {n} makes id {made} after a merge made id {last}; glassgpt's "
                             "BPE needs merges in the order of the ids they make")
        last = made
