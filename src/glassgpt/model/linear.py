"""The linear layer every stage uses, with faster ways to read its weight when no
gradient is needed (generation, inspection, evaluation).

Decoding computes one position (or a few) at a time, so each matrix multiply reads the
whole weight matrix to do very little arithmetic with it: memory traffic sets the
speed, not the arithmetic. Without gradients, on a CPU:

- several rows (a batch of sequences, the few positions a speculative verification
  scores, a prompt) go through oneDNN with the weight packed once into oneDNN's own
  layout. MKL's product is slow for few rows (15-30 GFLOP/s for 2-8 rows here); oneDNN
  runs 2-4x faster there (80-100 GFLOP/s for GPT-2 small's block matrices on 2 cores)
  and as fast or faster for long prompts. Without oneDNN, 2-8 rows are taken as
  (W @ x^T)^T, BLAS's path for a weight times a few columns;
- one row times a wide matrix (more outputs than inputs: q/k/v, the feed-forward's first
  layer, the vocabulary projection) reads a transposed (in, out) copy, which BLAS streams
  1.4-2x faster than (out, in): it adds x_i times row i into the long output instead of
  taking many short dot products. Narrow matrices are faster as they are;
- BLAS runs a matrix times one vector on one thread. For a large matrix (>= SPLIT_BYTES)
  and several CPU threads, one row instead reads a copy cut into one slice of outputs per
  thread, multiplied as a batch (torch.bmm runs the batch in parallel): 1.3-1.6x faster
  for GPT-2 small's matrices on 2 cores;
- with a `decode_dtype` (float16 or bfloat16), one row reads a half-size copy of the
  weight. The product is computed in that dtype, as in half-precision inference on a
  GPU, and returned in the input's dtype; results agree with fp32 to about three
  significant digits. Off by default (`GPT.set_decode_dtype`). Several rows keep fp32:
  CPU half-precision kernels pay off for a single row only.

Training (and any product that needs gradients) uses nn.Linear's own forward. The
copies cost memory (each kind about the size of the weights it copies) and are made on
first use; `GPT.set_weight_copies(False)` turns them off (plain nn.Linear products, no
memory beyond the weights; a `decode_dtype` still keeps its half-size copy). A copy is
remade whenever the weight may have changed: an in-place update bumps the weight's
version counter, and an optimizer step on the weight counts too (a fused optimizer
updates weights without that bump). Each kind is kept on its own, so
alternating one row and several rows (speculative decoding) never rebuilds them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from ..errors import ConfigError

DECODE_ROWS = 8           # without oneDNN, up to this many rows take the (W @ x^T)^T product
SPLIT_BYTES = 4 << 20     # one-row products with bigger weights are split across CPU threads
DECODE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
_ONEDNN = torch.backends.mkldnn.is_available()   # cleared if this build's oneDNN can't take a linear layer


def _mark_stepped(optimizer, args, kwargs) -> None:
    """After any optimizer step, count a step on each parameter it holds: fused optimizers
    (AdamW(fused=True)) update weights without bumping their version counter."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            p._optimizer_steps = getattr(p, "_optimizer_steps", 0) + 1


register_optimizer_step_post_hook(_mark_stepped)


