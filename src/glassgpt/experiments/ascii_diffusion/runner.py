"""The runner: prompts with example sequences and the start of a held-out picture, sent to a
completer at several temperatures and seeds; each continuation scored as it arrives, then
a report with scores against temperature and the frames drawn side by side.
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ...errors import GlassError
from ...fileio import save_figure
from ..completer import Completer
from ..report import ReportDir, md_table
from .builder import CLOSE, Schedule, build_frames, format_sequence
from .pictures import HELD_OUT_KINDS, TRAIN_KINDS, Art, draw, load_art
from .prompt import build_prompt, open_sequence
from .render import render_sequences
from .scorer import agreement, ink, isolated_share, parse_frames, score_sequence, summarise_scores

SCORE_LABELS = {
    "finished": "finished (all frames, clean, closed)",
    "stuck": "stuck (frame repeated or not larger)",
    "grows": "grows on schedule every step",
    "noise_falls": "estimated noise never rises",
    "sizes_follow_schedule": "generated frames with the scheduled size",
    "final_noise": "estimated noise of the last frame",
    "final_isolated": "last frame: characters unlike all neighbours",
    "final_ink": "last frame: share of non-blank characters",
    "final_similarity": "last frame agreement with the held-out picture",
}


@dataclass
class DiffusionSettings:
    sizes: list[list[int]] = field(default_factory=lambda: [list(s) for s in Schedule.linear().sizes])
    noise: list[float] = field(default_factory=lambda: list(Schedule.linear().noise))
    examples: int = 2                     # complete example sequences in each prompt
    given: int = 1                        # frames of the held-out picture shown
    example_kinds: list[str] = field(default_factory=lambda: list(TRAIN_KINDS))
    test_kinds: list[str] = field(default_factory=lambda: list(HELD_OUT_KINDS))
    pictures_per_kind: int = 2
    test_files: list[str] = field(default_factory=list)   # images / text art to test on instead
    temperatures: list[float] = field(default_factory=lambda: [0.2, 0.5, 0.8, 1.0, 1.2])
    seeds: int = 2
    seed: int = 0                         # pictures, noise and example choice
    max_art_width: int = 200

    @property
    def schedule(self) -> Schedule:
        return Schedule(tuple(tuple(s) for s in self.sizes), tuple(self.noise))

    def validate(self) -> None:
        self.schedule.validate()
        if self.examples < 0 or self.seeds < 1 or self.pictures_per_kind < 1:
            raise GlassError("examples must be >= 0, seeds and pictures-per-kind >= 1")
        if not self.temperatures or any(t < 0 for t in self.temperatures):
            raise GlassError("temperatures must be >= 0, e.g. --temperatures 0.2 0.5 1.0")


@dataclass
class TestCase:
    name: str
    art: Art
    prompt: str
    target_text: str        # the full held-out sequence, for reference and rendering


def make_test_cases(settings: DiffusionSettings) -> list[TestCase]:
    """Held-out pictures (files, or built-in kinds), each with its own examples and noise."""
    rng = random.Random(settings.seed)
    schedule = settings.schedule
    if settings.test_files:
        pictures = [load_art(p, settings.max_art_width) for p in settings.test_files]
    else:
        pictures = [draw(kind, rng) for kind in settings.test_kinds for _ in range(settings.pictures_per_kind)]
    cases = []
    for i, art in enumerate(pictures):
        examples = [build_frames(draw(rng.choice(settings.example_kinds), rng), schedule, seed=rng.randrange(2 ** 31))
                    for _ in range(settings.examples)]
        target = build_frames(art, schedule, seed=rng.randrange(2 ** 31))
        cases.append(TestCase(f"{i}:{art.name}", art, build_prompt(examples, target, settings.given),
                              format_sequence(target)))
    return cases


def run_ascii_diffusion(completer: Completer, out_dir, settings: DiffusionSettings | None = None,
                        max_tokens: int | None = None, progress: bool = True) -> dict:
    settings = settings or DiffusionSettings()
    settings.validate()
    schedule = settings.schedule
    report = ReportDir(out_dir, {"experiment": "ascii-diffusion", "completer": completer.name, **asdict(settings)})
    cases = make_test_cases(settings)
    jobs = [(t, s, c) for t in settings.temperatures for s in range(settings.seeds) for c in range(len(cases))]
    todo = [j for j in jobs if not report.done({"temperature": j[0], "seed": j[1], "case": j[2]})]
    bar = tqdm(todo, desc="ascii diffusion", unit="run", disable=not progress, initial=len(jobs) - len(todo),
               total=len(jobs))
    for t, s, c in bar:
        case = cases[c]
        budget = max_tokens or int(1.3 * (len(case.target_text) - len(open_sequence(case.prompt)))) + 20
        out = completer.complete(case.prompt, max_tokens=budget, temperature=t, seed=1000 * s + c, stop=[CLOSE])
        scores = score_sequence(open_sequence(case.prompt) + closed_text(out.text, out.finish_reason), schedule,
                                case.art.charset, case.art, given=settings.given)
        report.append({"temperature": t, "seed": s, "case": c, "picture": case.name, "continuation": out.text,
                       "finish_reason": out.finish_reason, **scores})
    results = summarise(report.samples, settings, cases, completer.name)
    plot_scores(results, report.figure_path("scores_vs_temperature.png"))
    results["figures"] = render_examples(report, cases, settings)
    report.write_results(results)
    report.write_report(render_report(results))
    return results


def closed_text(text: str, finish_reason: str) -> str:
    """The continuation with its </picture> put back: completers drop the stop string. It
    goes on a line of its own, without adding an empty row to the last frame."""
    if finish_reason != "stop" or CLOSE in text:
        return text
    return text + ("" if text.endswith("\n") else "\n") + CLOSE


def summarise(samples: list[dict], settings: DiffusionSettings, cases: list[TestCase], name: str) -> dict:
    per_temperature = []
    for t in settings.temperatures:
        per_seed = [summarise_scores([r for r in samples if r["temperature"] == t and r["seed"] == s])
                    for s in range(settings.seeds)]
        stats = {}
        for k in SCORE_LABELS:
            vals = [p[k] for p in per_seed if p.get(k) is not None]
            stats[k] = ({"mean": float(np.mean(vals)), "std": float(np.std(vals)), "per_seed": vals}
                        if vals else None)
        overall = summarise_scores([r for r in samples if r["temperature"] == t])
        per_temperature.append({"temperature": t, "runs": overall["n"], "scores": stats,
                                "generated_frames": overall["generated_frames"] or 0.0})
    width, height = settings.schedule.final_size
    targets = [c.art.at_size(width, height) for c in cases]
    blank = [" " * width] * height
    return {"completer": name, "settings": asdict(settings), "schedule": settings.schedule.to_dict(),
            # the same measures on the clean held-out pictures, and for a canvas left blank
            "target_isolated": float(np.mean([isolated_share(t) for t in targets])) if cases else None,
            "target_ink": float(np.mean([ink(t) for t in targets])) if cases else None,
            "blank_similarity": float(np.mean([agreement(blank, c.art) for c in cases])) if cases else None,
            "pictures": [c.name for c in cases], "prompt_example": cases[0].prompt if cases else "",
            "prompt_chars": [len(c.prompt) for c in cases], "per_temperature": per_temperature}


def plot_scores(results: dict, path: Path) -> None:
    from ...figures import subplots

    per_t = results["per_temperature"]
    keys = [k for k in SCORE_LABELS if all(p["scores"][k] is not None for p in per_t)]
    cols = 4
    rows = math.ceil(len(keys) / cols)
    fig, axes = subplots(rows, cols, figsize=(3.3 * cols, 2.8 * rows), squeeze=False)
    temps = [p["temperature"] for p in per_t]
    for ax, k in zip(axes.flat, keys):
        mean = np.array([p["scores"][k]["mean"] for p in per_t])
        std = np.array([p["scores"][k]["std"] for p in per_t])
        ax.fill_between(temps, mean - std, mean + std, color="tab:green", alpha=0.2)
        ax.plot(temps, mean, marker="o", color="tab:green")
        ax.axvline(1.0, color="gray", lw=0.8, ls=":")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(SCORE_LABELS[k], fontsize=8)
        ax.set_xlabel("temperature")
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"{results['completer']}: ASCII diffusion scores (mean ± std over seeds)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def render_examples(report: ReportDir, cases: list[TestCase], settings: DiffusionSettings) -> list[str]:
    """One PNG per temperature: each held-out picture's target row, then its seed-0 continuation."""
    names = []
    for t in settings.temperatures:
        sequences = []
        for c, case in enumerate(cases[:4]):
            record = report.done({"temperature": t, "seed": 0, "case": c})
            if record is None:
                continue
            target, _ = parse_frames(case.target_text)
            sequences.append((f"{case.name}: target", [(_title(f), f.rows) for f in target]))
            generated, _ = parse_frames(open_sequence(case.prompt) + record["continuation"])
            width, height = settings.schedule.final_size      # a rambling model is cut at twice the canvas
            sequences.append((f"{case.name}: model at T={t:g}, seed 0 "
                              f"({'finished' if record['finished'] else 'stuck' if record['stuck'] else 'unfinished'})",
                              [(_title(f), [r[:2 * width] for r in f.rows[:2 * height]])
                               for f in generated[:settings.schedule.frames + 2]]))
        name = f"frames_T{t:g}.png"
        render_sequences(sequences, cases[0].art.charset if cases else None, report.figure_path(name))
        names.append(name)
    return names


