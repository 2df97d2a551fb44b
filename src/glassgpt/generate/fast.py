"""Fast decoding: the model's own products, read from weight layouts a CPU streams faster.

The model (glassgpt.model) is plain PyTorch: every product is an nn.Linear. Decoding
computes one position (or a few) at a time, so each product reads a whole weight matrix
to do very little arithmetic with it: memory traffic sets the speed, not arithmetic.
Inside a `fast_decode(model)` scope, the model's linear layers read copies of their
weights laid out for that:

- one row (the decoding step of one sequence) goes through the one compiled kernel,
  `kernels/rowdot.cpp`: each output the dot product of one row of the weight, as
  nn.Linear keeps it (no copy), with x, in float32, the rows read front to back in
  one pass and split across CPU threads. PyTorch's product for one row streams the
  weight 1.2-1.5x slower and runs on one thread; the kernel makes the 6 x 384 step
  1.1x (1 thread) to 1.5x (2 threads) faster. It is built for this CPU on first use
  (generate/kernels); where it cannot be, or with kernel=False, the layouts below do
  the one-row products in PyTorch;
- several rows (2 to DECODE_ROWS: a batch of sequences, the few positions a speculative
  verification scores) go through oneDNN with the weight packed once into oneDNN's own
  layout: MKL's product runs at 15-30 GFLOP/s for 2-8 rows here, oneDNN 2-4x faster.
  Without oneDNN, (W @ x^T)^T, BLAS's path for a weight times a few columns;
- one row times a wide matrix (more outputs than inputs: q/k/v, the feed-forward's first
  layer, the vocabulary projection) reads a transposed (in, out) copy, which BLAS streams
  1.4-2x faster than (out, in);
- BLAS runs a matrix times one vector on one thread. For a large matrix (>= SPLIT_BYTES)
  and several CPU threads, one row reads a copy cut into one slice of outputs per thread,
  multiplied as a batch (torch.bmm runs the batch in parallel): 1.3-1.6x on 2 cores;
- with `dtype` float16 or bfloat16, one row reads a half-size copy of the weight: the
  kernel converts it to float32 as it reads (float32 sums, about three significant digits
  of fp32 in the weights); without the kernel the product is computed in that dtype and
  returned in the input's. Several rows keep fp32.

One new token per row (the decoding loop's step) runs `FastDecode.step`: the model's own
forward written out op by op for that one case (same modules, same weights, same math),
without what a general forward pays for on every token: module calls, probe points,
masks and position tensors, the fused attention kernel's set-up for one query. A decode
step of 6 x 384 is ~830 ATen calls through the model and ~740 here, most of them views
(`python -m benchmarks.profile_decode`, with `--model-forward` for the model). It is used only
where it computes what the model would (no probes, hooks or dropout active, no padding:
otherwise the model runs), and it is tested equal to the model for every config.

Longer inputs (prompts) read the packed copy too: oneDNN multiplies a 64-512-row prompt
by a weight 2-4x faster than MKL's sgemm on the AMD Zen 4 measured (time to first token);
without oneDNN they take the plain product. A copy is made the second time its
layout is asked for in a scope, so a product used once never pays for a copy; all copies
are freed when the scope ends. Weights must not change inside a scope (so no staleness
tracking is needed): each `generate`, `stream`, `Session` call and speculative decoding
enter a scope for the call, so an edit between two calls is always seen; a long-lived
owner (a server, `glassgpt play`) holds one scope for its lifetime. Gradients inside a
scope are refused: training reads the weights themselves.

    with fast_decode(model, dtype="float16"):      # nested generate() calls use this scope
        model.generate("ROMEO:", max_new_tokens=50)

The private oneDNN ops below and the kernel are the only ops glassgpt does not get from
PyTorch's public API; each has a fallback to the plain product when it is missing or
refuses the input.
"""
from __future__ import annotations

import contextlib
import functools
import math
import weakref
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, GlassError
from . import kernels

DECODE_ROWS = 8           # products of 2..DECODE_ROWS rows read the packed (oneDNN) copy
PROMPT_ROWS = 32          # ... and so do longer inputs (prompts); from PROMPT_ROWS rows on it is packed at once
SPLIT_BYTES = 4 << 20     # one-row products with bigger weights are split across CPU threads
DECODE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}

_scopes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # model -> its active FastDecode


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


