"""Pictures to turn into ASCII art: built-in ones drawn with Pillow, images, text art.

An `Art` can be rendered as a character grid at any width × height, which is what the
builder needs to resample the same picture onto a growing canvas:

    Art.from_image(pil_image)   brightness -> character ramp (dark = ' ', bright = '@')
    Art.from_text(text)         existing ASCII art, resampled by nearest neighbour
    draw(kind, rng)             a procedurally drawn picture of one of KINDS

Built-in kinds are split so a trained model can be tested on kinds it never saw.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from ...errors import GlassError

RAMP = " .:-=+*#%@"           # dark to bright
CANVAS = (96, 64)             # pixels a built-in picture is drawn at (3:2, like a 12x8 canvas)


@dataclass(frozen=True)
class Art:
    """A picture that can be rendered as rows of characters at any size."""
    image: Image.Image | None = None        # grayscale source, or
    rows: tuple[str, ...] | None = None     # a character grid source
    ramp: str = RAMP
    name: str = "art"

    @classmethod
    def from_image(cls, image: Image.Image, ramp: str = RAMP, name: str = "image") -> "Art":
        return cls(image=image.convert("L"), ramp=ramp, name=name)

    @classmethod
    def from_text(cls, text: str, name: str = "text art") -> "Art":
        rows = text.expandtabs(4).rstrip("\n").split("\n")
        width = max((len(r) for r in rows), default=0)
        if not width:
            raise GlassError(f"{name} is empty: give a text file with ASCII art in it")
        return cls(rows=tuple(r.ljust(width) for r in rows), ramp="".join(sorted(set("".join(rows)))),
                   name=name)

    @property
    def charset(self) -> frozenset[str]:
        """The characters a clean rendering can contain."""
        return frozenset(self.ramp)

    @property
    def size(self) -> tuple[int, int]:
        if self.rows is not None:
            return len(self.rows[0]), len(self.rows)
        return self.image.size

    def at_size(self, width: int, height: int) -> list[str]:
        """The picture as `height` rows of `width` characters."""
        if self.rows is not None:
            src_w, src_h = self.size
            return ["".join(self.rows[(y * src_h) // height][(x * src_w) // width] for x in range(width))
                    for y in range(height)]
        small = self.image.resize((width, height), Image.Resampling.BOX)   # mean brightness per cell
        pixels = small.tobytes()                                             # one byte per cell
        last = len(self.ramp) - 1
        chars = [self.ramp[min(last, round(v / 255 * last))] for v in pixels]
        return ["".join(chars[y * width:(y + 1) * width]) for y in range(height)]


def load_art(path: str | Path, max_width: int = 200) -> Art:
    """An image file (PNG, JPEG, ...) or a text file of ASCII art."""
    path = Path(path)
    if not path.is_file():
        raise GlassError(f"{path} does not exist: give an image or a text file of ASCII art")
    if path.suffix.lower() in (".txt", ".asc", ".ascii", ".art"):
        try:
            art = Art.from_text(path.read_text(encoding="utf-8"), name=path.name)
        except UnicodeDecodeError:
            raise GlassError(f"{path} is not UTF-8 text: give a text file of ASCII art") from None
        if art.size[0] > max_width:
            raise GlassError(f"{path} is {art.size[0]} characters wide, more than the limit {max_width}: "
                             f"crop it or raise --max-art-width")
        return art
    try:
        with Image.open(path) as image:
            image.load()
            return Art.from_image(image, name=path.name)
    except (UnidentifiedImageError, OSError) as e:
        raise GlassError(f"{path} cannot be read as an image ({type(e).__name__}): give a PNG or JPEG, "
                         f"or a .txt file of ASCII art") from None


# -- built-in pictures, drawn with Pillow ----------------------------------------------------------
def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("L", CANVAS, 0)
    return image, ImageDraw.Draw(image)


def _box(rng: random.Random, min_frac: float = 0.45, max_frac: float = 0.95) -> tuple[int, int, int, int]:
    """A random bounding box inside the canvas."""
    w, h = CANVAS
    bw, bh = int(w * rng.uniform(min_frac, max_frac)), int(h * rng.uniform(min_frac, max_frac))
    x0, y0 = rng.randint(0, w - bw), rng.randint(0, h - bh)
    return x0, y0, x0 + bw, y0 + bh


def _shade(rng: random.Random) -> int:
    return rng.randint(150, 255)


def draw_disc(rng):
    image, d = _canvas()
    d.ellipse(_box(rng), fill=_shade(rng))
    return image


def draw_rectangle(rng):
    image, d = _canvas()
    d.rectangle(_box(rng), fill=_shade(rng))
    return image


def draw_triangle(rng):
    image, d = _canvas()
    x0, y0, x1, y1 = _box(rng)
    apex = rng.uniform(x0, x1)
    points = [(apex, y0), (x0, y1), (x1, y1)] if rng.random() < 0.5 else [(apex, y1), (x0, y0), (x1, y0)]
    d.polygon(points, fill=_shade(rng))
    return image


def draw_stripes(rng):
    image, d = _canvas()
    w, h = CANVAS
    period = rng.randint(12, 24)
    horizontal = rng.random() < 0.5
    for k in range(0, (h if horizontal else w), period):
        box = (0, k, w, k + period // 2) if horizontal else (k, 0, k + period // 2, h)
        d.rectangle(box, fill=_shade(rng))
    return image


def draw_gradient(rng):
    w, h = CANVAS
    angle = rng.uniform(0, 2 * math.pi)
    cx, cy = math.cos(angle), math.sin(angle)
    span = abs(cx) * w + abs(cy) * h
    values = [int(255 * (((x - w / 2) * cx + (y - h / 2) * cy) / span + 0.5)) for y in range(h) for x in range(w)]
    image = Image.new("L", CANVAS)
    image.putdata([min(255, max(0, v)) for v in values])
    return image


def draw_letter(rng, alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ"):
    """A glyph of Pillow's built-in default font."""
    image, d = _canvas()
    font = ImageFont.load_default(size=CANVAS[1] * 1.1)
    char = rng.choice(alphabet)
    left, top, right, bottom = d.textbbox((0, 0), char, font=font)
    x = (CANVAS[0] - (right - left)) / 2 - left + rng.randint(-10, 10)
    y = (CANVAS[1] - (bottom - top)) / 2 - top
    d.text((x, y), char, fill=_shade(rng), font=font)
    return image


