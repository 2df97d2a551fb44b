"""Errors meant for the person at the keyboard.

Anything a user can cause (bad input, a missing file, an impossible setting) raises
`GlassError` with a one-line message that says what to do. The CLI prints it as
`error: ...` and exits non-zero; library users can catch it.
"""


class GlassError(Exception):
    """A one-line, user-facing error: bad input, not a bug."""


class ConfigError(GlassError, ValueError):
    """An impossible or unknown model/training setting."""


class CheckpointError(GlassError):
    """A run directory that is missing, incomplete or corrupt."""


class FileError(GlassError):
    """A file or directory that cannot be read or written: full disk, permissions, a read-only mount."""


class DivergedError(GlassError):
    """Training produced a non-finite loss; the last good checkpoint is kept."""


class LockedError(GlassError):
    """Another process is using this directory."""


class Notice(UserWarning):
    """A one-line note for the person at the keyboard that is not an error (a one-off wait,
    a slower path taken): a warning, which the CLI prints as `glassgpt: ...`."""
