"""Where an export lands: never over something by surprise, never half-written.

An existing output path is refused unless `force` is given; even then a directory is only
replaced when it holds nothing but files an export writes (so `-o run --force` cannot
delete a checkpoint or a home directory). Everything is written beside the target under a
temporary name and renamed into place at the end: a crash or an error leaves the old
output (or nothing) behind.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import GlassError
from ..fileio import atomic_path, fsync_dir, fsync_tree, umask

# Files an export directory may hold; a directory with anything else is never replaced.
EXPORT_FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "generation_config.json"}


def check_free(path: Path, force: bool, directory: bool) -> None:
    """Refuse an existing `path` unless `force` (and, for directories, unless it is an export)."""
    if not path.exists() and not path.is_symlink():
        return
    if not force:
        raise GlassError(f"{path} already exists: choose another path, or pass --force (force=True) to replace it")
    if directory:
        if not path.is_dir():
            raise GlassError(f"{path} is a file, not an export directory: remove it or choose another path")
        others = sorted(p.name for p in path.iterdir() if p.name not in EXPORT_FILES)
        if others:
            raise GlassError(f"{path} holds files an export does not write ({', '.join(others[:3])}): "
                             "it is not replaced even with --force; choose another path")
        config = path / "config.json"
        if config.is_file() and '"model_type"' not in config.read_text(encoding="utf-8", errors="replace"):
            raise GlassError(f"{path} is a glassgpt run, not an export: it is not replaced even with --force")
    elif path.is_dir():
        raise GlassError(f"{path} is a directory: give a file path (e.g. model.gguf)")


@contextlib.contextmanager
def new_directory(path, force: bool = False):
    """Yield a fresh temporary directory beside `path`; on success it becomes `path`."""
    path = Path(path)
    check_free(path, force, directory=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~umask())
        fsync_tree(tmp)                         # the files are on the disk before the rename publishes them
        if path.exists():
            old = path.with_name(f".{path.name}.old.{os.getpid()}")
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:                 # put the earlier export back
                os.replace(old, path)
                old = None
            raise
        fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def new_file(path, force: bool = False):
    """Yield a temporary file path beside `path`; on success it replaces `path`."""
    path = Path(path)
    check_free(path, force, directory=False)
    with atomic_path(path) as tmp:
        yield tmp