def draw_digit(rng):
    return draw_letter(rng, alphabet="0123456789")


def draw_ring(rng):
    image, d = _canvas()
    d.ellipse(_box(rng, 0.6), outline=_shade(rng), width=rng.randint(6, 10))
    return image


def draw_cross(rng):
    image, d = _canvas()
    x0, y0, x1, y1 = _box(rng, 0.6)
    width, shade = rng.randint(8, 14), _shade(rng)
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    d.rectangle((x0, cy - width // 2, x1, cy + width // 2), fill=shade)
    d.rectangle((cx - width // 2, y0, cx + width // 2, y1), fill=shade)
    return image


def draw_frame(rng):
    image, d = _canvas()
    d.rectangle(_box(rng, 0.6), outline=_shade(rng), width=rng.randint(6, 10))
    return image


KINDS = {
    "disc": draw_disc, "rectangle": draw_rectangle, "triangle": draw_triangle, "stripes": draw_stripes,
    "gradient": draw_gradient, "letter": draw_letter,
    "ring": draw_ring, "cross": draw_cross, "frame": draw_frame, "digit": draw_digit,
}
TRAIN_KINDS = ("disc", "rectangle", "triangle", "stripes", "gradient", "letter")
HELD_OUT_KINDS = ("ring", "cross", "frame", "digit")     # never in the training corpus


def draw(kind: str, rng: random.Random) -> Art:
    if kind not in KINDS:
        raise GlassError(f"unknown picture kind {kind!r}: choose from {', '.join(KINDS)}")
    return Art.from_image(KINDS[kind](rng), name=kind)
