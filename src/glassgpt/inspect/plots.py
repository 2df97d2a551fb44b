"""PNG figures (matplotlib, Agg backend): attention heatmaps, the logit lens, ablation bars
and the layer-pruning curve. Each function writes one file and returns its path."""
from __future__ import annotations

import os
from pathlib import Path


from matplotlib.patches import Rectangle

from ..figures import subplots
from ..fileio import atomic_path
from .render import visible

LABELLED_TOKENS = 64        # beyond this many tokens, axis labels would overlap: show positions


def _save(fig, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def _token_axes(ax, tokens, x: bool = True, y: bool = True, size: int = 7) -> None:
    if len(tokens) > LABELLED_TOKENS:
        return
    labels = [visible(t) for t in tokens]
    if x:
        ax.set_xticks(range(len(tokens)), labels, rotation=90, fontsize=size)
    if y:
        ax.set_yticks(range(len(tokens)), labels, fontsize=size)


def attention_heatmap(pattern, tokens: list[str], path: str | os.PathLike, title: str = "") -> Path:
    """One head's (T, T) attention: row = the query token, column = the key it reads."""
    T = len(tokens)
    side = min(max(4.0, 0.22 * T + 2), 18)
    fig, ax = subplots(figsize=(side, side))
    im = ax.imshow(pattern, cmap="Blues", vmin=0, vmax=1)
    _token_axes(ax, tokens)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    return _save(fig, path)


def attention_grid(attention, tokens: list[str], path: str | os.PathLike) -> Path:
    """Every layer x head pattern in one grid (rows: layers, columns: heads)."""
    L, H = attention.shape[:2]
    fig, axes = subplots(L, H, figsize=(2.2 * H + 1, 2.2 * L + 0.5), squeeze=False)
    for l in range(L):
        for h in range(H):
            ax = axes[l][h]
            ax.imshow(attention[l, h], cmap="Blues", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if l == 0:
                ax.set_title(f"head {h}", fontsize=9)
            if h == 0:
                ax.set_ylabel(f"layer {l}", fontsize=9)
    fig.suptitle(f"attention patterns: {len(tokens)} tokens (query rows, key columns)")
    return _save(fig, path)


def lens_heatmap(lens, path: str | os.PathLike) -> Path:
    """Per depth (rows) and position (columns): p(final prediction), annotated with the top token."""
    depth, T = lens.final_prob.shape
    fig, ax = subplots(figsize=(min(max(6.0, 0.45 * T + 2), 30), 0.5 * depth + 2))
    im = ax.imshow(lens.final_prob, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    if T <= LABELLED_TOKENS:
        for l in range(depth):
            for t in range(T):
                ax.text(t, l, visible(lens.top_tokens[l][t])[:6], ha="center", va="center", fontsize=6,
                        color="white" if lens.final_prob[l, t] < 0.6 else "black")
    _token_axes(ax, lens.tokens, y=False)
    ax.set_yticks(range(depth), lens.layers, fontsize=8)
    ax.set_xlabel("input token (the prediction is for the token after it)")
    ax.set_title("logit lens: text = top token at that depth, colour = p(final prediction)")
    fig.colorbar(im, ax=ax, label="probability of the final prediction")
    return _save(fig, path)


KIND_COLOURS = {"block": "tab:red", "head": "tab:blue", "ff": "tab:orange", "norm": "tab:green",
                "positional": "tab:purple"}


def ablation_bars(study, path: str | os.PathLike) -> Path:
    """Loss increase with each part removed, largest at the top, with standard-error bars."""
    ranked = study.ranked()
    fig, ax = subplots(figsize=(8, max(3.0, 0.2 * len(ranked) + 1.5)))
    y = range(len(ranked))
    ax.barh(y, [inc for _, inc, _ in ranked], xerr=[sem for _, _, sem in ranked],
            color=[KIND_COLOURS.get(s.kind, "gray") for s, _, _ in ranked], error_kw={"elinewidth": 0.8})
    ax.set_yticks(y, [s.name for s, _, _ in ranked], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"validation loss increase (intact: {study.intact.mean:.3f} nats/token)")
    ax.set_title("what breaks without each part")
    handles = [Rectangle((0, 0), 1, 1, color=c) for c in KIND_COLOURS.values()]
    ax.legend(handles, KIND_COLOURS.keys(), loc="lower right", fontsize=8)
    return _save(fig, path)


def pruning_curve(study, path: str | os.PathLike) -> Path:
    """Validation loss as the last k blocks are dropped."""
    ks = range(len(study.pruning))
    fig, ax = subplots(figsize=(6, 4))
    ax.errorbar(ks, [s.mean for s in study.pruning], yerr=[s.sem for s in study.pruning],
                marker="o", capsize=3)
    ax.set_xticks(list(ks))
    ax.set_xlabel("last k blocks dropped")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title("layer pruning")
    ax.grid(alpha=0.3)
    return _save(fig, path)
