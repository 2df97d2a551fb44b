"""Tokenizer behaviour: exact merges, round trips, tiktoken parity, files, specials, bad input."""
from __future__ import annotations

import base64
import json
import os

import pytest
import tiktoken
import tiktoken.load
from hypothesis import given, settings
from hypothesis import strategies as st

from glassgpt import GlassError, Tokenizer
from glassgpt.tokenizer import PATTERNS, base
from glassgpt.tokenizer.bpe import merge_piece
from glassgpt.tokenizer.train_bpe import learn_tokens

PROSE = """It was the best of times, it was the worst of times, it was the age of wisdom,
it was the age of foolishness. She said: "I'll go; you're late, aren't you?" They'd agree.
The quick brown fox jumps over the lazy dog -- twice!  Numbers: 3.14159, 1,000,000 and 2024.
"""
CODE = '''def fibonacci(n: int) -> list[int]:
    """Return the first n numbers."""
    a, b = 0, 1
    out = []
    for _ in range(n):
        out.append(a)
        a, b = b, a + b
    return out\n\n\tif x != y:  # tabs\r\n        print(f"{x!r} -> {y}")
'''
UNICODE = "naïve café 東京 日本語のテキスト Ελληνικά русский 🙂👍🏽 e\u0301 ZWJ 👨‍👩‍👧 \x00\x07 \u200b"
CORPUS = (PROSE + CODE + UNICODE) * 3
SAMPLES = [
    "", " ", "hello", " hello world", PROSE, CODE, UNICODE, "a" + " " * 300 + "b", "\n\n\n  \t x",
    "1234567890 12 345 6789", "don't WON'T I'M they've", "trailing spaces   ", "   ", "x" * 200,
    "<|endoftext|> is a special token", "🙂" * 20, "\r\n\r\n", "e\u0301\u0302\u0303",
]
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)


@pytest.fixture(scope="module", params=["gpt2", "gpt4"])
def tok(request):
    return Tokenizer.train(CORPUS, 500, pattern=request.param)


# tiktoken's own spelling of the patterns (tiktoken_ext/openai_public.py: r50k, cl100k).
TIKTOKEN_PATTERNS = {
    PATTERNS["gpt2"]: r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
    PATTERNS["gpt4"]: r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",  # noqa: E501
}


@pytest.fixture(scope="module")
def enc(tok, tmp_path_factory):
    """tiktoken over the ranks `tok` exported, with tiktoken's spelling of the pattern."""
    path = tmp_path_factory.mktemp("ranks") / "ranks.tiktoken"
    tok.to_tiktoken(path)
    ranks = tiktoken.load.load_tiktoken_bpe(str(path))
    return tiktoken.Encoding("test", pat_str=TIKTOKEN_PATTERNS[tok.pattern], mergeable_ranks=ranks,
                             special_tokens=tok.special_tokens)


# --- training: exact merges ---------------------------------------------------------------

def test_merges_on_the_wikipedia_example():
    # aaabdaaabac: aa (4) first; then ab and (aa, a) tie at 2, and b"a" < b"aa" picks ab; then aa+ab.
    tok = Tokenizer.train("aaabdaaabac", 259, special_tokens=())
    assert tok.vocab[256:] == [b"aa", b"ab", b"aaab"]
    assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, ord("a"), ord("c")]


def test_merges_weight_pieces_by_count():
    # The Hugging Face course corpus: hug x10, pug x5, pun x12, bun x4, hugs x5.
    text = " ".join(["hug"] * 10 + ["pug"] * 5 + ["pun"] * 12 + ["bun"] * 4 + ["hugs"] * 5)
    tok = Tokenizer.train(text, 256 + 4, special_tokens=(), pattern=r"\w+")
    assert tok.vocab[256:] == [b"ug", b"un", b"hug", b"pun"]


def test_ties_go_to_the_smallest_byte_pair():
    tok = Tokenizer.train("ba dc ab cd", 258, special_tokens=(), pattern=r"\w+")
    assert tok.vocab[256:] == [b"ab", b"ba"]


def test_training_stops_when_no_pairs_are_left():
    tok = Tokenizer.train("ab ab", 1000, special_tokens=("<|endoftext|>",), pattern=r"\w+")
    assert tok.vocab[256:] == [b"ab"] and tok.vocab_size == 258 and tok.eot_id == 257


def test_training_never_merges_across_specials():
    tok = Tokenizer.train("ab<|endoftext|>ab<|endoftext|>", 300, pattern=r"[^\n]+")
    assert all(b"<" not in token and b"|" not in token for token in tok.vocab[256:])


