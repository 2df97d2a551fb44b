"""loss.png: training and validation loss against step, redrawn at every evaluation."""
from __future__ import annotations

from pathlib import Path


from ..figures import subplots
from ..fileio import atomic_path


def plot_losses(records: list[dict], path: Path, title: str = "") -> None:
    """Plot the `train_loss` and `val_loss` records of a run's log."""
    train = [(r["step"], r["train_loss"]) for r in records if "train_loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train", color="tab:blue", linewidth=1, alpha=0.8)
    if val:
        ax.plot(*zip(*val), label="validation", color="tab:orange", marker="o", markersize=3, linewidth=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.set_title(title or "loss")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
