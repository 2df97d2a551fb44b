"""What the model is given: text or ids -> checked token ids that fit its context."""
from __future__ import annotations

import warnings

import torch

from ..errors import GlassError


def to_ids(text_or_ids, tokenizer, vocab_size: int) -> list[int]:
    """Text (encoded with special tokens allowed), a list or a tensor of ids -> a non-empty
    list of ids < vocab_size."""
    if isinstance(text_or_ids, str):
        if tokenizer is None:
            raise GlassError("the input is text but there is no tokenizer: pass tokenizer=... or token ids")
        ids = list(tokenizer.encode(text_or_ids, allowed_special="all"))
    elif isinstance(text_or_ids, torch.Tensor):
        ids = text_or_ids.reshape(-1).tolist()
    else:
        try:
            ids = [int(i) for i in text_or_ids]
        except (TypeError, ValueError):
            raise GlassError(f"the input must be text or a list of token ids, "
                             f"got {type(text_or_ids).__name__}") from None
    if not ids:
        raise GlassError("the input is empty (zero tokens): give at least one token (e.g. '<|endoftext|>')")
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise GlassError(f"token id {bad[0]} is outside the vocabulary (0..{vocab_size - 1}): "
                         f"was the text encoded with this model's tokenizer?")
    return ids


def crop_to_context(ids: list[int], context_length: int, stacklevel: int = 3) -> tuple[list[int], int]:
    """Keep the last `context_length` ids, warning when some are cut; returns (ids, number cut)."""
    dropped = max(0, len(ids) - context_length)
    if dropped:
        warnings.warn(f"the text has {len(ids)} tokens, more than the context length {context_length}: "
                      f"keeping the last {context_length}", stacklevel=stacklevel)
    return ids[dropped:], dropped