def naive_learn(counts: dict[bytes, int], n_new: int) -> list[bytes]:
    """The recount-everything trainer, with the same tie rule, to check the incremental one."""
    words = {piece: [bytes([b]) for b in piece] for piece in counts}
    vocab = {bytes([b]) for b in range(256)}
    learned = []
    while len(learned) < n_new:
        pairs: dict[tuple[bytes, bytes], int] = {}
        for piece, parts in words.items():
            for pair in zip(parts, parts[1:]):
                pairs[pair] = pairs.get(pair, 0) + counts[piece]
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        for piece, parts in words.items():
            i, out = 0, []
            while i < len(parts):
                if tuple(parts[i:i + 2]) == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            words[piece] = out
        if best[0] + best[1] not in vocab:
            vocab.add(best[0] + best[1])
            learned.append(best[0] + best[1])
    return learned


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.binary(min_size=1, max_size=8).map(lambda b: bytes(x % 4 + 97 for x in b)),
                       st.integers(1, 5), min_size=1, max_size=12),
       st.integers(1, 30))
def test_incremental_trainer_matches_recounting(counts, n_new):
    assert learn_tokens(counts, n_new) == naive_learn(counts, n_new)


# --- encode / decode round trips --------------------------------------------------------

@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip_samples(tok, text):
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=150, deadline=None)
@given(any_text)
def test_round_trip_any_text(tok, text):
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text
    assert tok.decode_bytes(ids) == text.encode("utf-8")


def test_long_space_runs_round_trip_quickly(tok):
    text = "a" + " " * 100_000 + "b\n" + "\t" * 50_000
    assert tok.decode(tok.encode(text)) == text


def textbook_merge(data: bytes, ranks: dict[bytes, int]) -> list[bytes]:
    """BPE on one piece, the obvious quadratic way, to check the heap-based one."""
    parts = [data[i:i + 1] for i in range(len(data))]
    while True:
        pairs = [(ranks[a + b], i) for i, (a, b) in enumerate(zip(parts, parts[1:])) if a + b in ranks]
        if not pairs:
            return parts
        _, i = min(pairs)
        parts[i:i + 2] = [parts[i] + parts[i + 1]]


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=1, max_size=120).map(lambda b: bytes(x % 3 + 97 for x in b)))
def test_heap_merge_equals_textbook_merge(data):
    ranks = {bytes([b]): b for b in range(256)}
    for token in (b"aa", b"ab", b"ba", b"aab", b"aaa", b"abab", b"ca", b"aaaa", b"bab", b"cc", b"ccc"):
        ranks[token] = len(ranks)
    assert merge_piece(data, ranks) == textbook_merge(data, ranks)


def test_lone_surrogates_are_rejected_with_a_clear_error(tok):
    with pytest.raises(GlassError, match="lone surrogate"):
        tok.encode("ok \ud800 no")
    with pytest.raises(GlassError, match="lone surrogate"):
        Tokenizer.train("abc \udfff", 300)
    with pytest.raises(GlassError, match="lone surrogate"):
        Tokenizer.chars("abc \udfff")


def test_decode_of_a_partial_character():
    tok = Tokenizer.train("plain ascii", 260)
    ids = tok.encode("🙂")
    assert ids == list("🙂".encode())  # no merges for it: one id per byte
    assert tok.decode_bytes(ids[:2]) == b"\xf0\x9f"
    assert tok.decode(ids[:2]) == "\ufffd"
    assert tok.id_to_str(ids[0]) == "\\xf0" and tok.token_bytes(ids[0]) == b"\xf0"


def test_decode_accepts_numpy_and_torch_ids(tok):
    import numpy as np
    import torch

    ids = tok.encode("hello world")
    assert tok.decode(np.array(ids)) == tok.decode(torch.tensor(ids)) == tok.decode(ids) == "hello world"


# --- tiktoken parity --------------------------------------------------------------------

@pytest.mark.parametrize("text", SAMPLES)
def test_same_ids_as_tiktoken(tok, enc, text):
    assert tok.encode(text) == enc.encode_ordinary(text)
    assert tok.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all")


@settings(max_examples=150, deadline=None)
@given(text=st.lists(st.sampled_from(SAMPLES[1:] + ["  ", "\n", "'s", "ll", "123"]) | any_text,
                     max_size=6).map("".join))
def test_same_ids_as_tiktoken_on_any_text(tok, enc, text):
    assert tok.encode(text) == enc.encode_ordinary(text)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=" \t\n\r\x0b\x0c\u00a0\u3000ab'sSlL1.é-", max_size=40))
def test_same_ids_as_tiktoken_on_whitespace_and_contractions(tok, enc, text):
    assert tok.encode(text) == enc.encode_ordinary(text)