class Linear(nn.Linear):
    decode_dtype: torch.dtype | None = None    # set on every layer by GPT.set_decode_dtype
    weight_copies: bool = True                 # set on every layer by GPT.set_weight_copies

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return super().forward(x)
        rows = x.numel() // x.shape[-1]
        if not self.weight_copies and (rows > 1 or self.decode_dtype is None):
            return super().forward(x)
        flat = x.reshape(rows, x.shape[-1])                                       # (rows, in)
        if rows > 1:
            out = self._rows_onednn(flat)                                         # bias included
            if out is None and (rows > DECODE_ROWS or x.device.type != "cpu"):     # the layouts are CPU tricks
                return super().forward(x)
            if out is None:
                out = (self.weight @ flat.t()).t()                                # (out, in) @ (in, rows)
                out = out if self.bias is None else out + self.bias
            return out.reshape(*x.shape[:-1], -1)
        if self.decode_dtype is not None:                                         # half the bytes read
            weight, bias = self._copy("half")
            return F.linear(flat.to(weight.dtype), weight, bias).to(x.dtype).view(*x.shape[:-1], -1)
        out = self._one_row(flat)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], -1)

    def _one_row(self, x: torch.Tensor) -> torch.Tensor:
        """(1, in) -> (1, out) without the bias, in the fastest of the layouts above (CPU BLAS)."""
        if x.device.type != "cpu":                                                 # the layouts are CPU tricks
            return (self.weight @ x.t()).t()
        wide, threads = self.out_features > self.in_features, torch.get_num_threads()
        large = self.weight.numel() * self.weight.element_size() >= SPLIT_BYTES
        if threads > 1 and large:
            # wide: (threads, in, out/threads); narrow: (threads, out/threads, in)
            slices = self._copy("split")[0]
            if wide:
                out = torch.bmm(x.expand(threads, 1, -1), slices)                  # (threads, 1, slice)
            else:
                out = torch.bmm(slices, x.t().expand(threads, -1, 1))              # (threads, slice, 1)
            return out.view(1, -1)[:, :self.out_features]                          # slices in order
        if wide:
            return x @ self._copy("transposed")[0]                                 # (1, in) @ (in, out)
        return (self.weight @ x.t()).t()                                           # (out, in) @ (in, 1)

    def _rows_onednn(self, x: torch.Tensor) -> torch.Tensor | None:
        """(rows, in) -> (rows, out) with the bias, by oneDNN on the packed fp32 weight; None where
        oneDNN can't take it (not a CPU fp32 product, or a PyTorch build without oneDNN)."""
        global _ONEDNN
        if not _ONEDNN or x.device.type != "cpu" or x.dtype != torch.float32 or self.weight.dtype != torch.float32:
            return None
        try:
            packed = self._copy("packed")[0]
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), packed, self.bias, "none", [None], "")
        except (RuntimeError, AttributeError):                                    # no usable oneDNN: never again
            _ONEDNN = False
            return None

    def drop_copies(self) -> None:
        """Free every decoding copy (they are remade on use unless weight_copies is off)."""
        self.__dict__.pop("_decode_copies", None)

    def _copy(self, kind: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weight (and bias) as decoding reads them: 'half' in decode_dtype, 'transposed' (in, out),
        'split' in one slice of outputs per CPU thread (see _one_row), 'packed' for oneDNN.
        One copy of each kind, remade when the weight (or the setting it depends on) changes."""
        w, b = self.weight, self.bias
        threads = torch.get_num_threads() if kind == "split" else None
        decode_dtype = self.decode_dtype if kind == "half" else None
        key = (_state(w), w.device, w.dtype, decode_dtype, threads, None if b is None else _state(b))
        copies = self.__dict__.setdefault("_decode_copies", {})                   # kind -> (key, copy)
        if copies.get(kind, (None,))[0] != key:
            if kind == "packed":
                copy = (torch.ops.mkldnn._reorder_linear_weight(w.detach(), DECODE_ROWS), None)
            elif kind == "transposed":
                copy = (w.detach().t().contiguous(), None)
            elif kind == "split":
                padded = -(-self.out_features // threads) * threads                # zero outputs, cut off after
                if self.out_features > self.in_features:                           # (in, out) cut by columns
                    columns = w.new_zeros(self.in_features, padded)
                    columns[:, :self.out_features] = w.detach().t()
                    copy = (columns.view(self.in_features, threads, -1).permute(1, 0, 2).contiguous(), None)
                else:                                                              # (out, in) cut by rows
                    rows = w.new_zeros(padded, self.in_features)
                    rows[:self.out_features] = w.detach()
                    copy = (rows.view(threads, -1, self.in_features), None)
            else:
                copy = (w.detach().to(self.decode_dtype), None if b is None else b.detach().to(self.decode_dtype))
            copies[kind] = (key, copy)
        return copies[kind][1]


def _state(t: torch.Tensor) -> tuple:
    """Changes whenever t's values may have: new storage, an in-place update, an optimizer step."""
    return t.data_ptr(), t._version, getattr(t, "_optimizer_steps", 0)


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