def _title(frame) -> str:
    return f"{frame.step}/{frame.total} {frame.width}x{frame.height} p={frame.noise:.2f}"


def render_report(results: dict) -> str:
    s = results["settings"]
    sched = results["schedule"]
    lines = [f"# ASCII-art diffusion: {results['completer']}", "",
             f"Schedule: sizes {', '.join(f'{w}x{h}' for w, h in sched['sizes'])}; noise "
             f"{', '.join(f'{p:.2f}' for p in sched['noise'])}. Each prompt: {s['examples']} example "
             f"sequence(s) of kinds {', '.join(s['example_kinds'])}, then {s['given']} frame(s) of a held-out "
             f"picture ({len(results['pictures'])} pictures: {', '.join(results['pictures'])}). "
             f"{s['seeds']} seeds per temperature. Every continuation and its scores are in `samples.jsonl`; "
             f"all numbers in `results.json`.", "",
             "## Scores against temperature", "", "Mean ± std over seeds (each seed averages its pictures):", ""]
    keys = list(SCORE_LABELS)
    rows = []
    for p in results["per_temperature"]:
        rows.append([f"{p['temperature']:g}", p["runs"]] + [
            f"{p['scores'][k]['mean']:.2f} ± {p['scores'][k]['std']:.2f}" if p["scores"][k] else "n/a" for k in keys])
    lines += [md_table(["T", "runs"] + keys, rows), "", "Columns: " +
              "; ".join(f"`{k}` = {v}" for k, v in SCORE_LABELS.items()) + ".", "",
              "![scores against temperature](scores_vs_temperature.png)", "", "### What the numbers show", ""]
    per_t = results["per_temperature"]
    references = {"final_similarity": ("a blank canvas", "blank_similarity"),
                  "final_isolated": ("the clean held-out pictures", "target_isolated"),
                  "final_ink": ("the clean held-out pictures", "target_ink")}
    for k in ("finished", "stuck", "final_similarity", "final_isolated", "final_ink"):
        vals = [(p["temperature"], p["scores"][k]["mean"]) for p in per_t if p["scores"][k]]
        if vals:
            best = max(round(v, 6) for _, v in vals)
            where = ("the same at every T" if len({round(v, 6) for _, v in vals}) == 1
                     else "highest at T = " + ", ".join(f"{t:g}" for t, v in vals if round(v, 6) == best))
            line = f"- {SCORE_LABELS[k]}: " + ", ".join(f"{v:.2f} at T = {t:g}" for t, v in vals) + f" ({where}"
            if k in references and results.get(references[k][1]) is not None:
                line += f"; {references[k][0]}: {results[references[k][1]]:.2f}"
            lines.append(line + ").")
    frames = [(p["temperature"], p["generated_frames"]) for p in per_t]
    lines.append("- Frames with a valid header written by the model, per continuation: "
                 + ", ".join(f"{v:.2f} at T = {t:g}" for t, v in frames) + ".")
    lines += ["", "## Frames", "", "Target sequence, then the model's continuation (seed 0); red characters "
              "are outside the picture's character set (noise).", ""]
    lines += [f"![frames at {f}]({f})" for f in results["figures"]]
    lines += ["", "## The first prompt", "", "```", results["prompt_example"], "```"]
    return "\n".join(lines) + "\n"
