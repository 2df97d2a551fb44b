"""Strict JSON for results: infinities and nan (log 0, a loss that diverged) become null."""
from __future__ import annotations

import math


def json_safe(value):
    """value with every non-finite float replaced by None, through dicts, lists and tuples."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
