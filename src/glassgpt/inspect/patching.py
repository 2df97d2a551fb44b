"""Activation patching: which layer, position or head carries the information that decides
a prediction?

Run the model on a clean prompt ("When Mary and John went to the store, John gave a drink
to") and on a corrupted one of the same token length that changes the answer ("... Mary
gave a drink to"). A metric of the logits (the logit difference " Mary" - " John") tells
the two runs apart. Now run the corrupted prompt again, but take ONE activation from the
clean run: if the metric comes back, that activation carried what mattered.

    cell value = (metric(patched) - metric(corrupt)) / (metric(clean) - metric(corrupt))

so 0 means "no effect" and 1 means "as good as the clean run". What can be patched (`over`):

    resid_pre      the residual stream entering block L at one position     grid (layer, position)
    attn_out       attention's output in block L at one position            grid (layer, position)
    ff_out         the feed-forward's output in block L at one position     grid (layer, position)
    head           one head's output (blocks.L.attn.z[:, h]), all positions grid (layer, head)
    head_position  one head's output at one position                        grid (layer, head, position)

Every patched run is the corrupted run up to block L, so it starts from the corrupted
residual stream entering block L (kept once) and computes only blocks L.. (the ablation
study's prefix reuse); and the runs that start at the same block go through the model
together as one batch, each row with its own cell patched.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from ..errors import GlassError
from .ablation import blocks_from
from ..jsonsafe import json_safe
from ..model.inputs import to_ids
from .render import text_table, visible
from .trace import evaluating, token_text

OVER = {                                 # what can be patched -> (probe in block L, grid axes)
    "resid_pre": ("resid_pre", ("layer", "position")),
    "attn_out": ("attn.out", ("layer", "position")),
    "ff_out": ("ff.out", ("layer", "position")),
    "head": ("attn.z", ("layer", "head")),
    "head_position": ("attn.z", ("layer", "head", "position")),
}
MEMORY_FLOATS = 1 << 25                 # activations per batch of patched runs: about 128 MB of float32


# -- metrics -------------------------------------------------------------------------------------
def one_token(tokenizer, text_or_id, vocab_size: int, what: str = "answer") -> int:
    """A token id from an id or from a text that encodes to exactly one token."""
    if isinstance(text_or_id, bool):
        raise GlassError(f"the {what} must be a text of one token or a token id, got {text_or_id!r}")
    if isinstance(text_or_id, int):
        if not 0 <= text_or_id < vocab_size:
            raise GlassError(f"the {what} id {text_or_id} is not in the vocabulary (0 .. {vocab_size - 1})")
        return text_or_id
    if tokenizer is None:
        raise GlassError(f"the {what} {text_or_id!r} is a text and the model has no tokenizer: give a token id")
    ids = list(tokenizer.encode(text_or_id, allowed_special="all"))
    if len(ids) != 1:
        pieces = " ".join(repr(visible(token_text(tokenizer, i))) for i in ids) or "nothing"
        raise GlassError(f"the {what} {text_or_id!r} is {len(ids)} tokens ({pieces}), not one: "
                         f"give a text that is a single token (often with its leading space) or a token id")
    return ids[0]


class Metric:
    """A number computed from the logits at one position, for many runs at once.

    `score(logits)` takes (B, V) logits at `position` and gives (B,). Called on (B, T, V)
    logits like a TransformerLens metric, it returns the mean over the batch."""
    position: int = -1
    name: str = "metric"

    def resolve(self, tokenizer, vocab_size: int) -> "Metric":
        return self

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return self.score(logits[:, self.position]).mean()


@dataclass
class LogitDiff(Metric):
    """logit(answer) - logit(wrong) at `position` (default: the last)."""
    answer: str | int
    wrong: str | int
    position: int = -1
    ids: tuple[int, int] | None = None

    def resolve(self, tokenizer, vocab_size: int) -> "LogitDiff":
        return LogitDiff(self.answer, self.wrong, self.position,
                         (one_token(tokenizer, self.answer, vocab_size, "answer"),
                          one_token(tokenizer, self.wrong, vocab_size, "wrong answer")))

    @property
    def name(self) -> str:
        return f"logit({self.answer!r}) - logit({self.wrong!r})"

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        a, b = self._ids()
        return logits[:, a].float() - logits[:, b].float()

    def _ids(self) -> tuple[int, int]:
        if self.ids is None:
            if isinstance(self.answer, int) and isinstance(self.wrong, int):
                return self.answer, self.wrong
            raise GlassError("this metric names tokens by text: resolve it with a tokenizer first")
        return self.ids


@dataclass
class Probability(Metric):
    """p(token) at `position` (softmax of the logits)."""
    token: str | int
    position: int = -1
    id: int | None = None

    def resolve(self, tokenizer, vocab_size: int) -> "Probability":
        return Probability(self.token, self.position, one_token(tokenizer, self.token, vocab_size, "token"))

    @property
    def name(self) -> str:
        return f"p({self.token!r})"

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        i = self.id if self.id is not None else self.token
        if not isinstance(i, int):
            raise GlassError("this metric names a token by text: resolve it with a tokenizer first")
        return torch.softmax(logits.float(), dim=-1)[:, i]


@dataclass
class FunctionMetric(Metric):
    """Any function of the whole logits (1, T, V) -> a number (a 0-dim tensor or a float)."""
    fn: Callable[[torch.Tensor], torch.Tensor | float]
    position: int | None = None                    # None: the function sees every position
    name: str = "metric"

    def score(self, logits: torch.Tensor) -> torch.Tensor:        # logits (B, T, V): one call per row
        return torch.tensor([float(self.fn(logits[i:i + 1])) for i in range(len(logits))])

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(float(self.fn(logits)))


def logit_diff(answer: str | int, wrong: str | int, position: int = -1) -> LogitDiff:
    """Metric: logit(answer) - logit(wrong) at `position`; single-token texts or token ids."""
    return LogitDiff(answer, wrong, position)


def probability(token: str | int, position: int = -1) -> Probability:
    """Metric: the probability of `token` at `position`."""
    return Probability(token, position)


def as_metric(metric) -> Metric:
    if isinstance(metric, Metric):
        return metric
    if callable(metric):
        return FunctionMetric(metric, name=getattr(metric, "__name__", "metric"))
    raise GlassError(f"metric must be logit_diff(...), probability(...) or a function of the logits, "
                     f"got {type(metric).__name__}")


# -- the result ----------------------------------------------------------------------------------
@dataclass
class PatchResult:
    over: str
    values: torch.Tensor                 # normalised grid: 0 = corrupted, 1 = clean (nan if undefined)
    raw: torch.Tensor                    # the metric of each patched run, same shape
    axes: tuple[str, ...]                # ("layer", "position"), ("layer", "head") or ("layer", "head", "position")
    labels: dict[str, list[str]]         # per axis, one label per index
    clean_metric: float
    corrupt_metric: float
    metric: str
    clean_tokens: list[str]
    corrupt_tokens: list[str]
    note: str | None = None              # why `values` is undefined, when it is
    settings: dict = field(default_factory=dict)

    @property
    def normalised(self) -> bool:
        return self.note is None

    def _grid2d(self) -> tuple[torch.Tensor, list[str], list[str]]:
        """The grid as rows x columns for tables and heatmaps (layer x head x position: one
        row per layer.head)."""
        grid = self.values if self.normalised else self.raw
        if len(self.axes) == 3:
            L, H, T = grid.shape
            rows = [f"{l}.{h}" for l in range(L) for h in range(H)]
            return grid.reshape(L * H, T), rows, self.labels["position"]
        return grid, self.labels[self.axes[0]], self.labels[self.axes[1]]

    def table(self) -> str:
        grid, rows, columns = self._grid2d()
        head = (f"patching {self.over}: {self.metric}; clean {self.clean_metric:.4f}, corrupt "
                f"{self.corrupt_metric:.4f}; cells: " + ("0 = corrupt, 1 = clean" if self.normalised
                                                          else f"raw metric ({self.note})"))
        names = [f"{i}:{visible(c)}" if self.axes[-1] == "position" else c for i, c in enumerate(columns)]
        body = text_table([self.axes[0] if len(self.axes) == 2 else "layer.head"] + names,
                          [[r] + [f"{v:.3f}" for v in row] for r, row in zip(rows, grid.tolist())],
                          right=list(range(1, len(names) + 1)))
        return head + "\n" + body

    def heatmap(self, path=None):
        """A matplotlib Figure of the grid (saved as PNG when `path` is given)."""
        from .heatmaps import heatmap_figure, save_png
        grid, rows, columns = self._grid2d()
        what = "normalised metric (0 = corrupt, 1 = clean)" if self.normalised else f"raw {self.metric}"
        fig = heatmap_figure(grid, rows, columns, title=f"patching {self.over}: {self.metric}",
                             xlabel=self.axes[-1], ylabel="layer.head" if len(self.axes) == 3 else self.axes[0],
                             colorbar=what)
        if path is not None:
            save_png(fig, path)
        return fig

    def to_dict(self) -> dict:
        return json_safe({"over": self.over, "axes": list(self.axes), "labels": self.labels,
                          "values": self.values.tolist(), "raw": self.raw.tolist(), "metric": self.metric,
                          "clean_metric": self.clean_metric, "corrupt_metric": self.corrupt_metric,
                          "normalised": self.normalised, "note": self.note, "clean_tokens": self.clean_tokens,
                          "corrupt_tokens": self.corrupt_tokens, "settings": self.settings})

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


# -- the runs ------------------------------------------------------------------------------------
@dataclass
class PatchRuns:
    """The clean and corrupted runs, kept once for many patched runs."""
    clean_ids: list[int]
    corrupt_ids: list[int]
    clean_cache: dict[str, torch.Tensor]          # probe name -> clean activation (1, ...)
    corrupt_resid: list[torch.Tensor]             # resid_pre of every block in the corrupted run (1, T, C)
    clean_metric: float
    corrupt_metric: float


def prepare_runs(model, clean_ids: list[int], corrupt_ids: list[int], metric: Metric,
                 read: Sequence[str]) -> PatchRuns:
    n = model.config.n_layer
    resid = [f"blocks.{i}.resid_pre" for i in range(n)]
    with model.probing(read=list(read)) as probes:
        clean_logits = _logits(model, model(_batch(model, clean_ids)).logits, metric)
    clean_cache = {name: probes[name] for name in read}
    with model.probing(read=resid) as probes:
        corrupt_logits = _logits(model, model(_batch(model, corrupt_ids)).logits, metric)
    return PatchRuns(clean_ids, corrupt_ids, clean_cache, [probes[name] for name in resid],
                     float(metric.score(clean_logits)[0]), float(metric.score(corrupt_logits)[0]))


def patched_scores(model, runs: PatchRuns, layer: int, point: str, masks, metric: Metric,
                   batch_size: int | None = None, bar=None) -> torch.Tensor:
    """The metric of len(masks) patched runs: run r is the corrupted run with the elements of
    probe blocks.{layer}.{point} where masks[r] is True taken from the clean run.

    masks: a bool tensor, or anything whose slices are one (OneCellEach): (R, T) for
    residual-shaped probes (B, T, C), (R, H, T) for attn.z (B, H, T, hd).
    """
    name = f"blocks.{layer}.{point}"
    clean = runs.clean_cache[name]                                           # (1, T, C) or (1, H, T, hd)
    start = runs.corrupt_resid[layer]                                        # (1, T, C)
    T, C = start.shape[1:]
    rows = batch_size or _rows_per_batch(model, T, metric)
    out = []
    for first in range(0, len(masks), rows):
        mask = masks[first:first + rows].to(start.device)[..., None]         # (b, T, 1) or (b, H, T, 1)

        def swap(x, mask=mask):                                              # clean where the mask says
            return torch.where(mask, clean, x)
        x = start.expand(len(mask), T, C)                                    # (b, T, C)
        edits = {}
        if point == "resid_pre":
            x = swap(x)
        else:
            edits = {name: swap}
        with model.probing(edit=edits):
            resid = blocks_from(model, layer, x)                             # (b, T, C)
        out.append(metric.score(_logits(model, resid, metric, head=True)).cpu())
        if bar is not None:
            bar.update(len(mask))
    return torch.cat(out)


class OneCellEach:
    """The masks of a grid's patched runs, one cell each, made a batch at a time (a full
    layer x head x position set would be (H*T)^2 booleans):

        resid_pre / attn_out / ff_out   row p: position p                    (R, T)
        head                            row h: head h at every position      (R, H, T)
        head_position                   row h*T + p: head h at position p    (R, H, T)
    """

    def __init__(self, over: str, T: int, H: int):
        self.over, self.T, self.H = over, T, H
        self.count = H if over == "head" else H * T if over == "head_position" else T

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, rows: slice) -> torch.Tensor:
        first, stop, _ = rows.indices(self.count)
        n, T, H = max(0, stop - first), self.T, self.H
        index = torch.arange(n)
        if self.over == "head":
            mask = torch.zeros(n, H, T, dtype=torch.bool)
            mask[index, first + index] = True
            return mask
        mask = torch.zeros(n, self.count, dtype=torch.bool)
        mask[index, first + index] = True
        return mask.view(n, H, T) if self.over == "head_position" else mask


def _logits(model, x: torch.Tensor, metric: Metric, head: bool = False) -> torch.Tensor:
    """Logits where the metric reads them: (B, V) at its position, or (B, T, V) for all."""
    if metric.position is not None:
        x = x[:, metric.position]
    return (model.head(x) if head else x).float()


def _batch(model, ids: list[int]) -> torch.Tensor:
    return torch.tensor([ids], dtype=torch.long, device=model.device)


def _rows_per_batch(model, T: int, metric: Metric) -> int:
    cfg = model.config
    per_row = T * (cfg.d_ff + 4 * cfg.d_model + 2 * cfg.n_head * T) + \
        cfg.vocab_size * (T if metric.position is None else 1)
    return max(1, MEMORY_FLOATS // per_row)


# -- the grids -----------------------------------------------------------------------------------
def patch(model, clean, corrupt, metric, over: str = "resid_pre", *, tokenizer=None,
          batch_size: int | None = None, progress: bool = False) -> PatchResult:
    """Activation patching from `clean` into `corrupt` (texts or ids of the same token length).

        r = patch(model, "When Mary and John went to the store, John gave a drink to",
                  "When Mary and John went to the store, Mary gave a drink to",
                  logit_diff(" Mary", " John"), over="resid_pre")
        r.values          # (layer, position): 0 = corrupted, 1 = clean
        r.heatmap("patch.png")

    metric: logit_diff(a, b), probability(t), or any function of (1, T, V) logits -> number.
    over: resid_pre | attn_out | ff_out (layer x position), head (layer x head, all positions),
          head_position (layer x head x position).
    """
    if over not in OVER:
        raise GlassError(f"unknown over={over!r}: choose one of {', '.join(OVER)}")
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    clean_ids, corrupt_ids = (to_ids(x, tokenizer, model.config.vocab_size) for x in (clean, corrupt))
    if len(clean_ids) != len(corrupt_ids):
        raise GlassError(f"clean and corrupt must have the same number of tokens: clean has {len(clean_ids)}, "
                         f"corrupt has {len(corrupt_ids)} (change words that are one token each)")
    T, cfg = len(clean_ids), model.config
    if T > cfg.context_length:
        raise GlassError(f"the prompts have {T} tokens but the context holds {cfg.context_length}: shorten them")
    metric = as_metric(metric).resolve(tokenizer, cfg.vocab_size)
    if metric.position is not None and not -T <= metric.position < T:
        raise GlassError(f"the metric reads position {metric.position}, out of range for {T} tokens "
                         f"(give 0 .. {T - 1}, or negative from the end)")
    point, axes = OVER[over]
    L, H = cfg.n_layer, cfg.n_head
    masks = OneCellEach(over, T, H)
    read = [f"blocks.{l}.{point}" for l in range(L)]
    with torch.no_grad(), evaluating(model):
        runs = prepare_runs(model, clean_ids, corrupt_ids, metric, read)
        with tqdm(total=L * len(masks), desc=f"patching {over}", unit="run", disable=not progress,
                  dynamic_ncols=True) as bar:
            raw = torch.stack([patched_scores(model, runs, l, point, masks, metric, batch_size, bar)
                               for l in range(L)])
    shape = {"head": (L, H), "head_position": (L, H, T)}.get(over, (L, T))
    raw = raw.reshape(shape)
    values, note = normalise(raw, runs.clean_metric, runs.corrupt_metric)
    labels = {"layer": [str(l) for l in range(L)], "head": [str(h) for h in range(H)],
              "position": [token_text(tokenizer, i) for i in clean_ids]}
    return PatchResult(over=over, values=values, raw=raw, axes=axes, labels={a: labels[a] for a in axes},
                       clean_metric=runs.clean_metric, corrupt_metric=runs.corrupt_metric, metric=metric.name,
                       clean_tokens=labels["position"],
                       corrupt_tokens=[token_text(tokenizer, i) for i in corrupt_ids], note=note,
                       settings={"tokens": T, "runs": int(raw.numel())})


def normalise(raw: torch.Tensor, clean: float, corrupt: float) -> tuple[torch.Tensor, str | None]:
    """(raw - corrupt) / (clean - corrupt), or nan with the reason when clean and corrupt agree."""
    gap = clean - corrupt
    if abs(gap) <= 1e-6 * max(1.0, abs(clean)):
        return torch.full_like(raw, float("nan")), (
            f"the clean and corrupted runs give the same metric ({clean:.6g}), so there is nothing to "
            f"restore: the normalised values are undefined")
    return (raw - corrupt) / gap, None


def patch_all_positions(model, clean, corrupt, metric, layer: int, over: str = "resid_pre", *,
                        tokenizer=None) -> float:
    """The metric when `over` at block `layer` is taken from the clean run at EVERY position
    (for resid_pre at layer 0 that is the whole clean run)."""
    if over not in ("resid_pre", "attn_out", "ff_out"):
        raise GlassError(f"patch_all_positions takes resid_pre, attn_out or ff_out, got {over!r}")
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    clean_ids, corrupt_ids = (to_ids(x, tokenizer, model.config.vocab_size) for x in (clean, corrupt))
    if len(clean_ids) != len(corrupt_ids):
        raise GlassError(f"clean and corrupt must have the same number of tokens: clean has {len(clean_ids)}, "
                         f"corrupt has {len(corrupt_ids)}")
    metric = as_metric(metric).resolve(tokenizer, model.config.vocab_size)
    point = OVER[over][0]
    with torch.no_grad(), evaluating(model):
        runs = prepare_runs(model, clean_ids, corrupt_ids, metric, [f"blocks.{layer}.{point}"])
        masks = torch.ones(1, len(clean_ids), dtype=torch.bool)
        return float(patched_scores(model, runs, layer, point, masks, metric)[0])