@contextlib.contextmanager
def fast_decode(model: nn.Module, dtype: str | torch.dtype | None = None, copies: bool = True,
                op_by_op: bool = True, kernel: bool = True) -> Iterator["FastDecode"]:
    """Route `model`'s linear products through fast weight layouts until the block ends.

    dtype: float16 / bfloat16 for half-size copies read by one-row products (None: exact fp32).
    copies: False decodes from the weights as they are (no memory beyond them; a `dtype`
    still keeps its half-size copies). op_by_op: False runs every decoding step through the
    model's forward instead of `FastDecode.step`. kernel: False leaves one-row products to
    PyTorch (with the layouts above) instead of the compiled row-by-row kernel. Inside a
    scope that is already active on the model, the outer one's settings hold (its owner
    chose them)."""
    active = _scopes.get(model)
    if active is not None:
        yield active
        return
    scope = FastDecode(model, parse_decode_dtype(dtype), bool(copies), bool(op_by_op), bool(kernel))
    _scopes[model] = scope
    scope.install()
    try:
        yield scope
    finally:
        scope.remove()
        del _scopes[model]


def active_scope(model: nn.Module) -> "FastDecode | None":
    """The fast-decoding scope active on `model`, if any."""
    return _scopes.get(model)


def decode_logits(model: nn.Module, ids: torch.Tensor, kv_cache) -> torch.Tensor:
    """The next-token logits (B, V) after feeding one token per row (ids (B, 1)) into
    `kv_cache`: the active scope's op-by-op step where it applies, else the model."""
    scope = _scopes.get(model)
    logits = scope.step(ids, kv_cache) if scope is not None else None
    if logits is None:
        logits = model(ids, kv_cache=kv_cache, last_only=True).logits[:, -1]
    return logits


