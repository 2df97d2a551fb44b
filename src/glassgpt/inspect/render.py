"""Showing tokens to a person: coloured text in a terminal (ANSI) or in Jupyter (HTML), and
plain-text tables.

Colour always means "how much": white for nothing, deepening to red for the most (the
most surprising token, the context token a prediction depends on most). The scale is a
background colour with dark text, so it reads on light and dark terminals alike.
"""
from __future__ import annotations

import html
import math
import os
import sys
from typing import Sequence

from ..tokenizer.base import visible  # noqa: F401 (one display of a token, re-exported)

# xterm-256 backgrounds from white to red: 231 white, 224 ... 196 pure red
ANSI_RAMP = (231, 224, 217, 210, 203, 196)
RESET = "\033[0m"


def use_color(stream=None) -> bool:
    """Colour only for a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    stream = stream if stream is not None else sys.stdout
    return "NO_COLOR" not in os.environ and hasattr(stream, "isatty") and stream.isatty()


def scale(values: Sequence[float], top: float | None = None) -> list[float]:
    """Values mapped to [0, 1] by dividing by `top` (default: the largest), clipped."""
    top = top if top is not None else max([v for v in values if math.isfinite(v)] or [0.0])
    return [min(max(v / top, 0.0), 1.0) if top > 0 and v == v else 0.0 for v in values]


# -- terminal ------------------------------------------------------------------------------
def ansi_tokens(tokens: Sequence[str], heat: Sequence[float], color: bool = True,
                mark: int | None = None) -> str:
    """Tokens concatenated as text, each on a background whose redness is its heat in [0, 1].

    `mark` underlines one token (e.g. the position being predicted). Newlines stay newlines.
    Without colour the text is returned plain, with the marked token in [brackets].
    """
    out = []
    for i, (token, h) in enumerate(zip(tokens, heat)):
        text = token.replace("\n", "↵\n")
        if not color:
            out.append(f"[{text}]" if i == mark else text)
            continue
        code = ANSI_RAMP[min(int(h * len(ANSI_RAMP)), len(ANSI_RAMP) - 1)]
        underline = ";4" if i == mark else ""
        # colour each line separately so a newline does not drag the background along
        out.append("\n".join(f"\033[30;48;5;{code}{underline}m{part}{RESET}" if part else ""
                             for part in text.split("\n")))
    return "".join(out)


def ansi_legend(label: str, top: float, color: bool = True) -> str:
    if not color:
        return f"(colour: {label}, 0 .. {top:.3g})"
    swatches = "".join(f"\033[48;5;{c}m  {RESET}" for c in ANSI_RAMP)
    return f"{label}: 0 {swatches} {top:.3g}"


def text_table(headers: Sequence[str], rows: Sequence[Sequence], right: Sequence[int] = ()) -> str:
    """A plain aligned table; columns whose index is in `right` are right-aligned (numbers)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


# -- Jupyter -------------------------------------------------------------------------------
def html_tokens(tokens: Sequence[str], heat: Sequence[float], titles: Sequence[str] | None = None,
                mark: int | None = None) -> str:
    """Tokens as inline spans on a white-to-red background; `titles` show on hover."""
    spans = []
    for i, (token, h) in enumerate(zip(tokens, heat)):
        style = f"background: rgba(220, 30, 30, {0.85 * h:.3f}); white-space: pre-wrap"
        if i == mark:
            style += "; outline: 2px solid #333"
        title = f' title="{html.escape(titles[i])}"' if titles else ""
        spans.append(f'<span style="{style}"{title}>{html.escape(token)}</span>')
    return f'<div style="font-family: monospace; line-height: 1.8">{"".join(spans)}</div>'


def trace_html(trace, k: int = 5, max_rows: int = 512) -> str:
    """A trace as HTML: the text coloured by surprisal, then a table per position."""
    rows = trace.rows(k=k)
    surprisal = [r["next"]["surprisal_bits"] if "next" in r else float("nan") for r in rows]
    # token t is coloured by how surprising it was, i.e. by row t - 1's next-token surprisal
    heat = scale([float("nan")] + surprisal[:-1])
    titles = [f"surprisal {s:.2f} bits" for s in [float("nan")] + surprisal[:-1]]
    head = (f"<p><b>{len(trace.ids)} tokens</b>, perplexity {trace.perplexity:.2f}"
            + (f" &mdash; <i>truncated: the first {trace.dropped} tokens did not fit the context</i>"
               if trace.truncated else "") + "</p>")
    cells = []
    for r in rows[:max_rows]:
        nxt = r.get("next")
        alts = ", ".join(f"{html.escape(repr(a['token']))} {a['prob']:.3f}" for a in r["top"])
        cells.append(
            "<tr>" + "".join(f"<td>{c}</td>" for c in (
                r["position"], html.escape(repr(r["token"])),
                html.escape(repr(nxt["token"])) if nxt else "", f"{nxt['prob']:.4f}" if nxt else "",
                nxt["rank"] if nxt else "", f"{nxt['surprisal_bits']:.2f}" if nxt else "",
                f"{r['entropy_bits']:.2f}", alts)) + "</tr>")
    header = "".join(f"<th>{h}</th>" for h in ("pos", "token", "next", "p(next)", "rank",
                                                "surprisal (bits)", "entropy (bits)", f"top {k}"))
    return (head + html_tokens(trace.tokens, heat, titles)
            + f'<table style="font-family: monospace"><tr>{header}</tr>{"".join(cells)}</table>')


def trace_report(t, temperature: float = 1.0, k: int = 5, color: bool = True) -> str:
    """A trace for the terminal: the text coloured by surprisal, then one row per position."""
    rows = t.rows(temperature, k=k)
    surprisal = [float("nan")] + [r["next"]["surprisal_bits"] for r in rows[:-1]]   # token t's own surprise
    finite = [s for s in surprisal if math.isfinite(s)]
    summary = (f"{len(t.ids)} tokens, perplexity {t.perplexity:.2f}"
               + (f" (the first {t.dropped} tokens did not fit the context)" if t.truncated else "")
               + (f", distributions at temperature {temperature:g}" if temperature != 1 else ""))
    return "\n".join([ansi_tokens(t.tokens, scale(surprisal), color),
                      ansi_legend("surprisal, bits", max(finite or [0.0]), color),
                      summary, "", position_table(rows, k)])


def position_table(rows: list[dict], k: int) -> str:
    """Per position: the token, the actual next token with its probability, rank and
    surprisal, the entropy of the prediction and the top-k alternatives."""
    table = []
    for r in rows:
        nxt = r.get("next")
        alts = "  ".join(f"{visible(a['token'])} {a['prob']:.3f}" for a in r["top"][:k])
        table.append([r["position"], visible(r["token"]), visible(nxt["token"]) if nxt else "",
                      f"{nxt['prob']:.4f}" if nxt else "", nxt["rank"] if nxt else "",
                      f"{nxt['surprisal_bits']:.2f}" if nxt else "", f"{r['entropy_bits']:.2f}", alts])
    return text_table(["pos", "token", "next", "p(next)", "rank", "surprisal bits", "entropy bits", f"top {k}"],
                      table, right=[0, 3, 4, 5, 6])
