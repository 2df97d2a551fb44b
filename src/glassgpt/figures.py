"""Figures without pyplot: drawn on matplotlib.figure.Figure and written with the Agg canvas,
so glassgpt never changes the user's matplotlib backend (a notebook keeps its inline plots)."""
from __future__ import annotations

from matplotlib.figure import Figure


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, dpi=None, **kwargs):
    """pyplot.subplots' (figure, axes), on a Figure of its own that no backend knows about."""
    fig = Figure(figsize=figsize, dpi=dpi)
    return fig, fig.subplots(nrows, ncols, **kwargs)
