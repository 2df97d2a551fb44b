"""The builder: one picture -> K frames in which the canvas grows and the noise falls.

Frame k shows the picture resampled to the schedule's size (w_k, h_k), with exactly
round(p_k * w_k * h_k) cells, chosen at random, replaced by a noise character (one that a
clean rendering never contains, so noise can be counted). p_k falls from near 1 to 0, so
the last frame is the finished picture at full size. The same seed gives the same frames.

    <picture>
    [step 1/4 4x4 noise 0.90]
    qa#x
    ...
    [step 4/4 12x8 noise 0.00]
    ...
    </picture>
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from ...errors import GlassError
from .pictures import Art

OPEN, CLOSE = "<picture>", "</picture>"
HEADER = re.compile(r"^\[step (\d+)/(\d+) (\d+)x(\d+) noise (\d+\.\d+)\]$")
NOISE_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
MAX_CANVAS_WIDTH = 80


@dataclass(frozen=True)
class Schedule:
    sizes: tuple[tuple[int, int], ...]      # (width, height) of each frame
    noise: tuple[float, ...]                # p_k: share of cells replaced by noise in each frame

    def __post_init__(self):
        self.validate()

    @property
    def frames(self) -> int:
        return len(self.sizes)

    @property
    def final_size(self) -> tuple[int, int]:
        return self.sizes[-1]

    def validate(self) -> None:
        if len(self.sizes) < 2:
            raise GlassError("a schedule needs at least 2 frames: give more sizes or --frames 2 or more")
        if len(self.noise) != len(self.sizes):
            raise GlassError(f"the schedule has {len(self.sizes)} sizes but {len(self.noise)} noise levels: "
                             f"give one noise level per size")
        for k, (w, h) in enumerate(self.sizes):
            if w < 1 or h < 1:
                raise GlassError(f"frame {k + 1} has size {w}x{h}: sizes must be at least 1x1")
            if w > MAX_CANVAS_WIDTH:
                raise GlassError(f"frame {k + 1} is {w} characters wide, more than {MAX_CANVAS_WIDTH}: "
                                 f"use a smaller final width")
        for k in range(1, len(self.sizes)):
            (w0, h0), (w1, h1) = self.sizes[k - 1], self.sizes[k]
            if w1 < w0 or h1 < h0 or w1 * h1 <= w0 * h0:
                raise GlassError(f"the schedule does not grow from frame {k} ({w0}x{h0}) to frame {k + 1} "
                                 f"({w1}x{h1}): each frame must be larger, never narrower or shorter")
        if any(not 0.0 <= p <= 1.0 for p in self.noise):
            raise GlassError("noise levels must lie in [0, 1]")
        if any(b > a for a, b in zip(self.noise, self.noise[1:])) or self.noise[-1] != 0.0:
            raise GlassError("noise levels must fall (never rise) and end at 0 so the last frame is the picture")

    @classmethod
    def linear(cls, width: int = 12, height: int = 8, frames: int = 4, start: int = 4,
               noise_start: float = 0.9) -> "Schedule":
        """From a start x start square to width x height, noise falling linearly to 0."""
        if frames < 2:
            raise GlassError("--frames must be at least 2")
        s0 = max(1, min(start, width, height))
        steps = frames - 1
        sizes = tuple((round(s0 + (width - s0) * k / steps), round(s0 + (height - s0) * k / steps))
                      for k in range(frames))
        noise = tuple(round(noise_start * (1 - k / steps), 4) for k in range(frames))
        return cls(sizes, noise)

    @classmethod
    def parse(cls, sizes: str, noise: str | None = None, noise_start: float = 0.9) -> "Schedule":
        """sizes "4x4,7x5,12x8"; noise "0.9,0.45,0" (default: linear from noise_start to 0)."""
        try:
            parsed = tuple(tuple(int(v) for v in s.lower().split("x")) for s in sizes.split(","))
            if any(len(s) != 2 for s in parsed):
                raise ValueError
        except ValueError:
            raise GlassError(f"cannot read sizes {sizes!r}: write them like 4x4,7x5,12x8") from None
        if noise is None:
            steps = max(1, len(parsed) - 1)
            levels = tuple(round(noise_start * (1 - k / steps), 4) for k in range(len(parsed)))
        else:
            try:
                levels = tuple(float(v) for v in noise.split(","))
            except ValueError:
                raise GlassError(f"cannot read noise levels {noise!r}: write them like 0.9,0.45,0") from None
        return cls(parsed, levels)

    def to_dict(self) -> dict:
        return {"sizes": [list(s) for s in self.sizes], "noise": list(self.noise)}


@dataclass(frozen=True)
class Frame:
    step: int           # 1-based
    total: int
    width: int
    height: int
    noise: float        # the scheduled p_k, as stated in the header
    rows: tuple[str, ...]

    def header(self) -> str:
        return f"[step {self.step}/{self.total} {self.width}x{self.height} noise {self.noise:.2f}]"

    def text(self) -> str:
        return "\n".join([self.header(), *self.rows])


def noise_alphabet_for(art: Art) -> str:
    """Noise characters: ones a clean rendering of `art` never contains."""
    letters = "".join(c for c in NOISE_ALPHABET if c not in art.charset)
    if len(letters) >= 8:
        return letters
    printable = "".join(chr(i) for i in range(33, 127) if chr(i) not in art.charset and chr(i) not in "[]<>")
    if not printable:
        raise GlassError(f"{art.name} uses every printable character: no character is left to mark noise")
    return printable


def build_frames(art: Art, schedule: Schedule, seed: int = 0) -> list[Frame]:
    """The K frames of `art` under `schedule`; deterministic for a given seed."""
    rng = random.Random(seed)
    alphabet = noise_alphabet_for(art)
    frames = []
    for k, ((w, h), p) in enumerate(zip(schedule.sizes, schedule.noise)):
        cells = [list(row) for row in art.at_size(w, h)]
        for i in rng.sample(range(w * h), round(p * w * h)):    # exactly round(p * cells) noisy cells
            cells[i // w][i % w] = rng.choice(alphabet)
        frames.append(Frame(k + 1, schedule.frames, w, h, p, tuple("".join(r) for r in cells)))
    return frames


def format_sequence(frames: list[Frame], closed: bool = True) -> str:
    """The picture's frames between delimiters, as a model reads and writes them."""
    body = "\n".join([OPEN, *(f.text() for f in frames)])
    return body + ("\n" + CLOSE + "\n" if closed else "\n")
