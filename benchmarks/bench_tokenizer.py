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
import os
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


def best_times(*fns, repeat: int = 3) -> list[float]:
    """The best wall time of each function, run in turns so that a busy spell on the
    machine hits ours and the reference alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - start)
    return best


def hf_train(docs: list[str], vocab_size: int):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers, trainers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(docs, trainer)
    return tok


def main(argv=None) -> None:
    """No options: the whole run takes about a minute."""
    import tiktoken

    print("## tokenizer")
    print(f"CPU: {cpu_description()}")
    print(f"load average before the run: {os.getloadavg()[0]:.1f} (side-by-side ratios are fairest near 0)")
    paragraphs = english_prose()
    train_docs, rest = take(paragraphs, 1 * MB)
    train_mb = sum(len(d.encode()) + 1 for d in train_docs) / MB
    rows = []

    ours, ref = best_times(lambda: Tokenizer.train(train_docs, 4096, progress=False),
                           lambda: hf_train(train_docs, 4096))
    rows.append((f"train 4,096 ids on {train_mb:.1f} MB prose (s)", ours, ref, "tokenizers", ours / ref, "<= 3x"))

    rank_corpus = stdlib_sources(10 * MB) + rest
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

    cold, warm, ref = best_times(encode_cold, lambda: tok.encode(text), lambda: enc.encode_ordinary(text), repeat=5)
    for label, ours in (("cold cache", cold), ("warm cache", warm)):
        rows.append((f"encode {text_mb:.1f} MB, {tok.vocab_size:,} ranks, {label} (MB/s)", text_mb / ours,
                     text_mb / ref, "tiktoken 1 thread", ref / ours, ">= 0.33x" if label == "cold cache" else ""))

    docs = paragraphs * 3
    docs_mb = sum(len(d.encode()) for d in docs) / MB
    workers = 2

    def encode_serial():
        tok._cache.clear()
        [tok.encode(d) for d in docs]

    ours, ref, serial = best_times(lambda: tok.encode_batch(docs, workers=workers),
                                   lambda: enc.encode_ordinary_batch(docs, num_threads=workers), encode_serial,
                                   repeat=2)
    rows.append((f"encode_batch {docs_mb:.1f} MB, {workers} processes (MB/s)", docs_mb / ours, docs_mb / ref,
                 f"tiktoken {workers} threads", ref / ours, f"{serial / ours:.1f}x our 1 process"))
    rows.append((f"train {tok.vocab_size:,} ids on {rank_mb:.1f} MB prose+code (s)", train_50k, None, "", None, ""))

    # ratio = ours / reference in the row's unit: for seconds lower is better, for MB/s higher.
    header = ("measure", "ours", "reference", "", "ratio", "target / note")
    table = [header] + [(m, f"{o:.2f}", "" if r is None else f"{r:.2f}", name,
                         "" if q is None else f"{q:.2f}x", note) for m, o, r, name, q, note in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) if i in (0, 3, 5) else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))).rstrip())


if __name__ == "__main__":
    main()
