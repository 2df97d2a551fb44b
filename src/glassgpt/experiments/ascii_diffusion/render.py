"""Frames drawn side by side as a PNG, one row per sequence, noise characters in red.

Characters are placed on a fixed grid with a monospace font (DejaVu Sans Mono, shipped
with matplotlib), so the picture reads as it would in a terminal.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ...fileio import atomic_path

FONT_SIZE = 14
PAD = 12


def _font(size: int = FONT_SIZE) -> ImageFont.FreeTypeFont:
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSansMono.ttf"), size,
                              layout_engine=ImageFont.Layout.BASIC)


def render_sequences(sequences: list[tuple[str, list[tuple[str, list[str]]]]], charset: frozenset[str] | None,
                     path: str | Path) -> Path:
    """sequences: [(label, [(frame title, rows), ...]), ...] -> one PNG."""
    font, small = _font(), _font(11)
    cw = round(font.getlength("M"))
    ch = FONT_SIZE + 3
    def panel_width(rows, title):
        return max(max((len(r) for r in rows), default=1) * cw, round(small.getlength(title))) + PAD
    widths = [sum(panel_width(rows, t) for t, rows in frames) for _, frames in sequences]
    heights = [max((len(rows) for _, rows in frames), default=1) * ch + 2 * ch for _, frames in sequences]
    image = Image.new("RGB", (max(widths, default=100) + 2 * PAD, sum(heights) + 2 * PAD), "white")
    draw = ImageDraw.Draw(image)
    y = PAD
    for (label, frames), height in zip(sequences, heights):
        draw.text((PAD, y), label, fill="black", font=small)
        x = PAD
        for title, rows in frames:
            draw.text((x, y + ch), title, fill="dimgray", font=small)
            w = max((len(r) for r in rows), default=1)
            top = y + 2 * ch
            draw.rectangle((x - 2, top - 2, x + w * cw + 2, top + len(rows) * ch + 2), outline="lightgray")
            for r, row in enumerate(rows):
                for c, char in enumerate(row):
                    noisy = charset is not None and char not in charset
                    shown = char if char.isprintable() else "?"      # a model may write control characters
                    draw.text((x + c * cw, top + r * ch), shown, font=font, fill="red" if noisy else "black")
            x += panel_width(rows, title)
        y += height
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path
