"""Writing files so that nothing is ever half-written, and every failure is one line.

Every file glassgpt writes goes through `atomic_path` (or its two shorthands):

    1. write to a temporary file `.NAME.XXXX.tmp` in the same directory
    2. fsync it: the bytes are on the disk, not only in the page cache
    3. rename it over NAME: readers see the old file or the new one, never a mix
    4. fsync the directory: the rename itself survives a power cut

The new file keeps the permissions of the one it replaces (or gets the usual
umask-respecting ones). If anything fails (a full disk, a read-only mount, a kill), NAME
keeps its previous content; the temporary file is removed, or, after a kill, by
`remove_stale_temporaries` the next time the directory is used.

A file-system failure becomes a `FileError`: one line naming the path, what went wrong
and what to do.

`fault_point(stage, path)` marks each step of a write for the fault-injection tests: they
set `FAULT_HOOK` to crash, fill the disk or snapshot the directory at every step.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable

from .errors import FileError, GlassError

TMP_SUFFIX = ".tmp"

# tests set this to a callable(stage, path) run at every step of every write
FAULT_HOOK: Callable[[str, Path], None] | None = None
# fsync (steps 2 and 4) protects against a power cut, not against a killed process, whose
# writes the page cache keeps: crash-consistency tests may switch it off to run faster
DURABLE = True


def fault_point(stage: str, path) -> None:
    """A named step of a write (e.g. "written", "renamed"): where tests inject faults."""
    if FAULT_HOOK is not None:
        FAULT_HOOK(stage, Path(path))


# -- writing --------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; when the block ends, it replaces `path` in one step.

    If the block raises (or the process dies), `path` keeps its previous content."""
    path = Path(path)
    make_dirs(path.parent)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
        os.close(fd)
        os.chmod(name, _mode_for(path))            # mkstemp makes 0600; give the usual permissions
    except OSError as e:
        raise file_error(e, path) from None
    tmp = Path(name)
    try:
        try:
            yield tmp
            fault_point("written", path)
            fsync_file(tmp)
            fault_point("synced", path)
            os.replace(tmp, path)
            fault_point("renamed", path)
            fsync_dir(path.parent)
        except GlassError:
            raise
        except Exception as e:
            cause = os_error_in(e)
            if cause is None:
                raise
            raise file_error(cause, path) from e
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_link(source: Path, path: Path) -> None:
    """Make `path` the same file as `source` (a hard link, or a copy where links are not
    possible), replacing `path` in one step."""
    with atomic_path(path) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def append_line(path: str | os.PathLike, line: str, sync: bool = False) -> None:
    """Append one line (a log record); sync=True waits until it is on the disk.
    A crash can cut only this last line short: readers skip a broken last line."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            if sync:
                f.flush()
                os.fsync(f.fileno())
    except OSError as e:
        raise file_error(e, path) from None


def fsync_file(path: Path) -> None:
    if not DURABLE:
        return
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_tree(path: Path) -> None:
    """fsync every file under `path` and every directory, before publishing it by a rename."""
    if not DURABLE:
        return
    for file in sorted(Path(path).rglob("*")):
        if file.is_file():
            fsync_file(file)
        elif file.is_dir():
            fsync_dir(file)
    fsync_dir(Path(path))


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (best effort: some systems cannot open directories)."""
    if not DURABLE:
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- directories ----------------------------------------------------------------------------------
def make_dirs(path: str | os.PathLike) -> Path:
    """Create `path` (and its parents) or say in one line why it cannot be."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileError(f"{path} is a file, not a directory: choose another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise file_error(e, path, "create the directory") from None
    return path


def check_writable(directory: str | os.PathLike) -> Path:
    """Create `directory` if needed and prove a file can be written in it, before long work starts."""
    directory = make_dirs(directory)
    try:
        fd, name = tempfile.mkstemp(prefix=".write-check.", suffix=TMP_SUFFIX, dir=directory)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise file_error(e, directory, "write in") from None
    return directory


def is_temporary(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(TMP_SUFFIX)


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete temporary files left in `directory` by a killed writer. Call it only while
    holding the directory's lock (no one else can be writing there)."""
    removed = []
    with contextlib.suppress(OSError):
        for path in Path(directory).iterdir():
            if is_temporary(path) and path.is_file():
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path)
    return removed


def remove_tree(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise file_error(e, path, "remove") from None


# -- errors ---------------------------------------------------------------------------------------
HINTS = {
    errno.ENOSPC: "free some disk space and run the command again",
    errno.EDQUOT: "your disk quota is used up: free some space and run the command again",
    errno.EROFS: "the file system is read-only: choose a location you can write to",
    errno.EACCES: "check its permissions or choose another location",
    errno.EPERM: "check its permissions or choose another location",
    errno.ENOTDIR: "a file stands where a directory should be: choose another path",
    errno.EISDIR: "it is a directory: give a file name",
    errno.EEXIST: "something already stands there: choose another path",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.ENOENT: "check that the path exists",
}


def file_error(e: OSError, path, action: str = "write") -> FileError:
    """A one-line FileError: what failed, on which path, and what to do."""
    reason = e.strerror or os.strerror(e.errno) if e.errno else str(e) or type(e).__name__
    hint = HINTS.get(e.errno, "check the path and try again")
    return FileError(f"cannot {action} {path}: {reason}: {hint}")


def os_error_in(e: BaseException) -> OSError | None:
    """The operating-system error behind an exception, if any: torch and safetensors wrap a
    full disk in their own exceptions (RuntimeError, SafetensorError "os error 28")."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno:
            return e
        match = re.search(r"os error (\d+)", str(e))
        if match:
            code = int(match.group(1))
            return OSError(code, os.strerror(code))
        e = e.__cause__ or e.__context__
    return None


def _mode_for(path: Path) -> int:
    """The permissions a new version of `path` gets: those of the file it replaces, or
    0666 minus the umask, as `open` would give."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(os.stat(path).st_mode)
    return 0o666 & ~umask()


def umask() -> int:
    """The process's umask."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:      # Linux: read it without changing it
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_figure(fig, path: str | os.PathLike, **savefig_options) -> None:
    """fig.savefig through the atomic writer (the format follows the file's extension)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **savefig_options)
