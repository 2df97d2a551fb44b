"""Figures for the interpretability lab, drawn on a plain matplotlib Figure (no pyplot, no
global backend switch): a labelled heatmap and a horizontal bar chart. Callers save them
with `save_png`, which writes atomically."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..fileio import atomic_path
from .render import visible

MAX_LABELS = 64            # beyond this many rows/columns, tick labels would overlap


def heatmap_figure(values, rows: Sequence[str], columns: Sequence[str], *, title: str = "",
                   xlabel: str = "", ylabel: str = "", colorbar: str = "", diverging: bool = True,
                   annotate: bool | None = None, panels: int = 1, shared_scale: bool = True) -> Figure:
    """One heatmap (values: (R, K) array-like), or `panels` side by side when values is
    (panels, R, K) with titles given as a list. Diverging colours centre on 0 (patching:
    blue = pushes towards clean, red = away); sequential ones start at 0. Panels share one
    colour scale unless shared_scale=False."""
    import numpy as np

    data = np.asarray(values, dtype=float)
    stack = data if panels > 1 else data[None]
    titles = list(title) if panels > 1 else [title]
    R, K = stack.shape[1:]
    annotate = (R * K <= 150) if annotate is None else annotate
    fig = Figure(figsize=(panels * min(max(4.0, 0.38 * K + 2.5), 18), min(max(3.0, 0.38 * R + 1.8), 16)),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    for ax, grid, name in zip(axes, stack, titles):
        finite = (stack if shared_scale else grid)[np.isfinite(stack if shared_scale else grid)]
        top = float(np.abs(finite).max()) if finite.size else 1.0
        top = top if top > 0 else 1.0
        if diverging:
            image = ax.imshow(grid, cmap="RdBu", vmin=-top, vmax=top, aspect="auto")
        else:
            image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=max(top, 1e-9), aspect="auto")
        if annotate:
            for r in range(R):
                for k in range(K):
                    if np.isfinite(grid[r, k]):
                        strong = abs(grid[r, k]) > 0.6 * top
                        ax.text(k, r, f"{grid[r, k]:.2f}", ha="center", va="center", fontsize=6,
                                color=("white" if strong else "black") if diverging else
                                ("black" if grid[r, k] > 0.6 * top else "white"))
        if K <= MAX_LABELS:
            ax.set_xticks(range(K), [visible(c) for c in columns], rotation=90, fontsize=7)
        if R <= MAX_LABELS:
            ax.set_yticks(range(R), [visible(r) for r in rows], fontsize=7)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(name, fontsize=10)
        fig.colorbar(image, ax=ax, label=colorbar, shrink=0.8)
    return fig


def bar_figure(names: Sequence[str], values: Sequence[float], *, title: str = "", xlabel: str = "") -> Figure:
    """Horizontal bars, first name at the top; positive blue, negative red."""
    fig = Figure(figsize=(7, max(2.5, 0.22 * len(names) + 1.2)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    y = range(len(names))
    ax.barh(y, values, color=["tab:blue" if v >= 0 else "tab:red" for v in values])
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    return fig


def save_png(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path
