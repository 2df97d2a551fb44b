"""The study's figures, drawn on matplotlib.figure.Figure (no pyplot, no global state)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

COLOURS = {"original": "black", "pruned (paper)": "tab:blue", "pruned (naive)": "tab:orange",
           "pruned + healed": "tab:green", "baseline (trained)": "tab:red", "baseline (given)": "tab:purple"}


def plot_angular(results: dict, path: Path) -> None:
    """Heatmap of d(x_l, x_{l+n}) over start block l (x) and block count n (y); the paper's
    choice for each n boxed."""
    d = np.array(results["angular_distances"], dtype=np.float64)          # (N, N): [n - 1, l]
    n_layer = d.shape[0]
    fig = Figure(figsize=(max(5.0, 1.6 + 0.8 * n_layer), max(3.8, 1.2 + 0.6 * n_layer)))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(d), origin="lower", cmap="viridis", aspect="auto",
                      extent=(-0.5, n_layer - 0.5, 0.5, n_layer + 0.5))
    for n in range(1, n_layer + 1):
        row = d[n - 1]
        best = int(np.nanargmin(row))
        for l in range(n_layer - n + 1):
            ax.text(l, n, f"{row[l]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if row[l] < np.nanmean(d) else "black")
        if n < n_layer:
            ax.add_patch(_box(best, n))
    ax.set_xticks(range(n_layer))
    ax.set_yticks(range(1, n_layer + 1))
    ax.set_xlabel("start block l")
    ax.set_ylabel("blocks dropped n")
    ax.set_title("angular distance between the streams entering l and l + n\n(boxed: the start the paper drops)",
                 fontsize=9)
    fig.colorbar(image, ax=ax, label="arccos(cos) / π")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _box(l: int, n: int):
    from matplotlib.patches import Rectangle
    return Rectangle((l - 0.5, n - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2)


def plot_accuracy_vs_cross_entropy(results: dict, path: Path) -> None:
    """One panel per task and one for the mean over tasks: acc_norm (filled) and acc (hollow)
    against cross-entropy, one point per model, chance as a dashed line."""
    tasks = [t["name"] for t in results["tasks"]]
    panels = tasks + (["mean over tasks"] if len(tasks) > 1 else [])
    cols = min(2, len(panels))
    rows = int(np.ceil(len(panels) / cols))
    fig = Figure(figsize=(5.6 * cols, 4.2 * rows))
    models = [m for m in results["models"] if not m.get("same_as")]
    for k, panel in enumerate(panels):
        ax = fig.add_subplot(rows, cols, k + 1)
        for m in models:
            if panel in results["chance"]:
                acc, acc_norm = m["tasks"][panel]["acc"], m["tasks"][panel]["acc_norm"]
            else:
                acc, acc_norm = m["mean_acc"], m["mean_acc_norm"]
            colour = COLOURS.get(m["kind"], "gray")
            x = m["cross_entropy"]
            ax.scatter([x], [acc_norm], color=colour, s=36, zorder=3)
            ax.scatter([x], [acc], facecolors="none", edgecolors=colour, s=36, zorder=3)
            ax.plot([x, x], [acc, acc_norm], color=colour, lw=0.6, alpha=0.5)
            ax.annotate(m["model"], (x, acc_norm), fontsize=6, xytext=(3, 3), textcoords="offset points")
        chance = results["chance"].get(panel, results["mean_chance"])
        ax.axhline(chance, color="gray", ls="--", lw=0.8)
        ax.text(ax.get_xlim()[0], chance, " chance", fontsize=7, va="bottom", color="gray")
        ax.set_xlabel("cross-entropy on held-out text (nats/token)")
        ax.set_ylabel("accuracy")
        ax.set_title(panel, fontsize=9)
    handles = [_legend_dot(ax, c, label) for label, c in COLOURS.items() if any(m["kind"] == label for m in models)]
    handles += [_legend_dot(ax, "gray", "acc_norm (filled)"), _legend_dot(ax, "gray", "acc (hollow)", hollow=True)]
    fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize=7, frameon=False)
    fig.suptitle("multiple-choice accuracy against cross-entropy: one point per model", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 0.97))
    fig.savefig(path, dpi=110)


def _legend_dot(ax, colour, label, hollow=False):
    return ax.scatter([], [], color=None if hollow else colour, facecolors="none" if hollow else colour,
                      edgecolors=colour, s=30, label=label)


def plot_cross_entropy_vs_parameters(results: dict, path: Path) -> None:
    """Cross-entropy against parameter count (log scale): are the pruned models worse than
    smaller models trained from scratch?"""
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    for m in results["models"]:
        if m.get("same_as"):
            continue
        colour = COLOURS.get(m["kind"], "gray")
        ax.errorbar([m["params"]], [m["cross_entropy"]], yerr=[m["cross_entropy_se"]], fmt="o", color=colour,
                    capsize=2, label=m["kind"])
        ax.annotate(m["model"], (m["params"], m["cross_entropy"]), fontsize=6, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("cross-entropy on held-out text (nats/token)")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=7)
    ax.set_title("cross-entropy against size", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