class FastDecode:
    """One scope: the settings, the copies made so far, and the linear layers it routes."""

    def __init__(self, model: nn.Module, dtype: torch.dtype | None, copies: bool, op_by_op: bool = True,
                 kernel: bool = True):
        self.model, self.dtype, self.copies_enabled, self.op_by_op = model, dtype, copies, op_by_op
        self.onednn = torch.backends.mkldnn.is_available()   # cleared if oneDNN refuses a product
        self.kernel = None                                    # the compiled one-row product (kernels/rowdot.cpp)
        if kernel and copies and all(p.device.type == "cpu" for p in model.parameters()):
            self.kernel = kernels.rowdot()
        self.layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
        self.copies: dict[tuple[int, str], tuple] = {}       # (layer id, kind) -> the copy
        self.asked: dict[tuple[int, str], int] = {}          # how often each layout was asked for
        self.hooked: bool | None = None                       # hooks on the model (looked at once)

    def install(self) -> None:
        if not self.copies_enabled and self.dtype is None:
            return                                            # plain products: nothing to route
        for layer in self.layers:
            layer.forward = functools.partial(self.linear, layer)   # an instance attribute shadows nn.Linear's

    def remove(self) -> None:
        for layer in self.layers:
            layer.__dict__.pop("forward", None)
        self.copies.clear()

    @property
    def bytes_held(self) -> int:
        return sum(t.nbytes for copy in self.copies.values() for t in copy if t is not None)

    # -- one decoding step, op by op ----------------------------------------------------------
    def step(self, ids: torch.Tensor, cache) -> torch.Tensor | None:
        """The model's forward for one new token per row (ids (B, 1)), continuing `cache`:
        logits (B, V), or None where the model must run itself (probes, hooks, dropout, a
        model that is not a glassgpt GPT)."""
        model = self.model
        if not self.op_by_op or not self.plain_forward() or ids.shape[1] != 1:
            return None
        config = model.config
        position = cache.length
        if position + 1 > config.context_length:
            return None                                                           # the model says why
        x = F.embedding(ids[:, 0], model.embed.weight)                            # (B, C)
        encoding = model.positional_encoding
        if encoding is not None:                                                  # learned or sinusoidal
            x = x + encoding(torch.tensor(position, device=ids.device))
        positions = torch.tensor([position], device=ids.device)                   # (1,) for rope
        for block in model.blocks:
            if block.pre_norm:                          # x + attention(norm(x)); x + feed_forward(norm(x))
                x = x + self.attend(block.attention, layer_norm(block.attn_norm, x), positions, cache)
                x = x + self.feed_forward(block.feed_forward, layer_norm(block.ff_norm, x))
            else:                                       # norm(x + attention(x)); norm(x + feed_forward(x))
                x = layer_norm(block.attn_norm, x + self.attend(block.attention, x, positions, cache))
                x = layer_norm(block.ff_norm, x + self.feed_forward(block.feed_forward, x))
        cache.advance(1)
        if isinstance(model.final_norm, nn.LayerNorm):
            x = layer_norm(model.final_norm, x)
        return self.linear(model.unembed, x)                                      # (B, V)

    def attend(self, attention, x: torch.Tensor, positions: torch.Tensor, cache) -> torch.Tensor:
        """One query per row against the cache: (B, C) -> (B, C). The fused kernel's set-up
        costs more than this whole product for one query, so it is written out."""
        B, C = x.shape
        H, hd = attention.n_head, attention.head_dim
        q, k, v = self.linear(attention.qkv, x).view(B, 3, H, 1, hd).unbind(1)   # 3 x (B, H, 1, hd)
        if attention.rotary is not None:
            q, k = attention.rotary(q, positions), attention.rotary(k, positions)
        keys, values = cache.update(attention.layer, k, v)                       # (B, H, S, hd)
        S = keys.shape[2]
        keys, values = keys.view(B * H, S, hd), values.view(B * H, S, hd)         # rows and heads as one batch
        scores = torch.bmm(q.reshape(B * H, 1, hd), keys.transpose(1, 2))         # (B*H, 1, S)
        pattern = torch.softmax(scores.mul_(1.0 / math.sqrt(hd)), dim=-1)
        z = torch.bmm(pattern, values)                                            # (B*H, 1, hd)
        return self.linear(attention.proj, z.view(B, C))                          # heads side by side

    def feed_forward(self, ff, x: torch.Tensor) -> torch.Tensor:
        return self.linear(ff.down, ff.activation(self.linear(ff.up, x)))        # (B, C) -> (B, C)

    def plain_forward(self) -> bool:
        """Whether the model's forward would compute exactly what `step` does: a GPT in
        eval mode (or without dropout), nobody probing, no hooks on any of its modules."""
        model = self.model
        if getattr(model, "probes", True) is not None or not hasattr(model, "blocks"):
            return False
        if model.training and model.config.dropout > 0:
            return False
        if self.hooked is None:
            self.hooked = bool(nn.modules.module._global_forward_hooks
                               or nn.modules.module._global_forward_pre_hooks
                               or any(m._forward_hooks or m._forward_pre_hooks for m in model.modules()))
        return not self.hooked

    # -- the product -------------------------------------------------------------------------
    def linear(self, layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        """layer(x), in the fastest layout for x's number of rows."""
        if torch.is_grad_enabled() and layer.weight.requires_grad:
            raise GlassError("gradients inside fast_decode(): it reads copies of the weights; "
                             "train outside the scope (or run under torch.no_grad())")
        if torch.compiler.is_compiling():
            return F.linear(x, layer.weight, layer.bias)
        rows = x.numel() // x.shape[-1]
        flat = x.reshape(rows, x.shape[-1])                                       # (rows, in)
        if rows == 1 and self.kernel is not None and x.dtype == torch.float32 and x.device.type == "cpu":
            out = self.kernel_row(layer, flat)
            if out is not None:
                return out.view(*x.shape[:-1], -1)
        if rows == 1 and self.dtype is not None:                                  # half the bytes read
            copy = self.copy(layer, "half")
            if copy is not None:
                weight, bias = copy
                return F.linear(flat.to(weight.dtype), weight, bias).to(x.dtype).view(*x.shape[:-1], -1)
        if not self.copies_enabled or x.device.type != "cpu":                      # the layouts are CPU tricks
            return F.linear(x, layer.weight, layer.bias)
        out = self.several_rows(layer, flat) if rows > 1 else self.one_row(layer, flat)
        if out is None:
            return F.linear(x, layer.weight, layer.bias)
        return out.reshape(*x.shape[:-1], -1)

    def kernel_row(self, layer: nn.Linear, x: torch.Tensor) -> torch.Tensor | None:
        """(1, in) -> (1, out) with the bias, by the compiled kernel: the weight as it is (fp32),
        or its half-size copy with `dtype` (fp32 until the copy is made); float32 sums either way."""
        weight, bias = layer.weight, layer.bias
        if self.dtype is not None:
            copy = self.copy(layer, "half")
            weight = weight if copy is None else copy[0]
        if weight.dtype not in (torch.float32, torch.float16, torch.bfloat16) or not weight.is_contiguous() or (
                bias is not None and bias.dtype != torch.float32):
            return None
        return self.kernel(weight.detach(), x.contiguous(), None if bias is None else bias.detach())

    def one_row(self, layer: nn.Linear, x: torch.Tensor) -> torch.Tensor | None:
        """(1, in) -> (1, out) with the bias, from the transposed or split copy (None: not yet made)."""
        out_features, in_features = layer.weight.shape
        wide, threads = out_features > in_features, torch.get_num_threads()
        if threads > 1 and layer.weight.nbytes >= SPLIT_BYTES:
            copy = self.copy(layer, "split")
            if copy is None:
                return None
            slices = copy[0]                   # wide: (threads, in, out/threads); narrow: (threads, out/threads, in)
            if wide:
                out = torch.bmm(x.expand(threads, 1, -1), slices)                 # (threads, 1, slice)
            else:
                out = torch.bmm(slices, x.t().expand(threads, -1, 1))             # (threads, slice, 1)
            out = out.view(1, -1)[:, :out_features]                               # slices in order
        elif wide:
            copy = self.copy(layer, "transposed")
            if copy is None:
                return None
            if layer.bias is None:
                return torch.mm(x, copy[0])                                       # (1, in) @ (in, out)
            return torch.addmm(layer.bias, x, copy[0])                            # bias + x @ W^T, one op
        else:
            out = (layer.weight @ x.t()).t()                                      # (out, in) @ (in, 1)
        return out if layer.bias is None else out + layer.bias

    def several_rows(self, layer: nn.Linear, x: torch.Tensor) -> torch.Tensor | None:
        """(rows, in) -> (rows, out) with the bias: oneDNN on the packed copy, or (W x^T)^T."""
        if self.onednn and x.dtype == torch.float32 and layer.weight.dtype == torch.float32:
            copy = self.copy(layer, "packed", at_once=x.shape[0] >= PROMPT_ROWS)
            if copy is None:
                return None
            try:
                return onednn_linear(x.contiguous(), copy[0], layer.bias)
            except (RuntimeError, AttributeError):                               # no usable oneDNN: plain from now on
                self.onednn = False
        if x.shape[0] > DECODE_ROWS:
            return F.linear(x, layer.weight, layer.bias)
        out = (layer.weight @ x.t()).t()                                          # (out, in) @ (in, rows)
        return out if layer.bias is None else out + layer.bias

    # -- the copies ----------------------------------------------------------------------------
    def copy(self, layer: nn.Linear, kind: str, at_once: bool = False) -> tuple | None:
        """The weight (and bias) as decoding reads them: 'half' in the decode dtype,
        'transposed' (in, out), 'split' one slice of outputs per CPU thread, 'packed' for
        oneDNN. Made the second time it is asked for (None the first time), or at once
        (a prompt's product pays for the copy by itself); kept until the scope ends (split
        copies are remade if the thread count changes)."""
        key = (id(layer), kind if kind != "split" else f"split{torch.get_num_threads()}")
        found = self.copies.get(key)
        if found is not None:
            return found
        self.asked[key] = self.asked.get(key, 0) + 1
        if self.asked[key] < 2 and not at_once:
            return None
        w, b = layer.weight.detach(), layer.bias
        if kind == "half":
            copy = (w.to(self.dtype), None if b is None else b.detach().to(self.dtype))
        elif kind == "transposed":
            copy = (w.t().contiguous(), None)
        elif kind == "split":
            copy = (split_by_outputs(w, torch.get_num_threads()), None)
        else:
            try:
                copy = (onednn_pack(w), None)
            except (RuntimeError, AttributeError):
                self.onednn = False
                return None
        self.copies[key] = copy
        return copy


def layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def split_by_outputs(w: torch.Tensor, threads: int) -> torch.Tensor:
    """(out, in) -> one slice of outputs per thread, zero-padded to equal slices:
    (threads, in, out/threads) for a wide matrix (read as x @ slice), (threads, out/threads, in)
    for a narrow one (read as slice @ x^T)."""
    out_features, in_features = w.shape
    padded = -(-out_features // threads) * threads                                # zero outputs, cut off after
    if out_features > in_features:
        columns = w.new_zeros(in_features, padded)
        columns[:, :out_features] = w.t()
        return columns.view(in_features, threads, -1).permute(1, 0, 2).contiguous()
    rows = w.new_zeros(padded, in_features)
    rows[:out_features] = w
    return rows.view(threads, -1, in_features)


# -- oneDNN: the private ops inductor uses for CPU linear layers --------------------------------
def onednn_pack(w: torch.Tensor) -> torch.Tensor:
    """The weight reordered once into oneDNN's blocked layout for products of few rows."""
    return torch.ops.mkldnn._reorder_linear_weight(w, DECODE_ROWS)


def onednn_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x (rows, in) times a packed weight, plus the bias: (rows, out)."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [None], "")
