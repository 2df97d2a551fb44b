"""One process at a time in a run or data directory.

    with DirectoryLock(run_dir, "training run"):
        ...                                   # nobody else trains into or prepares run_dir

The lock is the file DIR/.lock, held with an exclusive `flock` for as long as the work
lasts, and holding its owner's PID, host and start time so that a second process can say
who has it. The operating system drops a `flock` when its process dies, however it dies:
the next process takes the lock over and notes whose it was. (Where `flock` does not
exist, the file is created exclusively and a lock whose PID is gone on this host is stale.)
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable

from .errors import LockedError
from .fileio import file_error, make_dirs

try:
    import fcntl
except ImportError:                                      # Windows
    fcntl = None

LOCK = ".lock"


class DirectoryLock:
    def __init__(self, directory, what: str = "directory", say: Callable[[str], None] = lambda message: None):
        self.directory, self.what, self.say = Path(directory), what, say
        self.path = self.directory / LOCK
        self._fd: int | None = None

    def __enter__(self) -> "DirectoryLock":
        make_dirs(self.directory)
        for _ in range(20):          # the file can be replaced between open and flock: try again
            fd = self._open()
            if fcntl is None or self._flock(fd):
                break
        else:
            raise self._locked(None)
        previous = _read_owner(fd)
        if previous and previous.get("pid") != os.getpid():
            self.say(f"note: took over the lock on {self.directory} left by process {_describe(previous)}, "
                     f"which is no longer running")
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(owner).encode(), 0)
            os.fsync(fd)
        except OSError as e:
            os.close(fd)
            raise file_error(e, self.path) from None
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)          # unlink while still holding it: no one can take a dead file
        os.close(self._fd)
        self._fd = None

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | (0 if fcntl is not None else os.O_EXCL)
        try:
            return os.open(self.path, flags, 0o644)
        except FileExistsError:            # no flock: an exclusive create is the lock
            owner = _read_file(self.path)
            if _alive(owner):
                raise self._locked(owner) from None
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            return self._open()
        except OSError as e:
            raise file_error(e, self.path, "create the lock file") from None

    def _flock(self, fd: int) -> bool:
        """Take the lock; False if the file was replaced meanwhile (take the new one)."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise self._locked(owner) from None
        except OSError as e:
            os.close(fd)
            raise file_error(e, self.path, "lock") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
        return same

    def _locked(self, owner: dict | None) -> LockedError:
        holder = f"process {_describe(owner)}" if owner else "another process"
        return LockedError(f"{self.directory} is in use by {holder}: wait for it to finish, stop it, "
                           f"or choose another directory")


def _describe(owner: dict) -> str:
    return f"{owner.get('pid')} on {owner.get('host')} (started {owner.get('started')})"


def _read_owner(fd: int) -> dict | None:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "null")
    except (OSError, ValueError):
        return None


def _read_file(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None


def _alive(owner: dict | None) -> bool:
    """Without flock: is the owner still running? Unknown owners and other hosts count as alive."""
    if not owner or owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError, KeyError, TypeError):
        return True
    return True
