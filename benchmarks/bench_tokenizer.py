"""Tokenizer speed, side by side with the Rust references, on this machine.

    python benchmarks/bench_tokenizer.py        (or `make bench`, which runs every bench_*)

- training: ours vs Hugging Face `tokenizers` (byte-level BPE, GPT-2 pattern, 4,096 ids)
  on ~1 MB of English prose;
- encoding: ours vs tiktoken, one thread, with GPT-2-sized ranks (50,257 ids) that we
  train here and export as a tiktoken rank file, on prose the ranks were not trained on;
- batch encoding across processes (ours) vs tiktoken's threads.

No network: the prose is Python's own documentation (pydoc topics and stdlib docstrings),
the 50k ranks are trained on that plus the standard library's source code.
"""
from __future__ import annotations

import importlib
import inspect
import pathlib
import sys
import sysconfig
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))

from glassgpt import Tokenizer  # noqa: E402
from glassgpt.runtime import cpu_description  # noqa: E402
from glassgpt.tokenizer import PATTERNS  # noqa: E402

MB = 1_000_000
DOC_MODULES = [
    "builtins", "os", "collections", "argparse", "asyncio", "email", "json", "logging", "unittest", "typing",
    "decimal", "fractions", "statistics", "pathlib", "subprocess", "threading", "multiprocessing", "socket",
    "http.client", "urllib.request", "datetime", "calendar", "textwrap", "string", "re", "itertools",
    "functools", "random", "math", "shutil", "tarfile", "zipfile", "csv", "sqlite3", "pickle", "inspect", "ast",
    "difflib", "heapq", "enum", "dataclasses", "contextlib", "io", "codecs", "locale", "doctest", "pdb",
    "configparser", "imaplib", "smtplib", "ftplib", "mailbox", "ssl", "selectors", "concurrent.futures",
    "queue", "weakref", "pprint", "hashlib", "base64", "xml.dom.minidom", "uuid", "ipaddress", "optparse",
    "tempfile", "platform", "importlib", "tokenize", "pydoc",
]


def english_prose() -> list[str]:
    """~1.5 MB of English as paragraphs: pydoc's topic pages, then stdlib docstrings."""
    from pydoc_data.topics import topics

    docs, seen = list(topics.values()), set()
    for name in DOC_MODULES:
        module = importlib.import_module(name)
        for obj in [module, *vars(module).values()]:
            for member in [obj, *(vars(obj).values() if inspect.isclass(obj) else ())]:
                if inspect.ismodule(member) or inspect.isclass(member) or inspect.isroutine(member):
                    doc = inspect.getdoc(member)
                    if doc and doc not in seen:
                        seen.add(doc)
                        docs.append(doc)
    return [p for doc in docs for p in doc.split("\n\n") if p.strip()]


def stdlib_sources(limit: int) -> list[str]:
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    texts, total = [], 0
    for path in sorted(root.rglob("*.py")):
        if {"site-packages", "test", "tests"} & set(path.parts):
            continue
        texts.append(path.read_text(encoding="utf-8", errors="replace"))
        total += len(texts[-1])
        if total > limit:
            break
    return texts


def take(paragraphs: list[str], n_bytes: int) -> tuple[list[str], list[str]]:
    """The first paragraphs up to n_bytes, and the rest."""
    total = 0
    for i, p in enumerate(paragraphs):
        total += len(p.encode()) + 1
        if total >= n_bytes:
            return paragraphs[: i + 1], paragraphs[i + 1:]
    return paragraphs, []


def best_time(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def hf_train(docs: list[str], vocab_size: int):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers, trainers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(docs, trainer)
    return tok


def main() -> None:
    import tiktoken

    print("## tokenizer")
    print(f"CPU: {cpu_description()}")
    paragraphs = english_prose()
    train_docs, rest = take(paragraphs, 1 * MB)
    train_mb = sum(len(d.encode()) + 1 for d in train_docs) / MB
    rows = []

    ours = best_time(lambda: Tokenizer.train(train_docs, 4096, progress=False))
    ref = best_time(lambda: hf_train(train_docs, 4096))
    rows.append((f"train 4,096 ids on {train_mb:.1f} MB prose (s)", ours, ref, "tokenizers", ours / ref, "<= 3x"))

    rank_corpus = stdlib_sources(8 * MB) + rest
    rank_mb = sum(map(len, rank_corpus)) / MB
    start = time.perf_counter()
    tok = Tokenizer.train(rank_corpus, 50257, progress=False)
    train_50k = time.perf_counter() - start
    ranks = {token: rank for rank, token in enumerate(tok.vocab)}
    enc = tiktoken.Encoding("bench", pat_str=PATTERNS["gpt2"], mergeable_ranks=ranks,
                            special_tokens=tok.special_tokens)
    text = "\n".join(train_docs)  # prose the 50k ranks never saw
    assert tok.encode(text) == enc.encode_ordinary(text), "ids differ from tiktoken"
    text_mb = len(text.encode()) / MB

    def encode_cold():
        tok._cache.clear()
        tok.encode(text)

    ref = text_mb / best_time(lambda: enc.encode_ordinary(text))
    for label, fn in (("cold cache", encode_cold), ("warm cache", lambda: tok.encode(text))):
        ours = text_mb / best_time(fn)
        rows.append((f"encode {text_mb:.1f} MB, {tok.vocab_size:,} ranks, {label} (MB/s)", ours, ref,
                     "tiktoken 1 thread", ours / ref, ">= 0.33x" if label == "cold cache" else ""))

    docs = paragraphs * 3
    docs_mb = sum(len(d.encode()) for d in docs) / MB
    workers = 2
    tok._cache.clear()
    ours = docs_mb / best_time(lambda: tok.encode_batch(docs, workers=workers), repeat=1)
    ref = docs_mb / best_time(lambda: enc.encode_ordinary_batch(docs, num_threads=workers), repeat=1)
    serial = docs_mb / best_time(lambda: [tok.encode(d) for d in docs], repeat=1)
    rows.append((f"encode_batch {docs_mb:.1f} MB, {workers} processes (MB/s)", ours, ref,
                 f"tiktoken {workers} threads", ours / ref, f"{ours / serial:.1f}x our 1 process"))
    rows.append((f"train {tok.vocab_size:,} ids on {rank_mb:.1f} MB prose+code (s)", train_50k, None, "", None, ""))

    header = ("measure", "ours", "reference", "", "ratio", "target / note")
    table = [header] + [(m, f"{o:.2f}", "" if r is None else f"{r:.2f}", name,
                         "" if q is None else f"{q:.2f}x", note) for m, o, r, name, q, note in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) if i in (0, 3, 5) else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))).rstrip())


if __name__ == "__main__":
    main()
