"""Backslash escapes typed on a command line or at a prompt: \\n, \\t, \\r and \\\\ (every other
character, non-ASCII included, passes through unchanged)."""
from __future__ import annotations

import re

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def unescape(text: str) -> str:
    """'café\\\\n' (as typed) -> 'café' + newline."""
    return re.sub(r"\\([ntr\\])", lambda m: _ESCAPES[m.group(1)], text)
