"""Ablation: what can the model not do without this part?

Remove one part at a time and measure validation loss on the same fixed batches as the
intact model. A part whose removal raises the loss a lot is one the model relies on.
Every removal is an edit of a named probe during an ordinary forward pass:

    block L skipped          blocks.L.resid_post := blocks.L.resid_pre (the block adds nothing)
    head L.h zeroed          blocks.L.attn.z[:, h] := 0 (or its mean output: mean-ablation)
    feed-forward L zeroed    blocks.L.ff.out := 0
    positional encoding      positional_encoding := 0 (rope: the same weights, no rotation)
    LayerNorm -> identity    the norm's probe returns the norm's input, read from the probe
                             before it in the same pass (e.g. resid_pre for a pre-LN attn_norm)

The layer-pruning curve drops the last k blocks (k = 0 .. N): how much of the model's
skill comes from its depth.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import GlassError
from ..model.gpt import cross_entropy
from ..model.probes import Edit
from ..train.data import fixed_batches
from .render import text_table
from .trace import evaluating


@dataclass
class Ablation:
    """One part removed: the probe edits that remove it, or a context that changes the model."""
    name: str
    kind: str                                        # block | head | ff | positional | norm | prune | none
    edits: dict[str, Edit] = field(default_factory=dict)
    context: Callable[[object], contextlib.AbstractContextManager] | None = None


@dataclass
class LossStat:
    name: str
    kind: str
    losses: list[float]                              # one mean cross-entropy per fixed batch

    @property
    def mean(self) -> float:
        return float(np.mean(self.losses))

    @property
    def sem(self) -> float:
        """Standard error of the mean over batches."""
        n = len(self.losses)
        return float(np.std(self.losses, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")

    def increase(self, intact: "LossStat") -> tuple[float, float]:
        """Loss increase over the intact model and its standard error (paired over the same batches)."""
        diff = np.subtract(self.losses, intact.losses)
        sem = float(np.std(diff, ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else float("nan")
        return float(diff.mean()), sem


@dataclass
class AblationStudy:
    intact: LossStat
    parts: list[LossStat]                            # one per removed part
    pruning: list[LossStat]                          # k = 0 .. N last blocks dropped
    settings: dict
    samples: list[dict] = field(default_factory=list)
    removals: dict[str, Ablation] = field(default_factory=dict, repr=False)   # name -> how it was removed

    def ranked(self) -> list[tuple[LossStat, float, float]]:
        """Parts sorted by how much their removal hurts, most first."""
        return sorted(((p, *p.increase(self.intact)) for p in self.parts), key=lambda r: -r[1])

    def table(self) -> str:
        rows = [[s.name, s.kind, f"{s.mean:.4f} ± {s.sem:.4f}", f"{inc:+.4f} ± {sem:.4f}"]
                for s, inc, sem in self.ranked()]
        head = f"intact model: validation loss {self.intact.mean:.4f} ± {self.intact.sem:.4f}\n"
        return head + text_table(["removed", "kind", "loss", "increase"], rows, right=[2, 3])

    def pruning_table(self) -> str:
        return text_table(["last blocks dropped", "loss"],
                          [[k, f"{s.mean:.4f} ± {s.sem:.4f}"] for k, s in enumerate(self.pruning)], right=[0, 1])

    def to_dict(self) -> dict:
        def stat(s: LossStat) -> dict:
            inc, inc_sem = s.increase(self.intact)
            return {"name": s.name, "kind": s.kind, "loss": s.mean, "sem": s.sem,
                    "increase": inc, "increase_sem": inc_sem, "batch_losses": s.losses}
        return {"settings": self.settings, "intact": stat(self.intact),
                "ablations": [stat(s) for s, _, _ in self.ranked()],
                "pruning": [{"dropped": k, **stat(s)} for k, s in enumerate(self.pruning)],
                "samples": self.samples}


# -- validation data --------------------------------------------------------------------------
def find_data_dir(run_dir: str | os.PathLike | None, data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: given explicitly, else recorded by training in run/train_config.json."""
    if data_dir is not None:
        return Path(data_dir)
    config = Path(run_dir) / "train_config.json" if run_dir is not None else None
    if config is not None and config.is_file():
        try:
            recorded = json.loads(config.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise GlassError(f"{config} is not valid JSON ({e.msg}): pass --data DATA_DIR") from e
        for key in ("data_dir", "data"):
            if isinstance(recorded.get(key), str):
                path = Path(recorded[key])
                return path if path.is_absolute() or path.exists() else Path(run_dir) / path
    raise GlassError(f"{run_dir} does not say where its data is (no data_dir in train_config.json): "
                     f"pass --data DATA_DIR (a directory with val.bin)")


def load_validation(data_dir: str | os.PathLike) -> np.ndarray:
    """val.bin as a read-only memmap of token ids; dtype from meta.json (default uint16)."""
    data_dir = Path(data_dir)
    val = data_dir / "val.bin"
    if not val.is_file() or val.stat().st_size == 0:
        raise GlassError(f"no validation data in {data_dir} (val.bin missing or empty): "
                         f"prepare the corpus with a validation split, or pass --data DATA_DIR")
    dtype = "uint16"
    meta = data_dir / "meta.json"
    if meta.is_file():
        dtype = json.loads(meta.read_text(encoding="utf-8")).get("dtype", dtype)
    return np.memmap(val, dtype=np.dtype(dtype), mode="r")


# -- the removals -----------------------------------------------------------------------------
def pass_through(source: str, target: str) -> dict[str, Edit]:
    """Edits making probe `target` return what probe `source` saw earlier in the same pass."""
    seen: dict[str, torch.Tensor] = {}

    def remember(x):
        seen["x"] = x
        return x
    return {source: remember, target: lambda x: seen["x"]}


def skip_block(i: int) -> dict[str, Edit]:
    return pass_through(f"blocks.{i}.resid_pre", f"blocks.{i}.resid_post")


def zero_head(h: int) -> Edit:
    def edit(z):                                     # z: (B, H, T, hd)
        z = z.clone()
        z[:, h] = 0
        return z
    return edit


def replace_head(h: int, mean: torch.Tensor) -> Edit:
    def edit(z):
        z = z.clone()
        z[:, h] = mean.to(z.dtype)                   # (hd,) broadcast over batch and positions
        return z
    return edit


def norm_to_identity(model, name: str) -> dict[str, Edit]:
    """Make LayerNorm probe `name` return its input (recovered from the probes before it)."""
    n = model.config.n_layer
    if name == "final_norm":
        return pass_through(f"blocks.{n - 1}.resid_post", "final_norm")
    _, i, which = name.split(".")                    # blocks.L.attn_norm | blocks.L.ff_norm
    if model.config.norm == "pre":                   # pre-LN: the norm reads the residual stream
        source = f"blocks.{i}.resid_pre" if which == "attn_norm" else f"blocks.{i}.resid_mid"
        return pass_through(source, name)
    # post-LN: the norm reads residual + sublayer output, the sum of two probes
    stream, sublayer = ((f"blocks.{i}.resid_pre", f"blocks.{i}.attn.out") if which == "attn_norm"
                        else (f"blocks.{i}.resid_mid", f"blocks.{i}.ff.out"))
    seen: dict[str, torch.Tensor] = {}

    def remember(key):
        def edit(x):
            seen[key] = x
            return x
        return edit
    return {stream: remember("stream"), sublayer: remember("sublayer"),
            name: lambda x: seen["stream"] + seen["sublayer"]}


@contextlib.contextmanager
def rope_disabled(model):
    """Run the same weights without rotating queries and keys."""
    saved = [block.attention.rotary for block in model.blocks]
    for block in model.blocks:
        block.attention.rotary = None
    try:
        yield
    finally:
        for block, rotary in zip(model.blocks, saved):
            block.attention.rotary = rotary


def ablations(model, head_means: torch.Tensor | None = None) -> list[Ablation]:
    """Every single-part removal for this model's architecture, in pipeline order.

    head_means: (L, H, hd) mean head outputs: heads are mean-ablated instead of zeroed.
    """
    cfg = model.config
    parts = []
    if cfg.positional in ("learned", "sinusoidal"):
        parts.append(Ablation("positional encoding", "positional", {"positional_encoding": torch.zeros_like}))
    elif cfg.positional == "rope":
        parts.append(Ablation("positional encoding (rope)", "positional", context=rope_disabled))
    for i in range(cfg.n_layer):
        parts.append(Ablation(f"block {i}", "block", skip_block(i)))
        for h in range(cfg.n_head):
            edit = zero_head(h) if head_means is None else replace_head(h, head_means[i, h])
            parts.append(Ablation(f"head {i}.{h}", "head", {f"blocks.{i}.attn.z": edit}))
        parts.append(Ablation(f"feed-forward {i}", "ff", {f"blocks.{i}.ff.out": torch.zeros_like}))
        for norm in ("attn_norm", "ff_norm"):
            name = f"blocks.{i}.{norm}"
            parts.append(Ablation(f"{norm} {i}", "norm", norm_to_identity(model, name)))
    if cfg.norm == "pre":                            # post-LN models have no separate final norm
        parts.append(Ablation("final_norm", "norm", norm_to_identity(model, "final_norm")))
    return parts



def removal(model, name: str) -> Ablation:
    """One part by its name in `ablations(model)` ("head 1.2", "feed-forward 0", "attn_norm 1",
    "block 0", "final_norm", "positional encoding"), or "attention L": block L's whole
    attention output zeroed (blocks.L.attn.out := 0)."""
    n = model.config.n_layer
    if name.startswith("attention "):
        layer = name.split(" ", 1)[1]
        if layer.isdigit() and int(layer) < n:
            return Ablation(name, "attn", {f"blocks.{layer}.attn.out": torch.zeros_like})
    for part in ablations(model):
        if part.name == name:
            return part
    raise GlassError(f"no part named {name!r} in this model: parts look like 'head 0.1', 'attention 0', "
                     f"'feed-forward 0', 'attn_norm 0', 'ff_norm 0', 'block 0', 'final_norm' "
                     f"(layers 0 .. {n - 1}, heads 0 .. {model.config.n_head - 1})")


def removed(model, names) -> Ablation:
    """Several parts out at once: their edits composed probe by probe (two heads of one
    layer edit the same blocks.L.attn.z, one after the other)."""
    parts = [removal(model, name) for name in dict.fromkeys(names)]
    edits: dict[str, Edit] = {}
    for part in parts:
        for probe, edit in part.edits.items():
            before = edits.get(probe)
            edits[probe] = edit if before is None else (lambda x, f=before, g=edit: g(f(x)))
    contexts = [p.context for p in parts if p.context is not None]

    @contextlib.contextmanager
    def context(model):
        with contextlib.ExitStack() as stack:
            for c in contexts:
                stack.enter_context(c(model))
            yield
    return Ablation(" + ".join(p.name for p in parts) or "intact", "none" if not parts else
                    parts[0].kind if len(parts) == 1 else "several", edits, context if contexts else None)

def pruned(model, k: int) -> Ablation:
    """The last k blocks skipped."""
    n = model.config.n_layer
    edits: dict[str, Edit] = {}
    for i in range(n - k, n):
        edits.update(skip_block(i))
    return Ablation(f"last {k} blocks dropped", "prune", edits)


# -- measuring --------------------------------------------------------------------------------
def first_block(model, ablation: Ablation) -> int:
    """The first block an ablation touches: everything before it is the same as intact.
    0 for edits before the blocks or changes to the model (rope), N for the final norm."""
    if ablation.context is not None:
        return 0
    starts = [model.config.n_layer]
    for name in ablation.edits:
        parts = name.split(".")
        starts.append(int(parts[1]) if parts[0] == "blocks" else
                      model.config.n_layer if name in ("final_norm", "logits") else 0)
    return min(starts)


def blocks_from(model, start: int, resid: torch.Tensor) -> torch.Tensor:
    """Blocks start.. of GPT.forward, given the residual stream entering block `start`
    (a fresh causal sequence): (B, T, C) -> the stream leaving the last block. Probes apply."""
    positions = torch.arange(resid.shape[1], device=resid.device)
    x = resid                                                                # (B, T, C)
    for block in model.blocks[start:]:
        x = block(x, positions, None)
    return x


def forward_from(model, start: int, resid: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The tail of GPT.forward from block `start`, given the residual stream entering it:
    blocks start.. -> final norm -> unembed -> mean cross-entropy. Probes apply as usual."""
    return cross_entropy(model.head(blocks_from(model, start, resid)), targets)


def measure(model, batches, parts: list[Ablation], bar=None) -> tuple[list[float], list[list[float]]]:
    """Intact loss per batch, and the loss per batch with each part removed.

    The intact pass keeps the residual stream entering every block; an ablation that
    first touches block L starts from there instead of recomputing blocks 0 .. L-1
    (the same numbers, bit for bit, at a fraction of the cost).
    """
    n = model.config.n_layer
    starts = [first_block(model, a) for a in parts]
    intact, losses = [], [[] for _ in parts]
    read = [f"blocks.{i}.resid_pre" for i in range(n)] + [f"blocks.{n - 1}.resid_post"]
    with torch.no_grad(), evaluating(model):
        for x, y in batches:
            x, y = x.to(model.device), y.to(model.device)
            with model.probing(read=read) as probes:
                intact.append(model(x, y).loss.item())
            entering = [probes[name] for name in read]                        # N + 1 x (B, T, C)
            _tick(bar, "intact")
            for ablation, start, out in zip(parts, starts, losses):
                context = ablation.context(model) if ablation.context else contextlib.nullcontext()
                with context, model.probing(edit=ablation.edits):
                    loss = model(x, y).loss if start == 0 else forward_from(model, start, entering[start], y)
                out.append(loss.item())
                _tick(bar, ablation.name)
    return intact, losses


def _tick(bar, name: str) -> None:
    if bar is not None:
        bar.set_postfix_str(name, refresh=False)
        bar.update(1)


def mean_head_outputs(model, batches) -> torch.Tensor:
    """Each head's output averaged over every validation token: (L, H, hd)."""
    n = model.config.n_layer
    total, count = 0.0, 0
    with torch.no_grad(), evaluating(model):
        for x, _ in batches:
            with model.probing(read="blocks.*.attn.z") as probes:
                model(x.to(model.device))
            total = total + torch.stack([probes[f"blocks.{i}.attn.z"].float().sum(dim=(0, 2))
                                         for i in range(n)])                 # (L, H, hd)
            count += x.numel()
    return total / count


def ablation_study(model, val_tokens: np.ndarray, *, batches: int = 20, batch_size: int = 4,
                   seq_len: int | None = None, mean_ablate: bool = False, seed: int = 0,
                   progress: bool = True) -> AblationStudy:
    """Validation loss of the intact model and with each part removed, on the same batches.

        study = ablation_study(model, load_validation("data/shakespeare"))
        print(study.table())
    """
    seq_len = min(seq_len or model.config.context_length, len(val_tokens) - 1)   # short data: shorter windows
    if seq_len < 1:
        raise GlassError(f"the validation data has {len(val_tokens)} tokens: need at least 2")
    fixed = fixed_batches(val_tokens, batches, batch_size, seq_len, torch.device("cpu"), seed)
    n = model.config.n_layer
    means = mean_head_outputs(model, fixed) if mean_ablate else None
    parts = ablations(model, means)
    prunes = [pruned(model, k) for k in range(1, n + 1)]
    with tqdm(total=len(fixed) * (1 + len(parts) + n), desc="ablation", unit="pass",
              disable=not progress, dynamic_ncols=True) as bar:
        intact_losses, losses = measure(model, fixed, parts + prunes, bar)
    intact = LossStat("intact", "none", intact_losses)
    stats = [LossStat(a.name, a.kind, l) for a, l in zip(parts + prunes, losses)]
    settings = {"batches": len(fixed), "batch_size": batch_size, "seq_len": fixed[0][0].shape[1],
                "seed": seed, "mean_ablate": mean_ablate, "tokens_per_measurement": sum(x.numel() for x, _ in fixed)}
    return AblationStudy(intact, stats[:len(parts)], [intact] + stats[len(parts):], settings,
                         removals={a.name: a for a in parts + prunes})


def sample_generations(model, study: AblationStudy, val_tokens: np.ndarray, n: int, max_new_tokens: int = 60,
                       worst: int = 5, prompt_tokens: int = 16, temperature: float = 0.8, seed: int = 0) -> list[dict]:
    """Continuations of `n` validation prompts from the intact model and from the `worst` most
    damaging ablations, with the same seed, so a person can read what broke."""
    from ..generate import generate        # the sampler chain and decoding loop live there
    if model.tokenizer is None:
        raise GlassError("samples need the run's tokenizer.json to show text")
    g = np.random.default_rng(seed)
    length = min(prompt_tokens, len(val_tokens) - 1)
    prompts = [np.asarray(val_tokens[s:s + length], dtype=np.int64).tolist()
               for s in g.integers(0, len(val_tokens) - length, size=n)]
    chosen = [None] + [study.removals[s.name] for s, _, _ in study.ranked()[:worst]]
    out = []
    for ablation in chosen:
        context = ablation.context(model) if ablation and ablation.context else contextlib.nullcontext()
        samples = []
        with context, model.probing(edit=ablation.edits if ablation else None):
            for i, prompt in enumerate(prompts):
                gen = generate(model, prompt, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed + i)[0]
                samples.append({"prompt": model.tokenizer.decode(prompt), "continuation": gen.text})
        out.append({"ablation": ablation.name if ablation else "intact", "samples": samples})
    return out
