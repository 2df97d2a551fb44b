"""The temperature study: what dividing the scores by T does, and what it does to text.

1. Mechanism, on one real prompt: the top next-token logits, the logits divided by T, and
   softmax(logits / T) at several T. The order never changes and nothing random is added;
   a small T only stretches the gaps between scores, so the top token takes all the mass.
2. Consequence: many fixed-length samples per temperature (several prompts, several
   seeds), each measured for repetition (repeated n-grams, longest loop), diversity
   (distinct-n), the entropy of the model's own T=1 distribution where it sampled, and the
   cross-entropy of the sample under the model at T=1. Each is plotted against T with the
   spread across seeds, and the report states what the numbers show.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import GlassError
from ..fileio import save_figure
from .completer import Completer
from .metrics import distinct_n, sample_metrics, spearman
from .report import ReportDir, md_table

DEFAULT_PROMPTS = (
    "The ",
    "It is a truth that ",
    "def main():\n    ",
    "First Citizen:\n",
)
DEFAULT_TEMPERATURES = (0.1, 0.3, 0.5, 0.7, 1.0, 1.3)
MECHANISM_TEMPERATURES = (0.01, 0.3, 0.7, 1.0, 1.5)

# metric key -> (label, where it comes from)
METRICS = {
    "rep_2": "repeated 2-gram fraction",
    "rep_3": "repeated 3-gram fraction",
    "rep_4": "repeated 4-gram fraction",
    "loop_span": "longest exact loop (tokens)",
    "distinct_1": "distinct-1 (pooled over a seed's samples)",
    "distinct_2": "distinct-2 (pooled over a seed's samples)",
    "mean_entropy": "mean entropy of the T=1 distribution at sampled positions (nats)",
    "cross_entropy": "cross-entropy of the samples under the model at T=1 (nats/token)",
}
TITLES = {"rep_2": "repeated 2-grams", "rep_3": "repeated 3-grams", "rep_4": "repeated 4-grams",
          "loop_span": "longest exact loop (tokens)", "distinct_1": "distinct-1", "distinct_2": "distinct-2",
          "mean_entropy": "entropy at T=1 (nats)", "cross_entropy": "cross-entropy at T=1 (nats/token)"}


@dataclass
class TemperatureSettings:
    prompts: list[str] = field(default_factory=lambda: list(DEFAULT_PROMPTS))
    temperatures: list[float] = field(default_factory=lambda: list(DEFAULT_TEMPERATURES))
    seeds: int = 3
    samples_per_seed: int = 2            # samples per (prompt, seed, temperature)
    length: int = 120                    # tokens per sample
    mechanism_temperatures: list[float] = field(default_factory=lambda: list(MECHANISM_TEMPERATURES))
    top_k_shown: int = 8

    def validate(self) -> None:
        if not self.prompts or any(not p for p in self.prompts):
            raise GlassError("give at least one non-empty prompt")
        if not self.temperatures or any(t < 0 for t in self.temperatures):
            raise GlassError("temperatures must be >= 0, e.g. --temperatures 0.2 0.5 1.0")
        if any(t <= 0 for t in self.mechanism_temperatures):
            raise GlassError("mechanism temperatures must be > 0: logits / 0 is not defined")
        for name in ("seeds", "samples_per_seed", "length", "top_k_shown"):
            if getattr(self, name) < 1:
                raise GlassError(f"{name.replace('_', '-')} must be at least 1")


def run_temperature_study(completer: Completer, out_dir, settings: TemperatureSettings | None = None,
                          progress: bool = True) -> dict:
    """Run both parts, writing samples as they come; return the results (also in results.json)."""
    settings = settings or TemperatureSettings()
    settings.validate()
    report = ReportDir(out_dir, {"experiment": "temperature", "completer": completer.name, **asdict(settings)})
    mechanism = temperature_mechanism(completer, settings.prompts[0], settings.mechanism_temperatures,
                                      settings.top_k_shown)
    plot_mechanism(mechanism, report.figure_path("mechanism.png"))
    collect_samples(completer, report, settings, progress)
    results = {"completer": completer.name, "settings": asdict(settings), "mechanism": mechanism,
               **summarise(report.samples, settings)}
    plot_consequences(results, report.figure_path("metrics_vs_temperature.png"))
    report.write_results(results)
    report.write_report(render_report(results))
    return results


# -- 1. the mechanism --------------------------------------------------------------------------
def temperature_mechanism(completer: Completer, prompt: str, temperatures, k: int) -> dict:
    """Top-k scores, scores / T and softmax(scores / T) for each T."""
    top = completer.top_scores(prompt, k)
    scores = np.array(top.scores, dtype=np.float64)
    rest = np.array(top.rest, dtype=np.float64)
    rows = []
    for t in temperatures:
        scaled = scores / t
        everything = np.concatenate([scaled, rest / t])
        log_z = np.logaddexp.reduce(everything)              # over the whole vocabulary when known
        probs = np.exp(scaled - log_z)
        rows.append({"temperature": t, "scaled": scaled.tolist(), "probs": probs.tolist(),
                     "rest_mass": float(max(0.0, 1.0 - probs.sum()))})
    order_kept = all(np.array_equal(np.argsort(-np.array(r["probs"]), kind="stable"), np.arange(len(scores)))
                     for r in rows)
    return {"prompt": prompt, "tokens": top.tokens, "scores": scores.tolist(), "score_kind": top.kind,
            "normalised_over": "whole vocabulary" if top.kind == "logits" else f"top {len(scores)} tokens only",
            "rows": rows, "order_kept": bool(order_kept)}


def plot_mechanism(mech: dict, path: Path) -> None:
    from ..figures import subplots

    labels = [repr(t)[1:-1] or "''" for t in mech["tokens"]]
    n = len(mech["rows"]) + 1
    fig, axes = subplots(1, n, figsize=(2.6 * n, 3.4), sharey=False)
    x = np.arange(len(labels))
    axes[0].bar(x, mech["scores"], color="gray")
    axes[0].set_title(f"raw {mech['score_kind']}")
    for ax, row in zip(axes[1:], mech["rows"]):
        ax.bar(x, row["probs"], color="tab:blue")
        ax.set_ylim(0, 1)
        ax.set_title(f"softmax(scores / {row['temperature']:g})")
    for ax in axes:
        ax.set_xticks(x, labels, rotation=60, fontsize=8, family="monospace")
    fig.suptitle(f"next token after {mech['prompt']!r}: same order, sharper or flatter", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


# -- 2. the consequence ------------------------------------------------------------------------
def sample_seed(seed: int, prompt_index: int, sample: int) -> int:
    return seed * 10_000 + prompt_index * 100 + sample


def collect_samples(completer: Completer, report: ReportDir, settings: TemperatureSettings, progress: bool):
    jobs = [(t, s, p, i) for t in settings.temperatures for s in range(settings.seeds)
            for p in range(len(settings.prompts)) for i in range(settings.samples_per_seed)]
    todo = [j for j in jobs if not report.done({"temperature": j[0], "seed": j[1], "prompt_index": j[2],
                                                "sample": j[3]})]
    bar = tqdm(todo, desc="temperature study", unit="sample", disable=not progress, initial=len(jobs) - len(todo),
               total=len(jobs))
    for t, s, p, i in bar:
        bar.set_postfix(T=t)
        c = completer.complete(settings.prompts[p], max_tokens=settings.length, temperature=t,
                               seed=sample_seed(s, p, i), logprobs=5)
        record = {"temperature": t, "seed": s, "prompt_index": p, "sample": i, "text": c.text,
                  "tokens": c.keys, "finish_reason": c.finish_reason, **sample_metrics(c.keys),
                  "mean_entropy": _mean(c.entropies), "entropy_is_lower_bound": c.entropy_is_lower_bound,
                  "cross_entropy": -_mean(c.token_logprobs) if c.token_logprobs else None}
        report.append(record)


def _mean(xs) -> float | None:
    return float(np.mean(xs)) if xs else None


def summarise(samples: list[dict], settings: TemperatureSettings) -> dict:
    """Per temperature: each metric per seed (mean over that seed's samples), then mean/std/min/max."""
    per_temperature = []
    for t in settings.temperatures:
        seeds = {}
        for s in range(settings.seeds):
            rows = [r for r in samples if r["temperature"] == t and r["seed"] == s]
            if not rows:
                continue
            values = {m: _mean([r[m] for r in rows if r.get(m) is not None])
                      for m in ("rep_2", "rep_3", "rep_4", "loop_span", "loop_fraction", "mean_entropy",
                                "cross_entropy")}
            values["distinct_1"] = distinct_n([r["tokens"] for r in rows], 1)
            values["distinct_2"] = distinct_n([r["tokens"] for r in rows], 2)
            values["loop_half"] = float(np.mean([r["loop_fraction"] >= 0.5 for r in rows]))
            seeds[s] = values
        stats = {}
        for m in list(METRICS) + ["loop_fraction", "loop_half"]:
            vals = [v[m] for v in seeds.values() if v.get(m) is not None]
            stats[m] = ({"mean": float(np.mean(vals)), "std": float(np.std(vals)), "min": float(np.min(vals)),
                         "max": float(np.max(vals)), "per_seed": vals} if vals else None)
        n = sum(1 for r in samples if r["temperature"] == t)
        per_temperature.append({"temperature": t, "samples": n, "metrics": stats})
    unavailable = [m for m in METRICS if all(p["metrics"][m] is None for p in per_temperature)]
    lower_bound = any(r.get("entropy_is_lower_bound") for r in samples)
    return {"per_temperature": per_temperature, "findings": findings(per_temperature),
            "unavailable": unavailable, "entropy_is_lower_bound": lower_bound}


def findings(per_temperature: list[dict]) -> list[dict]:
    """For each metric: its value at the lowest T, at the T nearest 1 and at the highest T, and
    the rank correlation with T over all seed-level points."""
    temps = [p["temperature"] for p in per_temperature]
    low, high = int(np.argmin(temps)), int(np.argmax(temps))
    one = int(np.argmin([abs(t - 1.0) for t in temps]))
    out = []
    for m, label in METRICS.items():
        stats = [p["metrics"].get(m) for p in per_temperature]
        if any(s is None for s in stats):
            continue
        xs = [t for t, s in zip(temps, stats) for _ in s["per_seed"]]
        ys = [v for s in stats for v in s["per_seed"]]
        rho = spearman(xs, ys)
        trend = ("rises as T rises" if rho >= 0.5 else "falls as T rises" if rho <= -0.5
                 else "shows no clear monotone trend with T")
        out.append({"metric": m, "label": label, "rho": rho, "trend": trend,
                    "low": (temps[low], stats[low]["mean"], stats[low]["std"]),
                    "one": (temps[one], stats[one]["mean"], stats[one]["std"]),
                    "high": (temps[high], stats[high]["mean"], stats[high]["std"])})
    return out


def plot_consequences(results: dict, path: Path) -> None:
    from ..figures import subplots

    per_t = results["per_temperature"]
    metrics = [m for m in METRICS if m not in results["unavailable"]]
    cols = 4
    rows = math.ceil(len(metrics) / cols)
    fig, axes = subplots(rows, cols, figsize=(3.4 * cols, 2.9 * rows), squeeze=False)
    temps = np.array([p["temperature"] for p in per_t])
    for ax, m in zip(axes.flat, metrics):
        stats = [p["metrics"][m] for p in per_t]
        mean = np.array([s["mean"] if s else np.nan for s in stats])
        std = np.array([s["std"] if s else np.nan for s in stats])
        lo = np.array([s["min"] if s else np.nan for s in stats])
        hi = np.array([s["max"] if s else np.nan for s in stats])
        ax.fill_between(temps, lo, hi, color="tab:blue", alpha=0.15, label="min-max over seeds")
        ax.errorbar(temps, mean, yerr=std, marker="o", color="tab:blue", capsize=3, label="mean ± std")
        ax.axvline(1.0, color="gray", lw=0.8, ls=":")
        ax.set_title(TITLES[m], fontsize=9)
        ax.set_xlabel("temperature")
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{results['completer']}: sample statistics against temperature", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


# -- the report ----------------------------------------------------------------------------------
def render_report(results: dict) -> str:
    s = results["settings"]
    mech = results["mechanism"]
    lines = [f"# Temperature study: {results['completer']}", "",
             f"{len(s['prompts'])} prompts × {s['seeds']} seeds × {s['samples_per_seed']} samples per "
             f"temperature, {s['length']} tokens each. All numbers are in `results.json`; every sample "
             f"(text, tokens, metrics) is in `samples.jsonl`.", "",
             "## 1. The mechanism: temperature divides the scores", "",
             f"Next token after the prompt {mech['prompt']!r}. Raw {mech['score_kind']} of the top "
             f"{len(mech['tokens'])} tokens, then the scores divided by T:", ""]
    temps = [r["temperature"] for r in mech["rows"]]
    toks = [repr(t) for t in mech["tokens"]]
    lines.append(md_table(["token", mech["score_kind"]] + [f"÷ {t:g}" for t in temps],
                          [[tok, sc] + [r["scaled"][i] for r in mech["rows"]]
                           for i, (tok, sc) in enumerate(zip(toks, mech["scores"]))]))
    lines += ["", f"softmax(scores / T), normalised over the {mech['normalised_over']}:", ""]
    rows = [[tok] + [r["probs"][i] for r in mech["rows"]] for i, tok in enumerate(toks)]
    rows.append(["(all other tokens)"] + [r["rest_mass"] for r in mech["rows"]])
    lines.append(md_table(["token"] + [f"T = {t:g}" for t in temps], rows))
    top = mech["rows"]
    lines += ["", f"The ranking of these tokens is {'identical' if mech['order_kept'] else 'NOT identical'} "
              f"at every temperature (checked); the top token's probability goes from "
              f"{top[-1]['probs'][0]:.3f} at T = {top[-1]['temperature']:g} to {top[0]['probs'][0]:.3f} at "
              f"T = {top[0]['temperature']:g}. Nothing random is added: a lower T multiplies every "
              f"gap between scores by 1/T, so the top token takes the mass.", "",
              "![mechanism](mechanism.png)", "", "## 2. The consequence: samples at each temperature", ""]
    headers = ["T", "samples"] + [m for m in METRICS if m not in results["unavailable"]]
    table = []
    for p in results["per_temperature"]:
        row = [f"{p['temperature']:g}", p["samples"]]
        for m in headers[2:]:
            st = p["metrics"][m]
            row.append(f"{st['mean']:.3f} ± {st['std']:.3f}" if st else "n/a")
        table.append(row)
    lines += ["Mean ± std across seeds (each seed's value is the mean over its samples; distinct-n "
              "pools a seed's samples):", "", md_table(headers, table), "",
              "![metrics against temperature](metrics_vs_temperature.png)", "", "### What the numbers show", ""]
    for f in results["findings"]:
        (tl, ml, sl), (t1, m1, s1), (th, mh, sh) = f["low"], f["one"], f["high"]
        rho = "n/a" if math.isnan(f["rho"]) else f"{f['rho']:.2f}"
        lines.append(f"- **{f['label']}** {f['trend']} (Spearman ρ = {rho} over seed-level points): "
                     f"{ml:.3f} ± {sl:.3f} at T = {tl:g}, {m1:.3f} ± {s1:.3f} at T = {t1:g}, "
                     f"{mh:.3f} ± {sh:.3f} at T = {th:g}.")
    loops = [(p["temperature"], p["metrics"]["loop_half"]) for p in results["per_temperature"]
             if p["metrics"].get("loop_half")]
    if loops:
        lines.append("- Share of samples whose longest exact loop covers at least half the sample: "
                     + ", ".join(f"{st['mean']:.2f} at T = {t:g}" for t, st in loops) + ".")
    notes = []
    if results["unavailable"]:
        notes.append("Could not be computed (the completer returned no log-probabilities for them): "
                     + ", ".join(METRICS[m] for m in results["unavailable"]) + ".")
    if results["entropy_is_lower_bound"]:
        notes.append("Entropies come from the endpoint's top-k logprobs only: each is a lower bound "
                     "(the top-k terms plus -m log m for the missing mass m).")
    if notes:
        lines += ["", "### Caveats", ""] + [f"- {n}" for n in notes]
    lines += ["", "### Prompts", ""] + [f"{i}. `{p!r}`" for i, p in enumerate(s["prompts"])]
    return "\n".join(lines) + "\n"
