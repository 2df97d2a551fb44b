"""The linear layer every stage uses, with a faster way to read its weight while decoding.

Decoding computes one position (or a few) at a time, so each matrix multiply reads the
whole weight matrix to do very little arithmetic with it: memory traffic sets the
speed, not the arithmetic. For these calls (at most DECODE_ROWS rows, no gradients) a
layer can read a copy of its weight kept for the purpose:

- in `decode_dtype` (float16 or bfloat16) when one is set: half the bytes of fp32 per
  token. The product is computed in that dtype, as in half-precision inference on a
  GPU, and returned in the input's dtype; results agree with fp32 to about three
  significant digits. Off by default (`GPT.set_decode_dtype`).
- transposed to (in, out), when `transposed_copy` is set and no decode dtype is: BLAS
  streams x @ W faster than x @ W^T for the very wide vocabulary projection. Exact.

Training, prefill and inspection of longer texts always use the weight itself. A copy
is remade whenever the weight changes (in-place updates such as an optimiser step bump
its version counter).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

DECODE_ROWS = 8           # at most this many positions per call count as decoding
DECODE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


class Linear(nn.Linear):
    decode_dtype: torch.dtype | None = None    # set on every layer by GPT.set_decode_dtype
    transposed_copy: bool = False              # set on the vocabulary projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._decoding(x):
            return super().forward(x)
        weight, bias = self._decode_weights()
        if self.decode_dtype is None:                                    # exact: (in, out) copy
            out = x.reshape(-1, x.shape[-1]) @ weight
            out = (out if bias is None else out + bias).view(*x.shape[:-1], -1)
            return out
        return F.linear(x.to(weight.dtype), weight, bias).to(x.dtype)   # half the bytes read

    def _decoding(self, x: torch.Tensor) -> bool:
        return ((self.decode_dtype is not None or self.transposed_copy)
                and not torch.is_grad_enabled() and x.numel() <= DECODE_ROWS * x.shape[-1])

    def _decode_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        w, b = self.weight, self.bias
        key = (w.data_ptr(), w._version, w.device, w.dtype, self.decode_dtype,
               None if b is None else (b.data_ptr(), b._version))
        if getattr(self, "_decode_key", None) != key:
            if self.decode_dtype is None:
                copy = (w.detach().t().contiguous(), b)                              # (in, out)
            else:
                copy = (w.detach().to(self.decode_dtype),                            # (out, in)
                        None if b is None else b.detach().to(self.decode_dtype))
            self._decode_copy, self._decode_key = copy, key
        return self._decode_copy


def parse_decode_dtype(name: str | torch.dtype | None) -> torch.dtype | None:
    """'float16' / 'bfloat16' / a torch dtype / None or 'float32' (exact) -> dtype or None."""
    if name is None or name in ("float32", "fp32", torch.float32):
        return None
    if isinstance(name, torch.dtype):
        if name in DECODE_DTYPES.values():
            return name
    else:
        aliases = {"fp16": "float16", "half": "float16", "bf16": "bfloat16"}
        found = DECODE_DTYPES.get(aliases.get(name, name))
        if found is not None:
            return found
    raise ConfigError(f"decode weights {name!r} unknown: choose float32, float16 or bfloat16")