def test_from_tiktoken_reads_what_to_tiktoken_wrote(tok, tmp_path):
    tok.to_tiktoken(tmp_path / "ranks.tiktoken")
    again = Tokenizer.from_tiktoken(tmp_path / "ranks.tiktoken", pattern=tok.pattern)
    assert again.to_dict() == tok.to_dict()


def test_from_tiktoken_with_special_ids_after_a_gap(tok, tmp_path):
    tok.to_tiktoken(tmp_path / "ranks.tiktoken")
    n = len(tok.vocab)
    again = Tokenizer.from_tiktoken(tmp_path / "ranks.tiktoken", special_tokens={"<|endoftext|>": n + 1})
    assert again.vocab_size == n + 2 and again.eot_id == n + 1
    assert again.decode([n + 1]) == "<|endoftext|>"
    with pytest.raises(GlassError, match=f"id {n} is not in the vocabulary"):
        again.decode([n])


# --- special tokens ---------------------------------------------------------------------

def test_specials_are_plain_text_unless_allowed(tok):
    text = "hi<|endoftext|>there"
    assert tok.eot_id == tok.vocab_size - 1
    assert tok.eot_id not in tok.encode(text)
    assert tok.encode(text, allowed_special="none") == tok.encode(text)
    allowed = tok.encode(text, allowed_special="all")
    assert allowed == tok.encode("hi") + [tok.eot_id] + tok.encode("there")
    assert tok.encode(text, allowed_special={"<|endoftext|>"}) == allowed
    assert tok.decode(allowed) == text


def test_several_specials_and_a_subset_allowed():
    tok = Tokenizer.train(CORPUS, 400, special_tokens=("<|endoftext|>", "<|pad|>"))
    assert tok.special_tokens == {"<|endoftext|>": 398, "<|pad|>": 399}
    ids = tok.encode("a<|pad|>b<|endoftext|>", allowed_special={"<|pad|>"})
    assert 399 in ids and 398 not in ids
    with pytest.raises(GlassError, match="unknown special"):
        tok.encode("a", allowed_special={"<|nope|>"})


# --- character level --------------------------------------------------------------------

def test_char_tokenizer():
    tok = Tokenizer.chars("hello world", special_tokens=("<|endoftext|>",))
    assert tok.kind == "char" and tok.chars == sorted(set("hello world"))
    assert tok.vocab_size == 9 and tok.eot_id == 8
    assert tok.encode("hello") == [3, 2, 4, 4, 5]
    assert tok.decode(tok.encode("old<|endoftext|>", allowed_special="all")) == "old<|endoftext|>"
    with pytest.raises(GlassError, match="'z' .U\\+007A. is not in"):
        tok.encode("z")
    with pytest.raises(GlassError, match="no tiktoken rank file"):
        tok.to_tiktoken("x.tiktoken")


@settings(max_examples=50, deadline=None)
@given(any_text.filter(bool))
def test_char_round_trip(text):
    tok = Tokenizer.chars(text)
    assert tok.decode(tok.encode(text)) == text


# --- files ------------------------------------------------------------------------------

def test_save_load_identity(tok, tmp_path):
    tok.save(tmp_path / "tok.json")
    again = Tokenizer.load(tmp_path / "tok.json")
    assert again.to_dict() == tok.to_dict() and again.special_tokens == tok.special_tokens
    assert again.encode(PROSE + UNICODE) == tok.encode(PROSE + UNICODE)


def test_save_load_char_identity(tmp_path):
    tok = Tokenizer.chars(UNICODE, special_tokens=("<|endoftext|>",))
    tok.save(tmp_path / "chars.json")
    assert Tokenizer.load(tmp_path / "chars.json").to_dict() == tok.to_dict()


def test_the_json_shows_ascii_tokens_as_themselves(tok, tmp_path):
    tok.save(tmp_path / "tok.json")
    data = json.loads((tmp_path / "tok.json").read_text())
    assert data["format"] == "glassgpt-tokenizer" and data["version"] == 1 and data["kind"] == "bpe"
    assert " the" in data["vocab"]


