"""The scorer: read a continuation back into frames and judge the process it describes.

Per frame: the header it declares, its real size against the schedule, its estimated
noise (share of characters outside the picture's character set; and, needing no character
set, share of characters that disagree with their whole neighbourhood) and, when the
held-out picture is known, its agreement with that picture at the frame's size.

Per sequence: did the canvas grow every step; did it get stuck (a frame identical to the
previous one, or not larger: the model copying the last step); did the noise fall; did it
finish (all K frames, the last one at full size with no noise, then </picture>); how close
is the final frame to the held-out picture.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .builder import CLOSE, HEADER, OPEN, Schedule
from .pictures import Art

NOISE_TOLERANCE = 0.02       # a noise estimate may rise this much and still count as falling


@dataclass
class ParsedFrame:
    step: int | None
    total: int | None
    width: int | None          # as declared in the header
    height: int | None
    noise: float | None
    rows: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """The size actually drawn: the longest row and the number of rows."""
        return max((len(r) for r in self.rows), default=0), len(self.rows)


def parse_frames(text: str) -> tuple[list[ParsedFrame], bool]:
    """Frames of the first picture in `text`, and whether it was closed with </picture>."""
    frames: list[ParsedFrame] = []
    started = not text.lstrip().startswith(OPEN)      # a bare continuation starts mid-picture
    for line in text.split("\n"):
        if not started:
            started = line.strip() == OPEN
            continue
        if line.strip() == CLOSE:
            return frames, True
        m = HEADER.match(line.strip())
        if m:
            step, total, w, h = (int(g) for g in m.groups()[:4])
            frames.append(ParsedFrame(step, total, w, h, float(m.group(5))))
        elif frames:
            frames[-1].rows.append(line)
    if frames and frames[-1].rows and frames[-1].rows[-1] == "":
        frames[-1].rows.pop()                          # the newline ending the last row
    return frames, False


def estimated_noise(rows: list[str], charset: frozenset[str]) -> float:
    cells = [c for r in rows for c in r]
    return sum(c not in charset for c in cells) / len(cells) if cells else 1.0


def isolated_share(rows: list[str]) -> float:
    """Share of characters equal to none of their (up to 8) neighbours: a noise estimate
    that needs no character set. A noise character rarely matches a neighbour; a clean
    picture's characters mostly sit in runs. Thin lines and single shading characters of a
    small clean picture count too, so read it against the clean target's own share."""
    cells = [(y, x) for y, row in enumerate(rows) for x in range(len(row))]
    if not cells:
        return 1.0

    def alone(y: int, x: int) -> bool:
        return all(rows[y + dy][x + dx] != rows[y][x]
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                   if (dy or dx) and 0 <= y + dy < len(rows) and 0 <= x + dx < len(rows[y + dy]))

    return sum(alone(y, x) for y, x in cells) / len(cells)


def ink(rows: list[str]) -> float:
    """Share of non-blank characters: a frame that is all background scores 0, so a
    finished-looking sequence that drew nothing shows up."""
    cells = [c for r in rows for c in r]
    return sum(c != " " for c in cells) / len(cells) if cells else 0.0


def agreement(rows: list[str], target: Art) -> float:
    """Share of cells equal to the held-out picture rendered at this frame's size."""
    w, h = max((len(r) for r in rows), default=0), len(rows)
    if not w or not h:
        return 0.0
    clean = target.at_size(w, h)
    padded = [r.ljust(w) for r in rows]
    return sum(a == b for r, t in zip(padded, clean) for a, b in zip(r, t)) / (w * h)


def score_sequence(text: str, schedule: Schedule, charset: frozenset[str], target: Art | None = None,
                   given: int = 0) -> dict:
    """Score the held-out sequence `text` (the given frames followed by the continuation)."""
    frames, closed = parse_frames(text)
    per_frame = []
    for k, f in enumerate(frames):
        expected = schedule.sizes[k] if k < schedule.frames else None
        per_frame.append({
            "index": k + 1, "given": k < given, "declared": [f.step, f.total, f.width, f.height, f.noise],
            "size": list(f.size), "expected_size": list(expected) if expected else None,
            "size_ok": expected is not None and f.size == tuple(expected),
            "header_ok": (expected is not None and (f.step, f.total) == (k + 1, schedule.frames)
                          and (f.width, f.height) == tuple(expected)
                          and abs(f.noise - schedule.noise[k]) < 0.006),
            "scheduled_noise": schedule.noise[k] if k < schedule.frames else None,
            "noise": estimated_noise(f.rows, charset),
            "isolated": isolated_share(f.rows),
            "ink": ink(f.rows),
            "agreement": agreement(f.rows, target) if target is not None else None,
        })
    stuck_at = next((k + 1 for k in range(1, len(frames))
                     if frames[k].rows == frames[k - 1].rows
                     or _area(frames[k].size) <= _area(frames[k - 1].size)), None)
    noise = [p["noise"] for p in per_frame]
    last = per_frame[-1] if per_frame else None
    finished = bool(closed and len(frames) == schedule.frames and last["size_ok"] and last["noise"] == 0.0)
    generated = [p for p in per_frame if not p["given"]]
    return {
        "frames": len(frames), "frames_expected": schedule.frames, "generated_frames": len(generated),
        "closed": closed,
        "sizes_follow_schedule": (sum(p["size_ok"] for p in generated) / len(generated)) if generated else 0.0,
        "headers_follow_schedule": (sum(p["header_ok"] for p in generated) / len(generated)) if generated else 0.0,
        "grows": len(frames) > given and stuck_at is None and all(p["size_ok"] for p in per_frame),
        "stuck": stuck_at is not None, "stuck_at": stuck_at,
        "noise_falls": len(noise) > 1 and all(b <= a + NOISE_TOLERANCE for a, b in zip(noise, noise[1:])),
        "finished": finished,
        "final_noise": last["noise"] if last else 1.0,
        "final_isolated": last["isolated"] if last else 1.0,
        "final_ink": last["ink"] if last else 0.0,
        "final_similarity": (agreement(frames[-1].rows, target) if target is not None and frames else None),
        "per_frame": per_frame,
    }


def _area(size: tuple[int, int]) -> int:
    return size[0] * size[1]


SUMMARY_KEYS = ("finished", "stuck", "grows", "noise_falls", "sizes_follow_schedule", "final_noise",
                "final_isolated", "final_ink", "final_similarity", "generated_frames")


def summarise_scores(scores: list[dict]) -> dict:
    """Mean of each key over sequences (booleans become rates)."""
    out = {"n": len(scores)}
    for k in SUMMARY_KEYS:
        vals = [float(s[k]) for s in scores if s.get(k) is not None]
        out[k] = sum(vals) / len(vals) if vals else None
    return out