def test_save_leaves_no_partial_file(tok, tmp_path, monkeypatch):
    path = tmp_path / "tok.json"
    path.write_text("old")

    def crash(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(GlassError, match="cannot write .*tok.json: No space left on device: free some disk space"):
        tok.save(path)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["tok.json"]


# --- bad input: each a one-line GlassError ---------------------------------------------

def one_line_error(fn, *args, match=None, **kwargs) -> str:
    with pytest.raises(GlassError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("texts", ["", [], ["", ""], "<|endoftext|>"])
def test_empty_corpus(texts):
    one_line_error(Tokenizer.train, texts, 300, match="empty")


def test_corpus_of_non_strings():
    one_line_error(Tokenizer.train, [b"bytes"], 300, match="must be strings, got bytes")


def test_empty_char_corpus():
    one_line_error(Tokenizer.chars, "", match="empty")


@pytest.mark.parametrize("vocab_size, specials", [(255, ()), (256, ("<|endoftext|>",)), (0, ())])
def test_vocab_size_too_small(vocab_size, specials):
    one_line_error(Tokenizer.train, "abc", vocab_size, special_tokens=specials, match="too small")


def test_bad_pattern_and_repeated_specials():
    one_line_error(Tokenizer.train, "abc", 300, pattern="(unclosed", match="bad pre-tokenization pattern")
    one_line_error(Tokenizer.train, "abc", 300, special_tokens=("<s>", "<s>"), match="repeat")


@pytest.mark.parametrize("ids", [[500], [-1], [0, 10**9], ["7"], [1.5]])
def test_decode_ids_outside_the_vocabulary(tok, ids):
    one_line_error(tok.decode, ids, match="not in the vocabulary|must be integers")


def test_encode_needs_a_string(tok):
    one_line_error(tok.encode, b"bytes", match="takes a str")


def test_missing_truncated_and_corrupt_json(tok, tmp_path):
    one_line_error(Tokenizer.load, tmp_path / "missing.json", match="no such tokenizer file")
    one_line_error(Tokenizer.load, tmp_path, match="is a directory")
    tok.save(tmp_path / "tok.json")
    full = (tmp_path / "tok.json").read_text()
    cases = {
        "truncated": (full[: len(full) // 2], "truncated or corrupt JSON"),
        "empty": ("", "truncated or corrupt JSON"),
        "binary": (None, "not UTF-8"),
        "list": ("[1, 2]", "not a glassgpt tokenizer"),
        "version": (full.replace('"version": 1', '"version": 99'), "version 99 is not supported"),
        "kind": (full.replace('"kind": "bpe"', '"kind": "wordpiece"'), "unknown tokenizer kind"),
        "no vocab": (full.replace('"vocab"', '"vocabulary"'), "corrupt tokenizer file"),
        "few bytes": (json.dumps({**json.loads(full), "vocab": ["a", "b"]}), "lacks 254 of the 256 single bytes"),
        "bad special": (json.dumps({**json.loads(full), "special_tokens": {"x": 3}}), "must be an integer >= "),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_bytes(b"\xff\xfe\x00" if content is None else content.encode())
        assert str(path) in one_line_error(Tokenizer.load, path, match=message)


def rank_file(tmp_path, lines: list[str]):
    path = tmp_path / "ranks.tiktoken"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def b64(token: bytes) -> str:
    return base64.b64encode(token).decode()


def test_bad_rank_files(tmp_path):
    good = [f"{b64(bytes([b]))} {b}" for b in range(256)]
    one_line_error(Tokenizer.from_tiktoken, tmp_path / "missing", match="no such rank file")
    one_line_error(Tokenizer.from_tiktoken, rank_file(tmp_path, []), match="empty")
    one_line_error(Tokenizer.from_tiktoken, rank_file(tmp_path, good + [f"{b64(b'ab')} 257"]),
                   match="rank 256 is missing")
    one_line_error(Tokenizer.from_tiktoken, rank_file(tmp_path, good + [f"{b64(b'ab')} 255"]),
                   match="rank 255 appears twice")
    one_line_error(Tokenizer.from_tiktoken, rank_file(tmp_path, good + [f"{b64(b'a')} 256"]),
                   match="token appears with two ranks")
    one_line_error(Tokenizer.from_tiktoken, rank_file(tmp_path, good + ["!!notbase64 256"]),
                   match=r":257: expected 'base64\(token\) rank'")
    one_line_error(Tokenizer.from_tiktoken, rank_file(tmp_path, good + [f"{b64(b'ab')}"]), match="expected")
    one_line_error(Tokenizer.from_tiktoken, rank_file(tmp_path, good[1:] + [f"{b64(b'ab')} 0"]),
                   match="lacks 1 of the 256 single bytes")


# --- batches ----------------------------------------------------------------------------

def test_encode_batch_matches_encode(tok, monkeypatch):
    texts = SAMPLES * 4
    expected = [tok.encode(text) for text in texts]
    assert tok.encode_batch(texts) == expected
    monkeypatch.setattr(base, "PARALLEL_MIN_CHARS", 0)  # force the worker processes
    assert tok.encode_batch(texts, workers=2) == expected


def test_interface_facts(tok):
    assert tok.kind == "bpe" and tok.vocab_size == 500 and tok.pattern in PATTERNS.values()
    assert tok.id_to_str(tok.eot_id) == "<|endoftext|>"
    assert tok.token_bytes(ord("a")) == b"a"
    assert repr(tok).startswith("<BPETokenizer kind=bpe vocab_size=500")
